"""The Frechet distance between two Gaussians, the number behind FID.

Fit a Gaussian to each set of features, N(mu1, S1) and N(mu2, S2). The Frechet (2-Wasserstein)
distance between them has a closed form (Dowson & Landau 1982), which Heusel et al. 2017 apply to
Inception features and call FID:

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

The only hard part is Tr((S1 S2)^(1/2)). S1 S2 is not symmetric, but it is similar to the symmetric
positive semi-definite matrix

    M = S1^(1/2) S2 S1^(1/2)          (S1 S2 = S1^(1/2) M S1^(-1/2))

so both have the same eigenvalues lambda_i >= 0, and Tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i).
Two symmetric eigendecompositions (`torch.linalg.eigh`, one for S1^(1/2), one for M) in float64 give
it without scipy's general `sqrtm`, and without its complex round-off: tiny negative eigenvalues that
appear from rank-deficient covariances (fewer samples than dimensions) are clamped to 0.

As with FID, the value reported is d^2 (not its square root), and it depends on the embedding: the
distances computed with our Fashion-MNIST classifier are not comparable to Inception FIDs.
"""

import torch


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample mean mu = (1/N) sum_i f_i and covariance S = (1/(N-1)) sum_i (f_i - mu)(f_i - mu)^T.

    features: (N, D) with N >= 2. Returns float64 tensors mu (D,) and S (D, D).
    The unbiased (N - 1) covariance is the one FID implementations use (numpy.cov's default).
    """
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D tensor (N, D), got shape {tuple(features.shape)}")
    if features.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors to estimate a covariance, got {features.shape[0]}")
    f = features.detach().to(torch.float64)
    mu = f.mean(dim=0)
    centered = f - mu
    sigma = centered.T @ centered / (f.shape[0] - 1)
    return mu, sigma


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a PSD matrix: S = V diag(w) V^T -> S^(1/2) = V diag(sqrt(max(w, 0))) V^T."""
    w, v = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """Tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(S1^(1/2) S2 S1^(1/2))), in float64."""
    sqrt_sigma1 = _sqrt_psd(sigma1)
    m = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    eigenvalues = torch.linalg.eigvalsh((m + m.T) / 2)
    return eigenvalues.clamp_min(0).sqrt().sum()


def frechet_distance(
    mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor
) -> float:
    """d^2 = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2))  (Dowson & Landau 1982).

    mu1, mu2: (D,); sigma1, sigma2: (D, D) symmetric PSD. Computed in float64; returns a Python float,
    clamped at 0 (round-off can leave -1e-12 for identical Gaussians).
    """
    mu1, mu2, sigma1, sigma2 = (torch.as_tensor(t).detach().to(torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 must be 1-D of the same length, got {tuple(mu1.shape)} and {tuple(mu2.shape)}")
    d = mu1.shape[0]
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} must be ({d}, {d}) to match the means, got {tuple(s.shape)}")
    if not all(torch.isfinite(t).all() for t in (mu1, mu2, sigma1, sigma2)):
        raise ValueError("statistics contain NaN or inf; check the features they were computed from")
    diff = mu1 - mu2
    d2 = diff @ diff + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt_product(sigma1, sigma2)
    return max(float(d2), 0.0)


def frechet_distance_between(features1: torch.Tensor, features2: torch.Tensor) -> float:
    """Fit a Gaussian to each (N, D) feature set and return their Frechet distance d^2."""
    if features1.ndim != 2 or features2.ndim != 2 or features1.shape[1] != features2.shape[1]:
        raise ValueError(
            f"feature sets must be (N1, D) and (N2, D) with the same D, got "
            f"{tuple(features1.shape)} and {tuple(features2.shape)}"
        )
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))
