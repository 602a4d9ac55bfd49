r"""Attention over the pixels of a feature map: softmax attention and linear attention.

A feature map $x$ of shape $(B, C, H, W)$ is a set of $N = H W$ tokens of width $C$. Each head projects
every token to a query, key and value of width $d$ (a $1\times1$ convolution, i.e. one Linear applied
at every pixel).

Softmax attention (Vaswani et al. 2017, eq. (1)), memory $O(N^2)$ per head:

$$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\Big(\frac{Q K^\top}{\sqrt{d}}\Big) V, \qquad Q, K, V \in \mathbb{R}^{N \times d}$$

Linear ("efficient") attention (Shen et al. 2018, "Efficient Attention: Attention with Linear
Complexities", eq. (4)), memory $O(N d + d^2)$ per head:

$$E(Q, K, V) = \rho_q(Q)\, \big(\rho_k(K)^\top V\big)$$

with $\rho_q$ a softmax over each query's $d$ features and $\rho_k$ a softmax over the $N$ positions of
each key feature. $\rho_k(K)^\top V$ is a $d \times d$ "global context" summary, so the cost grows
linearly with $N$, which is what lets the blog's U-Net attend on every level, full resolution included.
As in the blog (Rogge & Rasul 2022) the queries are scaled by $1/\sqrt{d}$ and the output projection is
followed by $\mathrm{GN}_1$, a GroupNorm with one group (a LayerNorm over $C$, $H$, $W$).

The U-Net uses both behind a pre-norm residual, $x + \mathrm{Attn}(\mathrm{GN}_1(x))$ (`PreNormResidual`):
softmax attention only in the bottleneck, where $N$ is smallest, and linear attention on the levels
above it (by default not at full resolution, where it costs ~30% of the CPU time; unet_2d.py and
benchmarks/RESULTS.md say what leaving it out gains in speed and costs per training step).

Layout note: the pixels are kept as the columns of a (B, C, N) matrix, so a pointwise projection (the
blog's 1x1 convolution, here an nn.Linear's weight W) is one batched product W @ x per example. q, k and
v then come out contiguous with N last, each head a (d, N) slice, and every step below is a plain
batched matmul or softmax without copies (on CPU about twice as fast as 1x1 convolutions producing the
wide qkv tensor). The reshapes are written in einops notation, as in the blog, e.g.
rearrange(q, "b (h d) n -> (b h) d n", h=heads) splits the channels into heads. On contiguous tensors each
is a view, so the numbers are bit for bit those of plain .view / .transpose; each call costs a few
microseconds of Python more (benchmarks/attention_einops.py, benchmarks/RESULTS.md).

Processors (diffusers' convention): each attention module calls `self.processor(self, x)`, and its default
processor (`LinearAttnProcessor`, `SoftmaxAttnProcessor`) is the math above. Another processor, installed with
`AnnotatedUNet2DModel.set_attn_processor` (e.g. one that records the weights, annotated_pipeline.visualize),
changes what runs without forking the model. `attention_weights(x)` gives each module's N x N weights per head,
computed explicitly: softmax(Q K^T / sqrt(d)) for softmax attention, and for linear attention the weights it
applies implicitly (see `LinearAttention.attention_weights`).
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def _pointwise(weight, tokens):
    """W @ x for each example: (O, C) x (B, C, N) -> (B, O, N), a 1x1 convolution without its reshuffles."""
    return torch.bmm(weight.expand(tokens.shape[0], -1, -1), tokens)


def _qkv(to_qkv, tokens):
    """The queries, keys and values of every pixel: three contiguous (B, heads * d, N) tensors."""
    return [_pointwise(w, tokens) for w in to_qkv.weight.chunk(3, dim=0)]


class LinearAttnProcessor:
    """The default processor of `LinearAttention`: Shen et al. 2018, eq. (4), with W_out folded in (see there)."""

    def __call__(self, attn, x):
        tokens = rearrange(x, "b c x y -> b c (x y)")  # (B, C, N): a view for contiguous x
        q, k, v = (rearrange(t, "b (h d) n -> (b h) d n", h=attn.heads) for t in _qkv(attn.to_qkv, tokens))
        q = q.softmax(dim=-2)  # rho_q: over each query's d features
        k = k.softmax(dim=-1)  # rho_k: over the N positions
        # context[d, e] = sum_n rho_k(K)[d, n] V[e, n], a (d, d) summary per head; the 1/sqrt(d) on the
        # queries is applied to this small matrix instead (the same product, N/d times fewer multiplies).
        context = rearrange(torch.bmm(k, v.transpose(1, 2)), "(b h) d e -> b h d e", h=attn.heads) * attn.scale
        # mix[o, (head, d)] = sum_e W_out[o, (head, e)] context[head, d, e]: W_out folded into the context.
        w_out = rearrange(attn.to_out.weight, "o (h e) -> o h e", h=attn.heads)
        mix = rearrange(torch.einsum("ohe,bhde->bohd", w_out.to(context.dtype), context), "b o h d -> b o (h d)")
        q = rearrange(q, "(b h) d n -> b (h d) n", h=attn.heads)
        out = torch.baddbmm(attn.to_out.bias[:, None].to(mix.dtype), mix, q)  # (B, C, N)
        return attn.norm_out(rearrange(out, "b c (x y) -> b c x y", x=x.shape[2]))


class SoftmaxAttnProcessor:
    """The default processor of `Attention`: Vaswani et al. 2017, eq. (1), through fused SDPA."""

    def __call__(self, attn, x):
        qkv = _qkv(attn.to_qkv, rearrange(x, "b c x y -> b c (x y)"))  # each (B, heads * d, N)
        q, k, v = (rearrange(t, "b (h d) n -> b h n d", h=attn.heads) for t in qkv)
        # scaled_dot_product_attention takes (B, heads, N, d) and scales by 1/sqrt(d) itself.
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "b h n d -> b (h d) n")
        weight, bias = attn.to_out.weight.to(out.dtype), attn.to_out.bias[:, None].to(out.dtype)
        out = torch.baddbmm(bias, weight.expand(x.shape[0], -1, -1), out)  # W_out @ out + b, the output projection
        return rearrange(out, "b c (x y) -> b c x y", x=x.shape[2])


class _ProcessorMixin:
    """diffusers' processor protocol: the module's forward is `self.processor(self, x)`; `get_processor` and
    `set_processor` are what `AttentionMixin.attn_processors` / `set_attn_processor` look for."""

    def get_processor(self):
        return self.processor

    def set_processor(self, processor):
        if not callable(processor):
            raise ValueError(f"an attention processor must be callable as processor(attn, x), got {processor!r}")
        self.processor = processor

    def forward(self, x):
        return self.processor(self, x)


class LinearAttention(_ProcessorMixin, nn.Module):
    """Shen et al. 2018, eq. (4): out = rho_q(Q) (rho_k(K)^T V), O(N) in the number of pixels N.

    The pointwise projections (1x1 convolutions in the blog) are matrix products over the channel axis
    of the (B, C, N) pixels; the output projection W_out is folded into the small per-head matrix by the
    same associativity that makes the attention linear:

        out = W_out concat_h(context_h^T rho_q(Q_h)) + b = (W_out concat_h context_h^T) rho_q(Q) + b

    so the (hidden, N) attention output is never materialised (one fewer full-resolution product).
    """

    def __init__(self, dim, heads=4, head_dim=32):
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        hidden = heads * head_dim
        self.to_qkv = nn.Linear(dim, 3 * hidden, bias=False)
        self.to_out = nn.Linear(hidden, dim)
        self.norm_out = nn.GroupNorm(1, dim)
        self.processor = LinearAttnProcessor()

    def attention_weights(self, x):
        """The (B, heads, N, N) weights A that this linear attention applies, row n for query n.

        Linear attention never forms an N x N matrix, but it applies one exactly: with rho_q(Q), rho_k(K)
        of shape (d, N),

            out_n = (1 / sqrt(d)) sum_m V_m A[n, m],   A[n, m] = sum_d rho_q(Q)[d, n] rho_k(K)[d, m]

        (associativity: rho_q(Q)^T (rho_k(K) V^T) = (rho_q(Q)^T rho_k(K)) V^T), the feature-map form phi(q_n)^T
        psi(k_m) of kernelised attention, with rho_k normalising each key feature over the positions. Every entry is >= 0 and each row sums to 1 (rho_k sums
        to 1 over the positions m, rho_q to 1 over the features d), so A is a genuine attention matrix and
        needs no further normalisation; the 1/sqrt(d) scales the output, not the weights.
        """
        q, k, _ = (rearrange(t, "b (h d) n -> b h d n", h=self.heads)
                   for t in _qkv(self.to_qkv, rearrange(x, "b c x y -> b c (x y)")))
        return q.softmax(dim=-2).transpose(-1, -2) @ k.softmax(dim=-1)  # (B, heads, N, N)


class Attention(_ProcessorMixin, nn.Module):
    """Vaswani et al. 2017, eq. (1): softmax(Q K^T / sqrt(d)) V over all N pixels, through fused SDPA."""

    def __init__(self, dim, heads=4, head_dim=32):
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        hidden = heads * head_dim
        self.to_qkv = nn.Linear(dim, 3 * hidden, bias=False)
        self.to_out = nn.Linear(hidden, dim)
        self.processor = SoftmaxAttnProcessor()

    def attention_weights(self, x):
        """softmax(Q K^T / sqrt(d)) per head, (B, heads, N, N), row n for query n: what SDPA applies, written out."""
        q, k, _ = (rearrange(t, "b (h d) n -> b h d n", h=self.heads)
                   for t in _qkv(self.to_qkv, rearrange(x, "b c x y -> b c (x y)")))
        return (q.transpose(-1, -2) @ k * self.head_dim**-0.5).softmax(dim=-1)  # (B, heads, N, N)


class PreNormResidual(nn.Module):
    """x + fn(GroupNorm(1, C)(x)): normalise the input of `fn` and keep the identity path clean."""

    def __init__(self, dim, fn):
        super().__init__()
        self.norm = nn.GroupNorm(1, dim)
        self.fn = fn

    def forward(self, x):
        return x + self.fn(self.norm(x))
