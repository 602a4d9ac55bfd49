"""The attention's einops reshapes (annotated_pipeline/unet/attention.py) change no bit.

The independent truth is the code path they replaced, written out here with plain .view / .transpose /
.reshape (the processors as they were before the einops notation, commit db902af): forward outputs,
gradients and the explicit attention weights must be equal, not close, on shapes that catch a wrong axis
order (H != W, several heads, head_dim != heads, batch > 1), in float32 and bfloat16, and through a whole
U-Net. The math itself is tested against the papers in tests/test_unet.py.
"""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from annotated_pipeline.unet import AnnotatedUNet2DModel
from annotated_pipeline.unet.attention import Attention, LinearAttention, _qkv

ROOT = Path(__file__).resolve().parents[3]


def linear_attention_with_views(attn, x):
    b, c, h, w = x.shape
    n = h * w
    q, k, v = _qkv(attn.to_qkv, x.reshape(b, c, n))
    q = q.view(b * attn.heads, attn.head_dim, n).softmax(dim=-2)
    k = k.view(b * attn.heads, attn.head_dim, n).softmax(dim=-1)
    v = v.view(b * attn.heads, attn.head_dim, n)
    context = torch.bmm(k, v.transpose(1, 2)).view(b, attn.heads, attn.head_dim, attn.head_dim) * attn.scale
    w_out = attn.to_out.weight.view(c, attn.heads, attn.head_dim)
    mix = torch.einsum("ohe,bhde->bohd", w_out.to(context.dtype), context).reshape(b, c, -1)
    out = torch.baddbmm(attn.to_out.bias[:, None].to(mix.dtype), mix, q.view(b, -1, n))
    return attn.norm_out(out.view(b, c, h, w))


def softmax_attention_with_views(attn, x):
    b, c, h, w = x.shape
    n = h * w
    q, k, v = _qkv(attn.to_qkv, x.reshape(b, c, n))
    q, k, v = (t.view(b, attn.heads, attn.head_dim, n).transpose(-1, -2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    out = out.transpose(-1, -2).reshape(b, attn.heads * attn.head_dim, n)
    weight, bias = attn.to_out.weight.to(out.dtype), attn.to_out.bias[:, None].to(out.dtype)
    return torch.baddbmm(bias, weight.expand(b, -1, -1), out).view(b, c, h, w)


def weights_with_views(attn, x):
    b, c, h, w = x.shape
    n = h * w
    q, k, _ = _qkv(attn.to_qkv, x.reshape(b, c, n))
    q, k = (t.view(b, attn.heads, attn.head_dim, n) for t in (q, k))
    if isinstance(attn, LinearAttention):
        return q.softmax(dim=-2).transpose(-1, -2) @ k.softmax(dim=-1)
    return (q.transpose(-1, -2) @ k * attn.head_dim**-0.5).softmax(dim=-1)


VIEWS = {LinearAttention: linear_attention_with_views, Attention: softmax_attention_with_views}


@pytest.mark.parametrize("cls", [LinearAttention, Attention])
@pytest.mark.parametrize("b, dim, heads, head_dim, h, w", [(1, 4, 1, 4, 3, 3), (3, 6, 2, 3, 4, 5), (2, 8, 3, 5, 7, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_einops_processors_equal_the_view_code_bit_for_bit(cls, b, dim, heads, head_dim, h, w, dtype):
    torch.manual_seed(0)
    attn = cls(dim, heads=heads, head_dim=head_dim).to(dtype)
    x = torch.randn(b, dim, h, w, dtype=dtype)
    x_ref = x.clone().requires_grad_()
    x = x.requires_grad_()
    out, ref = attn(x), VIEWS[cls](attn, x_ref)
    assert out.shape == (b, dim, h, w) and torch.equal(out, ref)
    grad = torch.randn_like(out)
    params = list(attn.parameters())
    got = torch.autograd.grad(out, [x, *params], grad)
    expected = torch.autograd.grad(ref, [x_ref, *params], grad)
    assert all(torch.equal(g, e) for g, e in zip(got, expected))
    with torch.no_grad():
        assert torch.equal(attn.attention_weights(x), weights_with_views(attn, x))


def view_processor(attn, x):
    """The view code as a processor (diffusers' convention: processor(attn, x)), for any attention module."""
    return VIEWS[type(attn)](attn, x)


def test_whole_unet_is_bit_identical_with_the_view_processors():
    """A U-Net with attention on every level: its default (einops) processors, then the view code in their place."""
    torch.manual_seed(0)
    model = AnnotatedUNet2DModel(sample_size=(8, 12), dim=8, dim_mults=(1, 2), resnet_block_groups=2,
                                 attention_heads=2, attention_head_dim=4, linear_attention_levels="all").eval()
    x, t = torch.randn(2, 1, 8, 12), torch.tensor([3, 700])
    assert len(model.attn_processors) == 5  # two linear attentions per direction and the bottleneck's softmax one
    with torch.no_grad():
        einops_out = model(x, t).sample
        model.set_attn_processor(view_processor)
        views_out = model(x, t).sample
        model.set_default_attn_processor()
        again = model(x, t).sample
    assert torch.equal(einops_out, views_out) and torch.equal(again, einops_out)


def test_benchmark_quick_run_times_every_attention_block(capsys):
    """benchmarks/attention_einops.py --quick, in process, "before" read from git (HEAD: the benchmark runs in
    a clone; HEAD's attention.py is what its code path needs). No timing is asserted, only that every block ran."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import attention_einops

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = attention_einops.run(attention_einops.parse_args(["--quick", "--before", "HEAD"]))
    finally:
        torch.set_num_threads(threads)
    blocks = ["down_levels.0", "down_levels.1", "mid_attention", "up_levels.0", "up_levels.1"]
    assert [label.split(".attention")[0].split(".fn")[0] for label, _ in rows[:-2:2]] == blocks
    assert rows[-1][0] == "whole U-Net, forward + backward, batch 2" and len(rows) == 2 * len(blocks) + 2
    assert all(t["before"] > 0 and t["after"] > 0 for _, t in rows)
    table = capsys.readouterr().out
    assert "| mid_attention.fn (Attention, 16x4x4), forward, batch 2 |" in table

    assert attention_einops.main(["--quick", "--before", "no-such-revision"]) == 2
    assert "error: cannot read annotated_pipeline/unet/attention.py at git revision 'no-such-revision'" in (
        capsys.readouterr().err
    )
