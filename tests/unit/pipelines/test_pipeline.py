"""AnnotatedDDPMPipeline: sampling behaviour, scheduler swaps, and saved folders that load by every route."""

import ast
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
)
from PIL import Image

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel

STEPS = 4


def tiny_pipeline(channels=1, num_class_embeds=None, seed=0, null_class_embed=False):
    torch.manual_seed(seed)
    unet = AnnotatedUNet2DModel(
        sample_size=8, in_channels=channels, dim=8, dim_mults=(1, 2), resnet_block_groups=2,
        attention_heads=2, attention_head_dim=8, num_class_embeds=num_class_embeds, null_class_embed=null_class_embed,
    )
    scheduler = AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="squaredcos_cap_v2")
    pipe = AnnotatedDDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe, seed=0, batch_size=2, **kwargs):
    kwargs.setdefault("num_inference_steps", STEPS)
    return pipe(batch_size=batch_size, generator=torch.Generator().manual_seed(seed), output_type="np", **kwargs).images


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


def test_output_types(pipe):
    pil = pipe(batch_size=2, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0)).images
    assert len(pil) == 2 and all(isinstance(im, Image.Image) and im.mode == "L" and im.size == (8, 8) for im in pil)
    arr = sample(pipe)
    assert arr.shape == (2, 8, 8, 1) and arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
    pt = pipe(batch_size=2, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert pt.shape == (2, 1, 8, 8)
    np.testing.assert_allclose(pt.permute(0, 2, 3, 1).numpy(), arr, atol=1e-6)
    # The PIL image is the same picture, quantised to 8 bits.
    np.testing.assert_allclose(np.asarray(pil[0], dtype=np.float32) / 255, arr[0, ..., 0], atol=1 / 255 + 1e-6)
    (tup,) = pipe(batch_size=1, num_inference_steps=STEPS, output_type="np", return_dict=False)
    assert tup.shape == (1, 8, 8, 1)


def test_rgb_model_gives_rgb_images():
    images = tiny_pipeline(channels=3)(batch_size=3, num_inference_steps=2).images
    assert len(images) == 3 and all(im.mode == "RGB" for im in images)


def test_deterministic_for_a_generator_and_a_list_of_generators(pipe):
    np.testing.assert_array_equal(sample(pipe, seed=3), sample(pipe, seed=3))
    assert not np.allclose(sample(pipe, seed=3), sample(pipe, seed=4))
    gens = [torch.Generator().manual_seed(10), torch.Generator().manual_seed(11)]
    batch = pipe(batch_size=2, generator=gens, num_inference_steps=STEPS, output_type="np").images
    for i, seed in enumerate((10, 11)):
        single = sample(pipe, seed=seed, batch_size=1)
        np.testing.assert_allclose(batch[i], single[0], atol=1e-5)


def test_callback_on_step_end_sees_every_step_and_can_replace_latents(pipe):
    seen = []

    def callback(p, i, t, kwargs):
        seen.append((i, int(t), tuple(kwargs["latents"].shape)))
        return {"latents": torch.zeros_like(kwargs["latents"])} if i == STEPS - 1 else kwargs

    images = sample(pipe, callback_on_step_end=callback)
    assert [s[0] for s in seen] == list(range(STEPS))
    assert [s[1] for s in seen] == pipe.scheduler.timesteps.tolist()
    assert all(s[2] == (2, 1, 8, 8) for s in seen)
    np.testing.assert_allclose(images, 0.5)  # zeros in [-1, 1] are 0.5 in [0, 1]


def test_progress_bar_can_be_disabled(capsys):
    p = tiny_pipeline()
    p.set_progress_bar_config(disable=False)
    sample(p)
    assert f"{STEPS}/{STEPS}" in capsys.readouterr().err
    p.set_progress_bar_config(disable=True)
    sample(p)
    assert capsys.readouterr().err == ""


def test_class_conditional_sampling():
    p = tiny_pipeline(num_class_embeds=3)
    a = sample(p, class_labels=[0, 2])
    b = sample(p, class_labels=[1, 1])
    assert a.shape == b.shape == (2, 8, 8, 1) and not np.allclose(a, b)
    np.testing.assert_array_equal(sample(p, class_labels=1), b)
    # No labels: the classes in turn.
    np.testing.assert_array_equal(sample(p, batch_size=4), sample(p, batch_size=4, class_labels=[0, 1, 2, 0]))
    with pytest.raises(ValueError, match="0..2"):
        sample(p, class_labels=[0, 3])
    with pytest.raises(ValueError, match="null_class_embed"):  # no "no class" embedding to guide with
        sample(p, class_labels=[0, 1], guidance_scale=2.0)


def manual_guided_chain(pipe, labels, guidance_scale, seed=0, interval=(0, 10**9)):
    """Ho & Salimans 2022, eq. (6) written out: two U-Net calls per step (label y, label K = no class);
    outside `interval` (t_low <= t <= t_high) the conditional model alone."""
    unet, scheduler = pipe.unet, pipe.scheduler
    no_class = torch.full_like(labels, unet.config.num_class_embeds)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((len(labels), 1, 8, 8), generator=generator)
    scheduler.set_timesteps(STEPS)
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps_y = unet(x, t, class_labels=labels).sample
            eps_empty = unet(x, t, class_labels=no_class).sample
            eps = eps_empty + guidance_scale * (eps_y - eps_empty) if interval[0] <= t <= interval[1] else eps_y
            x = scheduler.step(eps, t, x, generator=generator).prev_sample
    return (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("guidance_scale", [0.0, 2.5])
def test_classifier_free_guidance_matches_the_equation(guidance_scale):
    p = tiny_pipeline(num_class_embeds=3, null_class_embed=True)
    labels = torch.tensor([0, 2, 1])
    guided = sample(p, batch_size=3, class_labels=labels.tolist(), guidance_scale=guidance_scale)
    np.testing.assert_allclose(guided, manual_guided_chain(p, labels, guidance_scale), atol=1e-5)
    # s = 1 is the conditional model alone, one U-Net call per step.
    plain = sample(p, batch_size=3, class_labels=labels.tolist())
    np.testing.assert_allclose(plain, manual_guided_chain(p, labels, 1.0), atol=1e-5)
    assert not np.allclose(guided, plain, atol=1e-3)
    with pytest.raises(ValueError, match="guidance_scale must be a number in 0..50"):
        sample(p, class_labels=[0, 1], guidance_scale=-1.0)


def test_guidance_interval_guides_only_the_steps_inside_it():
    """guidance_interval=(t_low, t_high) (Kynkaanniemi et al. 2024): eq. (6) where t_low <= t <= t_high,
    the conditional model alone elsewhere; an interval holding every step is plain guidance."""
    p = tiny_pipeline(num_class_embeds=3, null_class_embed=True)
    labels = torch.tensor([0, 2, 1])
    kwargs = dict(batch_size=3, class_labels=labels.tolist(), guidance_scale=2.5)
    p.scheduler.set_timesteps(STEPS)
    inside = sorted(int(t) for t in p.scheduler.timesteps)[1:-1]  # all but the first and the last step
    interval = (inside[0], inside[-1])
    limited = sample(p, guidance_interval=interval, **kwargs)
    np.testing.assert_allclose(limited, manual_guided_chain(p, labels, 2.5, interval=interval), atol=1e-5)
    assert not np.allclose(limited, sample(p, **kwargs), atol=1e-3)
    assert not np.allclose(limited, sample(p, batch_size=3, class_labels=labels.tolist()), atol=1e-3)
    everywhere = (0, p.scheduler.config.num_train_timesteps - 1)
    np.testing.assert_allclose(sample(p, guidance_interval=everywhere, **kwargs), sample(p, **kwargs), atol=1e-6)
    for bad in [(5,), (10, 5), (-1, 5), (0, p.scheduler.config.num_train_timesteps), (0.5, 3), "0-9"]:
        with pytest.raises(ValueError, match="guidance_interval must be two ints"):
            sample(p, guidance_interval=bad, **kwargs)


def test_guided_pipeline_round_trips_through_both_loaders(tmp_path):
    p = tiny_pipeline(num_class_embeds=3, null_class_embed=True)
    p.save_pretrained(tmp_path)
    expected = sample(p, batch_size=3, guidance_scale=2.0)
    loaded = AnnotatedDDPMPipeline.from_pretrained(tmp_path)
    assert loaded.unet.config.null_class_embed is True
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(sample(loaded, batch_size=3, guidance_scale=2.0), expected, atol=1e-6)
    remote = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)
    remote.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(sample(remote, batch_size=3, guidance_scale=2.0), expected, atol=1e-6)


def test_sampling_defaults_come_from_the_folder_and_explicit_arguments_win(tmp_path):
    """pipe() with no settings samples as the folder recommends (model_index.json); each explicit argument
    wins; a guidance_scale left out brings the folder's interval, an explicit one guides every step."""
    p = tiny_pipeline(num_class_embeds=3, null_class_embed=True)
    assert p.sampling_defaults == {"num_inference_steps": 50, "guidance_scale": 1.0, "guidance_interval": None}
    p.set_sampling_defaults(num_inference_steps=3, guidance_scale=2.0, guidance_interval=(10, 30))
    recommended = sample(p, batch_size=3, num_inference_steps=3, guidance_scale=2.0, guidance_interval=(10, 30))
    np.testing.assert_array_equal(p(batch_size=3, generator=torch.Generator().manual_seed(0), output_type="np").images,
                                  recommended)
    every_step = sample(p, batch_size=3, num_inference_steps=3, guidance_scale=2.0, guidance_interval=(0, 49))
    assert not np.array_equal(every_step, recommended)  # the interval matters, so the next line can fail
    np.testing.assert_array_equal(sample(p, batch_size=3, num_inference_steps=3, guidance_scale=2.0), every_step)
    p.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert (index["default_num_inference_steps"], index["default_guidance_scale"], index["default_guidance_interval"]) == (
        3, 2.0, [10, 30])
    for loaded in (AnnotatedDDPMPipeline.from_pretrained(tmp_path),
                   DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)):
        loaded.set_progress_bar_config(disable=True)
        assert loaded.sampling_defaults == {"num_inference_steps": 3, "guidance_scale": 2.0, "guidance_interval": (10, 30)}
        images = loaded(batch_size=3, generator=torch.Generator().manual_seed(0), output_type="np").images
        np.testing.assert_allclose(images, recommended, atol=1e-6)
    overridden = AnnotatedDDPMPipeline.from_pretrained(tmp_path, default_num_inference_steps=5)
    assert overridden.sampling_defaults["num_inference_steps"] == 5


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_inference_steps=0), r"default num_inference_steps must be an integer in 1\.\.50, got 0"),
    (dict(num_inference_steps=2.5), "got 2.5"),
    (dict(guidance_scale=float("nan")), "default guidance_scale must be a number in 0..50"),
    (dict(guidance_scale=2.0, guidance_interval=(30, 10)), "guidance_interval"),
    (dict(guidance_scale=2.0, guidance_interval=(0, 50)), "guidance_interval"),
])
def test_bad_sampling_defaults_are_refused_when_set_and_when_loaded(tmp_path, kwargs, message):
    p = tiny_pipeline()
    with pytest.raises(ValueError, match=message):
        p.set_sampling_defaults(**kwargs)
    p.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    index.update({f"default_{key}": list(value) if isinstance(value, tuple) else value for key, value in kwargs.items()})
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=message):
        AnnotatedDDPMPipeline.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_inference_steps=51), "num_train_timesteps=50"),
        (dict(batch_size=0), "batch_size"),
        (dict(class_labels=[0, 1]), "unconditional"),
        (dict(output_type="jpeg"), "output_type"),
        (dict(guidance_scale=3.0), "guidance"),
        (dict(num_inference_steps="4"), r"num_inference_steps must be an integer in 1\.\.50, got '4'"),
        (dict(guidance_interval=(10, 30)), "says where to guide, but guidance_scale is 1"),
        (dict(num_inference_steps=2.5), r"num_inference_steps must be an integer in 1\.\.50, got 2\.5"),
        (dict(batch_size=2.0), "batch_size must be a positive integer, got 2.0"),
        (dict(generator=[torch.Generator()] * 3), "Got a list of 3 generators for batch_size=2"),
        (dict(eta=float("nan")), "eta must be a finite number >= 0"),
        (dict(guidance_scale=float("inf")), "guidance_scale must be a number in 0..50"),
        (dict(guidance_scale=1e30), r"guidance_scale must be a number in 0..50 \(1 = no guidance, 0 = the unconditional"),
        (dict(latents=torch.full((2, 1, 8, 8), float("nan"))), "latents hold NaN or inf"),
    ],
)
def test_bad_input_raises_value_error(pipe, kwargs, message):
    kwargs = {"batch_size": 2, "num_inference_steps": STEPS, **kwargs}
    with pytest.raises(ValueError, match=message):
        pipe(**kwargs)


