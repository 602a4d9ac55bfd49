"""Training data: from arguments to batches of x_0 in [-1, 1].

DDPM models images as x_0 in [-1, 1]^(C x H x W) (Ho et al. 2020, section 3.3: "We assume that image
data consists of integers in {0, 1, ..., 255} scaled linearly to [-1, 1]"), so every pixel p in
{0, ..., 255} becomes

    x_0 = 2 * (p / 255) - 1

and the reverse process ends where it started. Between the arguments and those batches:

    load_training_dataset   a Hub id, or a local folder of parquet files, IDX files or images
    check_columns           the image (and label) column exist and the data set is not empty
    detect_channels         1 for grayscale images, 3 for colour
    make_transform          resize the shorter side, crop, maybe flip, scale to [-1, 1] (PIL + torch)
    make_dataloader         a torch DataLoader that stacks the examples into batches

The random crop and flip draw from torch's global RNG, so `accelerate.utils.set_seed` (and the RNG
state Accelerate checkpoints) make them reproducible; DataLoader workers derive their seeds from it.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import torch

from .fashion_mnist import fashion_mnist_dataset, idx_file_names

IDX_PATTERNS = ("*-ubyte", "*-ubyte.gz")
_PRIVATE_SPLIT_INFERENCE = "_get_data_files_patterns"  # in datasets.data_files (see _parquet_files_by_split)
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
COLOR_MODES = frozenset({"RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"})


def _image_extensions() -> list[str]:
    """The file extensions datasets' imagefolder builder reads (those PIL can open)."""
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    return list(ImageFolder.EXTENSIONS)


def _parquet_files_by_split(root: str) -> dict[str, list[str]]:
    """Parquet files below `root` (hidden folders skipped), grouped into splits by datasets' own
    naming rules: train*/test*/validation* file or folder names, otherwise everything is "train".

    Only parquet files take part in the split inference, so a stray train.csv or a cache folder
    cannot change which split a parquet file lands in. That needs datasets' private
    `_get_data_files_patterns` (its public `get_data_patterns` looks at every file); a datasets release
    without it gets the public inference instead.
    """
    from functools import partial

    import datasets.data_files as data_files

    try:
        infer = getattr(data_files, _PRIVATE_SPLIT_INFERENCE, None)
        if infer is not None:
            patterns = infer(partial(data_files.resolve_pattern, base_path=root, allowed_extensions=[".parquet"]))
        else:
            patterns = data_files.get_data_patterns(root)
        resolved = data_files.DataFilesDict.from_patterns(patterns, base_path=root, allowed_extensions=[".parquet"])
    except (FileNotFoundError, data_files.EmptyDatasetError):  # no parquet file where the splits point
        return {}
    return {str(split): sorted(files) for split, files in resolved.items() if files}


