"""datasets/loading.py: loading local folders of every supported kind, checks, the transform and batches."""

import gzip
import os
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from annotated_pipeline.datasets import loading as data
from annotated_pipeline.datasets.fashion_mnist import FASHION_MNIST_CLASSES

SAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "data", "fashion-mnist-sample")


def gradient_image(width, height, mode="L"):
    """Pixel (row r, column c) = 8c + r: every crop and flip is recognisable from its pixels."""
    rows, cols = np.mgrid[0:height, 0:width]
    pixels = (8 * cols + rows).astype(np.uint8)
    if mode == "RGB":
        pixels = np.stack([pixels, 255 - pixels, np.full_like(pixels, 7)], axis=-1)
    return Image.fromarray(pixels)


def to_unit(pixels):
    """The expected x_0 = 2 p / 255 - 1, channels first, computed with numpy."""
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.ndim == 2:
        pixels = pixels[None]
    else:
        pixels = pixels.transpose(2, 0, 1)
    return 2.0 * pixels / 255.0 - 1.0


@pytest.fixture(scope="module")
def sample():
    return data.load_training_dataset(train_data_dir=SAMPLE_DIR)


# --- load_training_dataset ------------------------------------------------------------------


def test_embedded_sample(sample):
    assert len(sample) == 2000
    assert sample.features["label"].names == list(FASHION_MNIST_CLASSES)
    assert np.bincount(sample["label"], minlength=10).tolist() == [200] * 10
    for i in (0, 999, 1999):
        image = sample[i]["image"]
        assert image.mode == "L" and image.size == (28, 28)
    assert data.detect_channels(sample, "image") == 1


def test_parquet_folder(tmp_path):
    import datasets

    features = datasets.Features({"img": datasets.Image(), "y": datasets.ClassLabel(names=["a", "b"])})
    pixels = [np.full((6, 5), v, np.uint8) for v in (10, 200, 30)]
    ds = datasets.Dataset.from_dict({"img": [Image.fromarray(p) for p in pixels], "y": [0, 1, 1]}, features=features)
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "nested" / "deeper" / "part-0.parquet"))
    (tmp_path / "notes.txt").write_text("not data")

    loaded = data.load_training_dataset(train_data_dir=tmp_path, cache_dir=str(tmp_path / "cache"))
    assert loaded.column_names == ["img", "y"] and loaded["y"] == [0, 1, 1]
    for row, p in zip(loaded, pixels):
        np.testing.assert_array_equal(np.array(row["img"]), p)
    with pytest.raises(ValueError, match=r"no parquet files for split 'test'.*\['train'\]"):
        data.load_training_dataset(train_data_dir=tmp_path, cache_dir=str(tmp_path / "cache"), split="test")


def test_parquet_splits_without_datasets_private_helper(tmp_path, monkeypatch):
    """The split inference falls back to datasets' public `get_data_patterns` when the private helper
    is gone (a future datasets release): the same files, the same splits."""
    import datasets
    import datasets.data_files

    ds = datasets.Dataset.from_dict({"y": [0, 1, 2]})
    (tmp_path / "data").mkdir()
    ds.to_parquet(str(tmp_path / "data" / "train-00000-of-00001.parquet"))
    ds.select([0]).to_parquet(str(tmp_path / "data" / "test-00000-of-00001.parquet"))
    with_helper = data._parquet_files_by_split(str(tmp_path))
    assert hasattr(datasets.data_files, data._PRIVATE_SPLIT_INFERENCE)  # this release has it
    monkeypatch.setattr(data, "_PRIVATE_SPLIT_INFERENCE", "_a_name_datasets_does_not_have")
    assert data._parquet_files_by_split(str(tmp_path)) == with_helper
    assert sorted(with_helper) == ["test", "train"]
    assert data._parquet_files_by_split(str(tmp_path / "data" / "nothing-here")) == {}


