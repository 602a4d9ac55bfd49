"""benchmarks/capped_logsnr.py: the chain it builds (the script itself samples, which is not a test)."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, os.fspath(ROOT / "benchmarks"))

from capped_logsnr import capped_logsnr_chain  # noqa: E402

from annotated_pipeline import AnnotatedDDPMScheduler  # noqa: E402


def test_chain_starts_at_pure_noise_then_steps_uniformly_in_lambda_from_the_cap():
    alphas_cumprod = AnnotatedDDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod.double().numpy()
    lambdas = 0.5 * np.log(alphas_cumprod / (1 - alphas_cumprod))
    chain = capped_logsnr_chain(alphas_cumprod, 20, -5.0)
    assert chain[0] == 999 and chain[-1] == 0 and all(a > b for a, b in zip(chain, chain[1:]))
    assert abs(lambdas[chain[1]] - (-5.0)) < 0.15  # the second step is the cap, the first jump is 999 -> cap
    gaps = np.diff(lambdas[chain[1:]])
    expected = (lambdas[0] - (-5.0)) / 18
    assert np.all(np.abs(gaps - expected) < 0.6 * expected)  # uniform in lambda up to integer rounding
    with pytest.raises(ValueError, match="lambda_cap must lie in"):
        capped_logsnr_chain(alphas_cumprod, 20, 7.0)
