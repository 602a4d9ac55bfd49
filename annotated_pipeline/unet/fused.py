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

from .blocks import ResnetBlock, Upsample


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
