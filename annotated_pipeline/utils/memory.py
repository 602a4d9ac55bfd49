"""How much memory a device has, and how much a U-Net's feature maps take: the one estimate behind
training's bound (training/bounds.py) and sampling's (a count of images whose outputs cannot fit).

A U-Net holds, for one image, `feature_values` numbers: the sum over its levels l of
dim * dim_mults[l] * (resolution / 2^l)^2. What it keeps per such number was measured with the peak
resident memory of one call on a CPU (torch 2.13, dim 32 and 64, dim_mults (1, 2, 4), 28 and 32 px,
batches of 128 and 256): 52 to 61 bytes in a training step (forward and backward), 23 to 33 bytes
in a sampling call (no gradients); both rounded up below.

What cannot fit in the device's whole memory is refused; what fits it but not the memory free now (Linux's
MemAvailable, a GPU's free memory) gets one warning, since other programs may give memory back.
"""

import math
import os
import warnings

import torch

TRAINING_BYTES_PER_VALUE = 64
SAMPLING_BYTES_PER_VALUE = 40


def device_memory_bytes(device):
    """Total memory of `device`: the GPU's, else the machine's physical RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def available_memory_bytes(device):
    """Memory free for a new allocation now: a GPU's free memory, else MemAvailable from /proc/meminfo (RAM that
    can be had without swapping, page cache included); None where the system does not say."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def warn_if_short(need, device, what):
    """One warning when `need` bytes fit the device's memory but not what is free on it now."""
    free = available_memory_bytes(device)
    if free is not None and need > free:
        warnings.warn(f"{what} needs about {need / 2**30:.1f} GiB and only {free / 2**30:.1f} GiB is free now "
                      f"(of {describe_memory(device)}): it may swap or be killed if other programs keep theirs",
                      RuntimeWarning, stacklevel=3)


def describe_memory(device):
    """"this machine's 62.5 GiB of RAM" or "the 79.2 GiB of cuda:0"."""
    device = torch.device(device)
    have = device_memory_bytes(device) / 2**30
    return f"this machine's {have:.1f} GiB of RAM" if device.type != "cuda" else f"the {have:.1f} GiB of {device}"


def feature_values(resolution, dim, dim_mults):
    """The feature-map values of one image at every level of the U-Net (see the module docstring)."""
    return sum(dim * mult * (resolution / 2**level) ** 2 for level, mult in enumerate(dim_mults))


def sampling_memory_bytes(num_images, chunk, image_values, resolution, dim, dim_mults, guided=False):
    """A sampling call's peak: x_T and the finished images of all `num_images` (float32, kept three times:
    x_T, the outputs per chunk, and their concatenation), and the U-Net's feature maps for one chunk (twice
    the batch when classifier-free guidance doubles it). `image_values` = channels * height * width."""
    outputs = 3 * 4 * num_images * image_values
    chunk = min(chunk, num_images) * (2 if guided else 1)
    return outputs + SAMPLING_BYTES_PER_VALUE * chunk * feature_values(resolution, dim, dim_mults)


def unet_sampling_memory_bytes(unet, num_images, chunk, guided=False):
    """`sampling_memory_bytes` read off a U-Net's config (an AnnotatedUNet2DModel's dim/dim_mults; a diffusers
    UNet2DModel's block_out_channels)."""
    config = unet.config
    size = config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if config.get("dim") is not None:
        dim, dim_mults = config.dim, tuple(config.dim_mults)
    else:
        channels = tuple(config.get("block_out_channels") or (64,))
        dim, dim_mults = channels[0], tuple(c / channels[0] for c in channels)
    return sampling_memory_bytes(num_images, chunk, config.in_channels * height * width, math.sqrt(height * width),
                                 dim, dim_mults, guided)


def check_sampling_memory(unet, num_images, chunk, guided=False, device="cpu", lower="lower the number of images"):
    """A ValueError, before any work, when drawing `num_images` in chunks of `chunk` cannot fit in `device`'s memory."""
    need = unet_sampling_memory_bytes(unet, num_images, chunk, guided)
    if need > device_memory_bytes(device):
        raise ValueError(f"{num_images} images in chunks of {min(chunk, num_images)} need about {need / 2**30:.1f} GiB "
                         f"(their outputs and one chunk's U-Net), more than {describe_memory(device)}: {lower}")
    warn_if_short(need, device, f"drawing {num_images} images in chunks of {min(chunk, num_images)}")
