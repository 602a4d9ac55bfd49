"""The editing pipelines (RePaint inpainting, SDEdit, interpolation): their math against independent
truths, the shipped model's behaviour, saved folders by both routes, and the CLI subcommands."""

import json
import math
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from PIL import Image

from annotated_pipeline import (
    AnnotatedDDPMImg2ImgPipeline,
    AnnotatedDDPMInpaintPipeline,
    AnnotatedDDPMInterpolationPipeline,
    AnnotatedDDPMPipeline,
    AnnotatedDDPMScheduler,
    AnnotatedUNet2DModel,
)
from annotated_pipeline.evaluation.classifier import load_default_classifier
from annotated_pipeline.evaluation.measures import embed
from annotated_pipeline.evaluation.reference import load_split
from annotated_pipeline.pipelines.samplers import set_scheduler
from annotated_pipeline.pipelines.pipeline_img2img import sdedit_start
from annotated_pipeline.pipelines.pipeline_inpaint import half_mask, repaint_walk
from annotated_pipeline.pipelines.pipeline_interpolate import slerp
from annotated_pipeline.datasets.fashion_mnist import stratified_sample_indices

REPO = Path(__file__).resolve().parents[3]
PRETRAINED = REPO / "pretrained" / "ddpm-fashion-mnist"
SAMPLE = REPO / "data" / "fashion-mnist-sample"


