"""Offline sample-quality evaluation for Fashion-MNIST.

    classifier.py        a LeNet-sized CNN; its penultimate features phi(x) are the embedding
    frechet.py           d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between Gaussian fits
    train_classifier.py  trains the classifier on the official training split (weights ship in weights/)
    evaluate.py          samples a pipeline, reports the distance to the test split, its floor, class coverage

FID with Inception-v3 is the usual yardstick, but its weights are not reachable offline and it sees
28x28 grayscale poorly; this is the same Frechet recipe with an embedding trained on Fashion-MNIST.
Its numbers are NOT comparable to published Inception FIDs.

Names are resolved lazily, so `python -m annotated_pipeline.evaluation.evaluate` imports each module once.
"""

import importlib

_EXPORTS = {
    "FashionMNISTClassifier": ".classifier",
    "load_default_classifier": ".classifier",
    "to_classifier_range": ".classifier",
    "feature_statistics": ".frechet",
    "frechet_distance": ".frechet",
    "frechet_distance_between": ".frechet",
    "class_coverage": ".evaluate",
    "distance_floor": ".evaluate",
    "evaluate": ".evaluate",
    "load_split": ".evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
