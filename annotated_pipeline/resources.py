"""The files the package reads at run time, found with importlib.resources wherever it is installed
(a clone, an editable install, a wheel in site-packages):

    data/fashion-mnist-sample/   2,000 Fashion-MNIST training images (train.parquet) and their licence
    templates/model_card.md      the model card template (the clone's model_card/template.md links here)
    evaluation/weights/          the evaluation's classifier (config.json, safetensors, its SHA-256 in classifier.py)

In a clone, the top-level `data/` and `model_card/` are links into the package, so there is one copy.
"""

from importlib.resources import files
from pathlib import Path

EMBEDDED_SAMPLE_DESCRIPTION = "Fashion-MNIST (2,000-image sample shipped with annotated-pipeline)"


def package_path(*parts) -> Path:
    """A file or folder inside the installed package, as a filesystem path."""
    return Path(str(files("annotated_pipeline").joinpath(*parts)))


def embedded_sample() -> Path:
    """The folder of the embedded Fashion-MNIST sample: the training default, and small test data."""
    return package_path("data", "fashion-mnist-sample")


def model_card_template() -> Path:
    """The model card template (Jinja, rendered by huggingface_hub's ModelCard.from_template)."""
    return package_path("templates", "model_card.md")
