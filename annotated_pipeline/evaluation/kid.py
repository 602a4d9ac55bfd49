"""The kernel distance (KID) of Binkowski et al. 2018: an unbiased squared MMD between two feature sets.

The Frechet distance (frechet.py) fits a Gaussian to each set, and its estimate is biased: two sets of
real images never score 0, and the bias grows as the sets shrink, so distances only compare at equal
N. Binkowski et al. 2018 (Demystifying MMD GANs, section 4) replace it with the squared maximum mean
discrepancy under the cubic polynomial kernel on the same features (D of them),

    k(x, y) = (x . y / D + 1)^3

estimated without bias from m features x_1..x_m of one set and n features y_1..y_n of the other
(Gretton et al. 2012, eq. 3):

    MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
              - 2/(m n) sum_{i, j} k(x_i, y_j)

Its expectation is 0 when both sets come from one distribution, at any m and n (so it can come out
slightly negative), which makes it the honest number for small sets. As Binkowski et al. do (and
torchmetrics' `KernelInceptionDistance`), it is averaged over `num_subsets` random subsets of
`subset_size` features from each set (drawn without replacement within a subset); the mean is the
KID, and the spread over subsets (population std, as torchmetrics reports) says how far to trust it.
As for the distance, the features are our classifier's, so it is NOT the Inception KID of papers.
"""

import torch


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (x . y / D + 1)^3 for every pair: (m, D) and (n, D) -> (m, n)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """MMD^2_u between features x (m, D) and y (n, D), m, n >= 2 (Gretton et al. 2012, eq. 3), in float64."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sets must be (m, D) and (n, D) with the same D, got {tuple(x.shape)} and {tuple(y.shape)}")
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 features in each set, got {m} and {n}")
    x, y = x.detach().to(torch.float64), y.detach().to(torch.float64)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def kernel_distance(features1: torch.Tensor, features2: torch.Tensor, num_subsets: int = 100,
                    subset_size: int = 1000, seed: int = 0) -> dict:
    """KID: the mean and population std of MMD^2_u over `num_subsets` seeded pairs of subsets.

    A subset holds min(subset_size, N1, N2) features of each set (the size used is returned, so a set
    smaller than `subset_size` shows in the report); the subsets are drawn with a torch generator
    seeded with `seed`. When a subset is the whole of both sets, it is computed once (kid_num_subsets 1,
    kid_std 0). Returns {"kid", "kid_std", "kid_subset_size", "kid_num_subsets"}."""
    if features1.ndim != 2 or features2.ndim != 2 or features1.shape[1] != features2.shape[1]:
        raise ValueError(f"feature sets must be (N1, D) and (N2, D) with the same D, got "
                         f"{tuple(features1.shape)} and {tuple(features2.shape)}")
    if num_subsets < 1 or subset_size < 2:
        raise ValueError(f"need num_subsets >= 1 and subset_size >= 2, got {num_subsets} and {subset_size}")
    size = min(subset_size, features1.shape[0], features2.shape[0])
    if size < 2:
        raise ValueError(f"the KID needs at least 2 features in each set, got {features1.shape[0]} and {features2.shape[0]}")
    if size == features1.shape[0] == features2.shape[0]:
        num_subsets = 1  # every "subset" is the whole of both sets: one value, no spread to estimate
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(num_subsets):
        i = torch.randperm(features1.shape[0], generator=generator)[:size]
        j = torch.randperm(features2.shape[0], generator=generator)[:size]
        values.append(mmd2_unbiased(features1[i], features2[j]))
    values = torch.tensor(values, dtype=torch.float64)
    return {"kid": float(values.mean()), "kid_std": float(values.std(unbiased=False)),
            "kid_subset_size": size, "kid_num_subsets": num_subsets}
