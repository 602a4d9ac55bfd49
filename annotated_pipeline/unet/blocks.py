"""The convolutional building blocks of the U-Net, each conditioned on the time embedding.

ResnetBlock, the Wide-ResNet block (Zagoruyko & Komodakis 2016) that Ho et al. 2020 (appendix B) use,
with GroupNorm (Wu & He 2018) and SiLU, in the blog's order (conv -> norm -> act). The time embedding
enters by scale-shift (FiLM, Perez et al. 2018; "AdaGN" in Nichol & Dhariwal 2021) after the first norm:

    [scale, shift] = Linear(SiLU(emb))                          emb: the (B, time_dim) time embedding
    h   = SiLU(GroupNorm(Conv3x3(x)) * (1 + scale) + shift)
    h   = SiLU(GroupNorm(Conv3x3(h)))
    out = h + Conv1x1(x)          (the 1x1 only when the width changes, the identity otherwise)

ConvNextBlock, the ConvNeXt block (Liu et al. 2022) as the blog adapts it. The time embedding is added
(not scale-shifted) after the depthwise convolution:

    h   = DepthwiseConv7x7(x) + Linear(GELU(emb))
    h   = Conv3x3(GroupNorm(1)(GELU(Conv3x3(GroupNorm(1)(h)))))   widths C_in -> mult * C_out -> C_out
    out = h + Conv1x1(x)

Resolution changes between the U-Net's levels:

    Downsample: pixel-unshuffle 2x2 ((C, 2H, 2W) -> (4C, H, W), space to depth) then a 1x1 convolution.
                That composition is one linear map of each 2x2 patch, i.e. exactly a 2x2 convolution with
                stride 2, which is what is computed (one kernel, no reshuffled copy of the feature map).
    Upsample:   nearest-neighbour x2, then a 3x3 convolution.

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
