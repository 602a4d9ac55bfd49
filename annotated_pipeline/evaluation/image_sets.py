"""What `annotated-pipeline fid` reads: a folder of images, or the statistics of one saved as `.npz`.

A folder: every file with an image extension (IMAGE_EXTENSIONS) below it, sorted, read as uint8 RGB
(PIL's convert("RGB"): grey replicated), all of one size, checked from the file headers before any
image is decoded. Statistics: an `.npz` with `mu` (D,) and `sigma` (D, D), the keys pytorch-fid's
`--save-stats` writes, so its files are read too; ours add `features` (N, D), so that the KID can
be computed from a file as well, `num_images` and `settings` (the network, its SHA-1, the resize and
precision as JSON), which must match those of the features they are compared with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files below `folder`, sorted; ValueError for a missing folder or one without images."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{folder} is not a folder of images nor a .npz statistics file")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def common_size(files: list[Path]) -> tuple[int, int]:
    """The (width, height) all the images share, read from their headers; ValueError naming two that differ."""
    from PIL import Image, UnidentifiedImageError

    first = None
    for path in files:
        try:
            with Image.open(path) as image:
                size = image.size
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"cannot read {path} as an image: {error}") from None
        if first is None:
            first = (path, size)
        elif size != first[1]:
            raise ValueError(f"the images must all have one size: {first[0]} is {first[1][0]}x{first[1][1]}, "
                             f"{path} is {size[0]}x{size[1]}")
    return first[1]


def read_batches(files: list[Path], batch_size: int):
    """uint8 RGB batches (n, 3, H, W) of the files, in order."""
    from PIL import Image

    for start in range(0, len(files), batch_size):
        arrays = []
        for path in files[start:start + batch_size]:
            with Image.open(path) as image:
                arrays.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
        yield torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def save_statistics(path: str | os.PathLike, features: torch.Tensor, settings: dict) -> None:
    """Write mu, sigma (float64, as frechet.feature_statistics), the features, N and the settings to `path`."""
    from .frechet import feature_statistics

    mu, sigma = feature_statistics(features)
    with open(path, "wb") as f:  # a file object: numpy would append .npz to a name without it
        np.savez(f, mu=mu.numpy(), sigma=sigma.numpy(), features=features.float().numpy(),
                 num_images=len(features), settings=json.dumps(settings, sort_keys=True))


def load_statistics(path: str | os.PathLike) -> dict:
    """{"mu", "sigma", "features" (or None), "num_images" (or None), "settings" (or None)} from an .npz;
    ValueError if it is not one or lacks mu and sigma."""
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {key: data[key] for key in data.files}
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path} as .npz statistics: {error}") from None
    if "mu" not in stored or "sigma" not in stored:
        raise ValueError(f"{path} has no 'mu' and 'sigma' arrays (keys: {', '.join(stored) or 'none'})")
    features = stored.get("features")
    return {"mu": torch.from_numpy(stored["mu"]), "sigma": torch.from_numpy(stored["sigma"]),
            "features": None if features is None else torch.from_numpy(features),
            "num_images": int(stored["num_images"]) if "num_images" in stored else None,
            "settings": json.loads(str(stored["settings"])) if "settings" in stored else None}


def check_same_settings(first: tuple[str, dict | None], second: tuple[str, dict | None]) -> None:
    """ValueError if two (name, settings) pairs both know their settings and they differ."""
    (name1, settings1), (name2, settings2) = first, second
    if settings1 is None or settings2 is None or settings1 == settings2:
        return
    differ = sorted(key for key in set(settings1) | set(settings2) if settings1.get(key) != settings2.get(key))
    raise ValueError(f"{name1} and {name2} were computed with other settings: "
                     + "; ".join(f"{key} {settings1.get(key)!r} vs {settings2.get(key)!r}" for key in differ))
