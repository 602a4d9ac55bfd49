# Generated at save time from attention.py, blocks.py, config.py, embeddings.py, fused.py, unet_2d.py (annotated-pipeline); edit those modules, not this file.

# ---- attention.py ------------------------------------------------------------
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

# ---- blocks.py ---------------------------------------------------------------
r"""The convolutional building blocks of the U-Net, each conditioned on the time embedding.

`ResnetBlock`, the Wide-ResNet block (Zagoruyko & Komodakis 2016) that Ho et al. 2020 (appendix B) use,
with GroupNorm (Wu & He 2018) and SiLU, in the blog's order (convolution, norm, activation). The time
embedding $e$ (one row of width $d_\text{time}$ per image, embeddings.py) enters by scale-shift (FiLM,
Perez et al. 2018; "AdaGN" in Nichol & Dhariwal 2021) after the first norm:

$$[\gamma, \beta] = W_e\, \mathrm{SiLU}(e)$$

$$h = \mathrm{SiLU}\big(\mathrm{GN}(\mathrm{Conv}_{3\times3}(x)) \odot (1 + \gamma) + \beta\big), \qquad h \leftarrow \mathrm{SiLU}\big(\mathrm{GN}(\mathrm{Conv}_{3\times3}(h))\big)$$

$$\mathrm{out} = h + \mathrm{Conv}_{1\times1}(x)$$

with the $1\times1$ convolution only where the width changes (the identity otherwise). GroupNorm
normalises each group $g$ of channels over its channels and pixels, then scales and shifts each channel:
$\mathrm{GN}(h) = w \odot (h - \mu_g) / \sqrt{\sigma_g^2 + \varepsilon} + b$.

`ConvNextBlock`, the ConvNeXt block (Liu et al. 2022) as the blog adapts it. The time embedding is
added (not scale-shifted) after the depthwise convolution, and the widths run
$C_\text{in} \to m\, C_\text{out} \to C_\text{out}$:

$$h = \mathrm{DWConv}_{7\times7}(x) + W_e\, \mathrm{GELU}(e), \qquad h \leftarrow \mathrm{Conv}_{3\times3}\Big(\mathrm{GN}_1\big(\mathrm{GELU}(\mathrm{Conv}_{3\times3}(\mathrm{GN}_1(h)))\big)\Big)$$

$$\mathrm{out} = h + \mathrm{Conv}_{1\times1}(x)$$

where $\mathrm{GN}_1$ is GroupNorm with one group (a LayerNorm over channels and pixels).

Resolution changes between the U-Net's levels:

* `Downsample`: pixel-unshuffle $2\times2$, $(C, 2H, 2W) \to (4C, H, W)$ (space to depth), then a
  $1\times1$ convolution. That composition is one linear map of each $2\times2$ patch, i.e. exactly a
  $2\times2$ convolution with stride 2, which is what is computed (one kernel, no reshuffled copy).
* `Upsample`: nearest-neighbour $\times 2$, then a $3\times3$ convolution.

The U-Net computes two of these blocks in equivalent, faster forms (fused.py: the FiLM folded into the
GroupNorm, the upsampling as one transposed convolution), with the same parameters; tests check that
they equal the definitions here.
"""

import torch.nn.functional as F
from torch import nn


class ResnetBlock(nn.Module):
    """Wide-ResNet block with GroupNorm + SiLU, time embedding as scale-shift after the first norm."""

    def __init__(self, dim_in, dim_out, time_dim, groups=4):
        super().__init__()
        self.time_proj = nn.Linear(time_dim, 2 * dim_out)
        self.conv1 = nn.Conv2d(dim_in, dim_out, kernel_size=3, padding=1)
        self.norm1 = nn.GroupNorm(groups, dim_out)
        self.conv2 = nn.Conv2d(dim_out, dim_out, kernel_size=3, padding=1)
        self.norm2 = nn.GroupNorm(groups, dim_out)
        self.res_conv = nn.Conv2d(dim_in, dim_out, kernel_size=1) if dim_in != dim_out else nn.Identity()

    def forward(self, x, emb):
        scale, shift = self.time_proj(F.silu(emb)).chunk(2, dim=1)  # [scale, shift] = Linear(SiLU(emb)), each (B, C_out)
        h = self.norm1(self.conv1(x))
        h = F.silu(h * (1 + scale[:, :, None, None]) + shift[:, :, None, None])  # FiLM: GroupNorm(h) (1 + scale) + shift
        h = F.silu(self.norm2(self.conv2(h)))  # SiLU(GroupNorm(Conv3x3(h)))
        return h + self.res_conv(x)  # out = h + Conv1x1(x)


