"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) read straight from its IDX files.

Fashion-MNIST is 70,000 grayscale 28x28 images of clothing in 10 classes (60,000 train, 10,000
test), shipped in the same IDX format as LeCun's MNIST. An IDX file is

    bytes 0-1   0x00 0x00                      always zero
    byte  2     data type code                 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                                               0x0D float32, 0x0E float64
    byte  3     D, the number of dimensions    3 for images (N, rows, cols), 1 for labels (N,)
    then        D sizes, each a big-endian uint32
    then        prod(sizes) values of that type, big-endian, C (row-major) order

so a file holding N 28x28 images is exactly 16 + N * 784 bytes. The four files are gzip
compressed: `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`.

Checksums. Zalando's README publishes the MD5 of each *.gz file (see `ZALANDO_GZ_MD5`). Debian's
package `dataset-fashion-mnist` (`apt-get install dataset-fashion-mnist`, files in
/usr/share/datasets/fashion-mnist) recompressed the archives (its gzip headers carry a 2020
timestamp), so its .gz MD5s differ from Zalando's and cannot be used. What must not change is the
decompressed payload, so that is what we verify: `FASHION_MNIST_SHA256` pins the SHA-256 of each
decompressed file. We computed them once from Debian's files, and they agree with the values that
independent public projects pinned after checking Zalando's original archives against the
published MD5s. The check is format-independent: .gz or raw IDX both verify.

Labels follow the README's class order, `FASHION_MNIST_CLASSES[k]` is class k.

Run as a module to write parquet files that `datasets.load_dataset("parquet", ...)` reads back:

    python -m annotated_pipeline.datasets.fashion_mnist --to-parquet OUT_DIR \\
        [--root /usr/share/datasets/fashion-mnist] [--split train] [--sample 2000 --seed 0]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import zlib
from collections.abc import Mapping

import numpy as np

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# MD5 of the original *.gz archives, as published in Zalando's README (for reference: recompressed
# copies such as Debian's do not match them, so they are not used to verify).
ZALANDO_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

# SHA-256 of the decompressed IDX files (what we verify; see the module docstring).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

SPLITS = {"train": "train", "test": "t10k"}  # split name -> file prefix

# IDX type code -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_INSTALL_HINT = (
    "install them with `apt-get install dataset-fashion-mnist` (files land in "
    f"{DEFAULT_ROOT}) or download the four *-ubyte.gz files from "
    "https://github.com/zalandoresearch/fashion-mnist (data/fashion/)"
)


class ChecksumError(ValueError):
    """The SHA-256 of a file's decompressed bytes is not the expected one."""