def tiny(cls=AnnotatedDDPMPipeline, num_train_timesteps=50, num_class_embeds=None, null_class_embed=False, seed=0):
    torch.manual_seed(seed)
    unet = AnnotatedUNet2DModel(sample_size=8, in_channels=1, dim=8, dim_mults=(1, 2), resnet_block_groups=2,
                                attention_heads=2, attention_head_dim=8, num_class_embeds=num_class_embeds,
                                null_class_embed=null_class_embed)
    scheduler = AnnotatedDDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="squaredcos_cap_v2")
    pipe = cls(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(n=2, size=8, seed=1):
    """n images (n, 1, size, size) in [0, 1], on the 8-bit grid (as PNGs would be)."""
    return torch.randint(0, 256, (n, 1, size, size), generator=gen(seed)).float() / 255


@pytest.fixture(scope="module")
def shipped():
    pipe = AnnotatedDDPMPipeline.from_pretrained(PRETRAINED)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sample_images():
    """The embedded Fashion-MNIST sample: 30 images, 3 of each class, in [0, 1], and their labels."""
    x, y = load_split(SAMPLE, "train")
    chosen = stratified_sample_indices(y, 30, 0)
    return torch.from_numpy(x[chosen]).float().unsqueeze(1) / 255, torch.from_numpy(y[chosen])


# --------------------------------------------------------------------------------------------
# RePaint
# --------------------------------------------------------------------------------------------


def test_repaint_walk_walks_every_stretch_r_times():
    assert repaint_walk(4, 1, 2) == [0, 1, 0, 1, 2, 1, 2, 3, 2, 3, 4]
    assert repaint_walk(7, 3, 1) == list(range(8))  # r = 1: no resampling
    walk = repaint_walk(250, 10, 10)  # the paper's setting
    moves = list(zip(walk[:-1], walk[1:]))
    assert walk[0] == 0 and walk[-1] == 250 and all(b - a in (1, -10) for a, b in moves)
    down = Counter(a for a, b in moves if b == a + 1)
    # jump points 249, 239, ..., 19 send the walk back to 239, ..., 9: steps 9..248 are walked 10 times
    assert all(down[p] == (10 if 9 <= p <= 248 else 1) for p in range(250))
    assert sum(down.values()) == 250 + 9 * 10 * 24
    with pytest.raises(ValueError, match="jump_length"):
        repaint_walk(10, 0, 2)


@pytest.mark.parametrize("scheduler", ["ours", "ddim"])
def test_inpainting_keeps_the_known_pixels_exactly_and_changes_the_others(scheduler):
    pipe = tiny(AnnotatedDDPMInpaintPipeline)
    if scheduler == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    x = images(2)
    mask = half_mask("top", 8, 8)
    pil_inputs = [Image.fromarray((im[0] * 255).round().byte().numpy(), mode="L") for im in x]
    out = pipe(pil_inputs, Image.fromarray((mask[0, 0] * 255).byte().numpy(), mode="L"), num_inference_steps=10,
               jump_length=2, jump_n_sample=2, generator=gen(), output_type="pil").images
    for inp, im in zip(pil_inputs, out):
        a, b = np.asarray(inp), np.asarray(im)
        assert im.mode == "L" and np.array_equal(a[:4], b[:4])  # kept: exactly the input's pixels
        assert np.abs(a[4:].astype(int) - b[4:]).mean() > 10  # filled in
    pt = pipe(x, mask, num_inference_steps=10, jump_length=2, jump_n_sample=2, generator=gen(), output_type="pt").images
    assert torch.equal(((pt * 255).round() * mask), (x * 255).round() * mask)


def test_inpainting_with_nothing_kept_and_no_resampling_is_plain_ddim_sampling(caplog):
    """With mask 0 and r = 1, (8c) keeps only the reverse step: the same x_T (the generator's first
    draw) and deterministic DDIM give the sampling pipeline's images."""
    pipe = tiny(AnnotatedDDPMInpaintPipeline)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    plain = AnnotatedDDPMPipeline(unet=pipe.unet, scheduler=pipe.scheduler)
    plain.set_progress_bar_config(disable=True)
    expected = plain(batch_size=2, generator=gen(3), num_inference_steps=5, output_type="np").images
    got = pipe(images(2), torch.zeros(1, 1, 8, 8), num_inference_steps=5, jump_n_sample=1, generator=gen(3),
               output_type="np").images
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert "keeps no pixel" in caplog.text
    resampled = pipe(images(2), torch.zeros(1, 1, 8, 8), num_inference_steps=5, jump_length=2, jump_n_sample=3,
                     generator=gen(3), output_type="np").images
    assert np.abs(resampled - expected).max() > 1e-3  # the jumps add noise


def test_inpainting_with_everything_kept_returns_the_input(caplog):
    pipe = tiny(AnnotatedDDPMInpaintPipeline)
    x = images(2)
    out = pipe(x, torch.ones(1, 1, 8, 8), num_inference_steps=4, jump_n_sample=1, output_type="pt").images
    assert torch.equal((out * 255).round(), (x * 255).round())
    assert "keeps every pixel" in caplog.text


def test_inpainting_completes_the_shipped_model_s_images_as_their_class(shipped, sample_images):
    """Keep the left half of 30 Fashion-MNIST images (3 per class), fill in the right half with no class
    given (DDIM 10 steps, j = 2, r = 3); the classifier must label the completions, and the filled-in half
    alone (the kept half black), as the true class well above chance (10%). benchmarks/editing.py measures 300 test images: RESULTS.md, "Editing"."""
    x, labels = sample_images
    pipe = AnnotatedDDPMInpaintPipeline.from_pipe(shipped)
    set_scheduler(pipe, "ddim")
    mask = half_mask("left", 28, 28)
    out = pipe(x, mask, num_inference_steps=10, jump_length=2, jump_n_sample=3, generator=gen(0), output_type="pt").images
    assert torch.equal((out * 255).round() * mask, (x * 255).round() * mask)
    classifier = load_default_classifier()
    completed = (embed(classifier, out * 2 - 1)[1] == labels).float().mean().item()
    filled_half = (embed(classifier, out * (1 - mask) * 2 - 1)[1] == labels).float().mean().item()
    # measured here 0.80 / 0.80 / 0.63 (completed) and 0.47 / 0.63 / 0.33 (filled half) for seeds 0 / 1 / 2
    assert completed > 0.5, completed
    assert filled_half > 0.25, filled_half


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p: p(images(2, size=6), half_mask("left", 8, 8)), r"\(1, 6, 6\).*nothing is resized"),
        (lambda p: p(Image.new("RGB", (8, 8)), half_mask("left", 8, 8)), "mode 'RGB'.*convert"),
        (lambda p: p(images(2), torch.full((1, 1, 8, 8), 0.5)), "binary"),
        (lambda p: p(images(2), torch.zeros(3, 1, 8, 8)), "3 masks for 2 images"),
        (lambda p: p(images(2) * 2, half_mask("left", 8, 8)), r"\[0, 1\]"),
        (lambda p: p(images(2), half_mask("left", 8, 8), jump_length=0, num_inference_steps=4), "jump_length"),
        (lambda p: p(images(2), half_mask("left", 8, 8), class_labels=1, num_inference_steps=4), "unconditional"),
        (lambda p: p("shirt.png", half_mask("left", 8, 8)), "PIL image"),
    ],
)
def test_inpainting_refuses_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny(AnnotatedDDPMInpaintPipeline))