class ConvNextBlock(nn.Module):
    """ConvNeXt block (Liu et al. 2022) as in the blog, time embedding added after the depthwise conv."""

    def __init__(self, dim_in, dim_out, time_dim, mult=2):
        super().__init__()
        self.time_proj = nn.Linear(time_dim, dim_in)
        self.depthwise = nn.Conv2d(dim_in, dim_in, kernel_size=7, padding=3, groups=dim_in)
        self.norm1 = nn.GroupNorm(1, dim_in)
        self.conv1 = nn.Conv2d(dim_in, dim_out * mult, kernel_size=3, padding=1)
        self.norm2 = nn.GroupNorm(1, dim_out * mult)
        self.conv2 = nn.Conv2d(dim_out * mult, dim_out, kernel_size=3, padding=1)
        self.res_conv = nn.Conv2d(dim_in, dim_out, kernel_size=1) if dim_in != dim_out else nn.Identity()

    def forward(self, x, emb):
        h = self.depthwise(x) + self.time_proj(F.gelu(emb))[:, :, None, None]  # DepthwiseConv7x7(x) + Linear(GELU(emb))
        h = self.conv1(self.norm1(h))  # C_in -> mult * C_out
        h = self.conv2(self.norm2(F.gelu(h)))  # mult * C_out -> C_out
        return h + self.res_conv(x)  # out = h + Conv1x1(x)


class Downsample(nn.Module):
    """Halve H and W: pixel-unshuffle 2x2 + 1x1 conv, computed as the equivalent 2x2 conv with stride 2."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size=2, stride=2)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size=3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

# ---- config.py ---------------------------------------------------------------
"""The U-Net's configuration, checked: every impossible combination is refused before a layer is built.

`check_config` takes the arguments of `AnnotatedUNet2DModel.__init__` and returns the values the network
is built from and stored with (one canonical form, since lists and tuples both come back as lists from
config.json), or raises a ValueError that says what was wrong and what would work:

    dim                    even (the sinusoidal time embedding pairs a sine and a cosine)
    resnet_block_groups    divides every ResNet block width (GroupNorm)
    sample_size            survives len(dim_mults) - 1 halvings: a multiple of 2^(L-1)
    linear_attention_levels  "middle", "below_full_resolution", "all"/None, or distinct level indices
    bounds                 widest layer, levels, sample_size and classes below MAX_* (no terabyte configs)