def read_idx(path: str | os.PathLike, expected_sha256: str | None = None) -> np.ndarray:
    """Read one IDX file (gzip compressed or raw) into a numpy array of its native shape.

    Compression is detected from the gzip magic bytes, not the file name. When `expected_sha256`
    is given, the SHA-256 of the *decompressed* bytes must equal it. Any wrong checksum, bad magic
    number, unknown type code, or a payload shorter or longer than the header's sizes promise is a
    ValueError naming the file, what was expected and what was found.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise ValueError(f"{path}: not a readable gzip file ({err}); the file is truncated or corrupt") from err

    if expected_sha256 is not None:
        found = hashlib.sha256(raw).hexdigest()
        if found != expected_sha256.lower():
            raise ChecksumError(
                f"{path}: SHA-256 of the decompressed file is {found}, expected {expected_sha256}; "
                "the file is corrupt or not the file you think it is"
            )

    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for the 4-byte IDX magic number")
    zero, type_code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or type_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()}; expected 0x0000TTDD with type code TT in "
            f"{{{', '.join(f'{c:02x}' for c in _IDX_DTYPES)}}} and DD >= 1 dimensions"
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"{path}: truncated header, {ndim} sizes need {header_size} bytes, found {len(raw)}")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected_size = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected_size:
        what = "truncated" if len(raw) < expected_size else "trailing bytes"
        raise ValueError(
            f"{path}: {what}: header promises shape {shape} of {dtype.name}, i.e. {expected_size} bytes, "
            f"found {len(raw)} bytes"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # native byte order, a writable copy


def _find_file(root: str, name: str) -> str:
    """The path of `name` in `root`, gzip (`name.gz`) preferred over raw."""
    for candidate in (name + ".gz", name):
        path = os.path.join(root, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{os.path.join(root, name)}[.gz] not found; {_INSTALL_HINT}")


def idx_file_names(split: str) -> tuple[str, str]:
    """The (images, labels) IDX file names of a split, without `.gz`: "train" or "test"."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {sorted(SPLITS)}")
    prefix = SPLITS[split]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def load_fashion_mnist_arrays(
    root: str | os.PathLike = DEFAULT_ROOT,
    split: str = "train",
    verify: bool = True,
    checksums: Mapping[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 28, 28] (0 = background, 255 = ink) and labels int64 [N] of one split.

    `verify` checks each decompressed file against `checksums` (default `FASHION_MNIST_SHA256`,
    keyed by file name without `.gz`). Set `verify=False` to read other IDX data (e.g. MNIST).
    """
    root = os.fspath(root)
    images_name, labels_name = idx_file_names(split)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Fashion-MNIST folder {root} does not exist; {_INSTALL_HINT}")
    checksums = FASHION_MNIST_SHA256 if checksums is None else checksums
    arrays = []
    for name in (images_name, labels_name):
        expected = None
        if verify:
            if name not in checksums:
                raise ValueError(f"no checksum for {name}; checksums has {sorted(checksums)}")
            expected = checksums[name]
        try:
            arrays.append(read_idx(_find_file(root, name), expected_sha256=expected))
        except ChecksumError as err:
            raise ChecksumError(
                f"{err}. To read IDX files other than the official Fashion-MNIST ones (e.g. MNIST), "
                "pass verify=False (load_training_dataset: verify_checksums=False)"
            ) from None
    images, labels = arrays

    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{images_name}: expected uint8 images of shape (N, H, W), found {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{labels_name}: expected {len(images)} labels (one per image), found shape {labels.shape}")
    return images, labels.astype(np.int64)


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def arrays_to_dataset(images: np.ndarray, labels: np.ndarray, class_names=FASHION_MNIST_CLASSES):
    """A `datasets.Dataset` with columns "image" (Image feature, PIL mode "L") and "label" (ClassLabel).

    Images are PNG encoded once here (about 10 s for 60,000 on one core), which is the form
    `datasets` stores images in, so `to_parquet` and the Hub see an ordinary image data set.
    """
    import datasets

    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(
            f"labels range over [{labels.min()}, {labels.max()}], but there are only {len(class_names)} class names"
        )
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(class_names))})
    columns = {
        "image": [{"bytes": _png_bytes(image), "path": None} for image in images],
        "label": labels.tolist(),
    }
    return datasets.Dataset.from_dict(columns, features=features)


def fashion_mnist_dataset(
    root: str | os.PathLike = DEFAULT_ROOT,
    split: str = "train",
    verify: bool = True,
    checksums: Mapping[str, str] | None = None,
):
    """One split of Fashion-MNIST as a `datasets.Dataset` with columns "image" and "label"."""
    images, labels = load_fashion_mnist_arrays(root, split, verify=verify, checksums=checksums)
    return arrays_to_dataset(images, labels)


def stratified_sample_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` indices, n / num_classes of every class drawn without replacement, sorted ascending.

    Deterministic for a given (labels, n, seed): numpy's PCG64 generator, classes in order.
    """
    classes = np.unique(labels)
    if n <= 0 or n % len(classes) != 0:
        raise ValueError(f"sample size {n} must be a positive multiple of the number of classes ({len(classes)})")
    per_class = n // len(classes)
    rng = np.random.default_rng(seed)
    chosen = []
    for k in classes:
        members = np.flatnonzero(labels == k)
        if len(members) < per_class:
            raise ValueError(f"class {k} has {len(members)} examples, fewer than the {per_class} asked for")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m annotated_pipeline.datasets.fashion_mnist",
        description="Convert Fashion-MNIST IDX files to a parquet file readable by datasets.load_dataset('parquet').",
    )
    parser.add_argument("--to-parquet", metavar="OUT_DIR", required=True, help="writes OUT_DIR/{split}.parquet")
    parser.add_argument("--root", default=DEFAULT_ROOT, help=f"folder with the IDX files (default {DEFAULT_ROOT})")
    parser.add_argument("--split", default="train", choices=sorted(SPLITS))
    parser.add_argument("--sample", type=int, default=None, help="keep N images, N/10 per class (stratified)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified sample")
    parser.add_argument("--no-verify", action="store_true", help="skip the SHA-256 check of the files")
    args = parser.parse_args(argv)

    images, labels = load_fashion_mnist_arrays(args.root, args.split, verify=not args.no_verify)
    if args.sample is not None:
        keep = stratified_sample_indices(labels, args.sample, args.seed)
        images, labels = images[keep], labels[keep]
    dataset = arrays_to_dataset(images, labels)
    os.makedirs(args.to_parquet, exist_ok=True)
    out = os.path.join(args.to_parquet, f"{args.split}.parquet")
    dataset.to_parquet(out)
    print(f"wrote {len(dataset)} examples to {out} ({os.path.getsize(out) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