def check_hub_reachable(what, timeout=5.0):
    """Raise ConnectionError at once when the Hub endpoint does not answer, instead of letting `datasets`
    retry for half a minute and fail with a bare ConnectionError. Does nothing in offline mode
    (HF_HUB_OFFLINE=1), where `datasets` reads its cache."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return
    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ConnectionError(
            f"{what} names a Hub data set, but the Hub ({constants.ENDPOINT}) cannot be reached ({reason}): train on "
            "a local folder with --train_data_dir, or set HF_HUB_OFFLINE=1 to use a copy in the datasets cache"
        ) from None


def load_training_dataset(
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_data_dir: str | os.PathLike | None = None,
    cache_dir: str | None = None,
    split: str = "train",
    verify_checksums: bool = True,
):
    """One split of a data set as a `datasets.Dataset`, from exactly one of two places.

    dataset_name      a Hub id read by `datasets.load_dataset` (e.g. "zalando-datasets/fashion_mnist")
    train_data_dir    a local folder, tried in this order:
                        1. parquet files anywhere below it (the parquet builder; splits by file name)
                        2. Fashion-MNIST IDX files in it ({train,t10k}-*-ubyte[.gz]); their SHA-256 is
                           checked unless verify_checksums=False (needed for other IDX data, e.g. MNIST)
                        3. image files anywhere below it (the imagefolder builder; labels from sub-folders)
    """
    import datasets

    if (dataset_name is None) == (train_data_dir is None):
        raise ValueError(
            "give exactly one of dataset_name (a Hub data set id) or train_data_dir (a local folder); "
            f"got dataset_name={dataset_name!r}, train_data_dir={train_data_dir!r}"
        )
    if dataset_name is not None:
        if not os.path.exists(dataset_name):
            check_hub_reachable(f"--dataset_name {dataset_name!r}")
        return datasets.load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir, split=split)

    root = os.fspath(train_data_dir)
    if not os.path.isdir(root):
        raise ValueError(f"train_data_dir {root!r} is not a folder")

    parquet_splits = _parquet_files_by_split(root)
    if parquet_splits:
        if split not in parquet_splits:
            raise ValueError(f"no parquet files for split {split!r} in {root}; splits found: {sorted(parquet_splits)}")
        return datasets.load_dataset(
            "parquet", data_files={split: parquet_splits[split]}, cache_dir=cache_dir, split=split
        )

    if any(glob.glob(os.path.join(glob.escape(root), pattern)) for pattern in IDX_PATTERNS):
        try:
            return fashion_mnist_dataset(root, split, verify=verify_checksums)
        except FileNotFoundError as err:
            images, labels = idx_file_names(split)
            raise ValueError(f"IDX folder {root} lacks {images}[.gz] or {labels}[.gz] for split {split!r}: {err}") from err

    extensions = _image_extensions()
    common = [e for e in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp") if e in extensions]
    for dirpath, _, filenames in os.walk(root):
        if any(os.path.splitext(name)[1].lower() in extensions for name in filenames):
            return datasets.load_dataset("imagefolder", data_dir=root, cache_dir=cache_dir, split=split)

    raise ValueError(
        f"nothing usable in {root}: looked for *.parquet files anywhere below it, IDX files "
        f"({', '.join(IDX_PATTERNS)}) in it, and image files ({', '.join(common)} and {len(extensions) - len(common)} more types PIL reads) anywhere below it"
    )


SPLIT_FOLDERS = ("train", "test", "validation", "valid", "val", "dev")  # what the imagefolder builder takes for splits


def one_class_message(data_dir, label_column):
    """What to say when an image folder has no `label_column` because its images lie in one class folder (the
    imagefolder builder labels images by their folder only where there are two or more); None otherwise."""
    if data_dir is None or not os.path.isdir(data_dir):
        return None
    extensions = _image_extensions()
    classes = {os.path.basename(dirpath) for dirpath, _, names in os.walk(data_dir)
               if os.path.normpath(dirpath) != os.path.normpath(data_dir)
               and os.path.basename(dirpath) not in SPLIT_FOLDERS
               and any(os.path.splitext(name)[1].lower() in extensions for name in names)}
    if len(classes) != 1:
        return None
    return (f"{data_dir} holds one class (all its images are in folders named {classes.pop()!r}), so it has no "
            f"{label_column!r} column: class labels need two or more classes, a sub-folder of images for each "
            "(DATA/CLASS_A/*.png, DATA/CLASS_B/*.png, ...)")


def check_columns(dataset, image_column: str, label_column: str | None = None, data_dir=None) -> None:
    """Raise ValueError unless `dataset` has rows and the named columns (`data_dir`: the folder it was read from,
    named when it has one class and so no labels)."""
    available = list(dataset.column_names)
    for role, column in (("image_column", image_column), ("label_column", label_column)):
        if column is not None and column not in available:
            if role == "label_column" and one_class_message(data_dir, column):
                raise ValueError(one_class_message(data_dir, column))
            raise ValueError(f"{role} {column!r} is not a column of the data set; available columns: {available}")
    if len(dataset) == 0:
        raise ValueError(f"the data set is empty (0 rows; columns {available})")


def detect_channels(dataset, image_column: str = "image", num_samples: int = 8) -> int:
    """1 if the first `num_samples` images are all grayscale PIL modes, 3 if any is colour.

    Grayscale: 1, L, LA, I, I;16, F (converted to "L"). Colour: RGB, RGBA, P, CMYK, ... (converted
    to "RGB"; a palette "P" image counts as colour even if its palette happens to be gray).
    """
    check_columns(dataset, image_column)
    images = dataset.select(range(min(num_samples, len(dataset))))[image_column]
    channels = 1
    for image in images:
        mode = getattr(image, "mode", None)
        if mode is None:
            raise ValueError(
                f"column {image_column!r} holds {type(image).__name__}, expected PIL images (a datasets Image feature)"
            )
        if mode in COLOR_MODES:
            channels = 3
        elif mode not in GRAYSCALE_MODES:
            raise ValueError(
                f"image mode {mode!r} is not supported; allowed: {sorted(GRAYSCALE_MODES | COLOR_MODES)}"
            )
    return channels


def _resize_shorter_side(image, size: int):
    """Resize (bilinear) so the shorter side is `size`, keeping the aspect ratio."""
    from PIL import Image

    width, height = image.size
    short, long = min(width, height), max(width, height)
    if short == size:
        return image
    new_long = int(size * long / short)
    new_size = (size, new_long) if width <= height else (new_long, size)
    return image.resize(new_size, resample=Image.Resampling.BILINEAR)


def _crop(image, size: int, center: bool):
    """A size x size crop: the center one, or one at a uniformly random offset (torch's RNG)."""
    width, height = image.size
    if center:
        left, top = int(round((width - size) / 2.0)), int(round((height - size) / 2.0))
    else:
        left = int(torch.randint(0, width - size + 1, (1,)).item())
        top = int(torch.randint(0, height - size + 1, (1,)).item())
    return image.crop((left, top, left + size, top + size))


def image_to_tensor(image) -> torch.Tensor:
    """A PIL "L" or "RGB" image (pixels p in 0..255) to x_0 = 2 * p / 255 - 1, float32 of shape (C, H, W)."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True))
    if pixels.ndim == 2:
        pixels = pixels.unsqueeze(-1)
    x = pixels.permute(2, 0, 1).float().div(255.0)
    return (x * 2.0 - 1.0).contiguous()


def make_transform(
    resolution: int,
    channels: int,
    center_crop: bool = False,
    random_flip: bool = False,
    image_column: str = "image",
    label_column: str | None = None,
):
    """A batch transform for `dataset.set_transform` / `with_transform`.

    Each image: to "L" (channels=1) or "RGB" (channels=3); shorter side resized to `resolution`
    (bilinear); a resolution x resolution crop, centered if `center_crop` else random; flipped
    left-right with probability 1/2 if `random_flip`; scaled to [-1, 1]. Returns
    {"input": [tensor (C, resolution, resolution)], "label": [int]} (labels only with `label_column`).
    """
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    mode = "L" if channels == 1 else "RGB"
    from PIL import Image

    def transform(batch: dict) -> dict:
        inputs = []
        for image in batch[image_column]:
            image = _resize_shorter_side(image.convert(mode), resolution)
            image = _crop(image, resolution, center=center_crop)
            if random_flip and torch.rand(()) < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            inputs.append(image_to_tensor(image))
        out = {"input": inputs}
        if label_column is not None:
            out["label"] = [int(label) for label in batch[label_column]]
        return out

    return transform


def collate(examples: list[dict]) -> dict:
    """Stack {"input": (C, H, W)} examples into {"input": (B, C, H, W)} (and labels into (B,) int64)."""
    batch = {"input": torch.stack([example["input"] for example in examples])}
    if "label" in examples[0]:
        batch["label"] = torch.tensor([example["label"] for example in examples], dtype=torch.long)
    return batch


def make_dataloader(dataset, batch_size: int, shuffle: bool = True, num_workers: int = 0, drop_last: bool = False, **kwargs):
    """A torch DataLoader over a transformed data set, batching with `collate`. Extra kwargs go to DataLoader."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=collate,
        **kwargs,
    )
