"""Attention over the pixels of a feature map: softmax attention and linear attention.

A feature map x of shape (B, C, H, W) is a set of N = H * W tokens of width C. Each head projects every
token to a query, key and value of width d (a 1x1 convolution, i.e. one Linear applied at every pixel).

Softmax attention (Vaswani et al. 2017, eq. (1)), memory O(N^2) per head:

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V              Q, K, V: (N, d)

Linear ("efficient") attention (Shen et al. 2018, "Efficient Attention: Attention with Linear
Complexities", eq. (4)), memory O(N d + d^2) per head:

    E(Q, K, V) = rho_q(Q) (rho_k(K)^T V)

with rho_q a softmax over each query's d features and rho_k a softmax over the N positions of each key
feature. rho_k(K)^T V is a (d, d) "global context" summary, so the cost grows linearly with N, which is
what lets the seed's U-Net attend on every level, full resolution included. As in the seed (Rogge & Rasul 2022) the
queries are scaled by 1/sqrt(d) and the output projection is followed by a GroupNorm(1, C) (a LayerNorm
over C, H, W).

The U-Net uses both behind a pre-norm residual, x + Attn(GroupNorm(1, C)(x)) (`PreNormResidual`):
softmax attention only in the bottleneck, where N is smallest, and linear attention on the levels
above it (by default not at full resolution, where it costs ~30% of the CPU time; unet_2d.py and
benchmarks/RESULTS.md say what leaving it out gains in speed and costs per training step).

Layout note: the pixels are kept as the columns of a (B, C, N) matrix, so a pointwise projection (the
seed's 1x1 convolution, here an nn.Linear's weight W) is one batched product W @ x per example. q, k and
v then come out contiguous with N last, each head a (d, N) slice, and every step below is a plain
batched matmul or softmax without copies (on CPU about twice as fast as 1x1 convolutions producing the
wide qkv tensor).
"""

import torch
import torch.nn.functional as F
from torch import nn


def _pointwise(weight, tokens):
    """W @ x for each example: (O, C) x (B, C, N) -> (B, O, N), a 1x1 convolution without its reshuffles."""
    return torch.bmm(weight.expand(tokens.shape[0], -1, -1), tokens)


def _qkv(to_qkv, tokens):
    """The queries, keys and values of every pixel: three contiguous (B, heads * d, N) tensors."""
    return [_pointwise(w, tokens) for w in to_qkv.weight.chunk(3, dim=0)]


class LinearAttention(nn.Module):
    """Shen et al. 2018, eq. (4): out = rho_q(Q) (rho_k(K)^T V), O(N) in the number of pixels N.

    The pointwise projections (1x1 convolutions in the seed) are matrix products over the channel axis
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

    def forward(self, x):
        b, c, h, w = x.shape
        n = h * w
        tokens = x.reshape(b, c, n)  # (B, C, N): a view for contiguous x
        q, k, v = _qkv(self.to_qkv, tokens)  # each (B, heads * d, N)
        q = q.view(b * self.heads, self.head_dim, n).softmax(dim=-2)  # rho_q: over each query's d features
        k = k.view(b * self.heads, self.head_dim, n).softmax(dim=-1)  # rho_k: over the N positions
        v = v.view(b * self.heads, self.head_dim, n)
        # context[d, e] = sum_n rho_k(K)[d, n] V[e, n], a (d, d) summary per head; the 1/sqrt(d) on the
        # queries is applied to this small matrix instead (the same product, N/d times fewer multiplies).
        context = torch.bmm(k, v.transpose(1, 2)).view(b, self.heads, self.head_dim, self.head_dim) * self.scale
        # mix[o, (head, d)] = sum_e W_out[o, (head, e)] context[head, d, e]: W_out folded into the context.
        w_out = self.to_out.weight.view(c, self.heads, self.head_dim)
        mix = torch.einsum("ohe,bhde->bohd", w_out.to(context.dtype), context).reshape(b, c, -1)
        out = torch.baddbmm(self.to_out.bias[:, None].to(mix.dtype), mix, q.view(b, -1, n))  # (B, C, N)
        return self.norm_out(out.view(b, c, h, w))


class Attention(nn.Module):
    """Vaswani et al. 2017, eq. (1): softmax(Q K^T / sqrt(d)) V over all N pixels, through fused SDPA."""

    def __init__(self, dim, heads=4, head_dim=32):
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        hidden = heads * head_dim
        self.to_qkv = nn.Linear(dim, 3 * hidden, bias=False)
        self.to_out = nn.Linear(hidden, dim)

    def forward(self, x):
        b, c, h, w = x.shape
        n = h * w
        q, k, v = _qkv(self.to_qkv, x.reshape(b, c, n))  # each (B, heads * d, N)
        q, k, v = (t.view(b, self.heads, self.head_dim, n).transpose(-1, -2) for t in (q, k, v))
        # scaled_dot_product_attention takes (B, heads, N, d) and scales by 1/sqrt(d) itself.
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d)
        out = out.transpose(-1, -2).reshape(b, self.heads * self.head_dim, n)
        weight, bias = self.to_out.weight.to(out.dtype), self.to_out.bias[:, None].to(out.dtype)
        out = torch.baddbmm(bias, weight.expand(b, -1, -1), out)  # W_out @ out + b, the output projection
        return out.view(b, c, h, w)


class PreNormResidual(nn.Module):
    """x + fn(GroupNorm(1, C)(x)): normalise the input of `fn` and keep the identity path clean."""

    def __init__(self, dim, fn):
        super().__init__()
        self.norm = nn.GroupNorm(1, dim)
        self.fn = fn

    def forward(self, x):
        return x + self.fn(self.norm(x))
