"""annotated_pipeline/unet: the pieces against closed-form math and diffusers, the U-Net's contract,
its failures, its round trips, and its life as remote code inside a saved folder."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline, DDPMScheduler
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.utils.dynamic_modules_utils import get_relative_imports

from annotated_pipeline.unet import AnnotatedUNet2DModel, Unet
from annotated_pipeline.unet.attention import Attention, LinearAttention
from annotated_pipeline.unet.fused import FusedUpsample
from annotated_pipeline.unet.blocks import Downsample, Upsample
from annotated_pipeline.unet.embeddings import sinusoidal_embedding

UNET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "annotated_pipeline", "unet")

# A tiny configuration: widths 8 and 16, 2 heads of 4, so every test runs in milliseconds.
TINY = dict(dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2, attention_head_dim=4)


def tiny(**overrides):
    torch.manual_seed(0)
    return AnnotatedUNet2DModel(**{**TINY, "sample_size": 16, **overrides}).eval()


def public_config(model):
    return {k: v for k, v in model.config.items() if not k.startswith("_")}


# ---------------------------------------------------------------------------------------------
# The pieces, against independent truth
# ---------------------------------------------------------------------------------------------


def test_sinusoidal_embedding_is_vaswani_as_computed_by_diffusers():
    t = torch.tensor([0, 1, 7, 250, 999])
    ours = sinusoidal_embedding(t, 32)
    theirs = get_timestep_embedding(t, 32, flip_sin_to_cos=False, downscale_freq_shift=0)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # Closed form for one entry: PE(t)_{d/2 + i} = cos(t / 10000^(i / (d/2))).
    assert ours[3, 16 + 2].item() == pytest.approx(torch.cos(torch.tensor(250 / 10000 ** (2 / 16))).item(), abs=1e-5)


def test_downsample_is_pixel_unshuffle_then_1x1_conv():
    torch.manual_seed(0)
    down = Downsample(3, 5)
    x = torch.randn(2, 3, 8, 6)
    # The blog's form: space-to-depth (C, 2H, 2W) -> (4C, H, W), then a 1x1 conv with the same weights.
    w1 = down.conv.weight.reshape(5, 12, 1, 1)
    reference = F.conv2d(F.pixel_unshuffle(x, 2), w1, down.conv.bias)
    torch.testing.assert_close(down(x), reference, rtol=1e-5, atol=1e-5)


def test_upsample_is_nearest_neighbour_then_3x3_conv_in_value_and_gradient():
    """The transposed-convolution form against the definition, computed here with torch's own ops and the same weights:
    fp32 within 1e-5 (outputs and the gradients of input, weight and bias), bf16 autocast within 1%."""
    torch.manual_seed(0)
    up = FusedUpsample(6, 5)
    x = torch.randn(3, 6, 5, 7, requires_grad=True)  # H != W, odd sizes: the borders of every phase
    ours = up(x)
    reference = F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), up.conv.weight, up.conv.bias, padding=1)
    assert ours.shape == (3, 5, 10, 14)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(Upsample.forward(up, x), reference, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(reference)
    grads = torch.autograd.grad(ours, (x, up.conv.weight, up.conv.bias), g)
    reference_grads = torch.autograd.grad(reference, (x, up.conv.weight, up.conv.bias), g)
    for a, b in zip(grads, reference_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    channels_last = up(x.detach().contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(channels_last, reference.detach(), rtol=1e-5, atol=1e-5)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = up(x).float()
    assert ((bf16 - reference.detach()).norm() / reference.norm()).item() < 0.01


def test_linear_attention_is_shen_et_al_eq_4():
    torch.manual_seed(0)
    attn = LinearAttention(dim=6, heads=2, head_dim=3)
    x = torch.randn(2, 6, 4, 5)
    tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
    qkv = tokens @ attn.to_qkv.weight.T  # (B, N, 3 * heads * d), the pointwise projection
    heads = []
    for h in range(2):
        q, k, v = (qkv[..., (j * 2 + h) * 3 : (j * 2 + h + 1) * 3] for j in range(3))  # (B, N, d)
        # E(Q, K, V) = rho_q(Q) (rho_k(K)^T V): softmax over features for Q, over positions for K.
        heads.append((q.softmax(-1) * 3**-0.5) @ (k.softmax(1).transpose(1, 2) @ v))
    out = torch.cat(heads, dim=-1) @ attn.to_out.weight.T + attn.to_out.bias  # (B, N, C)
    reference = attn.norm_out(out.transpose(1, 2).reshape(2, 6, 4, 5))
    torch.testing.assert_close(attn(x), reference, rtol=1e-5, atol=1e-5)


def test_softmax_attention_is_vaswani_eq_1():
    torch.manual_seed(0)
    attn = Attention(dim=6, heads=2, head_dim=3)
    x = torch.randn(2, 6, 3, 3)
    qkv = x.flatten(2).transpose(1, 2) @ attn.to_qkv.weight.T  # (B, N, 3 * heads * d)
    heads = []
    for h in range(2):
        q, k, v = (qkv[..., (j * 2 + h) * 3 : (j * 2 + h + 1) * 3] for j in range(3))
        heads.append(torch.softmax(q @ k.transpose(1, 2) / 3**0.5, dim=-1) @ v)
    out = torch.cat(heads, dim=-1) @ attn.to_out.weight.T + attn.to_out.bias  # (B, N, C)
    torch.testing.assert_close(attn(x), out.transpose(1, 2).reshape(2, 6, 3, 3), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Shapes and the forward contract
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block_type", ["resnet", "convnext"])
@pytest.mark.parametrize(
    "size, in_channels, out_channels, dim_mults",
    [(28, 1, None, (1, 2, 4)), (32, 3, None, (1, 2)), (16, 3, 6, (1, 2, 2)), ((8, 12), 2, 1, (1, 2))],
)
def test_output_shapes(block_type, size, in_channels, out_channels, dim_mults):
    model = tiny(
        sample_size=size, in_channels=in_channels, out_channels=out_channels, dim_mults=dim_mults, block_type=block_type
    )
    height, width = (size, size) if isinstance(size, int) else size
    x = torch.randn(2, in_channels, height, width)
    out = model(x, torch.tensor([3, 700])).sample
    assert out.shape == (2, out_channels or in_channels, height, width)
    assert torch.isfinite(out).all()


def test_timestep_forms_agree():
    model = tiny()
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        reference = model(x, torch.tensor([42, 42, 42])).sample
        for t in (42, 42.0, torch.tensor(42), torch.tensor([42]), torch.tensor([42.0, 42.0, 42.0])):
            torch.testing.assert_close(model(x, t).sample, reference, rtol=0, atol=0)
        # ... and different steps do give different predictions.
        assert not torch.allclose(model(x, 41).sample, reference)


def test_return_dict_false_is_a_tuple_with_the_same_tensor():
    model = tiny()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        out = model(x, 5, return_dict=False)
        assert isinstance(out, tuple) and len(out) == 1
        torch.testing.assert_close(out[0], model(x, 5).sample, rtol=0, atol=0)


def test_every_parameter_gets_a_gradient():
    model = tiny(num_class_embeds=3, block_type="resnet").train()
    out = model(torch.randn(2, 1, 16, 16), torch.tensor([1, 2]), class_labels=torch.tensor([0, 2])).sample
    out.square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_class_conditioning_changes_the_output():
    model = tiny(num_class_embeds=4)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        a = model(x, 10, class_labels=torch.tensor([0, 0])).sample
        b = model(x, 10, class_labels=torch.tensor([3, 3])).sample
        c = model(x, 10, class_labels=0).sample
    assert (a - b).abs().max() > 1e-3
    torch.testing.assert_close(a, c, rtol=0, atol=0)


def test_bf16_autocast_and_channels_last_match_fp32():
    """Stated tolerances: bf16 autocast within 3% relative L2 error (measured ~1%), channels_last 1e-5."""
    for block_type in ("resnet", "convnext"):
        model = tiny(block_type=block_type)
        x = torch.randn(4, 1, 16, 16)
        t = torch.tensor([1, 10, 100, 999])
        with torch.no_grad():
            reference = model(x, t).sample
            with torch.autocast("cpu", dtype=torch.bfloat16):
                bf16 = model(x, t).sample.float()
            model.to(memory_format=torch.channels_last)
            channels_last = model(x.contiguous(memory_format=torch.channels_last), t).sample
        assert ((bf16 - reference).norm() / reference.norm()).item() < 0.03
        torch.testing.assert_close(channels_last, reference, rtol=1e-5, atol=1e-5)
        # Weights cast to bfloat16 too (no autocast): the float32 time code follows the model's dtype.
        with torch.no_grad():
            pure = model.to(memory_format=torch.contiguous_format, dtype=torch.bfloat16)(x.bfloat16(), t).sample
        assert pure.dtype == torch.bfloat16
        assert ((pure.float() - reference).norm() / reference.norm()).item() < 0.03


# ---------------------------------------------------------------------------------------------
# Failing early and clearly
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(sample_size=30, dim_mults=(1, 2, 4)), r"30 -> 15 -> 7\.5.*multiples of 2\*\*2 = 4"),
        (dict(sample_size=(16, 18), dim_mults=(1, 2, 4)), r"18 cannot be halved 2 times"),
        (dict(sample_size="28"), r"sample_size must be an int"),
        (dict(resnet_block_groups=3), r"groups=3 does not divide .*\[8, 16\].*Valid values: \[1, 2, 4, 8\]"),
        (dict(block_type="transformer"), r"block_type must be one of \('resnet', 'convnext'\), got 'transformer'"),
        (dict(attention_heads=0), r"attention_heads must be an integer >= 1, got 0"),
        (dict(attention_head_dim=2.5), r"attention_head_dim must be an integer >= 1, got 2\.5"),
        (dict(num_class_embeds=0), r"num_class_embeds must be an integer >= 1 or None, got 0"),
        (dict(dim=9), r"dim must be even"),
        (dict(dim_mults=()), r"dim_mults must be a non-empty sequence"),
        (dict(dim_mults=(1, 0)), r"every entry of dim_mults must be an integer >= 1, got 0"),
        (dict(in_channels=0), r"in_channels must be an integer >= 1"),
        (dict(convnext_mult=0, block_type="convnext"), r"convnext_mult must be an integer >= 1"),
        (dict(init_dim=-1), r"init_dim must be an integer >= 1"),
    ],
)
def test_impossible_configs_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        AnnotatedUNet2DModel(**{**TINY, "sample_size": 16, **overrides})


def test_28x28_with_three_levels_and_convnext_ignores_groups():
    model = AnnotatedUNet2DModel(sample_size=28, dim_mults=(1, 2, 4))  # 28 -> 14 -> 7
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28), torch.tensor([0, 999])).sample.shape == (2, 1, 28, 28)
    convnext = AnnotatedUNet2DModel(**{**TINY, "block_type": "convnext", "resnet_block_groups": 3})
    norms = [m for m in convnext.modules() if isinstance(m, torch.nn.GroupNorm)]
    # 3 does not divide the widths 8 and 16: a ConvNeXt U-Net builds anyway, since its blocks' norms are GroupNorm(1)
    # (attention's pre-norms are GroupNorm(1) too).
    assert norms and all(m.num_groups == 1 for m in norms)


def test_bad_inputs_raise():
    model = tiny(dim_mults=(1, 2, 2))
    with pytest.raises(ValueError, match=r"shape \(batch, 1, height, width\) for in_channels=1, got \(2, 3, 16, 16\)"):
        model(torch.randn(2, 3, 16, 16), 1)
    with pytest.raises(ValueError, match=r"input side 18 cannot be halved 2 times .*18 -> 9 -> 4\.5"):
        model(torch.randn(2, 1, 18, 16), 1)
    with pytest.raises(ValueError, match=r"timestep must be .* shape \(2,\) for a batch of 2, got shape \(3,\)"):
        model(torch.randn(2, 1, 16, 16), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"class_labels were given to an unconditional model"):
        model(torch.randn(2, 1, 16, 16), 1, class_labels=torch.tensor([0, 1]))
    conditional = tiny(num_class_embeds=10)
    with pytest.raises(ValueError, match=r"class-conditional \(num_class_embeds=10\): pass class_labels"):
        conditional(torch.randn(2, 1, 16, 16), 1)
    with pytest.raises(ValueError, match=r"class_labels must lie in 0\.\.9; got \[10, 3\]"):
        conditional(torch.randn(2, 1, 16, 16), 1, class_labels=torch.tensor([10, 3]))


def test_null_class_embed_is_label_k_and_what_none_means():
    model = tiny(num_class_embeds=3, null_class_embed=True).eval()
    assert model.class_embedding.num_embeddings == 4  # classes 0..2 and "no class"
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        none = model(x, 5).sample
        torch.testing.assert_close(none, model(x, 5, class_labels=torch.tensor([3, 3])).sample)
        assert not torch.allclose(none, model(x, 5, class_labels=torch.tensor([0, 0])).sample)
    with pytest.raises(ValueError, match=r"0\.\.2, or 3 for no class; got \[4, 4\]"):
        model(x, 5, class_labels=4)
    with pytest.raises(ValueError, match="needs num_class_embeds"):
        tiny(null_class_embed=True)
    with pytest.raises(ValueError, match="null_class_embed must be True or False"):
        tiny(num_class_embeds=3, null_class_embed="yes")


# ---------------------------------------------------------------------------------------------
# Config is data: round trips
# ---------------------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    model = tiny(num_class_embeds=3, block_type="convnext", sample_size=(16, 8), out_channels=2)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["_class_name"] == "AnnotatedUNet2DModel" and saved["dim_mults"] == [1, 2]
    loaded = AnnotatedUNet2DModel.from_pretrained(tmp_path).eval()
    assert public_config(loaded) == public_config(model)
    x = torch.randn(2, 1, 16, 8)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(x, 7, class_labels=torch.tensor([1, 2])).sample,
            model(x, 7, class_labels=torch.tensor([1, 2])).sample,
            rtol=0,
            atol=0,
        )


def test_seed_constructor_builds_the_model_and_its_config_reproduces_it():
    torch.manual_seed(0)
    model = Unet(dim=28, channels=1, dim_mults=(1, 2, 4))
    assert type(model) is AnnotatedUNet2DModel
    assert model.config.in_channels == 1 and model.config.block_type == "resnet" and model.config.init_dim is None
    rebuilt = AnnotatedUNet2DModel.from_config(model.config)
    rebuilt.load_state_dict(model.state_dict())  # strict: the same modules, the same shapes
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x, 3).sample, model(x, 3).sample, rtol=0, atol=0)
    assert public_config(rebuilt) == public_config(model)

    convnext = Unet(dim=8, channels=3, out_dim=6, dim_mults=(1, 2), use_convnext=True, sample_size=8,
                    num_class_embeds=2)
    config = convnext.config
    assert (config.block_type, config.out_channels, config.num_class_embeds) == ("convnext", 6, 2)
    with pytest.raises(ValueError, match=r"unknown arguments \['dropout'\]"):
        Unet(dim=8, dropout=0.1)
    with pytest.raises(ValueError, match=r"self_condition=True is not supported"):
        Unet(dim=8, self_condition=True)


def test_the_seeds_training_step_runs_unchanged():
    """The blog's p_losses: predicted_noise = denoise_model(x_noisy, t); F.smooth_l1_loss(noise, predicted_noise)."""
    torch.manual_seed(0)
    model = Unet(dim=8, channels=1, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2, attention_head_dim=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_noisy, noise = torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)
    t = torch.randint(0, 300, (4,), dtype=torch.long)
    predicted_noise = model(x_noisy, t)
    loss = F.smooth_l1_loss(noise, predicted_noise)
    torch.testing.assert_close(loss, F.smooth_l1_loss(noise, predicted_noise.sample))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and model.final_conv.weight.grad is not None
    # The blog's sampling step: model_mean = sqrt_recip_alphas_t * (x - betas_t * model(x, t) / sqrt(1 - alpha_bar_t)).
    betas_t, sqrt_one_minus = torch.full((4, 1, 1, 1), 0.02), torch.full((4, 1, 1, 1), 0.5)
    with torch.no_grad():
        mean = 1.01 * (x_noisy - betas_t * model(x_noisy, t) / sqrt_one_minus)
        expected = 1.01 * (x_noisy - betas_t * model(x_noisy, t).sample / sqrt_one_minus)
    torch.testing.assert_close(mean, expected, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# A diffusers citizen
# ---------------------------------------------------------------------------------------------


def test_drop_in_for_diffusers_ddpm_pipeline():
    unet = tiny(sample_size=16, in_channels=3)
    pipeline = DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=50))
    pipeline.set_progress_bar_config(disable=True)
    images = pipeline(batch_size=2, num_inference_steps=3, output_type="np", generator=torch.manual_seed(0)).images
    assert images.shape == (2, 16, 16, 3)
    assert images.min() >= 0 and images.max() <= 1


