"""A small image classifier whose penultimate layer is the embedding of our Frechet distance and KID.

FID (Heusel et al. 2017) embeds images with Inception-v3 and compares the two clouds of embeddings as
Gaussians. Inception was trained on 299x299 colour photographs; 28x28 grayscale clothing is far from
what it has seen, and its weights cannot be downloaded here anyway. So we do what the FID recipe
asks for, with a network that knows the data: a LeNet-sized CNN (LeCun et al. 1998) trained on the
official Fashion-MNIST training split by `train_classifier.py`, whose last hidden layer phi(x) in
R^128 is the embedding.

    x in [-1, 1]^{1x28x28}
      -> conv 5x5 (32) -> batch norm -> ReLU -> max pool 2   : 32 x 14 x 14
      -> conv 5x5 (64) -> batch norm -> ReLU -> max pool 2   : 64 x 7 x 7
      -> flatten -> linear (3136 -> 128) -> ReLU              : phi(x), the features
         (pooling "max": the maximum over the 7 x 7 positions -> linear (64 -> 128) instead)
      -> linear (128 -> 10)                                   : logits over the 10 classes

Input range. The classifier reads images in [-1, 1], the range the diffusion model itself works in
(Ho et al. 2020, section 3.3: pixel values {0..255} scaled linearly to [-1, 1]). The pipeline returns
images in [0, 1] for output_type "pt"/"np"; map them back with `x = 2 * images - 1` (or call
`to_classifier_range`). Raw uint8 images map with `x = images / 127.5 - 1`.

Any labelled data set. The same network reads C x S x S images of K classes (`in_channels`,
`image_size`, `num_classes`, `class_names` in its config); the two poolings floor, so the features
see floor(floor(S / 2) / 2)^2 positions (7 x 7 at S = 28). `annotated-pipeline train-classifier DATA`
(train_classifier.py) trains one on a user's images. The shipped Fashion-MNIST weights are this class
with the defaults below (their config.json names the class by its old name, FashionMNISTClassifier,
which stays an alias).

The model is a diffusers `ModelMixin, ConfigMixin`: its shape lives in the config, and
`save_pretrained` / `from_pretrained` write and read `config.json` + safetensors weights.
`load_default_classifier()` loads the weights shipped in `weights/`, `load_classifier(folder)` any
saved one.
"""

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..resources import package_path

DEFAULT_WEIGHTS_DIR = package_path("evaluation", "weights")
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
# How the last feature map reaches fc_features: "flatten" keeps every position (the shipped weights: Fashion-MNIST
# is centred), "max" takes each channel's maximum over the positions (objects anywhere in the image).
POOLINGS = ("flatten", "max")
# The SHA-256 of the shipped weights/diffusion_pytorch_model.safetensors; retraining them means updating it.
SHIPPED_WEIGHTS_SHA256 = "63c82a65d921d9f97b0d07b50bc1cbf51c5baa23606c250bf26d9c9116f95f66"


class ImageClassifier(ModelMixin, ConfigMixin):
    """LeNet-sized CNN: `features(x)` is the 128-d embedding phi(x), `forward(x)` the class logits."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        channels: tuple = (32, 64),
        kernel_size: int = 5,
        feature_dim: int = 128,
        num_classes: int = 10,
        class_names: tuple | None = None,
        pooling: str = "flatten",
    ):
        super().__init__()
        channels = tuple(channels)
        if len(channels) != 2 or min(channels) < 1:
            raise ValueError(f"channels must be two positive ints (one per conv stage), got {channels}")
        if image_size < 4:
            raise ValueError(f"image_size must be >= 4 (two 2x poolings), got {image_size}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names must name the {num_classes} classes, got {len(class_names)} names")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int (same-size padding), got {kernel_size}")
        if in_channels < 1 or feature_dim < 1 or num_classes < 2:
            raise ValueError(
                f"need in_channels >= 1, feature_dim >= 1, num_classes >= 2; "
                f"got {in_channels}, {feature_dim}, {num_classes}"
            )
        c1, c2 = channels
        k, pad = kernel_size, kernel_size // 2
        self.conv1 = nn.Conv2d(in_channels, c1, kernel_size=k, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=k, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        positions = (image_size // 2 // 2) ** 2 if pooling == "flatten" else 1
        self.fc_features = nn.Linear(c2 * positions, feature_dim)
        self.fc_logits = nn.Linear(feature_dim, num_classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The config's class names, else "0", "1", ..., "K-1"."""
        names = self.config.class_names
        return tuple(names) if names is not None else tuple(str(k) for k in range(self.config.num_classes))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, S, S): the images it reads."""
        return (self.config.in_channels, self.config.image_size, self.config.image_size)

    def _check_input(self, x: torch.Tensor) -> None:
        c, s = self.config.in_channels, self.config.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(f"expected images of shape (B, {c}, {s}, {s}) in [-1, 1], got {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): the penultimate (post-ReLU) activations, shape (B, feature_dim). x in [-1, 1]."""
        self._check_input(x)
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        h = F.max_pool2d(F.relu(self.bn2(self.conv2(h))), 2)
        h = h.flatten(1) if self.config.pooling == "flatten" else h.amax(dim=(2, 3))
        return F.relu(self.fc_features(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, shape (B, num_classes). x in [-1, 1]."""
        return self.fc_logits(self.features(x))


FashionMNISTClassifier = ImageClassifier  # the name the shipped config.json (and older code) uses


def to_classifier_range(images: torch.Tensor) -> torch.Tensor:
    """Map pipeline output in [0, 1] (B, C, H, W) or uint8 in {0..255} to the classifier's [-1, 1]."""
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1.0
    return images.float() * 2.0 - 1.0


def sha256_of(path) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_default_classifier(device: str | torch.device = "cpu", weights_dir=None,
                            expected_sha256=SHIPPED_WEIGHTS_SHA256) -> ImageClassifier:
    """The classifier shipped with the package (see weights/README.md for how it was trained), after
    checking its weights file against the SHA-256 recorded here: every number the evaluation reports
    rests on these weights, so a changed or damaged file is refused rather than used."""
    weights_dir = Path(weights_dir or DEFAULT_WEIGHTS_DIR)
    if not (weights_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"no shipped classifier weights in {weights_dir}; train them with "
            "`python -m annotated_pipeline.evaluation.train_classifier --output_dir <that folder>`"
        )
    found = sha256_of(weights_dir / WEIGHTS_FILE)
    if found != expected_sha256:
        raise ValueError(
            f"the classifier weights {weights_dir / WEIGHTS_FILE} do not match the recorded SHA-256 (found {found}, "
            f"expected {expected_sha256}): the file was changed or damaged; reinstall the package"
        )
    model = ImageClassifier.from_pretrained(weights_dir, torch_dtype=torch.float32, use_safetensors=True)
    return model.to(device).eval()


def load_classifier(folder, device: str | torch.device = "cpu") -> ImageClassifier:
    """A classifier saved by `annotated-pipeline train-classifier` (config.json + safetensors), in eval mode."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{folder} is not a saved classifier (config.json and {WEIGHTS_FILE}); "
                                "train one with `annotated-pipeline train-classifier DATA --output_dir FOLDER`")
    model = ImageClassifier.from_pretrained(folder, torch_dtype=torch.float32, use_safetensors=True)
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise ValueError(f"{folder} holds NaN or inf weights (its training diverged): retrain it with a lower "
                         "--learning_rate")
    return model.to(device).eval()