def test_image_folder_grayscale_and_rgb(tmp_path):
    for name, mode in (("gray", "L"), ("rgb", "RGB")):
        for label in ("cat", "dog"):
            folder = tmp_path / name / label
            folder.mkdir(parents=True)
            for i in range(2):
                gradient_image(12 + i, 9, mode).save(folder / f"{i}.png")
    gray = data.load_training_dataset(train_data_dir=tmp_path / "gray", cache_dir=str(tmp_path / "cache"))
    rgb = data.load_training_dataset(train_data_dir=tmp_path / "rgb", cache_dir=str(tmp_path / "cache"))
    assert len(gray) == len(rgb) == 4
    assert gray.features["label"].names == ["cat", "dog"]
    assert sorted(gray["label"]) == [0, 0, 1, 1]
    assert data.detect_channels(gray, "image") == 1
    assert data.detect_channels(rgb, "image") == 3


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def test_idx_folder(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = np.arange(12, dtype=np.uint8) % 10
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)

    ds = data.load_training_dataset(train_data_dir=tmp_path, split="test", verify_checksums=False)
    assert len(ds) == 12 and ds["label"] == labels.tolist()
    np.testing.assert_array_equal(np.array(ds[3]["image"]), images[3])
    with pytest.raises(ValueError, match="SHA-256"):  # not the official files
        data.load_training_dataset(train_data_dir=tmp_path, split="test")
    with pytest.raises(ValueError, match=r"lacks train-images-idx3-ubyte\[.gz\]"):
        data.load_training_dataset(train_data_dir=tmp_path, split="train", verify_checksums=False)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="exactly one of dataset_name"):
        data.load_training_dataset()
    with pytest.raises(ValueError, match="exactly one of dataset_name"):
        data.load_training_dataset(dataset_name="zalando-datasets/fashion_mnist", train_data_dir=tmp_path)
    with pytest.raises(ValueError, match="is not a folder"):
        data.load_training_dataset(train_data_dir=tmp_path / "missing")
    (tmp_path / "readme.txt").write_text("no data here")
    with pytest.raises(ValueError, match=r"nothing usable in .*\*\.parquet.*-ubyte.*\.png"):
        data.load_training_dataset(train_data_dir=tmp_path)


# --- checks -----------------------------------------------------------------------------------


def test_check_columns(sample):
    data.check_columns(sample, "image", "label")
    with pytest.raises(ValueError, match=r"image_column 'pixels'.*\['image', 'label'\]"):
        data.check_columns(sample, "pixels")
    with pytest.raises(ValueError, match=r"label_column 'class'.*\['image', 'label'\]"):
        data.check_columns(sample, "image", "class")
    with pytest.raises(ValueError, match="empty"):
        data.check_columns(sample.select([]), "image")


def test_detect_channels_modes():
    import datasets

    def one(image):
        return datasets.Dataset.from_dict({"image": [image]}, features=datasets.Features({"image": datasets.Image()}))

    assert data.detect_channels(one(Image.new("1", (4, 4)))) == 1
    assert data.detect_channels(one(Image.new("RGBA", (4, 4)))) == 3
    assert data.detect_channels(one(Image.new("P", (4, 4)))) == 3
    numbers = datasets.Dataset.from_dict({"image": [1, 2]})
    with pytest.raises(ValueError, match="holds int, expected PIL images"):
        data.detect_channels(numbers, "image")


# --- transform --------------------------------------------------------------------------------


def test_transform_values_are_2p_over_255_minus_1():
    image = Image.fromarray(np.array([[0, 255], [51, 128]], np.uint8))
    x = data.make_transform(2, 1, center_crop=True)({"image": [image]})["input"][0]
    assert x.dtype == torch.float32 and x.shape == (1, 2, 2)
    np.testing.assert_allclose(x.numpy(), to_unit(np.array(image)), atol=1e-6)
    assert x.min() == -1.0 and x.max() == 1.0