"""

from math import gcd

import torch

BLOCK_TYPES = ("resnet", "convnext")
LINEAR_ATTENTION_NAMES = ("middle", "below_full_resolution", "all")  # or level indices such as (1, 2)


def named_levels(name, num_levels):
    """The level indices a named linear_attention_levels stands for in a U-Net of num_levels levels."""
    last = num_levels - 1  # the bottleneck's resolution
    return tuple(range(1, last)) if name == "middle" else tuple(range(1, last + 1))


# Bounds far above any model this project trains, so that a config that asks for terabytes (dim: 10**6)
# is refused as a config, not found by an allocation.
MAX_WIDTH = 8192          # dim * max(dim_mults), the widest layer
MAX_SIDE = 4096           # pixels per side of sample_size
MAX_CLASSES = 100_000     # num_class_embeds
MAX_LEVELS = 10           # len(dim_mults)


def _check_int(name, value, minimum=1, allow_none=False, maximum=None):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = f"an integer >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value!r}")


def _halvings(size, n):
    """'30 -> 15 -> 7.5' : what n halvings do to a side of `size` pixels."""
    sizes = [size / 2**k for k in range(n + 1)]
    return " -> ".join(f"{s:g}" for s in sizes)


def check_spatial(what, height, width, num_levels):
    factor = 2 ** (num_levels - 1)
    for side in (height, width):
        if side % factor != 0:
            raise ValueError(
                f"{what} {side} cannot be halved {num_levels - 1} times by the {num_levels}-level U-Net "
                f"({_halvings(side, num_levels - 1)}); sizes that work are multiples of 2**{num_levels - 1} = "
                f"{factor} (e.g. {max(factor, side // factor * factor)} or {(side // factor + 1) * factor}), "
                f"or use fewer dim_mults"
            )


def _attended_levels(linear_attention_levels, num_levels, dim_mults):
    """(linear_attention_levels as stored, the set of levels with linear attention), or a ValueError."""
    if linear_attention_levels is None or linear_attention_levels == "all":
        linear_attention_levels = None  # every level; stored as None, its spelling in older configs
        attended = set(range(num_levels))
    elif linear_attention_levels in LINEAR_ATTENTION_NAMES:
        linear_attention_levels = named_levels(linear_attention_levels, num_levels)
        attended = set(linear_attention_levels)
    else:
        if isinstance(linear_attention_levels, (str, bytes)) or not hasattr(linear_attention_levels, "__iter__"):
            raise ValueError(
                f"linear_attention_levels must be \"middle\" (the levels strictly between 0 and {num_levels - 1}), "
                f"\"below_full_resolution\" (levels 1..{num_levels - 1}), \"all\" or None (every level), "
                f"or a sequence of level indices in 0..{num_levels - 1}, "
                f"got {linear_attention_levels!r}"
            )
        linear_attention_levels = tuple(linear_attention_levels)
        bad = [i for i in linear_attention_levels
               if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_levels]
        if bad or len(set(linear_attention_levels)) != len(linear_attention_levels):
            raise ValueError(
                f"linear_attention_levels must hold distinct level indices in 0..{num_levels - 1} (one per entry "
                f"of dim_mults={dim_mults}), got {linear_attention_levels!r}"
            )
        attended = set(linear_attention_levels)
        linear_attention_levels = tuple(sorted(attended))
    return linear_attention_levels, attended


def check_config(sample_size, in_channels, out_channels, dim, init_dim, dim_mults, block_type, resnet_block_groups,
                 convnext_mult, attention_heads, attention_head_dim, num_class_embeds, linear_attention_levels,
                 null_class_embed):
    """(init_dim, dim_mults, sample_size, linear_attention_levels, attended levels) in canonical form;
    ValueError for a configuration no network can have."""
    _check_int("in_channels", in_channels)
    _check_int("out_channels", out_channels, allow_none=True)
    _check_int("dim", dim, minimum=2)
    if dim % 2 != 0:
        raise ValueError(f"dim must be even (the sinusoidal time embedding pairs a sine and a cosine), got {dim}")
    if init_dim is None:
        init_dim = dim // 3 * 2
    _check_int("init_dim", init_dim)
    if isinstance(dim_mults, (str, bytes)) or not hasattr(dim_mults, "__len__") or len(dim_mults) == 0:
        raise ValueError(f"dim_mults must be a non-empty sequence of positive integers, got {dim_mults!r}")
    for m in dim_mults:
        _check_int("every entry of dim_mults", m)
    dim_mults = tuple(dim_mults)
    if len(dim_mults) > MAX_LEVELS or dim * max(dim_mults) > MAX_WIDTH:
        raise ValueError(f"dim * max(dim_mults) = {dim * max(dim_mults)} with {len(dim_mults)} levels exceeds this "
                         f"U-Net's bounds (widest layer <= {MAX_WIDTH}, at most {MAX_LEVELS} levels)")
    if block_type not in BLOCK_TYPES:
        raise ValueError(f"block_type must be one of {BLOCK_TYPES}, got {block_type!r}")
    _check_int("resnet_block_groups", resnet_block_groups)
    _check_int("convnext_mult", convnext_mult)
    _check_int("attention_heads", attention_heads)
    _check_int("attention_head_dim", attention_head_dim)
    _check_int("num_class_embeds", num_class_embeds, allow_none=True, maximum=MAX_CLASSES)
    if not isinstance(null_class_embed, bool):
        raise ValueError(f"null_class_embed must be True or False, got {null_class_embed!r}")
    if null_class_embed and num_class_embeds is None:
        raise ValueError("null_class_embed=True needs num_class_embeds (the classes it stands beside); "
                         "an unconditional model has no class to drop")

    num_levels = len(dim_mults)
    linear_attention_levels, attended = _attended_levels(linear_attention_levels, num_levels, dim_mults)
    widths = [dim * m for m in dim_mults]
    if block_type == "resnet":
        normed = sorted(set(widths) | {dim})  # every ResNet block ends at one of these widths
        if any(w % resnet_block_groups for w in normed):
            common = 0
            for w in normed:
                common = gcd(common, w)
            valid = [g for g in range(1, common + 1) if common % g == 0]
            raise ValueError(
                f"resnet_block_groups={resnet_block_groups} does not divide every ResNet block width "
                f"{normed} (dim={dim} x dim_mults={dim_mults}); GroupNorm needs it to. Valid values: {valid}"
            )
    if sample_size is not None:
        if isinstance(sample_size, int) and not isinstance(sample_size, bool):
            height = width = sample_size
        elif isinstance(sample_size, (list, tuple)) and len(sample_size) == 2:
            height, width = sample_size
            sample_size = (height, width)
        else:
            raise ValueError(f"sample_size must be an int, a (height, width) pair or None, got {sample_size!r}")
        _check_int("sample_size", height, maximum=MAX_SIDE)
        _check_int("sample_size", width, maximum=MAX_SIDE)
        check_spatial(f"sample_size={sample_size}: side", height, width, num_levels)
    return init_dim, dim_mults, sample_size, linear_attention_levels, attended


def check_sample(config, sample):
    """x_t must be (B, in_channels, H, W) with H and W multiples of 2^(L-1)."""
    if sample.ndim != 4 or sample.shape[1] != config.in_channels:
        raise ValueError(
            f"sample must have shape (batch, {config.in_channels}, height, width) for in_channels="
            f"{config.in_channels}, got {tuple(sample.shape)}"
        )
    check_spatial("input side", sample.shape[2], sample.shape[3], len(config.dim_mults))


def check_class_labels(config, class_labels):
    """y for the class embedding: `class_labels` checked against 0..K-1 (K = num_class_embeds), or K
    ("no class") for None where the model has a null_class_embed; ValueError otherwise."""
    num_classes = config.num_class_embeds
    if num_classes is None:
        raise ValueError("class_labels were given to an unconditional model (built with num_class_embeds=None)")
    has_null = config.get("null_class_embed", False)
    if class_labels is None:
        if not has_null:
            raise ValueError(f"this model is class-conditional (num_class_embeds={num_classes}): pass class_labels")
        return num_classes  # "no class"
    labels = torch.as_tensor(class_labels)
    highest = num_classes if has_null else num_classes - 1
    if labels.numel() and (labels.min() < 0 or labels.max() > highest):
        allowed = f"0..{num_classes - 1}" + (f", or {num_classes} for no class" if has_null else "")
        raise ValueError(f"class_labels must lie in {allowed}; got {labels.flatten().tolist()}")
    return class_labels

# ---- embeddings.py -----------------------------------------------------------
"""The time embedding: how the U-Net is told which step t of the diffusion it is denoising.