def test_class_labels_are_never_rounded():
    p = tiny_pipeline(num_class_embeds=3)
    for labels in (1.7, [0, 1.0], True):
        with pytest.raises(ValueError, match=r"class_labels must be (integers|None \(the classes in turn\), an int)"):
            p(batch_size=2, num_inference_steps=STEPS, class_labels=labels)
    np.testing.assert_array_equal(sample(p, class_labels=np.int64(2)), sample(p, class_labels=[2, 2]))


def test_a_non_finite_sample_raises_instead_of_becoming_a_black_image():
    p = tiny_pipeline()
    with torch.no_grad():
        next(p.unet.parameters())[0].fill_(float("nan"))  # a diverged weight
    from annotated_pipeline.pipelines.pipeline import NonFiniteSampleError
    for output_type in ("pil", "np"):
        with pytest.raises(NonFiniteSampleError, match=r"2 of 2 samples hold NaN or inf after the last step"):
            p(batch_size=2, num_inference_steps=STEPS, output_type=output_type)


def test_a_typo_in_a_local_path_is_one_clear_error_not_a_hub_lookup(tmp_path):
    for path in (str(tmp_path / "no-such-folder"), "./pretrained/ddpm-fashion-mnst", "runs/a/b"):
        with pytest.raises(ValueError, match=f"No folder '{path}' \\(and it cannot be a Hub repo id"):
            AnnotatedDDPMPipeline.from_pretrained(path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file; a saved pipeline is a folder"):
        AnnotatedDDPMPipeline.from_pretrained(tmp_path / "file")


def test_a_name_that_may_be_a_repo_id_says_both_readings_when_offline(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="No folder 'pretrained/ddpm-fashion-mnst' here, and downloading it as a Hub "
                                      "repo id failed"):
        AnnotatedDDPMPipeline.from_pretrained("pretrained/ddpm-fashion-mnst")


MARKER_CODE = """
import pathlib
pathlib.Path({marker!r}).write_text("folder code ran")
"""


@pytest.mark.parametrize("library, class_name", [("transformers", "AutoModel"), ("unet_2d", "Evil"),
                                                 ("diffusers", "DiffusionPipeline"), ("os", "system")])
def test_the_installed_route_never_runs_code_from_the_folder(pipe, tmp_path, library, class_name):
    """Whatever model_index.json names (a transformers Auto class with an auto_map, a module of the folder's
    own, a diffusers class that is not a model), the installed route refuses before importing anything."""
    folder = tmp_path / "tampered"
    pipe.save_pretrained(folder)
    marker = tmp_path / "marker"
    for code_file in (folder / "unet" / "unet_2d.py", folder / "pipeline.py"):
        code_file.write_text(MARKER_CODE.format(marker=str(marker)) + code_file.read_text())
    (folder / "unet" / "evil.py").write_text(MARKER_CODE.format(marker=str(marker)))
    config = json.loads((folder / "unet" / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil.Evil", "AutoConfig": "evil.EvilConfig"}
    (folder / "unet" / "config.json").write_text(json.dumps(config))
    index = json.loads((folder / "model_index.json").read_text())
    index["unet"] = [library, class_name]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="no code from the folder runs"):
        AnnotatedDDPMPipeline.from_pretrained(folder)
    with pytest.raises(ValueError, match="custom_pipeline runs code"):
        AnnotatedDDPMPipeline.from_pretrained(folder, custom_pipeline=str(folder / "pipeline.py"))
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Scheduler swaps
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("swap", [DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, PNDMScheduler, DDPMScheduler])
def test_diffusers_schedulers_swap_in_and_back(swap):
    p = tiny_pipeline()
    original = dict(p.scheduler.config)
    p.scheduler = swap.from_config(p.scheduler.config)
    assert p.scheduler.config.beta_schedule == "squaredcos_cap_v2"
    images = sample(p, num_inference_steps=5)
    assert images.shape == (2, 8, 8, 1) and np.isfinite(images).all()
    if swap is not PNDMScheduler:  # PNDM's step is deterministic and takes no generator
        np.testing.assert_array_equal(images, sample(p, num_inference_steps=5))
    back = AnnotatedDDPMScheduler.from_config(p.scheduler.config)
    for key, value in original.items():
        if not key.startswith("_"):
            assert back.config[key] == value, key


@pytest.mark.parametrize("scheduler_class", [AnnotatedDDPMScheduler, DDPMScheduler, DPMSolverMultistepScheduler])
def test_explicit_timesteps_walk_the_chain_they_name(scheduler_class):
    """pipe(timesteps=chain) visits exactly `chain`, and gives the same images as the n-step chain the
    scheduler would have chosen itself when `chain` is that chain."""
    p = tiny_pipeline()
    p.scheduler = scheduler_class.from_config(p.scheduler.config)
    p.scheduler.set_timesteps(4)
    own_chain = p.scheduler.timesteps.tolist()
    np.testing.assert_array_equal(sample(p, timesteps=own_chain), sample(p, num_inference_steps=4))

    visited = []
    sample(p, timesteps=[9, 6, 2, 0], callback_on_step_end=lambda pipe, i, t, kw: visited.append(int(t)) or {})
    assert visited == [9, 6, 2, 0]


def test_explicit_timesteps_need_a_scheduler_that_takes_them():
    p = tiny_pipeline()
    p.scheduler = DDIMScheduler.from_config(p.scheduler.config)
    with pytest.raises(ValueError, match="DDIMScheduler.set_timesteps takes no explicit timesteps"):
        sample(p, timesteps=[9, 5, 0])


def test_karras_sigmas_that_repeat_timesteps_are_refused_before_sampling():
    """On the cosine schedule with T = 1000, 20 Karras steps put their first nine timesteps on 998:
    diffusers' DPM-Solver++ would fail part-way with an IndexError; the pipeline says why, up front."""
    p = tiny_pipeline()
    p.scheduler = DPMSolverMultistepScheduler.from_config(
        AnnotatedDDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").config,
        use_karras_sigmas=True)
    p.scheduler.set_timesteps(20)
    assert len(set(p.scheduler.timesteps.tolist())) < 20  # the premise: repeated timesteps
    calls = []
    with pytest.raises(ValueError, match="use_karras_sigmas=True gives repeated timesteps"):
        sample(p, num_inference_steps=20, callback_on_step_end=lambda *a: calls.append(1))
    assert calls == []  # refused before the first step
    # Where the sigmas give distinct timesteps (linear schedule, few steps), Karras spacing samples.
    p.scheduler = DPMSolverMultistepScheduler(num_train_timesteps=1000, use_karras_sigmas=True)
    p.scheduler.set_timesteps(5)
    assert len(set(p.scheduler.timesteps.tolist())) == 5
    assert np.isfinite(sample(p, num_inference_steps=5)).all()


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_swap_matches_diffusers_ddim_pipeline_with_clipped_model_output(spacing, eta):
    """Our pipeline with DDIM swapped in samples what diffusers' DDIMPipeline samples with
    use_clipped_model_output=True: the default when the scheduler clips x_0_hat (clip_sample)."""
    from diffusers import DDIMPipeline

    p = tiny_pipeline()
    p.scheduler = DDIMScheduler.from_config(p.scheduler.config, timestep_spacing=spacing)
    assert p.scheduler.config.clip_sample
    ours = sample(p, num_inference_steps=5, eta=eta)
    reference = DDIMPipeline(unet=p.unet, scheduler=p.scheduler)
    reference.set_progress_bar_config(disable=True)
    kwargs = dict(batch_size=2, num_inference_steps=5, eta=eta, output_type="np")
    theirs = reference(generator=torch.Generator().manual_seed(0), use_clipped_model_output=True, **kwargs).images
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    # use_clipped_model_output=False is diffusers' default and gives other images on an untrained U-Net
    unclipped = sample(p, num_inference_steps=5, eta=eta, use_clipped_model_output=False)
    theirs_default = reference(generator=torch.Generator().manual_seed(0), **kwargs).images
    np.testing.assert_allclose(unclipped, theirs_default, atol=1e-6)
    assert np.abs(unclipped - ours).max() > 1e-3


def test_clipped_model_output_follows_the_scheduler_config():
    p = tiny_pipeline()
    p.scheduler = DDIMScheduler.from_config(p.scheduler.config)
    assert p._step_kwargs(None, 0.0, None)["use_clipped_model_output"] is True
    p.scheduler = DDIMScheduler.from_config(p.scheduler.config, clip_sample=False)
    assert p._step_kwargs(None, 0.0, None)["use_clipped_model_output"] is False
    p.scheduler = DDIMScheduler.from_config(p.scheduler.config, clip_sample=False, thresholding=True)
    assert p._step_kwargs(None, 0.0, None)["use_clipped_model_output"] is True
    p.scheduler = DPMSolverMultistepScheduler.from_config(p.scheduler.config)  # its step has no such argument
    assert "use_clipped_model_output" not in p._step_kwargs(None, 0.0, None)


def test_trained_betas_carry_unknown_schedules_to_other_schedulers():
    ours = AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="sigmoid")
    ddim = DDIMScheduler.from_config(ours.config, trained_betas=ours.betas.tolist())
    torch.testing.assert_close(ddim.alphas_cumprod, ours.alphas_cumprod)


# --------------------------------------------------------------------------------------------
# Saved folders
# --------------------------------------------------------------------------------------------

ROUTE2 = textwrap.dedent(
    """
    import sys
    sys.modules["annotated_pipeline"] = None  # the package must not be importable here
    import json, numpy as np, torch
    from diffusers import DiffusionPipeline
    folder, out, resave = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None
    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == "AnnotatedDDPMPipeline", type(pipe)
    assert type(pipe.unet).__module__.startswith("diffusers_modules"), type(pipe.unet).__module__
    images = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=%d, output_type="np").images
    np.save(out, images)
    if resave:
        pipe.save_pretrained(resave)
    print("route2 ok", type(pipe.unet).__module__)
    """
    % STEPS
)


def run_route2(folder, out, tmp_path, resave=None):
    """Load `folder` with plain diffusers in a fresh interpreter where annotated_pipeline cannot be imported."""
    script = tmp_path / "route2.py"
    script.write_text(ROUTE2)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_MODULES_CACHE=str(tmp_path / "hf_home" / "modules"), HF_HUB_OFFLINE="1")
    args = [sys.executable, str(script), str(folder), str(out)] + ([str(resave)] if resave else [])
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return np.load(out)