def test_inpainting_refuses_a_multistep_scheduler():
    pipe = tiny(AnnotatedDDPMInpaintPipeline)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    with pytest.raises(ValueError, match="DPMSolverMultistepScheduler"):
        pipe(images(1), half_mask("left", 8, 8), num_inference_steps=4)


def test_class_labels_and_guidance_for_editing():
    pipe = tiny(AnnotatedDDPMInpaintPipeline, num_class_embeds=3, null_class_embed=True)
    x, mask = images(2), half_mask("left", 8, 8)
    kwargs = dict(num_inference_steps=4, jump_n_sample=1, output_type="np")
    unguided = pipe(x, mask, class_labels=[0, 2], generator=gen(), **kwargs).images
    guided = pipe(x, mask, class_labels=[0, 2], guidance_scale=3.0, generator=gen(), **kwargs).images
    no_class = pipe(x, mask, generator=gen(), **kwargs).images
    assert np.abs(guided - unguided).max() > 1e-3 and np.abs(no_class - unguided).max() > 1e-3
    with pytest.raises(ValueError, match="pass class_labels"):
        pipe(x, mask, guidance_scale=2.0, **kwargs)
    with pytest.raises(ValueError, match="lie in 0..2"):
        pipe(x, mask, class_labels=3, **kwargs)
    strict = tiny(AnnotatedDDPMInpaintPipeline, num_class_embeds=3)
    with pytest.raises(ValueError, match="without a 'no class' embedding: pass class_labels"):
        strict(x, mask, **kwargs)


# --------------------------------------------------------------------------------------------
# SDEdit
# --------------------------------------------------------------------------------------------


def test_sdedit_start_is_the_first_timestep_below_strength_times_T():
    chain = torch.tensor([999, 799, 599, 399, 199])
    assert sdedit_start(chain, 1.0, 1000) == 0
    assert sdedit_start(chain, 0.6, 1000) == 2  # 599 < 600
    assert sdedit_start(chain, 0.5, 1000) == 3
    assert sdedit_start(chain, 0.2, 1000) == 4
    with pytest.raises(ValueError, match="walk no step.*strength > 0.2"):
        sdedit_start(chain, 0.19, 1000)
    for bad in (0, -0.1, 1.01, "0.5", True):
        with pytest.raises(ValueError, match=r"strength must lie in \(0, 1\]"):
            sdedit_start(chain, bad, 1000)


def test_sdedit_is_the_sampling_chain_started_from_q_xt_given_x0():
    """Independent truth: the sampling pipeline (Algorithm 2) given latents = add_noise(x_0, eps, t_0) and
    the explicit chain from t_0 down; the same generator draws eps, then the steps' noise."""
    pipe = tiny(AnnotatedDDPMImg2ImgPipeline)
    x = images(2)
    out = pipe(x, strength=0.5, num_inference_steps=10, generator=gen(5), output_type="np").images
    pipe.scheduler.set_timesteps(10)
    chain = [int(t) for t in pipe.scheduler.timesteps if t < 25]
    g = gen(5)
    noise = torch.randn(x.shape, generator=g)
    latents = pipe.scheduler.add_noise(x * 2 - 1, noise, torch.tensor([chain[0]] * 2))
    plain = AnnotatedDDPMPipeline(unet=pipe.unet, scheduler=pipe.scheduler)
    plain.set_progress_bar_config(disable=True)
    expected = plain(batch_size=2, generator=g, latents=latents, timesteps=chain, output_type="np").images
    np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("swap", [DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler])