One network eps_theta(x_t, t) serves every step t = 0 .. T-1 (Ho et al. 2020, sec. 3.2), so t must reach
every block. It is encoded the way the Transformer encodes positions (Vaswani et al. 2017, sec. 3.5):

    PE(t)_i          = sin(t * omega_i)      for i = 0 .. d/2 - 1
    PE(t)_{d/2 + i}  = cos(t * omega_i)
    omega_i          = 10000 ** (-i / (d/2))     (Vaswani's 1 / 10000^(2i/d))

i.e. d/2 frequencies in a geometric progression from 1 down to 1/10000, the sines first and the cosines
after (Vaswani interleaves them; the order does not matter to the layer that reads them). Every t gets a
distinct, smooth, bounded code and neighbouring steps get similar codes.

The code is then mapped by a small MLP, Linear -> GELU -> Linear, to time_dim = 4 * dim (the width
Ho et al.'s U-Net uses); each block projects this vector to what it needs (see blocks.py).
"""

import math

import torch
from torch import nn


def sinusoidal_embedding(timesteps, dim, max_period=10000.0):
    """Vaswani et al. 2017, sec. 3.5: PE(t) = [sin(t * omega_i), cos(t * omega_i)], omega_i = max_period^(-i/(dim/2)).

    timesteps: (B,) tensor of (possibly fractional) steps. Returns a float32 (B, dim) tensor.
    """
    if dim % 2 != 0:
        raise ValueError(f"the sinusoidal embedding needs an even dim (a sine and a cosine per frequency), got {dim}")
    half = dim // 2
    exponent = torch.arange(half, device=timesteps.device, dtype=torch.float32) * (-math.log(max_period) / half)
    omega = torch.exp(exponent)  # (half,)
    angles = timesteps.to(torch.float32)[:, None] * omega[None, :]  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class SinusoidalPositionEmbeddings(nn.Module):
    """The fixed (parameter-free) code PE(t) of `sinusoidal_embedding`, as a module."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, timesteps):
        return sinusoidal_embedding(timesteps, self.dim)


class TimeEmbedding(nn.Module):
    """t -> PE(t) (dim) -> Linear -> GELU -> Linear -> (time_dim), the vector every block is conditioned on."""

    def __init__(self, dim, time_dim):
        super().__init__()
        self.sinusoidal = SinusoidalPositionEmbeddings(dim)
        self.linear_1 = nn.Linear(dim, time_dim)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(time_dim, time_dim)

    def forward(self, timesteps):
        pe = self.sinusoidal(timesteps).to(self.linear_1.weight.dtype)  # computed in float32, then the model's dtype
        return self.linear_2(self.act(self.linear_1(pe)))

# ---- fused.py ----------------------------------------------------------------
"""Two blocks of blocks.py in equivalent forms that compute less: what the U-Net runs.

Same parameters, same outputs up to float rounding (tests/unit/unet/test_fused.py checks each against
its definition in blocks.py, and the U-Net built either way); a checkpoint is the same either way.

1. FiLM folded into the GroupNorm (`FusedResnetBlock`). GroupNorm's own affine (gamma, beta per channel)
   and the scale-shift (per example and channel) compose into one affine per (example, channel):

       GroupNorm(h) (1 + scale) + shift = normalize(h) [gamma (1 + scale)] + [beta (1 + scale) + shift]

   and a per-example affine is a per-channel affine of the batch seen as one example with B C channels
   and B groups groups ((B, C, H, W) -> (1, B C, H, W), a view). One kernel replaces a norm and a
   broadcast multiply-add over the whole feature map.

2. Nearest-neighbour upsampling then a 3x3 conv, as one transposed convolution (`FusedUpsample`; the
   "sub-pixel" view of Shi et al. 2016). Each output pixel sees the upsampled map through 3x3 taps that
   land on only 2x2 distinct input pixels. Along one axis, even outputs 2i read inputs (i - 1, i) with
   taps (w_0, w_1 + w_2), odd outputs 2i + 1 read (i, i + 1) with taps (w_0 + w_1, w_2). A transposed
   convolution (stride 2, padding 1) applies kernel entry k = p + 1 - 2i from input i to output p, so its
   kernel along one axis is

       K' = (w_2, w_1 + w_2, w_0 + w_1, w_0) = M w,   M = [[0,0,1], [0,1,1], [1,1,0], [1,0,0]]

   and in 2-D K' = M W M^T: 16 multiply-adds per input channel and pixel instead of 36, and no 4x copy
   of the input. The parameter stays the 3x3 kernel W.
"""

import torch
import torch.nn.functional as F



def scale_shift_group_norm(norm, h, scale, shift):
    """GroupNorm(h) (1 + scale) + shift as one GroupNorm over B C channels (1. above).

    norm: the nn.GroupNorm (its groups, gamma, beta, eps); h: (B, C, H, W); scale, shift: (B, C).
    The affine is computed in float32 and handed to the norm in h's dtype.
    """
    b, c = h.shape[:2]
    scale = scale.float() + 1
    weight = (norm.weight.float() * scale).reshape(b * c)  # gamma' = gamma (1 + scale)
    bias = torch.addcmul(shift.float(), norm.bias.float(), scale).reshape(b * c)  # beta' = beta (1 + scale) + shift
    dtype = torch.float32 if torch.is_autocast_enabled(h.device.type) else h.dtype  # autocast: group_norm in float32
    out = F.group_norm(h.reshape(1, b * c, *h.shape[2:]), b * norm.num_groups, weight.to(dtype), bias.to(dtype), norm.eps)
    return out.view(h.shape)


class FusedResnetBlock(ResnetBlock):
    """`ResnetBlock` with its first GroupNorm and the FiLM computed as one GroupNorm."""

    def forward(self, x, emb):
        scale, shift = self.time_proj(F.silu(emb)).chunk(2, dim=1)
        h = F.silu(scale_shift_group_norm(self.norm1, self.conv1(x), scale, shift))
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.res_conv(x)


# M: the 3 taps of a 3x3 kernel along one axis -> the 4 taps of the equivalent stride-2 transposed kernel.
_TRANSPOSED_TAPS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


class FusedUpsample(Upsample):
    """`Upsample` (nearest x2, 3x3 conv) as one stride-2 transposed convolution with a 4x4 kernel M W M^T."""

    def forward(self, x):
        m = _TRANSPOSED_TAPS.to(self.conv.weight)
        kernel = torch.einsum("pr,oirs,qs->iopq", m, self.conv.weight, m)  # (C_in, C_out, 4, 4), as conv_transpose2d wants
        return F.conv_transpose2d(x, kernel, self.conv.bias, stride=2, padding=1)

# ---- unet_2d.py --------------------------------------------------------------
"""The noise-prediction network eps_theta(x_t, t) of DDPM: a time-conditioned U-Net.

Ho et al. 2020 train eps_theta to recover the noise eps that made x_t = sqrt(alpha_bar_t) x_0 +
sqrt(1 - alpha_bar_t) eps (eq. (4); alpha_bar_t is `alphas_cumprod`), so the network maps an image
and a step to a tensor of the same shape:

    eps_theta: (B, C, H, W) x (B,) -> (B, C_out, H, W)          (C_out = C when it predicts eps)

The architecture is the blog's (Rogge & Rasul 2022, "The Annotated Diffusion Model"), itself a small
version of Ho et al.'s PixelCNN++-style U-Net (Ronneberger et al. 2015). With L = len(dim_mults) levels,
widths w_i = dim * dim_mults[i], S the input size and emb the time embedding (embeddings.py):

    init conv 7x7           C -> init_dim                     at S           (kept as r, the last skip)
    down level i = 0..L-1   block   w_{i-1} -> w_i            at S / 2^i     push  (w_{-1} = init_dim)
                            block   w_i -> w_i, linear attn                  push
                            downsample w_i -> w_i to S / 2^(i+1)   (last level: a 3x3 conv, no halving)
    bottleneck              block, softmax attention, block   at S / 2^(L-1), width w_{L-1}
    up level i = L-1..0     block   [x, pop] 2 w_i -> w_i
                            block   [x, pop] 2 w_i -> w_i, linear attn
                            upsample w_i -> w_{i-1} to S / 2^(i-1)  (level 0: a 3x3 conv w_0 -> w_0)
    final                   block [x, r] w_0 + init_dim -> dim, then 1x1 conv dim -> C_out

Every block sees emb; "[x, pop]" concatenates the skip pushed by the mirror block on the way down (the
seed concatenates after each block, so two skips per level). Blocks are ResNet or ConvNeXt (blocks.py);
attention is softmax in the bottleneck and linear elsewhere (attention.py): by default only on the
levels between the full resolution and the bottleneck's ("linear attn" above is skipped at i = 0 and
i = L-1), on every level as in the blog with linear_attention_levels="all" (what `Unet()` builds).
The input size must survive L - 1 halvings: H and W multiples of 2^(L-1) (28 -> 14 -> 7 for
dim_mults (1, 2, 4)).

Class conditioning (optional, `num_class_embeds`): a learned vector per class is added to emb, so
every block sees (t, y); it is what classifier-free guidance (Ho & Salimans 2022) builds on.

Everything that shapes the network is a `register_to_config` argument, so `save_pretrained` /
`from_pretrained` rebuild it from config.json alone, and the model is a drop-in `unet` for diffusers'
pipelines: forward(sample, timestep).sample. Its attention layers follow diffusers' processor convention
(`AttentionMixin`): `unet.attn_processors` is a dict keyed by module path + ".processor" (e.g.
"mid_attention.fn.processor"), and `unet.set_attn_processor(p)` (one processor, or such a dict) swaps what
they compute, e.g. for a processor that records the weights (annotated_pipeline.visualize.attention).

This file imports its siblings directly (embeddings, blocks, attention, config, fused) and nothing from the package,
so that diffusers' remote-code loader can copy it with those files into a saved pipeline.
"""

from dataclasses import dataclass

import torch
from torch import nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import AttentionMixin
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput



@dataclass
class AnnotatedUNet2DOutput(UNet2DOutput):
    """diffusers' `UNet2DOutput` (`.sample`, `[0]`, `.to_tuple()`) that torch functions also accept as a tensor.

    Any torch function given this object sees its `.sample` (the `__torch_function__` protocol), so the
    blog's loss `F.smooth_l1_loss(noise, model(x_noisy, t))` and `betas_t * model(x, t)` work unchanged,
    while diffusers' pipelines keep reading `model(x, t).sample`.
    """

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        def unwrap(a):
            if isinstance(a, cls):
                return a.sample
            if isinstance(a, (list, tuple)):
                return type(a)(unwrap(x) for x in a)
            return a

        return func(*unwrap(tuple(args)), **{k: unwrap(v) for k, v in (kwargs or {}).items()})


class AnnotatedUNet2DModel(ModelMixin, ConfigMixin, AttentionMixin):
    """eps_theta(x_t, t[, y]): the blog's U-Net as a diffusers model.

    Args:
        sample_size: image side (int) or (height, width); None accepts any size that fits (pipelines need it).
        in_channels: channels of x_t (1 for Fashion-MNIST).
        out_channels: channels of the prediction; None means in_channels (predicting eps).
        dim: base width; the time embedding is sinusoidal of width dim, projected to 4 * dim.
        init_dim: width of the 7x7 input convolution; None means dim // 3 * 2, as in the blog.
        dim_mults: width multiplier of each level, w_i = dim * dim_mults[i]; one level per entry.
        block_type: "resnet" (Wide-ResNet, GroupNorm + SiLU, time as scale-shift) or "convnext".
        resnet_block_groups: GroupNorm groups of the ResNet blocks; must divide every block width.
        convnext_mult: expansion factor inside the ConvNeXt blocks.
        attention_heads, attention_head_dim: heads and width per head of every attention layer.
        linear_attention_levels: the levels (0 = full resolution) whose two blocks (down and up) carry a
            linear attention. "middle" (the default) means levels 1 .. L-2, neither the full resolution,
            where N = H * W is largest and linear attention costs most (Ho et al. 2020 and diffusers' DDPM
            U-Nets have no attention there either), nor the bottleneck's resolution, where the softmax
            attention already sees every position: for dim_mults (1, 2, 4), one linear attention per
            direction at 14x14. "below_full_resolution" means levels 1 .. L-1 (14x14 and 7x7, the default
            before "middle"); "all" (or None, its spelling in older configs) means every level, the blog's
            architecture, which `Unet()` builds. A sequence of level indices picks them explicitly. The
            bottleneck's softmax attention is always there. Saved configs hold the resolved tuple.
        num_class_embeds: number of classes for class conditioning; None for an unconditional model.
        null_class_embed: with num_class_embeds = K, one more learned vector, label K, for "no class"
            (y = empty set). Label dropout trains it (`train_accelerate.py --class_dropout_prob`) and
            classifier-free guidance needs it: eps_theta(x_t, t, empty) is the unconditional model
            inside the conditional one (Ho & Salimans 2022). Such a model also accepts
            class_labels=None, which means label K for every image.

    Defaults are the blog's Fashion-MNIST setting (28x28x1 images, dim_mults (1, 2, 4), ResNet blocks with
    4 groups, attention 4 heads x 32) at base width 16 instead of the blog's 28, with linear attention at
    the middle level only (see linear_attention_levels). On 2 CPU cores this trains about 2x as many
    images per minute as the previous default (dim 28, linear attention at 14x14 and 7x7) and reaches a
    better sample quality in the same minutes of training, though not in the same number of steps;
    benchmarks/RESULTS.md has the measurements. `AnnotatedUNet2DModel(dim=28, linear_attention_levels="all")`
    is the blog's network.

    Gradient checkpointing (`enable_gradient_checkpointing()`, diffusers' switch) recomputes each block's
    activations in the backward pass instead of storing them: the same gradients for less memory, at
    the cost of a second forward pass through each block.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size=28,
        in_channels=1,
        out_channels=None,
        dim=16,
        init_dim=None,
        dim_mults=(1, 2, 4),
        block_type="resnet",
        resnet_block_groups=4,
        convnext_mult=2,
        attention_heads=4,
        attention_head_dim=32,
        num_class_embeds=None,
        linear_attention_levels="middle",
        null_class_embed=False,
    ):
        super().__init__()
        self.gradient_checkpointing = False  # set by enable_gradient_checkpointing() (ModelMixin)
        # ---- fail early: every impossible configuration is refused here, with what would work ----
        init_dim, dim_mults, sample_size, linear_attention_levels, attended = check_config(
            sample_size=sample_size, in_channels=in_channels, out_channels=out_channels, dim=dim, init_dim=init_dim,
            dim_mults=dim_mults, block_type=block_type, resnet_block_groups=resnet_block_groups,
            convnext_mult=convnext_mult, attention_heads=attention_heads, attention_head_dim=attention_head_dim,
            num_class_embeds=num_class_embeds, linear_attention_levels=linear_attention_levels,
            null_class_embed=null_class_embed)
        widths = [dim * m for m in dim_mults]
        num_levels = len(dim_mults)
        # Lists and tuples both come back as lists from config.json: store one canonical form.
        self.register_to_config(dim_mults=dim_mults, sample_size=sample_size, linear_attention_levels=linear_attention_levels)

        # ---- the network ----
        time_dim = 4 * dim
        if block_type == "resnet":
            def block(c_in, c_out):
                return FusedResnetBlock(c_in, c_out, time_dim, groups=resnet_block_groups)  # blocks.ResnetBlock, computed faster
        else:
            def block(c_in, c_out):
                return ConvNextBlock(c_in, c_out, time_dim, mult=convnext_mult)

        def linear_attention(c, level):
            if level not in attended:
                return nn.Identity()
            return PreNormResidual(c, LinearAttention(c, attention_heads, attention_head_dim))

        self.time_embedding = TimeEmbedding(dim, time_dim)
        self.class_embedding = None
        if num_class_embeds is not None:  # rows 0..K-1 are the classes, row K (if any) is "no class"
            self.class_embedding = nn.Embedding(num_class_embeds + int(null_class_embed), time_dim)
        self.init_conv = nn.Conv2d(in_channels, init_dim, kernel_size=7, padding=3)

        self.down_levels = nn.ModuleList()  # level i: block w_{i-1} -> w_i, block w_i -> w_i, linear attn, downsample
        for i, (c_prev, w) in enumerate(zip([init_dim] + widths[:-1], widths)):
            last = i == num_levels - 1
            self.down_levels.append(nn.ModuleDict({
                "block1": block(c_prev, w),
                "block2": block(w, w),
                "attention": linear_attention(w, i),
                "downsample": nn.Conv2d(w, w, kernel_size=3, padding=1) if last else Downsample(w, w),
            }))

        mid = widths[-1]  # the bottleneck: block, softmax attention, block
        self.mid_block1 = block(mid, mid)
        self.mid_attention = PreNormResidual(mid, Attention(mid, attention_heads, attention_head_dim))
        self.mid_block2 = block(mid, mid)

        self.up_levels = nn.ModuleList()  # level i = L-1..0: block [x, pop] 2 w_i -> w_i twice, linear attn, upsample
        for i in reversed(range(num_levels)):
            w = widths[i]
            self.up_levels.append(nn.ModuleDict({
                "block1": block(2 * w, w),
                "block2": block(2 * w, w),
                "attention": linear_attention(w, i),
                "upsample": nn.Conv2d(w, w, kernel_size=3, padding=1) if i == 0 else FusedUpsample(w, widths[i - 1]),
            }))

        self.final_block = block(widths[0] + init_dim, dim)
        self.final_conv = nn.Conv2d(dim, out_channels if out_channels is not None else in_channels, kernel_size=1)

    def set_default_attn_processor(self):
        """Give every attention layer its default processor back (the math of attention.py)."""
        self.set_attn_processor({
            name: SoftmaxAttnProcessor() if isinstance(self.get_submodule(name.rsplit(".", 1)[0]), Attention)
            else LinearAttnProcessor()
            for name in self.attn_processors
        })

    def _per_example(self, name, value, batch, device):
        """An int/float, a 0-d tensor or a (B,) / (1,) tensor -> a (B,) tensor on `device` (no host sync)."""
        if not torch.is_tensor(value):
            value = torch.tensor([value], device=device)
        elif value.ndim == 0:
            value = value[None]
        if value.ndim != 1 or value.shape[0] not in (1, batch):
            raise ValueError(
                f"{name} must be a number, a 0-d tensor or a tensor of shape ({batch},) for a batch of {batch}, "
                f"got shape {tuple(value.shape)}"
            )
        return value.to(device).expand(batch)

    def _run_block(self, block, *inputs):
        """block(*inputs), through the checkpointing function while training with gradient checkpointing on."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(block, *inputs)
        return block(*inputs)

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        """eps_theta(x_t, t[, y]).

        Args:
            sample: x_t, (B, in_channels, H, W) with H and W multiples of 2**(len(dim_mults) - 1).
            timestep: t, an int/float, a 0-d tensor or a (B,) tensor (broadcast to the batch).
            class_labels: y, (B,) class indices (or one int / 0-d tensor for the whole batch) in
                0..K-1, or K ("no class") when the model has a null_class_embed; required exactly when
                the model was built with num_class_embeds, except that None means K for a model with a
                null_class_embed.
            return_dict: return an `AnnotatedUNet2DOutput` (`.sample`) if True, else the tuple (sample,).
        """
        check_sample(self.config, sample)  # config.py: shape and side lengths
        batch = sample.shape[0]
        t = self._per_example("timestep", timestep, batch, sample.device)
        emb = self.time_embedding(t)  # MLP(sinusoidal(t)), embeddings.py
        if self.class_embedding is not None or class_labels is not None:
            if class_labels is not None:
                class_labels = self._per_example("class_labels", class_labels, batch, sample.device)
            y = check_class_labels(self.config, class_labels)  # None -> the "no class" row, where there is one
            emb = emb + self.class_embedding(self._per_example("class_labels", y, batch, sample.device).long())

        run = self._run_block
        x = self.init_conv(sample)
        r = x
        skips = []
        for level in self.down_levels:
            x = run(level["block1"], x, emb)
            skips.append(x)
            x = run(level["attention"], run(level["block2"], x, emb))
            skips.append(x)
            x = level["downsample"](x)

        x = run(self.mid_block1, x, emb)
        x = run(self.mid_attention, x)
        x = run(self.mid_block2, x, emb)

        for level in self.up_levels:
            x = run(level["block1"], torch.cat([x, skips.pop()], dim=1), emb)
            x = run(level["block2"], torch.cat([x, skips.pop()], dim=1), emb)
            x = level["upsample"](run(level["attention"], x))

        x = run(self.final_block, torch.cat([x, r], dim=1), emb)
        out = self.final_conv(x)
        if not return_dict:
            return (out,)
        return AnnotatedUNet2DOutput(sample=out)


_UNET_EXTRA_KWARGS = ("attention_heads", "attention_head_dim", "num_class_embeds", "null_class_embed")


def Unet(
    dim,
    init_dim=None,
    out_dim=None,
    dim_mults=(1, 2, 4, 8),
    channels=3,
    resnet_block_groups=4,
    use_convnext=False,
    convnext_mult=2,
    sample_size=None,
    linear_attention_levels="all",
    **kwargs,
):
    """The blog's constructor, `Unet(dim=28, channels=1, dim_mults=(1, 2, 4))`, building an AnnotatedUNet2DModel.

    Argument names are the blog's (channels, out_dim, use_convnext); they map to the model's config
    (in_channels, out_channels, block_type). sample_size=None leaves the size open (any multiple of
    2**(len(dim_mults) - 1)); pass it to use the model in a diffusers pipeline. Like the blog it puts a
    linear attention on every level (linear_attention_levels="all"; AnnotatedUNet2DModel's default skips
    the full-resolution level). Extra keyword arguments: attention_heads, attention_head_dim,
    num_class_embeds, null_class_embed; the blog's self_condition=False and with_time_emb=True are accepted (their only
    supported values).
    """
    if kwargs.pop("self_condition", False):
        raise ValueError("self_condition=True is not supported (the model sees x_t, t and optionally a class only)")
    if not kwargs.pop("with_time_emb", True):
        raise ValueError("with_time_emb=False is not supported: a DDPM network must be told the step t")
    unknown = sorted(set(kwargs) - set(_UNET_EXTRA_KWARGS))
    if unknown:
        raise ValueError(
            f"Unet() got unknown arguments {unknown}; besides the blog's it accepts {list(_UNET_EXTRA_KWARGS)}"
        )
    return AnnotatedUNet2DModel(
        sample_size=sample_size,
        in_channels=channels,
        out_channels=out_dim,
        dim=dim,
        init_dim=init_dim,
        dim_mults=dim_mults,
        block_type="convnext" if use_convnext else "resnet",
        resnet_block_groups=resnet_block_groups,
        convnext_mult=convnext_mult,
        linear_attention_levels=linear_attention_levels,
        **kwargs,
    )
