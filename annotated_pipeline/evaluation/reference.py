"""The images a pipeline's samples are judged against: the reference split and the floor's training images.

For Fashion-MNIST (the default) both come from `data_root`: the official IDX files (SHA-256 checked)
or `test.parquet`/`train.parquet`; any other labelled image set comes through `labelled.py`. Images
leave here as the classifier reads them: (N, C, S, S) floats in [-1, 1], x = pixels / 127.5 - 1 (Ho et
al. 2020, section 3.3). Every choice of images is seeded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"


def load_split(data_root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and int64 labels (N,) of one split.

    From `{data_root}/{split}.parquet` if present (the format `python -m
    annotated_pipeline.datasets.fashion_mnist --to-parquet` writes), else from the official IDX files
    in `data_root`, checked against their SHA-256.
    """
    parquet = Path(data_root) / f"{split}.parquet"
    if parquet.is_file():
        import io

        import pyarrow.parquet as pq
        from PIL import Image

        table = pq.read_table(parquet, columns=["image", "label"])
        images = [np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("L")) for cell in table.column("image").to_pylist()]
        return np.stack(images), np.asarray(table.column("label").to_pylist(), dtype=np.int64)
    from annotated_pipeline.datasets.fashion_mnist import load_fashion_mnist_arrays

    return load_fashion_mnist_arrays(data_root, split=split)


def load_reference_images(data_root: str | os.PathLike, split: str) -> np.ndarray:
    """uint8 (N, 28, 28) images of one split (see `load_split`)."""
    return load_split(data_root, split)[0]


def choose(images: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded choice of n distinct images (numpy PCG64), in sorted index order."""
    if n > len(images):
        raise ValueError(f"asked for {n} reference images but the split has only {len(images)}")
    return images[np.sort(np.random.default_rng(seed).choice(len(images), size=n, replace=False))]


def uint8_to_classifier_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).float() / 127.5 - 1.0


def reference_images(classifier, num_samples, seed, data_root=DEFAULT_ROOT, reference=None, num_reference=None,
                     image_column="image"):
    """(reference images, the floor's N training images, what the reference is), (N, C, S, S) in [-1, 1].

    Without `reference`: the Fashion-MNIST splits in `data_root` (the whole test split, or a seeded
    choice of `num_reference`); with it: DATA's test split (or a seeded half) and train split
    (`labelled.reference_splits`). The floor's images are a seeded choice (seed + 1) of N."""
    if reference is None:
        test_images = load_reference_images(data_root, "test")
        if num_reference is not None:
            test_images = choose(test_images, num_reference, seed)
        train_images = choose(load_reference_images(data_root, "train"), num_samples, seed + 1)
        return uint8_to_classifier_input(test_images), uint8_to_classifier_input(train_images), "test images"
    from annotated_pipeline.datasets import labelled

    test_images, pool, reference_split = labelled.reference_splits(reference, classifier.input_shape, image_column, seed)
    if num_reference is not None:
        test_images = choose(test_images, num_reference, seed)
    return test_images, choose(pool, num_samples, seed + 1), reference_split

