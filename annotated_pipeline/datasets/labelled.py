"""A labelled image set as tensors, for the classifier, the quality numbers and the nearest-neighbour check.

    DATA    a local folder (an image folder with one sub-folder per class, parquet files, or the
            Fashion-MNIST IDX files: whatever `datasets.loading.load_training_dataset` reads), or a
            Hub data set id

Its splits are the ones `datasets` infers (train/ and test/ folders or files); `open_split` says when
a split is missing, so callers can fall back to a seeded share (`holdout_indices`). Images become
x = 2 p / 255 - 1 in [-1, 1] (Ho et al. 2020, section 3.3), exactly as the training data does
(`datasets.loading.make_transform`, centre crop, no flip), so a classifier, a reference set and a
diffusion model all see the same numbers for the same pixels.
"""

from __future__ import annotations

import os

import numpy as np
import torch


def open_split(data: str | os.PathLike, split: str = "train"):
    """One split of DATA as a `datasets.Dataset`, or None when DATA has no such split."""
    from annotated_pipeline.datasets.loading import load_training_dataset

    name = os.fspath(data)
    local = os.path.isdir(name)
    if not local and (os.path.exists(name) or name.startswith((".", "~", os.sep)) or name.count("/") > 1):
        what = "is a file, not a folder" if os.path.exists(name) else "does not exist"
        raise ValueError(f"{name} {what}: DATA is a local folder (images in one sub-folder per class, parquet files or "
                         "IDX files) or a Hub data set id of the form 'namespace/name'")
    try:
        return load_training_dataset(dataset_name=None if local else os.fspath(data),
                                     train_data_dir=os.fspath(data) if local else None, split=split)
    except ValueError as error:
        message = str(error)
        if f"split {split!r}" in message or f'split "{split}"' in message or "Unknown split" in message:
            return None
        raise


def class_names_of(dataset, label_column: str) -> tuple[str, ...] | None:
    """The names of a `ClassLabel` column (an image folder's sub-folders), else None."""
    names = getattr(dataset.features.get(label_column), "names", None)
    return tuple(names) if names else None


def image_shape_of(dataset, image_column: str = "image") -> tuple[int, int]:
    """(channels, shorter side) of the data set's images, from its first images (`detect_channels`)."""
    from annotated_pipeline.datasets.loading import check_columns, detect_channels

    check_columns(dataset, image_column)
    channels = detect_channels(dataset, image_column)
    width, height = dataset[0][image_column].size
    return channels, min(width, height)


def to_tensors(dataset, image_size: int, channels: int, image_column: str = "image", label_column: str | None = None,
               require_size: bool = False, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x (N, channels, image_size, image_size) float32 in [-1, 1] and int64 labels (N,) (None without a label column).

    The training data's transform (shorter side resized, centre crop) brings every image to the size;
    with `require_size` an image of another size is refused instead (a reference set must already be
    what the classifier reads: resizing it would judge samples against other images than the data's)."""
    from annotated_pipeline.datasets.loading import check_columns, make_transform

    check_columns(dataset, image_column, label_column)
    transform = make_transform(image_size, channels, center_crop=True, random_flip=False,
                               image_column=image_column, label_column=label_column)
    inputs, labels = [], []
    for start in range(0, len(dataset), batch_size):
        batch = dataset[start:start + batch_size]
        if require_size:
            for k, image in enumerate(batch[image_column]):
                if image.size != (image_size, image_size):
                    raise ValueError(f"image {start + k} of the data set is {image.size[0]}x{image.size[1]}, "
                                     f"but {image_size}x{image_size} images are needed")
        out = transform(batch)
        inputs.extend(out["input"])
        labels.extend(out.get("label", []))
    x = torch.stack(inputs)
    return x, (torch.tensor(labels, dtype=torch.long) if label_column is not None else None)


def holdout_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out): a seeded choice (numpy PCG64) of round(fraction * n) >= 1 indices held out, sorted."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must lie in (0, 1), got {fraction}")
    held = max(1, round(fraction * n))
    if held >= n:
        raise ValueError(f"holding out {held} of {n} images leaves none to train on")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[held:]), np.sort(order[:held])


def reference_splits(reference, image_shape, image_column: str = "image", seed: int = 0):
    """(reference images, the floor's pool of training images, what the reference is), both (N, C, S, S) in
    [-1, 1]: DATA's test and train splits, or two seeded halves of a DATA without a test split. ValueError
    when DATA's images are not `image_shape` (C, S, S), the classifier's."""
    train_set, test_set = open_split(reference, "train"), open_split(reference, "test")
    if train_set is None:
        raise ValueError(f"the reference {reference} has no train split")
    c, size, _ = image_shape
    for name, split in (("train", train_set), ("test", test_set)):
        if split is None:
            continue
        found_c, found_size = image_shape_of(split, image_column)
        if (found_c, found_size) != (c, size):
            raise ValueError(f"the reference {reference} ({name} split) holds {found_c}-channel {found_size}x{found_size} "
                             f"images; the classifier reads {c}-channel {size}x{size} images")
    pool, _ = to_tensors(train_set, size, c, image_column, require_size=True)
    if test_set is not None:
        return to_tensors(test_set, size, c, image_column, require_size=True)[0], pool, "test images"
    kept, held = holdout_indices(len(pool), 0.5, seed)
    return pool[held], pool[kept], "images, a seeded half of the train split (the data has no test split)"


def count_classes(dataset, label_column):
    """K for class-conditional training: from a `ClassLabel` feature, else max(label) + 1.

    Every label must lie in 0..K-1; a `ClassLabel` column may hold -1 ("no label" in `datasets`), which
    is refused here rather than at the first batch that contains one. K = 1 is refused: one class is no
    label (a one-class subset of a set whose `ClassLabel` names K >= 2 classes is fine, as in fine-tuning)."""
    feature = dataset.features[label_column]
    num_classes = getattr(feature, "num_classes", None)
    labels = dataset[label_column]
    if not all(isinstance(label, int) and not isinstance(label, bool) for label in labels):
        raise ValueError(f"--label_column {label_column!r} must hold integer class labels")
    if num_classes is None:
        num_classes = max(labels) + 1
    if num_classes < 2:
        raise ValueError(f"--label_column {label_column!r} defines one class (K = 1: every label is "
                         f"{labels[0] if labels else 0}): class labels need two or more classes, labels 0..K-1 "
                         "(or a ClassLabel feature naming K >= 2 classes, which a one-class subset of a larger set keeps)")
    out_of_range = [label for label in labels if not 0 <= label < num_classes]
    if out_of_range:
        raise ValueError(
            f"--label_column {label_column!r}: {len(out_of_range)} of {len(labels)} labels lie outside 0..{num_classes - 1} "
            f"(e.g. {out_of_range[0]}; -1 means 'no label' in `datasets`): drop those examples first, e.g. "
            f"dataset.filter(lambda example: example[{label_column!r}] >= 0)"
        )
    return int(num_classes)
