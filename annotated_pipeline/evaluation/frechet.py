"""The Frechet distance between two Gaussians, the number behind FID.

Fit a Gaussian to each set of features, N(mu1, S1) and N(mu2, S2). The Frechet (2-Wasserstein)
distance between them has a closed form (Dowson & Landau 1982), which Heusel et al. 2017 apply to
Inception features and call FID:

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

The only hard part is Tr((S1 S2)^(1/2)), the sum of the square roots of the eigenvalues of S1 S2.
There are two ways to it, and this module takes the cheaper one.

From the covariances (D x D). S1 S2 is not symmetric, but it is similar to the symmetric positive
semi-definite matrix

    M = S1^(1/2) S2 S1^(1/2)          (S1 S2 = S1^(1/2) M S1^(-1/2))

so both have the same eigenvalues lambda_i >= 0, and Tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i).
Two symmetric eigendecompositions (`torch.linalg.eigh`, one for S1^(1/2), one for M) in float64 give
it without scipy's general `sqrtm`, and without its complex round-off: tiny negative eigenvalues that
appear from rank-deficient covariances (fewer samples than dimensions) are clamped to 0. Its cost
grows as D^3 whatever the number of samples: 2048-d Inception features take two 2048 x 2048 eighs.

From the features (N1 x D and N2 x D). Let A1, A2 be the centred feature matrices (row i: f_i - mu),
so that S1 = A1^T A1 / (N1 - 1) and S2 = A2^T A2 / (N2 - 1), and write c = (N1 - 1)(N2 - 1). Then

    S1 S2 = A1^T (A1 A2^T A2) / c = X Y,   X = A1^T (D x N1),   Y = A1 A2^T A2 / c (N1 x D).

XY and YX have the same non-zero eigenvalues (for any X of shape D x N and Y of shape N x D: if
XY v = lambda v with lambda != 0, then YX (Yv) = lambda (Yv) and Yv != 0), and

    YX = A1 A2^T A2 A1^T / c = B B^T / c,   B = A1 A2^T (N1 x N2).

The eigenvalues of B B^T are the squared singular values sigma_i(B)^2, so the non-zero eigenvalues of
S1 S2 are sigma_i(B)^2 / c, and

    Tr((S1 S2)^(1/2)) = sum_i sigma_i(B) / sqrt(c) = ||A1 A2^T||_* / sqrt((N1 - 1)(N2 - 1)),

the nuclear norm (sum of singular values) of an N1 x N2 matrix. Likewise Tr(S1) = ||A1||_F^2 / (N1 - 1).
This path never forms a D x D matrix; it costs about 2 N1 N2 D (the product) + 4 n^2 m (the singular
values, n = min(N1, N2), m = max(N1, N2); Golub & Van Loan 2013, sec. 8.6) against about 16 D^3 for
the covariance path (two eighs, three products). With fewer rows than D in both sets it is always the
cheaper: 1000 Inception features a side take ~6 % of the eigh path's operations (and dense products
run nearer the machine's peak than eigh does).

As with FID, the value reported is d^2 (not its square root), and it depends on the embedding: the
distances computed with our Fashion-MNIST classifier are not comparable to Inception FIDs.
"""

import torch

# Floating-point operations of each path, in units that only need to be comparable (see the docstring).
EIGH_PATH_FLOPS_PER_D3 = 16  # eigh with vectors (~9 D^3), eigvalsh (~4/3 D^3), three D x D products (6 D^3)


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample mean mu = (1/N) sum_i f_i and covariance S = (1/(N-1)) sum_i (f_i - mu)(f_i - mu)^T.

    features: (N, D) with N >= 2. Returns float64 tensors mu (D,) and S (D, D).
    The unbiased (N - 1) covariance is the one FID implementations use (numpy.cov's default).
    """
    mu, centred = _centred(features)
    sigma = centred.T @ centred / (centred.shape[0] - 1)
    return mu, sigma


def _centred(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, A) in float64: the mean of the (N, D) features and the centred matrix A, row i = f_i - mu."""
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D tensor (N, D), got shape {tuple(features.shape)}")
    if features.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors to estimate a covariance, got {features.shape[0]}")
    f = features.detach().to(torch.float64)
    mu = f.mean(dim=0)
    return mu, f - mu


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


def trace_sqrt_product_of_features(centred1: torch.Tensor, centred2: torch.Tensor) -> torch.Tensor:
    """Tr((S1 S2)^(1/2)) = ||A1 A2^T||_* / sqrt((N1 - 1)(N2 - 1)) from the centred features A1 (N1, D),
    A2 (N2, D) (derived in the module docstring), in float64."""
    n1, n2 = centred1.shape[0], centred2.shape[0]
    singular_values = torch.linalg.svdvals(centred1 @ centred2.T)
    return singular_values.sum() / ((n1 - 1) * (n2 - 1)) ** 0.5


def features_path_is_cheaper(n1: int, n2: int, d: int) -> bool:
    """True where the nuclear-norm path (about 2 N1 N2 D + 4 n^2 m operations) costs less than the eigh path
    (about 16 D^3); always so when both sets have fewer than D rows."""
    n, m = min(n1, n2), max(n1, n2)
    return 2 * n1 * n2 * d + 4 * n * n * m < EIGH_PATH_FLOPS_PER_D3 * d**3


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
    _check_finite(mu1, mu2, sigma1, sigma2)
    diff = mu1 - mu2
    d2 = diff @ diff + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt_product(sigma1, sigma2)
    return max(float(d2), 0.0)


def frechet_distance_between(features1: torch.Tensor, features2: torch.Tensor) -> float:
    """Fit a Gaussian to each (N, D) feature set and return their Frechet distance d^2, by the cheaper path
    (`features_path_is_cheaper`): from the centred features (the nuclear norm) or from the covariances (eigh)."""
    if features1.ndim != 2 or features2.ndim != 2 or features1.shape[1] != features2.shape[1]:
        raise ValueError(
            f"feature sets must be (N1, D) and (N2, D) with the same D, got "
            f"{tuple(features1.shape)} and {tuple(features2.shape)}"
        )
    (n1, d), n2 = features1.shape, features2.shape[0]
    if not features_path_is_cheaper(n1, n2, d):
        return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))
    (mu1, a1), (mu2, a2) = _centred(features1), _centred(features2)
    _check_finite(mu1, mu2, a1, a2)
    diff = mu1 - mu2
    trace1, trace2 = a1.square().sum() / (n1 - 1), a2.square().sum() / (n2 - 1)  # Tr(S) = ||A||_F^2 / (N - 1)
    d2 = diff @ diff + trace1 + trace2 - 2 * trace_sqrt_product_of_features(a1, a2)
    return max(float(d2), 0.0)


def _check_finite(*tensors: torch.Tensor) -> None:
    if not all(torch.isfinite(t).all() for t in tensors):
        raise ValueError("statistics contain NaN or inf; check the features they were computed from")
