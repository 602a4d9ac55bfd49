"""Every speed path gives the plain float32 answer, within a stated tolerance.

Speed paths: the ResnetBlock's norm + scale-shift computed as one GroupNorm over B * C channels (exact
algebra: checked to float32 rounding against the two-step form), bfloat16 autocast (training), pure
bfloat16 weights (sampling; the pipeline keeps its latents in float32), channels_last memory.
Tolerances: float32 rewrites 1e-5; bfloat16 (8-bit mantissa) 3% relative L2 error per forward pass.
"""

import torch
import torch.nn.functional as F

from annotated_pipeline.pipelines.pipeline import AnnotatedDDPMPipeline
from annotated_pipeline.scheduler import AnnotatedDDPMScheduler
from annotated_pipeline.unet import AnnotatedUNet2DModel
from annotated_pipeline.unet.blocks import ResnetBlock, Upsample
from annotated_pipeline.unet.fused import FusedResnetBlock, FusedUpsample, scale_shift_group_norm

TINY = dict(sample_size=16, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2, attention_head_dim=4,
            linear_attention_levels="below_full_resolution")  # so that the linear attention is covered too


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def two_step_resnet_block(block, x, emb):
    """The block as the docstring writes it: GroupNorm, then h * (1 + scale) + shift (Perez et al. 2018)."""
    scale, shift = block.time_proj(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
    h = block.norm1(block.conv1(x))
    h = F.silu(h * (1 + scale) + shift)
    h = F.silu(block.norm2(block.conv2(h)))
    return h + block.res_conv(x)


def test_fused_scale_shift_group_norm_is_norm_then_film():
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(3, 12)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)  # non-trivial gamma, beta: they must compose with the FiLM
    h, scale, shift = torch.randn(5, 12, 4, 6), torch.randn(5, 12), torch.randn(5, 12)
    reference = norm(h) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
    torch.testing.assert_close(scale_shift_group_norm(norm, h, scale, shift), reference, rtol=1e-5, atol=1e-5)


def test_resnet_block_matches_the_two_step_form_forward_and_backward():
    torch.manual_seed(0)
    block = FusedResnetBlock(6, 8, 16, groups=4)
    torch.nn.init.normal_(block.norm1.weight)
    torch.nn.init.normal_(block.norm1.bias)
    x, emb = torch.randn(3, 6, 5, 5, requires_grad=True), torch.randn(3, 16)
    fused = block(x, emb)
    (grad_fused,) = torch.autograd.grad(fused.square().sum(), x)
    reference = two_step_resnet_block(block, x, emb)
    (grad_reference,) = torch.autograd.grad(reference.square().sum(), x)
    torch.testing.assert_close(ResnetBlock.forward(block, x, emb), reference, rtol=1e-6, atol=1e-6)  # blocks.py's definition
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_fused, grad_reference, rtol=1e-4, atol=1e-5)
    # bfloat16 autocast, the training speed path: same answer to bfloat16 precision.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert rel_err(block(x, emb), reference) < 0.03


def test_bf16_autocast_training_step_matches_fp32_gradients():
    """What `--mixed_precision bf16` runs: forward under autocast, loss and gradients in float32."""
    torch.manual_seed(0)
    model = AnnotatedUNet2DModel(**TINY)
    x, t, noise = torch.randn(4, 1, 16, 16), torch.tensor([3, 100, 500, 999]), torch.randn(4, 1, 16, 16)

    def grads(autocast):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(x, t).sample
        loss = F.mse_loss(out.float(), noise)
        loss.backward()
        return loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])

    loss32, g32 = grads(False)
    loss16, g16 = grads(True)
    assert abs(loss16.item() - loss32.item()) / loss32.item() < 0.02
    assert rel_err(g16, g32) < 0.05  # gradients through ~20 bfloat16 layers: measured ~1-2%
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0).item() > 0.99


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = AnnotatedUNet2DModel(**TINY).eval()
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([10, 900])
    with torch.no_grad():
        reference = model(x, t).sample
        model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last), t).sample
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)


def test_bf16_pipeline_keeps_float32_latents_and_matches_fp32_samples():
    """Pure bfloat16 weights in the pipeline: the U-Net runs in bfloat16, the chain in float32, and the same
    generator gives the same images to bfloat16 precision (a short 20-step DDPM chain)."""
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(**TINY).eval()
    scheduler = AnnotatedDDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    pipe = AnnotatedDDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    seen = []

    def record(p, i, t, kwargs):
        seen.append(kwargs["latents"].dtype)
        return kwargs

    def sample():
        g = torch.Generator().manual_seed(1)
        return pipe(batch_size=4, num_inference_steps=20, generator=g, output_type="pt",
                    callback_on_step_end=record).images

    reference = sample()
    assert set(seen) == {torch.float32}
    seen.clear()
    pipe.unet.to(torch.bfloat16)
    images = sample()
    assert set(seen) == {torch.float32}, "bf16 U-Net: the latents must stay float32"
    assert images.dtype == torch.float32
    # Images in [0, 1]; the stochastic chain re-injects the same noise, so the difference stays small.
    assert (images - reference).abs().mean().item() < 0.02
    assert rel_err(images, reference) < 0.05


def test_the_unet_computes_the_same_with_the_readable_blocks_of_blocks_py():
    """fused.py's blocks swapped back for their definitions in blocks.py: the same eps_theta."""
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(**TINY).eval()
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([3, 700])
    with torch.no_grad():
        fused = unet(x, t).sample
        swapped = 0
        for module in unet.modules():
            if type(module) in (FusedResnetBlock, FusedUpsample):
                module.__class__ = ResnetBlock if type(module) is FusedResnetBlock else Upsample
                swapped += 1
        readable = unet(x, t).sample
    assert swapped >= 3
    torch.testing.assert_close(fused, readable, rtol=1e-5, atol=1e-5)
