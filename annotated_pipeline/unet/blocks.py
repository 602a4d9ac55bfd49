"""The convolutional building blocks of the U-Net, each conditioned on the time embedding.

ResnetBlock, the Wide-ResNet block (Zagoruyko & Komodakis 2016) that Ho et al. 2020 (appendix B) use,
with GroupNorm (Wu & He 2018) and SiLU, in the blog's order (conv -> norm -> act). The time embedding
enters by scale-shift (FiLM, Perez et al. 2018; "AdaGN" in Nichol & Dhariwal 2021) after the first norm:

    [scale, shift] = Linear(SiLU(emb))                          emb: the (B, time_dim) time embedding
    h   = SiLU(GroupNorm(Conv3x3(x)) * (1 + scale) + shift)
    h   = SiLU(GroupNorm(Conv3x3(h)))
    out = h + Conv1x1(x)          (the 1x1 only when the width changes, the identity otherwise)

GroupNorm's own affine (gamma, beta per channel) and the scale-shift (per example and channel) compose
into one affine per (example, channel), so the first norm and the FiLM are computed as one GroupNorm:

    GroupNorm(h) * (1 + scale) + shift = normalize(h) * [gamma (1 + scale)] + [beta (1 + scale) + shift]

and a per-example affine is a per-channel affine of the batch seen as one example with B * C channels
and B * groups groups ((B, C, H, W) -> (1, B * C, H, W), a view). One kernel instead of a norm and a
broadcast multiply-add over the full feature map (5x faster in bfloat16 on CPU).

ConvNextBlock, the ConvNeXt block (Liu et al. 2022) as the blog adapts it. The time embedding is added
(not scale-shifted) after the depthwise convolution:

    h   = DepthwiseConv7x7(x) + Linear(GELU(emb))
    h   = Conv3x3(GroupNorm(1)(GELU(Conv3x3(GroupNorm(1)(h)))))   widths C_in -> mult * C_out -> C_out
    out = h + Conv1x1(x)

Resolution changes between the U-Net's levels:

    Downsample: pixel-unshuffle 2x2 ((C, 2H, 2W) -> (4C, H, W), space to depth) then a 1x1 convolution.
                That composition is one linear map of each 2x2 patch, i.e. exactly a 2x2 convolution with
                stride 2, which is what is computed (one kernel, no reshuffled copy of the feature map).
    Upsample:   nearest-neighbour x2, then a 3x3 convolution. Each output pixel sees the upsampled
                map through 3x3 taps that land on only 2x2 distinct input pixels, so the composition is
                a transposed convolution of the low-resolution map with stride 2 and a 4x4 kernel (the
                "sub-pixel" view of Shi et al. 2016): 16 multiply-adds per input channel and input pixel
                instead of 36, and no 4x copy of the input. Along one axis, even outputs 2i read input
                pixels (i - 1, i) with taps (w_0, w_1 + w_2), odd outputs 2i + 1 read (i, i + 1) with
                taps (w_0 + w_1, w_2); a transposed convolution (padding 1) applies kernel entry
                k = p + 1 - 2i from input i to output p, so its kernel along one axis is
                K' = (w_2, w_1 + w_2, w_0 + w_1, w_0) = M w, M = [[0,0,1], [0,1,1], [1,1,0], [1,0,0]],
                and in 2-D K' = M W M^T. The parameter stays the 3x3 kernel W (same weights and
                checkpoints as the plain form, which `forward_reference` computes).
"""

import torch
import torch.nn.functional as F
from torch import nn


def scale_shift_group_norm(norm, h, scale, shift):
    """GroupNorm(h) * (1 + scale) + shift (FiLM after the norm) as one GroupNorm over B * C channels.

    norm: the nn.GroupNorm (its groups, gamma, beta, eps); h: (B, C, H, W); scale, shift: (B, C).
    gamma' = gamma (1 + scale), beta' = beta (1 + scale) + shift, per (example, channel); see the module
    docstring. The affine is computed in float32 and handed to the norm in h's dtype.
    """
    b, c = h.shape[:2]
    scale = scale.float() + 1
    weight = (norm.weight.float() * scale).reshape(b * c)
    bias = torch.addcmul(shift.float(), norm.bias.float(), scale).reshape(b * c)
    if torch.is_autocast_enabled(h.device.type):
        dtype = torch.float32  # autocast runs group_norm in float32 (it casts h itself)
    else:
        dtype = h.dtype
    out = F.group_norm(h.reshape(1, b * c, *h.shape[2:]), b * norm.num_groups, weight.to(dtype), bias.to(dtype), norm.eps)
    return out.view(h.shape)


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
        scale, shift = self.time_proj(F.silu(emb)).chunk(2, dim=1)  # each (B, C_out)
        h = F.silu(scale_shift_group_norm(self.norm1, self.conv1(x), scale, shift))
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.res_conv(x)


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
        h = self.depthwise(x) + self.time_proj(F.gelu(emb))[:, :, None, None]
        h = self.conv1(self.norm1(h))
        h = self.conv2(self.norm2(F.gelu(h)))
        return h + self.res_conv(x)


class Downsample(nn.Module):
    """Halve H and W: pixel-unshuffle 2x2 + 1x1 conv, computed as the equivalent 2x2 conv with stride 2."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size=2, stride=2)

    def forward(self, x):
        return self.conv(x)


# M: the 3 taps of a 3x3 kernel along one axis -> the 4 taps of the equivalent stride-2 transposed kernel.
_TRANSPOSED_TAPS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour x2, then a 3x3 conv, computed as one stride-2 transposed conv."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size=3, padding=1)

    def forward(self, x):
        m = _TRANSPOSED_TAPS.to(self.conv.weight)
        # K'[i, o] = M W[o, i] M^T: (C_in, C_out, 4, 4), the layout conv_transpose2d expects
        kernel = torch.einsum("pr,oirs,qs->iopq", m, self.conv.weight, m)
        return F.conv_transpose2d(x, kernel, self.conv.bias, stride=2, padding=1)

    def forward_reference(self, x):
        """The definition: nearest-neighbour x2, then the 3x3 conv (2.25x the multiply-adds of `forward`)."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