def test_saved_folder_layout(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "saved")
    saved = tmp_path / "saved"
    index = json.loads((saved / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline", "AnnotatedDDPMPipeline"]
    assert index["unet"] == ["unet_2d", "AnnotatedUNet2DModel"]
    assert index["scheduler"][1] == "AnnotatedDDPMScheduler"
    assert (saved / "pipeline.py").is_file() and (saved / "unet" / "unet_2d.py").is_file()
    assert (saved / "scheduler" / f"{index['scheduler'][0]}.py").is_file()
    assert (saved / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(saved.rglob("*.bin")) and not list(saved.rglob("__init__.py"))
    for code in saved.rglob("*.py"):  # self-contained: no import of the package, no relative import left
        for node in ast.walk(ast.parse(code.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0 and not node.module.startswith("annotated_pipeline"), (code, node.module)
            elif isinstance(node, ast.Import):
                assert not any(alias.name.startswith("annotated_pipeline") for alias in node.names), code
    with pytest.raises(ValueError, match="safetensors"):
        pipe.save_pretrained(tmp_path / "pickled", safe_serialization=False)


@pytest.mark.slow  # 12 s: three loading routes, two of them in subprocesses
def test_routes_1_2_3_give_identical_images(pipe, tmp_path):
    saved, resaved = tmp_path / "saved", tmp_path / "resaved"
    pipe.save_pretrained(saved)
    reference = sample(pipe)

    # Route 1: the installed package, no flags; no code from the folder runs.
    route1 = AnnotatedDDPMPipeline.from_pretrained(saved)
    route1.set_progress_bar_config(disable=True)
    assert type(route1.unet) is AnnotatedUNet2DModel and type(route1.scheduler) is AnnotatedDDPMScheduler
    np.testing.assert_array_equal(sample(route1), reference)

    # Route 2: plain diffusers with trust_remote_code, annotated_pipeline not importable; it re-saves (route 3).
    np.testing.assert_array_equal(run_route2(saved, tmp_path / "route2.npy", tmp_path, resave=resaved), reference)

    # Route 3: the folder re-saved by a remote-code pipeline loads again, by both routes.
    assert json.loads((resaved / "model_index.json").read_text())["_class_name"] == ["pipeline", "AnnotatedDDPMPipeline"]
    np.testing.assert_array_equal(run_route2(resaved, tmp_path / "route3.npy", tmp_path), reference)
    np.testing.assert_array_equal(sample(AnnotatedDDPMPipeline.from_pretrained(resaved)), reference)


def test_route_2_without_trust_remote_code_is_refused(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "saved")
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        DiffusionPipeline.from_pretrained(tmp_path / "saved")


def test_saved_swapped_scheduler_loads_as_that_scheduler(tmp_path):
    p = tiny_pipeline()
    p.scheduler = DDIMScheduler.from_config(p.scheduler.config)
    p.save_pretrained(tmp_path / "ddim")
    index = json.loads((tmp_path / "ddim" / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", "DDIMScheduler"]
    loaded = AnnotatedDDPMPipeline.from_pretrained(tmp_path / "ddim")
    assert type(loaded.scheduler) is DDIMScheduler
    np.testing.assert_array_equal(sample(loaded), sample(p))


def test_corrupted_weights_fail_clearly(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "saved")
    weights = tmp_path / "saved" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(Exception) as info:
        AnnotatedDDPMPipeline.from_pretrained(tmp_path / "saved")
    assert "safetensors" in str(info.value).lower() or "header" in str(info.value).lower() or "unable" in str(info.value).lower()


def test_diffusers_loading_keywords_work_or_are_refused_by_name(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "saved")
    pipe.save_pretrained(tmp_path / "saved", variant="fp16")
    for kwargs in (dict(torch_dtype=torch.float64), dict(dtype=torch.float64)):
        assert AnnotatedDDPMPipeline.from_pretrained(tmp_path / "saved", **kwargs).unet.dtype == torch.float64
    loaded = AnnotatedDDPMPipeline.from_pretrained(tmp_path / "saved", variant="fp16", use_safetensors=True)
    assert all(torch.equal(a, b) for a, b in zip(loaded.unet.parameters(), pipe.unet.parameters()))
    for kwargs, message in ((dict(use_safetensors=False), "safetensors only"), (dict(device_map="auto"), "device_map"),
                            (dict(torch_dtype=torch.float16, dtype=torch.float64), "give one of them"),
                            (dict(low_cpu_mem_usage=True), "Unexpected keyword arguments.*low_cpu_mem_usage")):
        with pytest.raises(ValueError, match=message):
            AnnotatedDDPMPipeline.from_pretrained(tmp_path / "saved", **kwargs)