def test_sdedit_with_swapped_schedulers_walks_the_tail_of_their_chain(swap):
    pipe = tiny(AnnotatedDDPMImg2ImgPipeline, num_train_timesteps=1000)
    pipe.scheduler = swap.from_config(pipe.scheduler.config)
    x = images(2)
    near = pipe(x, strength=0.3, num_inference_steps=10, generator=gen(), output_type="pt").images
    far = pipe(x, strength=1.0, num_inference_steps=10, generator=gen(), output_type="pt").images
    assert (near - x).abs().mean() < (far - x).abs().mean()
    if swap is DPMSolverMultistepScheduler:  # told where to begin: it ends at the end of its chain
        assert pipe.scheduler.step_index == len(pipe.scheduler.timesteps)


def test_sdedit_on_the_shipped_model_from_the_input_to_a_fresh_sample(shipped, sample_images):
    x = sample_images[0][::3]  # 10 images, one per class
    pipe = AnnotatedDDPMImg2ImgPipeline.from_pipe(shipped)
    # strength -> 0: one step at t = 0 of the 1000-step chain returns the input within quantisation
    near = pipe(x, strength=0.001, num_inference_steps=1000, generator=gen(), output_type="pt").images
    levels = ((near * 255).round() - x * 255).abs()
    assert levels.mean() < 1.0 and levels.max() <= 8, (levels.mean(), levels.max())
    # the distance to the input grows with strength, and strength 1 is a fresh sample
    set_scheduler(pipe, "dpmsolver")
    edits = {s: pipe(x, strength=s, num_inference_steps=20, generator=gen(), output_type="pt").images for s in (0.1, 0.5, 1.0)}
    distances = [(edit - x).abs().mean().item() for edit in edits.values()]
    assert distances == sorted(distances) and distances[-1] > 3 * distances[0], distances
    # strength 1: the unconditional sample from the same noise, whatever the input
    fresh = edits[1.0]
    other = pipe(x.flip(0), strength=1.0, num_inference_steps=20, generator=gen(), output_type="pt").images
    plain = AnnotatedDDPMPipeline(unet=pipe.unet, scheduler=pipe.scheduler)
    plain.set_progress_bar_config(disable=True)
    unconditional = plain(batch_size=len(x), generator=gen(), num_inference_steps=20, guidance_scale=0.0, output_type="pt").images
    assert (fresh - unconditional).abs().mean() < 1e-3 and (fresh - other).abs().mean() < 1e-3
    assert (fresh - x).abs().mean() > 0.1


# --------------------------------------------------------------------------------------------
# Interpolation
# --------------------------------------------------------------------------------------------


def test_slerp():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    torch.testing.assert_close(slerp(a, b, 0.5), torch.tensor([3.0, 3.0]) / math.sqrt(2))  # on the circle, not the chord
    torch.testing.assert_close(slerp(a, b, 1 / 3), 3 * torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)]))
    torch.testing.assert_close(slerp(a, 2 * a, 0.5), 1.5 * a)  # parallel: the straight line
    x, y = torch.randn(2, 1, 28, 28, generator=gen()).double()
    assert abs(slerp(x, y, 0.5).norm() / x.norm() - 1) < 0.05  # two draws: the norm is kept
    with pytest.raises(ValueError, match="same shape"):
        slerp(a, torch.zeros(3), 0.5)


@pytest.mark.parametrize("swap", [DDIMScheduler, DPMSolverMultistepScheduler])
@pytest.mark.parametrize("conditional", [False, True])
def test_interpolation_end_points_are_the_plain_samples_for_those_seeds(swap, conditional):
    pipe = tiny(AnnotatedDDPMInterpolationPipeline, num_class_embeds=3 if conditional else None, null_class_embed=conditional)
    pipe.unet.to(torch.float64)  # float64: batch-size-dependent rounding would otherwise be amplified at t ~ T
    pipe.scheduler = swap.from_config(pipe.scheduler.config)
    labels = (0, 2) if conditional else None
    row = pipe(seeds=(4, 7), class_labels=labels, num_images=5, num_inference_steps=6, output_type="np").images
    plain = AnnotatedDDPMPipeline(unet=pipe.unet, scheduler=pipe.scheduler)
    plain.set_progress_bar_config(disable=True)
    for seed, label, image in ((4, 0, row[0]), (7, 2, row[-1])):
        kwargs = {"class_labels": label} if conditional else {}
        expected = plain(batch_size=1, generator=gen(seed), num_inference_steps=6, output_type="np", **kwargs).images[0]
        np.testing.assert_allclose(image, expected, atol=1e-9)
    assert np.abs(row[2] - row[0]).max() > 1e-3 and np.abs(row[2] - row[-1]).max() > 1e-3


