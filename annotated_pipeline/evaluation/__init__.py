"""Offline sample-quality evaluation, for Fashion-MNIST (shipped classifier) and any labelled image set.

    classifier.py        a LeNet-sized CNN; its penultimate features phi(x) are the embedding
    frechet.py           d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between Gaussian fits
    kid.py               KID: unbiased MMD^2 with k(x, y) = (x . y / D + 1)^3, over subsets (Binkowski et al. 2018)
    (datasets/labelled.py: a labelled image set as tensors in [-1, 1], and its splits)
    train_classifier.py  trains the classifier on any labelled set (the shipped weights: Fashion-MNIST, in weights/)
    reference.py         the reference split and the floor's training images, as the classifier reads them
    samples.py           N seeded samples of a pipeline, in batches, each checked for NaN
    measures.py          features phi(x), Frechet distance and its floor, KID, class coverage
    evaluate.py          samples a pipeline, reports distance and KID to the reference, their floors, class coverage
    nearest.py           samples beside their nearest training images, and the share that lies memorisation-close
    inception.py         Inception-v3 pool features (the TF-FID network, from the [inception] extra, SHA-1 checked)
    inception_measure.py evaluate/training with --features inception: Inception FID/KID, reference features cached
    image_sets.py        image folders and .npz statistics, as `annotated-pipeline fid` reads them
    fid.py               `annotated-pipeline fid A B [--kid] [--save-stats OUT.npz]`

FID with Inception-v3 is the usual yardstick, but it sees 28x28 grayscale poorly (upsampled to 299x299)
and needs the optional extra; the default is the same Frechet recipe with an embedding trained on
Fashion-MNIST, whose numbers are NOT comparable to published Inception FIDs. `--features inception`
(and `annotated-pipeline fid`) give the Inception FID and KID, comparable to FIDs computed the same way.

Names are resolved lazily, so `python -m annotated_pipeline.evaluation.evaluate` imports each module once.
"""

import importlib

_EXPORTS = {
    "FashionMNISTClassifier": ".classifier",
    "ImageClassifier": ".classifier",
    "load_classifier": ".classifier",
    "kernel_distance": ".kid",
    "nearest_check": ".nearest",
    "load_default_classifier": ".classifier",
    "to_classifier_range": ".classifier",
    "feature_statistics": ".frechet",
    "frechet_distance": ".frechet",
    "frechet_distance_between": ".frechet",
    "class_coverage": ".measures",
    "distance_floor": ".measures",
    "evaluate": ".evaluate",
    "load_split": ".reference",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
