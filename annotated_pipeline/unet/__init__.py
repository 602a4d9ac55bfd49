"""The noise-prediction network eps_theta(x_t, t) of DDPM (Ho et al. 2020), read in this order:

    embeddings.py  the sinusoidal time embedding (Vaswani et al. 2017) and its MLP
    blocks.py      ResNet and ConvNeXt blocks conditioned on time; down- and up-sampling
    attention.py   linear attention (Shen et al. 2018) and softmax attention (Vaswani et al. 2017)
    config.py      what a configuration may be (checked before a layer is built)
    unet_2d.py     the U-Net that wires them together, AnnotatedUNet2DModel, and the blog's Unet(...)
"""

from .config import BLOCK_TYPES, LINEAR_ATTENTION_NAMES
from .unet_2d import AnnotatedUNet2DModel, AnnotatedUNet2DOutput, Unet

__all__ = ["BLOCK_TYPES", "LINEAR_ATTENTION_NAMES", "AnnotatedUNet2DModel", "AnnotatedUNet2DOutput", "Unet"]
