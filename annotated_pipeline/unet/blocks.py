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
