"""Post-hoc EMA (training/posthoc_ema.py) against closed forms and direct computation (Karras et al. 2024, sec. 3)."""

import numpy as np
import pytest
import torch

from annotated_pipeline.training.posthoc_ema import (MAX_SIGMA_REL, SNAPSHOT_FILE, SNAPSHOT_FOLDER, PowerEMA,
                                                     gamma_of_sigma_rel, list_snapshots, profile_inner_product,
                                                     sigma_rel_of_gamma, synthesis_weights, synthesize)


def profile(t, gamma, tau):
    """p_{gamma,t}(tau) = (gamma + 1) tau^gamma / t^(gamma + 1) on (0, t], 0 after."""
    return np.where(tau <= t, (gamma + 1) * tau ** gamma / t ** (gamma + 1), 0.0)


def sigma_rel_by_quadrature(gamma):
    """The standard deviation of tau / t under p_{gamma,1}, integrated numerically."""
    u = np.linspace(0, 1, 200_001)
    p = profile(1.0, gamma, u)
    mean = np.trapezoid(u * p, u)
    return np.sqrt(np.trapezoid((u - mean) ** 2 * p, u))


@pytest.mark.parametrize("gamma", [0.0, 1.0, 6.94, 16.97, 40.0])
def test_sigma_rel_is_the_width_of_the_profile_and_gamma_inverts_it(gamma):
    assert sigma_rel_of_gamma(gamma) == pytest.approx(sigma_rel_by_quadrature(gamma), rel=1e-5)
    assert gamma_of_sigma_rel(sigma_rel_of_gamma(gamma)) == pytest.approx(gamma, abs=1e-7)


def test_the_papers_two_profiles():
    # Karras et al. 2024 track sigma_rel 0.05 and 0.10, i.e. gamma of about 16.97 and 6.94
    assert gamma_of_sigma_rel(0.05) == pytest.approx(16.97, abs=0.01)
    assert gamma_of_sigma_rel(0.10) == pytest.approx(6.94, abs=0.01)


@pytest.mark.parametrize("sigma_rel", [0.0, -0.1, MAX_SIGMA_REL + 1e-3, 1.0])
def test_a_width_outside_the_possible_range_is_refused(sigma_rel):
    with pytest.raises(ValueError, match="sigma_rel must lie in"):
        gamma_of_sigma_rel(sigma_rel)


@pytest.mark.parametrize("t_a,gamma_a,t_b,gamma_b", [(100, 3.0, 100, 3.0), (40, 6.9, 100, 17.0), (100, 17.0, 40, 6.9),
                                                      (7, 0.0, 10, 2.5)])
def test_inner_product_of_two_profiles_against_quadrature(t_a, gamma_a, t_b, gamma_b):
    tau = np.linspace(0, max(t_a, t_b), 400_001)
    numeric = np.trapezoid(profile(t_a, gamma_a, tau) * profile(t_b, gamma_b, tau), tau)
    assert profile_inner_product(t_a, gamma_a, t_b, gamma_b) == pytest.approx(numeric, rel=1e-4)


def direct_power_average(thetas, gamma):
    """sum_tau w_tau theta_tau with w_tau = (tau^(g+1) - (tau-1)^(g+1)) / t^(g+1): the continuous average of the
    weights held constant within each step."""
    t = len(thetas)
    tau = np.arange(1, t + 1, dtype=np.float64)
    w = (tau ** (gamma + 1) - (tau - 1) ** (gamma + 1)) / t ** (gamma + 1)
    return np.tensordot(w, np.stack(thetas), axes=1)


def trajectory(t):
    """A smooth stand-in for weights over training: two parameters, a drift and a slow oscillation."""
    return [np.array([np.log(tau), np.sin(tau / 400.0)]) for tau in range(1, t + 1)]