@pytest.mark.parametrize("guidance_scale", [1.0, 2.5])
def test_class_interpolation_mixes_the_class_embedding_linearly(guidance_scale):
    """Independent truth for w = 1/4: a copy of the U-Net whose embedding row 0 is 3/4 E[0] + 1/4 E[2],
    asked for class 0 (the "no class" row, used by guidance, unchanged)."""
    pipe = tiny(AnnotatedDDPMInterpolationPipeline, num_class_embeds=3, null_class_embed=True)
    pipe.unet.to(torch.float64)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    row = pipe(seeds=(1, 1), class_labels=(0, 2), num_images=5, num_inference_steps=4, guidance_scale=guidance_scale,
               output_type="np").images
    mixed = AnnotatedUNet2DModel.from_config(pipe.unet.config).to(torch.float64)
    mixed.load_state_dict(pipe.unet.state_dict())
    with torch.no_grad():
        table = mixed.class_embedding.weight
        table[0] = 0.75 * table[0] + 0.25 * table[2]
    plain = AnnotatedDDPMPipeline(unet=mixed, scheduler=pipe.scheduler)
    plain.set_progress_bar_config(disable=True)
    expected = plain(batch_size=1, generator=gen(1), num_inference_steps=4, class_labels=0, guidance_scale=guidance_scale,
                     output_type="np").images[0]
    np.testing.assert_allclose(row[1], expected, atol=1e-9)
    assert not pipe.unet.class_embedding._forward_hooks  # the hook is gone after the call


def test_interpolation_refuses_a_stochastic_sampler_and_bad_arguments():
    pipe = tiny(AnnotatedDDPMInterpolationPipeline)
    with pytest.raises(ValueError, match="deterministic sampler.*AnnotatedDDPMScheduler"):
        pipe(num_inference_steps=4)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    with pytest.raises(ValueError, match="seeds must be two ints"):
        pipe(seeds=(1, 2, 3), num_inference_steps=4)
    with pytest.raises(ValueError, match="num_images must be an int >= 2"):
        pipe(num_images=1, num_inference_steps=4)
    with pytest.raises(ValueError, match="unconditional"):
        pipe(class_labels=(0, 1), num_inference_steps=4)


# --------------------------------------------------------------------------------------------
# from_pipe, saving and loading
# --------------------------------------------------------------------------------------------


def test_from_pipe_shares_the_components(shipped):
    for cls in (AnnotatedDDPMImg2ImgPipeline, AnnotatedDDPMInterpolationPipeline):
        edit = cls.from_pipe(shipped)
        assert type(edit) is cls and edit.unet is shipped.unet and edit.scheduler is shipped.scheduler
        assert edit.sampler_choice == "DPMSolverMultistepScheduler (the pipeline's own)"
    ddim = DDIMScheduler.from_config(shipped.scheduler.config)
    assert AnnotatedDDPMInterpolationPipeline.from_pipe(shipped, scheduler=ddim).scheduler is ddim


def test_inpainting_from_pipe_chooses_a_sampler_that_can_jump_back_and_says_so(shipped):
    """The shipped folder recommends DPM-Solver++, a multistep solver RePaint cannot walk back up with: from_pipe
    (and from_pretrained) take DDIM from its config instead, say so, and inpaint; a scheduler given is kept."""
    edit = AnnotatedDDPMInpaintPipeline.from_pipe(shipped)
    assert edit.unet is shipped.unet and type(edit.scheduler) is DDIMScheduler
    assert type(shipped.scheduler).__name__ == "DPMSolverMultistepScheduler"  # the pipeline it came from is untouched
    for key in ("num_train_timesteps", "beta_schedule", "prediction_type", "timestep_spacing", "thresholding"):
        assert edit.scheduler.config[key] == shipped.scheduler.config[key], key
    assert edit.sampler_choice.startswith("DDIMScheduler (built from the config of the pipeline's DPMSolverMultistepScheduler")
    x = images(1, size=28)
    out = edit(x, half_mask("left", 28, 28), num_inference_steps=4, jump_n_sample=1, generator=gen(0), output_type="pt")
    assert out.images.shape == (1, 1, 28, 28)
    given = AnnotatedDDPMInpaintPipeline.from_pipe(shipped, scheduler=shipped.scheduler)
    assert given.scheduler is shipped.scheduler
    with pytest.raises(ValueError, match="RePaint jumps back up the chain"):
        given(x, half_mask("left", 28, 28), num_inference_steps=4, jump_n_sample=1)


