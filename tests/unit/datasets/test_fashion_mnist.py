"""The IDX reader and Fashion-MNIST loaders, on small IDX files written here by an independent writer."""

import gzip
import hashlib
import io
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from annotated_pipeline.datasets import fashion_mnist as fm

# IDX type codes, from LeCun's MNIST page, written out independently of the module under test.
TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
              np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, TYPE_CODES[array.dtype], array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, compress):
    data = idx_bytes(array)
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if compress else data)
    return hashlib.sha256(data).hexdigest()


def write_split(root, split, n, seed=0, compress=True):
    """A Fashion-MNIST-shaped split: n random 28x28 uint8 images, labels cycling over 0..9."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    images_name, labels_name = fm.idx_file_names(split)
    ext = ".gz" if compress else ""
    checksums = {
        images_name: write_idx(os.path.join(root, images_name + ext), images, compress),
        labels_name: write_idx(os.path.join(root, labels_name + ext), labels, compress),
    }
    return images, labels, checksums


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-70000, 1, 2**31 - 1], dtype=np.int32),
        np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
        np.array([-300, 300], dtype=np.int16),
    ],
    ids=["uint8-3d", "int32", "float32", "int16"],
)
def test_read_idx_round_trip_with_checksum(tmp_path, array, compress):
    path = tmp_path / "x-ubyte"
    sha = write_idx(path, array, compress)
    loaded = fm.read_idx(path, expected_sha256=sha)
    assert loaded.shape == array.shape and loaded.dtype == array.dtype
    np.testing.assert_array_equal(loaded, array)
    loaded.flat[0] = 1  # a writable, native-endian copy


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_wrong_checksum(tmp_path, compress):
    path = tmp_path / "x-ubyte"
    sha = write_idx(path, np.zeros((2, 2), np.uint8), compress)
    wrong = "0" * 64
    with pytest.raises(fm.ChecksumError) as err:  # a ValueError subclass
        fm.read_idx(path, expected_sha256=wrong)
    assert isinstance(err.value, ValueError)
    message = str(err.value)
    assert str(path) in message and wrong in message and sha in message


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("magic", [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00"])
def test_read_idx_bad_magic(tmp_path, magic, compress):
    data = magic + struct.pack(">I", 3) + bytes(3)
    path = tmp_path / "bad-ubyte"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(ValueError, match="magic number 0x" + magic.hex()) as err:
        fm.read_idx(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_truncated_payload(tmp_path, compress):
    data = idx_bytes(np.ones((4, 5, 5), np.uint8))[:-7]  # header promises 100 pixels, 93 follow
    path = tmp_path / "short-ubyte"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(ValueError, match=r"truncated.*\(4, 5, 5\).*116 bytes, found 109 bytes") as err:
        fm.read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_truncated_header_gzip_and_trailing_bytes(tmp_path):
    short_header = tmp_path / "header-ubyte"
    short_header.write_bytes(struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">I", 2))  # 1 of 3 sizes
    with pytest.raises(ValueError, match="truncated header"):
        fm.read_idx(short_header)

    cut_gzip = tmp_path / "cut-ubyte.gz"
    cut_gzip.write_bytes(gzip.compress(idx_bytes(np.ones((50, 28, 28), np.uint8)))[:-20])
    with pytest.raises(ValueError, match="truncated or corrupt") as err:
        fm.read_idx(cut_gzip)
    assert str(cut_gzip) in str(err.value)

    trailing = tmp_path / "long-ubyte"
    trailing.write_bytes(idx_bytes(np.ones(3, np.uint8)) + b"\x00")
    with pytest.raises(ValueError, match="trailing bytes"):
        fm.read_idx(trailing)


@pytest.mark.parametrize("compress", [True, False])
def test_load_arrays_with_supplied_checksums(tmp_path, compress):
    images, labels, checksums = write_split(tmp_path, "test", 30, compress=compress)
    got_images, got_labels = fm.load_fashion_mnist_arrays(tmp_path, "test", checksums=checksums)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.int64


def test_load_arrays_rejects_files_that_are_not_the_official_ones(tmp_path):
    write_split(tmp_path, "train", 10)
    with pytest.raises(fm.ChecksumError, match=fm.FASHION_MNIST_SHA256["train-images-idx3-ubyte"] + ".*verify=False"):
        fm.load_fashion_mnist_arrays(tmp_path, "train")  # verify=True against the pinned SHA-256
    images, _ = fm.load_fashion_mnist_arrays(tmp_path, "train", verify=False)
    assert images.shape == (10, 28, 28)


def test_load_arrays_missing_files_and_bad_split(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fm.load_fashion_mnist_arrays(tmp_path / "nowhere", "train")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*apt-get install dataset-fashion-mnist"):
        fm.load_fashion_mnist_arrays(tmp_path, "train")
    with pytest.raises(ValueError, match=r"unknown split 'validation'.*\['test', 'train'\]"):
        fm.load_fashion_mnist_arrays(tmp_path, "validation")


def test_load_arrays_label_count_mismatch(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8), False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8), False)
    with pytest.raises(ValueError, match="expected 5 labels"):
        fm.load_fashion_mnist_arrays(tmp_path, "train", verify=False)


def test_fashion_mnist_dataset_features_and_pixels(tmp_path):
    import datasets

    images, labels, checksums = write_split(tmp_path, "train", 20)
    ds = fm.fashion_mnist_dataset(tmp_path, "train", checksums=checksums)
    assert len(ds) == 20 and ds.column_names == ["image", "label"]
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds.features["label"].names == list(fm.FASHION_MNIST_CLASSES)
    for i in (0, 7, 19):
        example = ds[i]
        assert example["image"].mode == "L" and example["image"].size == (28, 28)
        np.testing.assert_array_equal(np.array(example["image"]), images[i])
        assert example["label"] == labels[i]


def test_class_names_and_out_of_range_labels():
    assert len(fm.FASHION_MNIST_CLASSES) == 10
    assert fm.FASHION_MNIST_CLASSES[0] == "T-shirt/top" and fm.FASHION_MNIST_CLASSES[9] == "Ankle boot"
    with pytest.raises(ValueError, match=r"\[0, 12\].*10 class names"):
        fm.arrays_to_dataset(np.zeros((2, 28, 28), np.uint8), np.array([0, 12]))


def test_stratified_sample_indices():
    labels = np.repeat(np.arange(10), 50)[np.random.default_rng(3).permutation(500)]
    keep = fm.stratified_sample_indices(labels, 40, seed=5)
    assert len(keep) == 40 and len(np.unique(keep)) == 40 and np.all(np.diff(keep) > 0)
    assert np.bincount(labels[keep], minlength=10).tolist() == [4] * 10
    np.testing.assert_array_equal(keep, fm.stratified_sample_indices(labels, 40, seed=5))
    assert not np.array_equal(keep, fm.stratified_sample_indices(labels, 40, seed=6))
    with pytest.raises(ValueError, match="multiple of the number of classes"):
        fm.stratified_sample_indices(labels, 45, seed=0)
    with pytest.raises(ValueError, match="fewer than"):
        fm.stratified_sample_indices(labels, 600, seed=0)


def test_to_parquet_command(tmp_path):
    import datasets

    root, out = tmp_path / "idx", tmp_path / "out"
    root.mkdir()
    images, labels, _ = write_split(root, "test", 50, seed=1, compress=False)
    command = [sys.executable, "-m", "annotated_pipeline.datasets.fashion_mnist", "--to-parquet", str(out),
               "--root", str(root), "--split", "test", "--sample", "20", "--seed", "4", "--no-verify"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "wrote 20 examples" in result.stdout

    ds = datasets.load_dataset("parquet", data_files=str(out / "test.parquet"), split="train", cache_dir=str(tmp_path / "c"))
    keep = fm.stratified_sample_indices(labels, 20, seed=4)
    assert ds.features["label"].names == list(fm.FASHION_MNIST_CLASSES)
    assert ds["label"] == labels[keep].tolist()
    for row, i in zip(ds, keep):
        np.testing.assert_array_equal(np.array(row["image"]), images[i])


OFFICIAL = os.path.join(fm.DEFAULT_ROOT, "train-images-idx3-ubyte.gz")


@pytest.mark.skipif(not os.path.exists(OFFICIAL), reason="needs `apt-get install dataset-fashion-mnist`")
def test_embedded_sample_is_the_documented_slice_of_the_official_files():
    """Provenance: the committed sample equals rebuilding it from the verified official files."""
    import pyarrow.parquet as pq
    from PIL import Image

    images, labels = fm.load_fashion_mnist_arrays(split="train")  # SHA-256 verified
    keep = fm.stratified_sample_indices(labels, 2000, seed=0)
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    table = pq.read_table(os.path.join(here, "..", "data", "fashion-mnist-sample", "train.parquet")).to_pydict()
    assert table["label"] == labels[keep].tolist()
    got = np.stack([np.array(Image.open(io.BytesIO(image["bytes"]))) for image in table["image"]])
    np.testing.assert_array_equal(got, images[keep])