def test_the_ema_recursion_is_the_power_function_average():
    thetas = trajectory(300)
    parameter = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    ema = PowerEMA([("w", parameter)], (0.05, 0.2))
    ema.averages = [[a.double()] for [a] in ema.averages]
    for theta in thetas:
        parameter.data = torch.from_numpy(theta)
        ema.step([parameter])
    for gamma, [average] in zip(ema.gammas, ema.averages):
        np.testing.assert_allclose(average.numpy(), direct_power_average(thetas, gamma), rtol=1e-12)


def test_a_stored_profile_is_synthesized_as_itself():
    snapshots = [(t, g) for t in (100, 200, 300) for g in (16.97, 6.94)]
    x = synthesis_weights(snapshots, 300, 6.94)
    np.testing.assert_allclose(x, np.eye(len(snapshots))[5], atol=1e-6)


def write_run(tmp_path, thetas, sigma_rels, every):
    parameter = torch.nn.Parameter(torch.zeros(2, dtype=torch.float32))
    ema = PowerEMA([("w", parameter)], sigma_rels)
    (tmp_path / SNAPSHOT_FOLDER).mkdir()
    for theta in thetas:
        parameter.data = torch.from_numpy(theta).float()
        ema.step([parameter])
        if ema.t % every == 0:
            ema.save(str(tmp_path / SNAPSHOT_FOLDER / SNAPSHOT_FILE.format(step=ema.t)))
    return ema


def test_synthesis_from_snapshots_approximates_an_average_never_tracked(tmp_path):
    thetas = trajectory(4000)
    write_run(tmp_path, thetas, (0.05, 0.10), every=250)
    assert [step for step, _ in list_snapshots(tmp_path)] == list(range(250, 4001, 250))
    for sigma_rel in (0.04, 0.07, 0.15):
        theta_hat, used = synthesize(tmp_path, sigma_rel, 4000)
        truth = direct_power_average(thetas, gamma_of_sigma_rel(sigma_rel))
        assert len(used) == 32
        np.testing.assert_allclose(theta_hat["w"].numpy(), truth, rtol=1e-3, atol=2e-3)
        # and it is not just the nearest stored average
        nearest = direct_power_average(thetas, gamma_of_sigma_rel(0.05 if sigma_rel < 0.075 else 0.10))
        assert np.abs(theta_hat["w"].numpy() - truth).max() < np.abs(nearest - truth).max() / 3
    earlier, _ = synthesize(tmp_path, 0.07, 2000)  # at an earlier snapshot, from the snapshots up to it only
    truth = direct_power_average(thetas[:2000], gamma_of_sigma_rel(0.07))
    np.testing.assert_allclose(earlier["w"].numpy(), truth, rtol=2e-3)
    assert np.abs(earlier["w"].numpy() - truth).max() < np.abs(
        direct_power_average(thetas[:2000], gamma_of_sigma_rel(0.05)) - truth).max() / 3


def test_synthesis_needs_a_snapshot_at_the_step(tmp_path):
    write_run(tmp_path, trajectory(100), (0.05, 0.10), every=40)
    with pytest.raises(ValueError, match="no snapshot at step 100 .*step 80"):
        synthesize(tmp_path, 0.07, 100)
    with pytest.raises(ValueError, match="holds no snapshot up to step 30"):
        synthesize(tmp_path, 0.07, 30)


def test_state_round_trip_and_mismatch(tmp_path):
    ema = write_run(tmp_path, trajectory(10), (0.05, 0.10), every=100)
    ema.save(str(tmp_path / "state.safetensors"))
    other = PowerEMA([("w", torch.nn.Parameter(torch.zeros(2)))], (0.05, 0.10))
    other.load(str(tmp_path / "state.safetensors"))
    assert other.t == 10
    for [a], [b] in zip(ema.averages, other.averages):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="same --posthoc_ema_sigma_rels"):
        PowerEMA([("w", torch.nn.Parameter(torch.zeros(2)))], (0.05,)).load(str(tmp_path / "state.safetensors"))
    with pytest.raises(ValueError, match="does not hold this model's parameters"):
        PowerEMA([("v", torch.nn.Parameter(torch.zeros(2)))], (0.05, 0.10)).load(str(tmp_path / "state.safetensors"))