ROUTE2 = textwrap.dedent(
    """
    import sys
    sys.modules["annotated_pipeline"] = None  # the package must not be importable here
    import json, numpy as np, torch
    from diffusers import DiffusionPipeline, DDIMScheduler
    results = {}
    for name, folder in json.loads(sys.argv[1]).items():
        pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
        pipe.set_progress_bar_config(disable=True)
        assert type(pipe).__module__.startswith("diffusers_modules"), type(pipe).__module__
        x = torch.from_numpy(np.load(sys.argv[2]))
        if name == "inpaint":
            mask = torch.zeros(1, 1, 8, 8); mask[..., :4] = 1
            images = pipe(x, mask, num_inference_steps=4, jump_length=2, jump_n_sample=2, generator=torch.Generator().manual_seed(0), output_type="np").images
        elif name == "img2img":
            images = pipe(x, strength=0.6, num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="np").images
        else:
            pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
            images = pipe(seeds=(0, 1), num_images=3, num_inference_steps=4, output_type="np").images
        results[name] = [type(pipe).__name__, images.tolist()]
    print(json.dumps(results))
    """
)


def test_editing_pipelines_save_and_load_by_both_routes(tmp_path):
    x = images(2)
    np.save(tmp_path / "x.npy", x.numpy())
    mask = half_mask("left", 8, 8)
    calls = {
        "inpaint": (AnnotatedDDPMInpaintPipeline, lambda p: p(x, mask, num_inference_steps=4, jump_length=2, jump_n_sample=2,
                                                                generator=gen(), output_type="np").images),
        "img2img": (AnnotatedDDPMImg2ImgPipeline, lambda p: p(x, strength=0.6, num_inference_steps=4, generator=gen(),
                                                                output_type="np").images),
        "interpolate": (AnnotatedDDPMInterpolationPipeline, None),
    }
    folders, expected = {}, {}
    for name, (cls, call) in calls.items():
        pipe = tiny(cls)
        folder = tmp_path / name
        pipe.save_pretrained(folder)
        index = json.loads((folder / "model_index.json").read_text())
        module = cls.__module__.rsplit(".", 1)[1]
        assert index["_class_name"] == [module, cls.__name__] and (folder / f"{module}.py").is_file()
        loaded = cls.from_pretrained(folder)  # route 1: the installed classes, no code from the folder
        loaded.set_progress_bar_config(disable=True)
        assert type(loaded) is cls and type(loaded.unet) is AnnotatedUNet2DModel
        if call is None:
            loaded.scheduler = DDIMScheduler.from_config(loaded.scheduler.config)
            call = lambda p: p(seeds=(0, 1), num_images=3, num_inference_steps=4, output_type="np").images  # noqa: E731
        expected[name] = call(loaded)
        if name != "interpolate":
            np.testing.assert_array_equal(call(pipe), expected[name])
        folders[name] = str(folder)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_MODULES_CACHE=str(tmp_path / "hf" / "modules"), HF_HUB_OFFLINE="1")
    (tmp_path / "route2.py").write_text(ROUTE2)
    result = subprocess.run([sys.executable, str(tmp_path / "route2.py"), json.dumps(folders), str(tmp_path / "x.npy")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    for name, (cls, _) in calls.items():
        assert remote[name][0] == cls.__name__
        np.testing.assert_allclose(np.asarray(remote[name][1]), expected[name], atol=1e-6)


# --------------------------------------------------------------------------------------------
# The CLI subcommands (in-process; tests/test_cli.py runs --help and a bad option as subprocesses)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "pipe"
    tiny(num_train_timesteps=1000).save_pretrained(folder)
    pngs = []
    for i, im in enumerate(images(2)):
        path = folder.parent / f"img{i}.png"
        Image.fromarray((im[0] * 255).round().byte().numpy(), mode="L").save(path)
        pngs.append(str(path))
    return str(folder), pngs


def test_cli_subcommands_write_pngs_and_figures(saved_tiny, tmp_path, capsys):
    from annotated_pipeline.commands import img2img, inpaint, interpolate

    folder, pngs = saved_tiny
    out = tmp_path / "out"
    assert inpaint.main([folder, *pngs, "--keep", "right", "--num_samples", "2", "--num_inference_steps", "5",
                         "--output_dir", str(out), "--figure", str(tmp_path / "inpaint.png")]) == 0
    for png in pngs:
        source = np.asarray(Image.open(png))
        for k in range(2):
            filled = np.asarray(Image.open(out / f"{Path(png).stem}-{k}.png"))
            assert np.array_equal(filled[:, 4:], source[:, 4:]) and not np.array_equal(filled, source)
    assert Image.open(tmp_path / "inpaint.png").size == (4 * (4 * 9 - 1), 4 * (2 * 9 - 1))  # 2 rows: input, mask, 2 outputs

    assert img2img.main([folder, pngs[0], "--strength", "0.2", "0.9", "--num_inference_steps", "5", "--output_dir", str(out),
                         "--figure", str(tmp_path / "img2img.png")]) == 0
    assert (out / "img0-s0.2-0.png").is_file() and (out / "img0-s0.9-0.png").is_file()
    assert interpolate.main([folder, "--seeds", "0", "1", "2", "3", "--num_images", "4", "--scheduler", "ddim",
                             "--num_inference_steps", "3", "--output_dir", str(out), "--figure", str(tmp_path / "i.png")]) == 0
    assert (out / "row1-3.png").is_file() and Image.open(tmp_path / "i.png").size == (4 * (4 * 9 - 1), 4 * (2 * 9 - 1))
    capsys.readouterr()


def test_interpolate_keeps_the_rows_drawn_before_an_interruption(saved_tiny, tmp_path, monkeypatch, capsys):
    from annotated_pipeline.commands import interpolate

    folder, _ = saved_tiny
    calls = []
    original = AnnotatedDDPMInterpolationPipeline.__call__

    def second_row_interrupted(self, *args, **kwargs):
        calls.append(kwargs["seeds"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AnnotatedDDPMInterpolationPipeline, "__call__", second_row_interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        interpolate.main([folder, "--seeds", "0", "1", "2", "3", "--num_images", "3", "--scheduler", "ddim",
                          "--num_inference_steps", "2", "--output_dir", str(out)])
    assert calls == [(0, 1), (2, 3)]
    assert sorted(p.name for p in out.iterdir()) == ["row0-0.png", "row0-1.png", "row0-2.png"]
    capsys.readouterr()


@pytest.mark.parametrize(
    "module, argv, message",
    [
        ("inpaint", ["{img}", "--keep", "left", "--scheduler", "dpmsolver"], "RePaint jumps back"),
        ("inpaint", ["{rgb}", "--keep", "left"], "is a RGB image"),
        ("inpaint", ["{img}", "--mask", "{big}"], r"\(1, 9, 9\)"),
        ("inpaint", ["missing.png", "--keep", "left"], "cannot read image"),
        ("img2img", ["{img}", "--strength", "1.5"], "strength must lie in"),
        ("interpolate", ["--scheduler", "ddpm"], "deterministic sampler"),
        ("interpolate", ["--seeds", "1", "2", "3"], "pairs"),
        ("interpolate", ["--num_images", "100000", "--figure", "{fig}"],
         "a figure of 1 row.s. of 100000 images of 8 px enlarged 4 times is 3600000 px on a side, over the 16383 px"),
        ("interpolate", ["--num_images", str(10**12)], r"need about .* GiB .* lower --num_images, the --seeds pairs"),
        ("interpolate", ["--batch_size", "0"], "--batch_size must be >= 1"),
    ],
)
def test_cli_bad_input_is_one_line_and_status_2(saved_tiny, tmp_path, capsys, module, argv, message):
    import importlib

    folder, pngs = saved_tiny
    Image.new("RGB", (8, 8)).save(tmp_path / "rgb.png")
    Image.new("L", (9, 9)).save(tmp_path / "big.png")
    paths = {"img": pngs[0], "rgb": str(tmp_path / "rgb.png"), "big": str(tmp_path / "big.png"), "fig": str(tmp_path / "f.png")}
    argv = [folder, *(a.format(**paths) for a in argv), "--output_dir", str(tmp_path / "out")]
    assert importlib.import_module(f"annotated_pipeline.commands.{module}").main(argv, prog=f"annotated-pipeline {module}") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"annotated-pipeline {module}: error:")
    assert __import__("re").search(message, lines[0]), lines[0]


def test_cli_subcommands_default_to_the_folders_recommendation_and_say_what_they_used(saved_tiny, tmp_path, capsys):
    """Left out, the sampler and steps are the folder's (as `sample`): a folder recommending DPM-Solver++ with
    3 steps edits with it (img2img), RePaint takes DDIM for it (inpaint, the rule that says so), and
    interpolation replaces a training run's ancestral sampler with DPM-Solver++ (and says so)."""
    from diffusers import DPMSolverMultistepScheduler

    from annotated_pipeline.commands import img2img, inpaint, interpolate

    folder, pngs = saved_tiny
    pipe = AnnotatedDDPMPipeline.from_pretrained(folder)
    recommending = AnnotatedDDPMPipeline(unet=pipe.unet, scheduler=DPMSolverMultistepScheduler.from_config(
        pipe.scheduler.config), default_num_inference_steps=3)
    recommending.save_pretrained(tmp_path / "recommends")
    out = str(tmp_path / "out")
    capsys.readouterr()
    assert img2img.main([str(tmp_path / "recommends"), pngs[0], "--output_dir", out]) == 0
    assert "(DPMSolverMultistepScheduler, 3 steps, seed 0)" in capsys.readouterr().out
    assert inpaint.main([str(tmp_path / "recommends"), pngs[0], "--keep", "left", "--num_samples", "1",
                         "--output_dir", out]) == 0
    assert "(DDIMScheduler, 3 steps, j = 5" in capsys.readouterr().out
    assert interpolate.main([folder, "--num_images", "3", "--num_inference_steps", "2", "--guidance_scale", "1",
                             "--output_dir", out]) == 0
    printed = capsys.readouterr().out
    assert "AnnotatedDDPMScheduler adds fresh noise" in printed and "(DPMSolverMultistepScheduler, 2 steps)" in printed
    with pytest.raises(SystemExit) as exit_:  # checked before loading, as argparse's own errors
        interpolate.main([folder, "--num_inference_steps", "0", "--output_dir", out])
    assert exit_.value.code == 2


def test_cli_a_folders_guidance_applies_only_where_an_edit_has_a_class(saved_tiny, tmp_path, capsys):
    """A class-conditional folder recommending guidance 2 (as the shipped one does): an edit without a class is
    unguided (guidance needs a class to guide towards), and with one it takes the folder's guidance."""
    from annotated_pipeline.commands import img2img, inpaint

    _, pngs = saved_tiny
    pipe = tiny(num_train_timesteps=1000, num_class_embeds=3, null_class_embed=True)
    pipe.set_sampling_defaults(num_inference_steps=3, guidance_scale=2.0, guidance_interval=(200, 700))
    pipe.save_pretrained(tmp_path / "guided")
    out = str(tmp_path / "out")
    capsys.readouterr()
    assert inpaint.main([str(tmp_path / "guided"), pngs[0], "--keep", "left", "--num_samples", "1", "--scheduler", "ddim",
                         "--output_dir", out]) == 0
    printed = capsys.readouterr().out
    assert "guidance 2" not in printed and "(DDIMScheduler, 3 steps" in printed
    assert img2img.main([str(tmp_path / "guided"), pngs[0], "--class_label", "1", "--output_dir", out]) == 0
    assert "3 steps, guidance 2 at t in 200..700" in capsys.readouterr().out