@pytest.mark.parametrize("channels,shape", [(1, (1, 16, 16)), (3, (3, 16, 16))])
def test_transform_shapes_and_range_on_sample(sample, channels, shape):
    transform = data.make_transform(16, channels, random_flip=True, label_column="label")
    out = transform(sample[:5])
    assert len(out["input"]) == 5 and out["label"] == sample["label"][:5]
    for x in out["input"]:
        assert x.shape == shape and x.min() >= -1.0 and x.max() <= 1.0
    if channels == 3:  # a gray image converted to RGB has three equal channels
        assert torch.equal(out["input"][0][0], out["input"][0][2])


def test_resize_shorter_side_then_center_crop():
    wide = gradient_image(40, 20)  # shorter side 20 -> resized to 10 x 20 (h x w), crop the middle 10 columns
    x = data.make_transform(10, 1, center_crop=True)({"image": [wide]})["input"][0]
    resized = np.array(wide.resize((20, 10), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(x.numpy(), to_unit(resized[:, 5:15]), atol=1e-6)

    tall_rgb = gradient_image(9, 15, "RGB")  # already 9 wide: no resize, rows 3..11
    x = data.make_transform(9, 3, center_crop=True)({"image": [tall_rgb]})["input"][0]
    np.testing.assert_allclose(x.numpy(), to_unit(np.array(tall_rgb)[3:12]), atol=1e-6)


def windows(pixels, size):
    height, width = pixels.shape
    return {(top, left): pixels[top:top + size, left:left + size]
            for top in range(height - size + 1) for left in range(width - size + 1)}


def test_random_crop_is_a_window_and_follows_torch_seed():
    image = gradient_image(12, 8)  # shorter side 8 == resolution: crops are 8 x 8 windows at columns 0..4
    transform = data.make_transform(8, 1)
    candidates = windows(np.array(image), 8)

    def draw():
        x = transform({"image": [image]})["input"][0][0].numpy()
        return [key for key, w in candidates.items() if np.allclose(x, to_unit(w)[0], atol=1e-6)]

    torch.manual_seed(0)
    first = [draw() for _ in range(30)]
    assert all(len(found) == 1 for found in first)
    assert len({found[0] for found in first}) >= 3  # not always the same crop
    torch.manual_seed(0)
    assert [draw() for _ in range(30)] == first  # torch's RNG decides


def test_random_flip():
    image = gradient_image(6, 6)
    original = to_unit(np.array(image))
    flipped = original[:, :, ::-1]

    torch.manual_seed(1)
    outs = [data.make_transform(6, 1, center_crop=True, random_flip=True)({"image": [image]})["input"][0].numpy()
            for _ in range(40)]
    is_flipped = [bool(np.allclose(x, flipped, atol=1e-6)) for x in outs]
    assert all(f or np.allclose(x, original, atol=1e-6) for f, x in zip(is_flipped, outs))
    assert 5 <= sum(is_flipped) <= 35

    no_flip = data.make_transform(6, 1, center_crop=True, random_flip=False)
    for _ in range(10):
        np.testing.assert_allclose(no_flip({"image": [image]})["input"][0].numpy(), original, atol=1e-6)


def test_transform_argument_errors():
    with pytest.raises(ValueError, match="resolution must be a positive int"):
        data.make_transform(0, 1)
    with pytest.raises(ValueError, match="channels must be 1 .* or 3"):
        data.make_transform(8, 2)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        data.make_dataloader([], batch_size=0)


# --- batches ----------------------------------------------------------------------------------


def test_dataloader_batches(sample):
    ds = sample.select(range(10)).with_transform(data.make_transform(12, 1, label_column="label"))
    batches = list(data.make_dataloader(ds, batch_size=4, shuffle=False))
    assert [b["input"].shape for b in batches] == [(4, 1, 12, 12), (4, 1, 12, 12), (2, 1, 12, 12)]
    assert batches[0]["label"].dtype == torch.long
    assert torch.cat([b["label"] for b in batches]).tolist() == sample["label"][:10]

    unlabelled = sample.select(range(3)).with_transform(data.make_transform(12, 1))
    (batch,) = data.make_dataloader(unlabelled, batch_size=8, drop_last=False)
    assert set(batch) == {"input"} and batch["input"].shape == (3, 1, 12, 12)
