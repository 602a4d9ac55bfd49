"""Attention processors and recording: the samples do not change, and the weights are the layers' own."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel
from annotated_pipeline.unet.attention import LinearAttnProcessor, SoftmaxAttnProcessor
from annotated_pipeline.visualize.attention import attention_figure, query_map, record_attention

HEADS, HEAD_DIM = 2, 4


def tiny_pipeline():
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=HEADS,
                                attention_head_dim=HEAD_DIM, num_class_embeds=3, null_class_embed=True,
                                linear_attention_levels="all")  # linear attention at 8x8 and 4x4, softmax at 4x4
    pipe = AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe, **kwargs):
    return pipe(batch_size=3, generator=torch.Generator().manual_seed(0), num_inference_steps=4, output_type="pt",
                guidance_scale=2.0, guidance_interval=(20, 49), **kwargs).images


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


def test_attn_processors_follow_diffusers_naming_and_can_be_swapped(pipe):
    processors = pipe.unet.attn_processors
    assert sorted(processors) == ["down_levels.0.attention.fn.processor", "down_levels.1.attention.fn.processor",
                                  "mid_attention.fn.processor", "up_levels.0.attention.fn.processor",
                                  "up_levels.1.attention.fn.processor"]
    assert isinstance(processors["mid_attention.fn.processor"], SoftmaxAttnProcessor)
    assert isinstance(processors["up_levels.1.attention.fn.processor"], LinearAttnProcessor)
    calls = []

    class Counting:
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, attn, x):
            calls.append(type(attn).__name__)
            return self.inner(attn, x)

    pipe.unet.set_attn_processor({name: Counting(p) for name, p in processors.items()})
    pipe.unet(torch.randn(1, 1, 8, 8), 3, class_labels=0)
    assert sorted(calls) == ["Attention"] + ["LinearAttention"] * 4
    pipe.unet.set_default_attn_processor()
    assert {type(p) for p in pipe.unet.attn_processors.values()} == {SoftmaxAttnProcessor, LinearAttnProcessor}
    with pytest.raises(ValueError, match="callable"):
        pipe.unet.mid_attention.fn.set_processor("not a processor")


def test_recording_changes_no_pixel_and_puts_the_processors_back(pipe):
    plain = sample(pipe)
    before = pipe.unet.attn_processors
    with record_attention(pipe.unet) as store:
        recorded = sample(pipe)
    assert torch.equal(recorded, plain)  # bit-identical, guided steps (doubled batch) included
    assert pipe.unet.attn_processors == before
    # 4 steps x 5 layers; the guided steps (t in 20..49) ran the doubled batch
    assert len(store.records) == 20
    chain = pipe.scheduler.timesteps.tolist()
    assert [r.timestep for r in store.records if r.module == "mid_attention.fn"] == chain
    assert [r.step for r in store.records if r.module == "mid_attention.fn"] == [0, 1, 2, 3]
    assert store.get("mid_attention.fn", step=2).timestep == chain[2]
    for r in store.records:
        assert r.weights.shape[0] == (6 if 20 <= r.timestep <= 49 else 3)
        assert r.weights.shape[1:] == (HEADS, r.height * r.width, r.height * r.width)


def test_recorded_softmax_weights_are_softmax_qk_from_the_blocks_own_q_and_k(pipe):
    """Independent truth: the bottleneck's input x, its 1x1 q and k projections (a convolution), eq. (1)."""
    pipe.scheduler.set_timesteps(4)
    first = int(pipe.scheduler.timesteps[0])
    inputs = []
    hook = pipe.unet.mid_attention.fn.register_forward_pre_hook(lambda module, args: inputs.append(args[0].clone()))
    try:
        with record_attention(pipe.unet, timesteps={first}, modules=["mid_attention.fn"]) as store:
            sample(pipe)
    finally:
        hook.remove()
    (record,) = store.records
    x = inputs[0]  # the first call is the first step's
    assert record.timestep == first and record.step == 0
    w_q, w_k, _ = pipe.unet.mid_attention.fn.to_qkv.weight.chunk(3, dim=0)
    q, k = (rearrange(F.conv2d(x, w[:, :, None, None]), "b (h d) x y -> b h (x y) d", h=HEADS) for w in (w_q, w_k))
    expected = torch.softmax(q @ k.transpose(-1, -2) / HEAD_DIM**0.5, dim=-1)
    torch.testing.assert_close(record.weights, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(record.weights.sum(-1), torch.ones(record.weights.shape[:-1]), rtol=0, atol=1e-5)
    torch.testing.assert_close(record.mean_over_heads, expected.mean(1))


def test_linear_attention_weights_reproduce_the_layers_output():
    """Linear attention applies A = rho_q(Q)^T rho_k(K) exactly: out = norm(W_out (V A^T / sqrt(d)) + b); rows sum to 1."""
    pipe = tiny_pipeline()
    attn = pipe.unet.down_levels[1]["attention"].fn
    torch.nn.init.normal_(attn.to_qkv.weight, std=1.0)  # sharp softmaxes, far from uniform weights
    x = torch.randn(2, attn.to_out.out_features, 4, 4)
    weights = attn.attention_weights(x)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, HEADS, 16), rtol=0, atol=1e-5)
    v = rearrange(x.flatten(2).transpose(1, 2) @ attn.to_qkv.weight.chunk(3, dim=0)[2].T, "b n (h e) -> b h n e", h=HEADS)
    mixed = rearrange(weights @ v * HEAD_DIM**-0.5, "b h n e -> b n (h e)")
    out = rearrange(mixed @ attn.to_out.weight.T + attn.to_out.bias, "b (x y) c -> b c x y", x=4)
    torch.testing.assert_close(attn(x), attn.norm_out(out), rtol=1e-4, atol=1e-5)


def test_query_map_and_figure(pipe):
    with record_attention(pipe.unet, modules=["mid_attention.fn"]) as store:
        sample(pipe)
    record = store.records[0]
    weights, (row, col) = query_map(record, 1, "peak")
    strongest = record.mean_over_heads[1].max(dim=1).values
    assert strongest[row * record.width + col] == strongest.max()
    head0, _ = query_map(record, 0, (2, 3), head=0)
    torch.testing.assert_close(head0.flatten(), record.weights[0, 0, 2 * 4 + 3])
    with pytest.raises(ValueError, match="outside"):
        query_map(record, 0, (4, 0))

    figure = attention_figure(pipe, num_images=2, num_timesteps=3, num_inference_steps=4, scale=2, class_labels=[0, 1])
    chain = pipe.scheduler.timesteps.tolist()
    assert figure.mode == "RGB" and figure.width > 4 * 16 and figure.height > 2 * 16
    with pytest.raises(ValueError, match="not in the sampler's chain"):
        attention_figure(pipe, num_images=1, timesteps=[chain[0] - 1], num_inference_steps=4)
    with pytest.raises(ValueError, match="no attention layer"):
        attention_figure(pipe, num_images=1, module="mid_attention", num_inference_steps=4)
    assert np.asarray(figure).std() > 10  # not a blank canvas
