"""The numbers of an evaluation, from features: the embedding phi(x), the Frechet distance with its floor,
the KID and class coverage (Heusel et al. 2017; Binkowski et al. 2018). `evaluate` and the evaluation
during training both measure with these.
"""

import torch

from .classifier import ImageClassifier
from .frechet import frechet_distance_between
from .kid import kernel_distance


@torch.no_grad()
def embed(classifier: ImageClassifier, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(features phi(x) (N, D), predicted class (N,)) for images in [-1, 1] of the classifier's shape (N, C, S, S)."""
    classifier.eval()
    device = next(classifier.parameters()).device
    features, predictions = [], []
    for start in range(0, len(images), batch_size):
        phi = classifier.features(images[start : start + batch_size].to(device))
        features.append(phi.cpu())
        predictions.append(classifier.fc_logits(phi).argmax(dim=1).cpu())
    return torch.cat(features), torch.cat(predictions)


def distance_floor(reference_features: torch.Tensor, train_features: torch.Tensor) -> float:
    """Frechet distance between the reference (test-split) features and N training-split features:
    what real data scores.

    The training set must have the N of the samples being judged, and the reference must be the one
    they are judged against, since the bias of the estimate depends on the size of both.
    """
    if reference_features.ndim != 2 or train_features.ndim != 2 or reference_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            f"the floor compares two feature sets (M, D) and (N, D) with the same D; got "
            f"{tuple(reference_features.shape)} and {tuple(train_features.shape)}"
        )
    return frechet_distance_between(reference_features, train_features)


def class_coverage(predictions: torch.Tensor, num_classes: int = 10) -> dict:
    """Share of samples per predicted class: shares[k] = #{i : prediction_i = k} / N, and the smallest."""
    predictions = torch.as_tensor(predictions)
    if predictions.ndim != 1 or len(predictions) == 0:
        raise ValueError(f"predictions must be a non-empty 1-D tensor of class indices, got shape {tuple(predictions.shape)}")
    if predictions.min() < 0 or predictions.max() >= num_classes:
        raise ValueError(f"class indices must lie in [0, {num_classes}), got [{predictions.min()}, {predictions.max()}]")
    counts = torch.bincount(predictions.long(), minlength=num_classes)
    shares = counts.double() / len(predictions)
    return {
        "counts": counts.tolist(),
        "shares": [round(s, 6) for s in shares.tolist()],
        "min_share": round(shares.min().item(), 6),
        "min_class": int(shares.argmin()),
        "classes_covered": int((counts > 0).sum()),
    }


def measure(classifier, sample_features, sample_predictions, reference_features, train_features, seed=0,
            kid_subsets=100, kid_subset_size=1000) -> dict:
    """The numbers from features: FD and KID of the samples and of the N training images (the floors)
    against the reference, and class coverage. Shared by `evaluate` and evaluation during training."""
    kid = kernel_distance(sample_features, reference_features, kid_subsets, kid_subset_size, seed)
    kid_floor = kernel_distance(train_features, reference_features, kid_subsets, kid_subset_size, seed)
    return {
        "frechet_distance": frechet_distance_between(sample_features, reference_features),
        "frechet_distance_floor": distance_floor(reference_features, train_features),
        **kid,
        "kid_floor": kid_floor["kid"],
        "kid_floor_std": kid_floor["kid_std"],
        "class_coverage": class_coverage(sample_predictions, classifier.config.num_classes),
    }