def test_the_folder_loads_as_remote_code_without_the_package(tmp_path):
    """Copy unet_2d.py and its direct relative imports, as diffusers does for a saved pipeline, and
    load them with diffusers' remote-code loader in a process where `annotated_pipeline` cannot import."""
    needed = sorted(get_relative_imports(os.path.join(UNET_DIR, "unet_2d.py")))
    assert needed == ["attention", "blocks", "config", "embeddings", "fused"]  # the entry file names every sibling itself
    code = tmp_path / "code"
    code.mkdir()
    for name in ["unet_2d"] + needed:
        source = open(os.path.join(UNET_DIR, f"{name}.py"), encoding="utf-8").read()
        assert not re.search(r"^\s*(from|import)\s+annotated_pipeline", source, flags=re.MULTILINE), name
        shutil.copy(os.path.join(UNET_DIR, f"{name}.py"), code / f"{name}.py")

    model = tiny(num_class_embeds=2)
    model.save_pretrained(tmp_path / "weights")
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        expected = model(x, 9, class_labels=torch.tensor([0, 1])).sample
    torch.save({"x": x, "expected": expected}, tmp_path / "io.pt")

    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["annotated_pipeline"] = None  # any import of the package now fails
        import torch
        from diffusers.utils.dynamic_modules_utils import get_class_from_dynamic_module
        cls = get_class_from_dynamic_module(
            {str(code)!r}, module_file="unet_2d.py", class_name="AnnotatedUNet2DModel", trust_remote_code=True
        )
        assert cls.__module__.endswith("unet_2d"), cls.__module__
        assert not cls.__module__.startswith("annotated_pipeline"), cls.__module__
        model = cls.from_pretrained({str(tmp_path / "weights")!r}).eval()
        io = torch.load({str(tmp_path / "io.pt")!r})
        with torch.no_grad():
            out = model(io["x"], 9, class_labels=torch.tensor([0, 1])).sample
        torch.testing.assert_close(out, io["expected"], rtol=0, atol=0)
        print("REMOTE_OK", cls.__module__, tuple(out.shape))
        """
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "REMOTE_OK" in result.stdout and "(2, 1, 16, 16)" in result.stdout


# ---------------------------------------------------------------------------------------------
# linear_attention_levels: where the linear attentions are (default: the levels between the full
# resolution and the bottleneck's)
# ---------------------------------------------------------------------------------------------


def levels_with_attention(model):
    """(down levels, up levels) whose attention is a linear attention; up_levels run from the last level."""
    def attends(level):
        return isinstance(getattr(level["attention"], "fn", None), LinearAttention)

    down = [i for i, level in enumerate(model.down_levels) if attends(level)]
    up = [len(model.up_levels) - 1 - j for j, level in enumerate(model.up_levels) if attends(level)]
    return down, sorted(up)


def test_linear_attention_levels_default_is_the_middle_and_all_is_the_seed(tmp_path):
    three = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2, 4), attention_heads=1, attention_head_dim=8)
    assert three.config.linear_attention_levels == (1,)  # resolved: saved configs hold the indices
    assert levels_with_attention(three) == ([1], [1])
    assert isinstance(three.mid_attention.fn, Attention)  # the bottleneck keeps its softmax attention
    four = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 1, 2, 2), attention_heads=1, attention_head_dim=8)
    assert levels_with_attention(four) == ([1, 2], [1, 2]) and four.config.linear_attention_levels == (1, 2)
    below = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2, 4), attention_heads=1, attention_head_dim=8,
                                 linear_attention_levels="below_full_resolution")
    assert levels_with_attention(below) == ([1, 2], [1, 2]) and below.config.linear_attention_levels == (1, 2)
    assert levels_with_attention(tiny()) == ([], []) and tiny().config.linear_attention_levels == ()  # 2 levels
    below_two = tiny(linear_attention_levels="below_full_resolution")
    assert levels_with_attention(below_two) == ([1], [1])
    seed = tiny(linear_attention_levels="all")
    assert seed.config.linear_attention_levels is None  # "all" is stored as None, as configs saved before
    assert levels_with_attention(seed) == ([0, 1], [0, 1])
    assert levels_with_attention(tiny(linear_attention_levels=None)) == ([0, 1], [0, 1])
    # Unet(), the blog's constructor, keeps the blog's linear attention on every level.
    assert levels_with_attention(Unet(dim=8, channels=1, dim_mults=(1, 2))) == ([0, 1], [0, 1])
    assert Unet(dim=8, channels=1, dim_mults=(1, 2), linear_attention_levels=(1,)).config.linear_attention_levels == (1,)
    removed = sum(p.numel() for p in seed.parameters()) - sum(p.numel() for p in below_two.parameters())
    per_attention = sum(p.numel() for p in seed.down_levels[0]["attention"].parameters())
    assert removed == 2 * per_attention
    # Each config rebuilds the same network, and the weights load back.
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([5, 500])
    for name, model in (("below", below_two), ("seed", seed), ("explicit", tiny(linear_attention_levels=[0])),
                        ("none", tiny())):
        model.eval().save_pretrained(tmp_path / name)
        loaded = AnnotatedUNet2DModel.from_pretrained(tmp_path / name).eval()
        assert levels_with_attention(loaded) == levels_with_attention(model)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x, t).sample, model(x, t).sample)


@pytest.mark.parametrize("levels", [(2,), (-1,), (0, 0), "0", "every", 1, (True,)])
def test_bad_linear_attention_levels_raise(levels):
    with pytest.raises(ValueError, match="linear_attention_levels must"):
        tiny(linear_attention_levels=levels)


def test_gradient_checkpointing_gives_the_same_gradients():
    """enable_gradient_checkpointing() (diffusers' switch) recomputes activations in the backward pass: the
    loss and every gradient equal those of the plain model; sampling (no grad) is unchanged."""
    torch.manual_seed(0)
    model = AnnotatedUNet2DModel(sample_size=16, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2,
                                 attention_head_dim=8, num_class_embeds=3)
    x, t, y = torch.randn(2, 1, 16, 16), torch.tensor([3, 700]), torch.tensor([0, 2])

    def loss_and_grads():
        model.zero_grad()
        loss = model(x, t, class_labels=y).sample.pow(2).mean()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain_loss, plain = loss_and_grads()
    calls = []
    model.enable_gradient_checkpointing(lambda block, *args: calls.append(block) or torch.utils.checkpoint.checkpoint(
        block.__call__, *args, use_reentrant=False))
    assert model.is_gradient_checkpointing
    loss, grads = loss_and_grads()
    assert len(calls) > 0 and torch.equal(loss, plain_loss) and grads.keys() == plain.keys()
    for name in plain:
        torch.testing.assert_close(grads[name], plain[name], rtol=0, atol=1e-7, msg=name)
    calls.clear()
    with torch.no_grad():
        model(x, t, class_labels=y)
    assert calls == []  # no checkpointing without gradients
