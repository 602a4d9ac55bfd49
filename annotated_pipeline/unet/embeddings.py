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
