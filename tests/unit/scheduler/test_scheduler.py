"""Tests for annotated_pipeline/scheduler: parity with diffusers' DDPMScheduler, closed-form math,
config round trips, the saved-pipeline copy, and the errors and warnings."""

import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler
from diffusers.utils.dynamic_modules_utils import get_relative_imports

import annotated_pipeline.scheduler.scheduling_annotated_ddpm as sched_module
from annotated_pipeline.scheduler import AnnotatedDDPMScheduler, make_betas, rescale_zero_terminal_snr
from annotated_pipeline.scheduler.schedules import ALLOWED_SCHEDULES, cosine_betas

DIFFUSERS_SCHEDULES = ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"]
PREDICTIONS = ["epsilon", "sample", "v_prediction"]
COMPARABLE_VARIANCES = ["fixed_small", "fixed_small_log", "fixed_large"]  # fixed_large_log is NaN in diffusers
ATOL = 1e-5


def pair(**config):
    """Our scheduler and diffusers' DDPMScheduler from the same config (terminal-signal warning muted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AnnotatedDDPMScheduler(**config), DDPMScheduler(**config)


def model_fn(x, t, prediction_type):
    """A stand-in denoiser: deterministic, bounded, depends on x and t."""
    out = torch.tanh(x) * 0.9 + 0.05 * math.cos(float(t))
    return out if prediction_type != "sample" else out * 1.2  # exercises clipping of x_0_hat


def run_chains(ours, theirs, shape=(2, 1, 3, 3), seed=0, steps=slice(None)):
    """Run both schedulers' full chains on their own samples with the same model and generator seed.

    `steps` picks the chain's steps to take (each feeds the next its prev_sample), all by default.
    Returns the largest difference of prev_sample and pred_original_sample over all steps."""
    assert torch.equal(ours.timesteps, theirs.timesteps)
    prediction_type = ours.config.prediction_type
    x_ours = x_theirs = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1))
    g_ours, g_theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    ours_steps, theirs_steps = [], []
    for t in ours.timesteps[steps]:
        a = ours.step(model_fn(x_ours, t, prediction_type), t, x_ours, generator=g_ours)
        b = theirs.step(model_fn(x_theirs, t, prediction_type), t, x_theirs, generator=g_theirs)
        ours_steps += [a.prev_sample, a.pred_original_sample]
        theirs_steps += [b.prev_sample, b.pred_original_sample]
        x_ours, x_theirs = a.prev_sample, b.prev_sample
    ours_steps, theirs_steps = torch.stack(ours_steps), torch.stack(theirs_steps)
    assert torch.isfinite(ours_steps).all()
    return (ours_steps - theirs_steps).abs().max().item()


def trained_betas_for(T):
    return np.linspace(2e-4, 0.03, T) ** 1.5 + 1e-4


def schedule_config(schedule, T):
    """The config keys that choose `schedule` ("trained" = explicit trained_betas) for T training steps."""
    if schedule == "trained":
        return dict(num_train_timesteps=T, trained_betas=trained_betas_for(T).tolist())
    return dict(num_train_timesteps=T, beta_schedule=schedule)


# The three ways step() can bound x_0_hat (clip_sample defaults to True, so "none" turns it off).
X0_BOUNDS = {
    "none": dict(clip_sample=False),
    "clip": dict(clip_sample=True, clip_sample_range=0.8),
    "threshold": dict(clip_sample=False, thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5),
}


# ------------------------------------------------------------------------------------------------
# Parity with diffusers' DDPMScheduler


@pytest.mark.parametrize("T", [1000, 300])
@pytest.mark.parametrize("schedule", DIFFUSERS_SCHEDULES + ["trained"])
@pytest.mark.parametrize("rescale", [False, True])
def test_schedule_tensors_and_add_noise_match_diffusers(T, schedule, rescale):
    config = dict(num_train_timesteps=T, rescale_betas_zero_snr=rescale)
    if schedule == "trained":
        config["trained_betas"] = trained_betas_for(T).tolist()
    else:
        config["beta_schedule"] = schedule
    ours, theirs = pair(**config)
    for name in ("betas", "alphas", "alphas_cumprod"):
        torch.testing.assert_close(getattr(ours, name), getattr(theirs, name), atol=ATOL, rtol=0)
    assert torch.equal(ours.timesteps, theirs.timesteps)

    # add_noise and get_velocity at every timestep at once, one sample per t.
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(T, 1, 2, 2, generator=g), torch.randn(T, 1, 2, 2, generator=g)
    t = torch.arange(T)
    torch.testing.assert_close(ours.add_noise(x0, noise, t), theirs.add_noise(x0, noise, t), atol=ATOL, rtol=0)
    torch.testing.assert_close(ours.get_velocity(x0, noise, t), theirs.get_velocity(x0, noise, t), atol=ATOL, rtol=0)


FULL_GRID_T300 = [
    (300, schedule, prediction_type, variance_type)
    for schedule in DIFFUSERS_SCHEDULES + ["trained"]
    for prediction_type in PREDICTIONS
    for variance_type in COMPARABLE_VARIANCES
]
# At T = 1000 (1000 steps per chain) each schedule once, rotating through the prediction and variance types.
ROTATION_T1000 = [
    (1000, schedule, PREDICTIONS[i % 3], COMPARABLE_VARIANCES[(i + i // 3) % 3])
    for i, schedule in enumerate(DIFFUSERS_SCHEDULES + ["trained"] + DIFFUSERS_SCHEDULES[:1])
]


# The fast tier (`pytest -m "not slow"`) walks one chain per schedule, every prediction and variance type among
# them; the rest of the grid is marked slow (CI runs all of it).
FAST_CHAINS = [(300, schedule, PREDICTIONS[i % 3], COMPARABLE_VARIANCES[i % 3])
               for i, schedule in enumerate(DIFFUSERS_SCHEDULES + ["trained"])]


def fast_first(cases, fast):
    """`cases` as pytest params, those not in `fast` marked slow."""
    return [case if case in fast else pytest.param(*case, marks=pytest.mark.slow) for case in cases]


@pytest.mark.parametrize("T, schedule, prediction_type, variance_type",
                         fast_first(FULL_GRID_T300 + ROTATION_T1000, FAST_CHAINS))
def test_full_chain_step_matches_diffusers(T, schedule, prediction_type, variance_type):
    """Every step of the full T-step chain: prev_sample and pred_original_sample, same generator seed."""
    config = dict(num_train_timesteps=T, prediction_type=prediction_type, variance_type=variance_type)
    if schedule == "trained":
        config["trained_betas"] = trained_betas_for(T).tolist()
    else:
        config["beta_schedule"] = schedule
    ours, theirs = pair(**config)
    assert len(ours.timesteps) == T
    assert run_chains(ours, theirs) <= ATOL


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("clip_sample", [True, False])
@pytest.mark.parametrize("thresholding", [True, False])
def test_clipping_and_thresholding_match_diffusers(prediction_type, clip_sample, thresholding):
    ours, theirs = pair(
        prediction_type=prediction_type,
        clip_sample=clip_sample,
        clip_sample_range=0.8,
        thresholding=thresholding,
        dynamic_thresholding_ratio=0.9,
        sample_max_value=1.5,
    )
    ours.set_timesteps(200)
    theirs.set_timesteps(200)
    assert run_chains(ours, theirs, shape=(3, 2, 4, 4)) <= ATOL


CHAIN_ENDS = [0, 1, 2, -2, -1]  # a chain's first three and last two steps, where its coefficients are extreme


@pytest.mark.parametrize("T, schedule", fast_first([(T, schedule) for T in (1000, 400)
                                                    for schedule in DIFFUSERS_SCHEDULES + ["trained"]],
                                                   fast=[(1000, "squaredcos_cap_v2")]))  # issue 21's case fast
def test_wide_grid_matches_diffusers_bit_for_bit(T, schedule):
    """Per schedule and T, every spacing x steps (7, 50) x x_0 bound x prediction x variance type: 162 chains.

    "linspace" and "trailing" start at t = T-1, where the cosine schedule's beta is clipped at 0.999 and the
    respaced alpha_t = alpha_bar_t / alpha_bar_t' is ~1e-8 (issue 21: there prev_sample once differed by 1e-4).
    7-step chains run whole; 50-step chains at their ends (their middles: test_respaced_chain_matches_diffusers).
    """
    differing = []
    for spacing, n, bound, prediction_type, variance_type in itertools.product(
        ("linspace", "leading", "trailing"), (7, 50), X0_BOUNDS, PREDICTIONS, COMPARABLE_VARIANCES
    ):
        ours, theirs = pair(
            **schedule_config(schedule, T), timestep_spacing=spacing, prediction_type=prediction_type,
            variance_type=variance_type, **X0_BOUNDS[bound],
        )  # fmt: skip
        ours.set_timesteps(n)
        theirs.set_timesteps(n)
        assert (int(ours.timesteps[0]) == T - 1) == (spacing != "leading")
        diff = run_chains(ours, theirs, steps=slice(None) if n == 7 else CHAIN_ENDS)
        if diff != 0:
            differing.append((spacing, n, bound, prediction_type, variance_type, diff))
    assert differing == []


@pytest.mark.parametrize("T, n, spacing", [(1000, 7, "linspace"), (1000, 7, "trailing"), (1000, 50, "trailing"),
                                           (400, 7, "trailing"), (400, 50, "linspace")])  # fmt: skip
@pytest.mark.parametrize("bound", ["clip", "threshold"])
def test_first_cosine_step_from_T_minus_1_is_eq7_in_float64(T, n, spacing, bound):
    """The step issue 21 reported, against Ho et al. 2020 eq. (7) computed in float64 with the respaced beta:

        alpha_t = alpha_bar_t / alpha_bar_t',  beta_t = 1 - alpha_t
        mu_tilde = sqrt(alpha_bar_t') beta_t / (1 - alpha_bar_t) x_0 + sqrt(alpha_t) (1 - alpha_bar_t') / (1 - alpha_bar_t) x_t
        x_t' = mu_tilde + sqrt(beta_tilde_t) z,  beta_tilde_t = (1 - alpha_bar_t') / (1 - alpha_bar_t) beta_t

    from the same float32 alpha_bar, x_0_hat and z. Both facts: ours equals diffusers' prev_sample bit for bit,
    and both are within 1e-6 of float64; the order this scheduler used before, sqrt(1 - beta_t) in float32 for
    sqrt(alpha_t), is over 10x (up to ~1000x) farther off, because 1 - beta_t cancels where beta_t ~ 1.
    """
    ours, theirs = pair(
        num_train_timesteps=T, beta_schedule="squaredcos_cap_v2", timestep_spacing=spacing, prediction_type="sample",
        **X0_BOUNDS[bound],
    )  # fmt: skip
    ours.set_timesteps(n)
    theirs.set_timesteps(n)
    t = T - 1
    t_prev = ours.previous_timestep(t)
    assert int(ours.timesteps[0]) == t and ours.betas[t].item() == pytest.approx(0.999)
    x = 3 * torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    model_output = model_fn(x, t, "sample")
    a = ours.step(model_output, t, x, generator=torch.Generator().manual_seed(1))
    b = theirs.step(model_output, t, x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.pred_original_sample, b.pred_original_sample)
    assert torch.equal(a.prev_sample, b.prev_sample)

    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))  # the noise step drew
    alpha_bar_t, alpha_bar_prev = ours.alphas_cumprod[t], ours.alphas_cumprod[t_prev]  # float32
    ab_t, ab_prev, x0, xt = alpha_bar_t.double(), alpha_bar_prev.double(), a.pred_original_sample.double(), x.double()
    alpha_t = ab_t / ab_prev
    beta_t = 1 - alpha_t
    assert alpha_t < 2e-5
    mu = (ab_prev.sqrt() * beta_t * x0 + alpha_t.sqrt() * (1 - ab_prev) * xt) / (1 - ab_t)
    reference = mu + ((1 - ab_prev) / (1 - ab_t) * beta_t).sqrt() * z.double()
    error = (a.prev_sample.double() - reference).abs().max().item()
    assert error < 1e-6

    beta_t32 = 1 - alpha_bar_t / alpha_bar_prev
    old_coef_xt = (1 - beta_t32) ** 0.5 * (1 - alpha_bar_prev) / (1 - alpha_bar_t)  # the old order, float32
    old = ours.posterior_mean_coef_x0[t] * a.pred_original_sample + old_coef_xt * x + ours.posterior_sigma[t] * z
    old_error = (old.double() - reference).abs().max().item()
    assert old_error > 10 * max(error, 1e-7)


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
def test_thresholding_with_max_value_one_is_clipping_to_unit_range(prediction_type):
    """What train_accelerate.py saves (thresholding, sample_max_value 1) samples exactly as clip_sample does."""
    clipping = AnnotatedDDPMScheduler(prediction_type=prediction_type, clip_sample=True)
    bounding = AnnotatedDDPMScheduler(prediction_type=prediction_type, clip_sample=False, thresholding=True,
                                      sample_max_value=1.0)
    for sched in (clipping, bounding):
        sched.set_timesteps(50)
    x = 3 * torch.randn(4, 1, 5, 5, generator=torch.Generator().manual_seed(0))  # x_0_hat far outside [-1, 1]
    for t in clipping.timesteps[:5]:
        a = clipping.step(2 * model_fn(x, t, prediction_type), t, x, generator=torch.Generator().manual_seed(1))
        b = bounding.step(2 * model_fn(x, t, prediction_type), t, x, generator=torch.Generator().manual_seed(1))
        assert a.pred_original_sample.abs().max() <= 1.0
        torch.testing.assert_close(b.pred_original_sample, a.pred_original_sample, rtol=0, atol=0)
        torch.testing.assert_close(b.prev_sample, a.prev_sample, rtol=0, atol=0)


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("steps_offset", [0, 1])
@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("variance_type", COMPARABLE_VARIANCES)
def test_respaced_chain_matches_diffusers(spacing, steps_offset, prediction_type, variance_type):
    """50-step chains in every spacing: timesteps, previous_timestep, and every step agree."""
    config = dict(
        timestep_spacing=spacing, steps_offset=steps_offset, prediction_type=prediction_type, variance_type=variance_type
    )
    ours, theirs = pair(**config)
    ours.set_timesteps(50)
    theirs.set_timesteps(50)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    for t in ours.timesteps:
        assert ours.previous_timestep(t) == int(theirs.previous_timestep(t))
    assert run_chains(ours, theirs) <= ATOL


@pytest.mark.parametrize("T", [1000, 300])
@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("n", [1, 3, 7, 50, 150, 300])
@pytest.mark.parametrize("steps_offset", [0, 1])
def test_set_timesteps_matches_diffusers(T, spacing, n, steps_offset):
    ours, theirs = pair(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=steps_offset)
    if spacing == "leading" and (n - 1) * (T // n) + steps_offset >= T:
        with pytest.raises(ValueError, match="steps_offset"):
            ours.set_timesteps(n)
        return
    ours.set_timesteps(n)
    theirs.set_timesteps(n)
    assert ours.num_inference_steps == n and len(ours.timesteps) == n
    theirs_timesteps = theirs.timesteps
    if len(theirs_timesteps) == n + 1:  # diffusers' trailing overshoot (see the next test): an extra t = -1
        assert spacing == "trailing" and int(theirs_timesteps[-1]) == -1
        theirs_timesteps = theirs_timesteps[:n]
    assert torch.equal(ours.timesteps, theirs_timesteps)


def test_trailing_spacing_has_exactly_n_steps_where_diffusers_has_one_extra():
    """diffusers' np.arange(T, 0, -T/n) overshoots for some n: T = 1000, n = 61 gives 62 steps ending at t = -1."""
    ours, theirs = pair(timestep_spacing="trailing")
    ours.set_timesteps(61)
    theirs.set_timesteps(61)
    assert len(theirs.timesteps) == 62 and int(theirs.timesteps[-1]) == -1  # the diffusers 0.42.1 behaviour
    assert len(ours.timesteps) == 61 and int(ours.timesteps[0]) == 999 and int(ours.timesteps[-1]) >= 0
    assert torch.equal(ours.timesteps, theirs.timesteps[:61])


def test_custom_timesteps_chain_matches_diffusers():
    custom = [999, 800, 600, 500, 301, 123, 50, 10, 3, 0]
    ours, theirs = pair(prediction_type="v_prediction")
    ours.set_timesteps(timesteps=custom)
    theirs.set_timesteps(timesteps=custom)
    assert ours.custom_timesteps and ours.timesteps.tolist() == custom
    assert run_chains(ours, theirs) <= ATOL


@pytest.mark.parametrize(
    "T, schedule, prediction_type",
    [(300, schedule, p) for schedule in DIFFUSERS_SCHEDULES for p in ("v_prediction", "sample")]
    + [(1000, "linear", "v_prediction"), (1000, "squaredcos_cap_v2", "sample")],
)
def test_zero_terminal_snr_chain_matches_diffusers(T, schedule, prediction_type):
    ours, theirs = pair(
        num_train_timesteps=T, beta_schedule=schedule, rescale_betas_zero_snr=True, prediction_type=prediction_type
    )
    assert ours.alphas_cumprod[-1].item() == 0.0 and ours.terminal_signal_level == 0.0
    assert run_chains(ours, theirs) <= ATOL


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_zero_terminal_snr_with_epsilon_matches_diffusers_when_defined(spacing):
    """eps-prediction cannot recover x_0 where alpha_bar_T = 0 (trailing visits t = T-1; leading does not)."""
    ours, theirs = pair(rescale_betas_zero_snr=True, timestep_spacing=spacing, steps_offset=1)
    ours.set_timesteps(50)
    theirs.set_timesteps(50)
    if spacing == "leading":
        assert run_chains(ours, theirs) <= ATOL
    else:
        x = torch.randn(1, 1, 2, 2)
        out = ours.step(torch.randn_like(x), 999, x, generator=torch.Generator().manual_seed(0))
        ref = theirs.step(torch.randn_like(x), 999, x, generator=torch.Generator().manual_seed(0))
        assert torch.equal(torch.isfinite(out.prev_sample), torch.isfinite(ref.prev_sample))


def test_fixed_large_log_is_finite_where_diffusers_gives_nan():
    """diffusers 0.42.1: _get_variance returns log(beta_t) for "fixed_large_log" and step takes its square root,
    sqrt(negative) = NaN. Here sigma_t = exp(0.5 log beta_t) = sqrt(beta_t), the same noise as "fixed_large"."""
    ours, theirs = pair(variance_type="fixed_large_log")
    large = AnnotatedDDPMScheduler(variance_type="fixed_large")
    x, eps = torch.randn(2, 1, 3, 3), torch.randn(2, 1, 3, 3)
    for t in (999, 500, 1):
        ref = theirs.step(eps, t, x, generator=torch.Generator().manual_seed(0)).prev_sample
        assert torch.isnan(ref).all()
        out = ours.step(eps, t, x, generator=torch.Generator().manual_seed(0)).prev_sample
        expected = large.step(eps, t, x, generator=torch.Generator().manual_seed(0)).prev_sample
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


def test_step_without_generator_and_return_tuple():
    ours = AnnotatedDDPMScheduler()
    x = torch.randn(1, 1, 2, 2)
    prev, x0 = ours.step(torch.zeros_like(x), 0, x, return_dict=False)  # t = 0: no noise, deterministic
    expected_x0 = (x / ours.sqrt_alphas_cumprod[0]).clamp(-1, 1)  # eq. 15 with eps = 0, then clipped
    torch.testing.assert_close(x0, expected_x0)
    torch.testing.assert_close(prev, x0)  # at t = 0: coef_x0 = 1, coef_xt = 0
    assert ours.step(torch.zeros_like(x), 500, x).prev_sample.shape == x.shape


def test_step_reuses_precomputed_tables():
    """The schedule is computed in __init__ / set_timesteps and only looked up by step and add_noise."""
    sched = AnnotatedDDPMScheduler()
    sched.set_timesteps(20, device="cpu")
    tables = {name: getattr(sched, name) for name in sched._TABLES}
    x = torch.randn(1, 1, 2, 2)
    for t in sched.timesteps:
        x = sched.step(torch.tanh(x), t, x).prev_sample
    sched.add_noise(x, x, torch.tensor([3]))
    assert all(getattr(sched, name) is table for name, table in tables.items())


def test_half_precision_keeps_dtype():
    sched = AnnotatedDDPMScheduler(thresholding=True)
    x = torch.randn(2, 1, 2, 2).half()
    assert sched.add_noise(x, x, torch.tensor([10, 900])).dtype == torch.float16
    out = sched.step(x, 500, x)
    assert out.prev_sample.dtype == torch.float16 and out.pred_original_sample.dtype == torch.float16


# ------------------------------------------------------------------------------------------------
# Closed form


@pytest.mark.parametrize("T", [1000, 300, 10])
@pytest.mark.parametrize("schedule", ALLOWED_SCHEDULES)
def test_alpha_bar_strictly_decreasing_in_unit_interval(T, schedule):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = AnnotatedDDPMScheduler(num_train_timesteps=T, beta_schedule=schedule)
    alpha_bar = s.alphas_cumprod.double()
    assert alpha_bar.dtype == torch.float64 and s.alphas_cumprod.dtype == torch.float32
    assert ((alpha_bar > 0) & (alpha_bar < 1)).all()
    assert (alpha_bar[1:] < alpha_bar[:-1]).all()


def test_cosine_alpha_bar_is_nichol_dhariwal_eq17():
    """alpha_bar_t = f(t) / f(0), f(t) = cos(((t/T + s) / (1 + s)) pi / 2)^2, wherever beta_t is not clipped."""
    T, s = 1000, 0.008
    sched = AnnotatedDDPMScheduler(beta_schedule="cosine", num_train_timesteps=T)
    assert sched.config.beta_schedule == "squaredcos_cap_v2"  # the alias is stored under diffusers' name
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    expected = torch.tensor([f(t) / f(0) for t in range(1, T + 1)], dtype=torch.float64)
    unclipped = sched.betas < 0.999
    assert unclipped[: T - 2].all()  # only the very end of the chain is clipped
    torch.testing.assert_close(sched.alphas_cumprod.double()[unclipped], expected[unclipped], atol=2e-6, rtol=1e-4)
    assert sched.betas.max().item() == pytest.approx(0.999)
    assert torch.equal(cosine_betas(T), sched.betas)


def test_quadratic_is_scaled_linear_and_the_blog_formula():
    T, b0, b1 = 300, 1e-4, 0.02
    blog = torch.linspace(b0**0.5, b1**0.5, T) ** 2
    torch.testing.assert_close(make_betas("quadratic", T, b0, b1), blog)
    torch.testing.assert_close(make_betas("scaled_linear", T, b0, b1), blog)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert AnnotatedDDPMScheduler(beta_schedule="quadratic").config.beta_schedule == "scaled_linear"


def test_sigmoid_and_linear_formulas():
    T, b0, b1 = 50, 1e-4, 0.02
    u = np.linspace(-6, 6, T)
    np.testing.assert_allclose(make_betas("sigmoid", T, b0, b1), 1 / (1 + np.exp(-u)) * (b1 - b0) + b0, rtol=1e-5)
    np.testing.assert_allclose(make_betas("linear", T, b0, b1), b0 + np.arange(T) / (T - 1) * (b1 - b0), rtol=1e-5)


def test_zero_terminal_snr_keeps_first_and_zeroes_last():
    betas = make_betas("linear", 1000, 1e-4, 0.02)
    rescaled = rescale_zero_terminal_snr(betas)
    sqrt_ab, sqrt_ab_new = torch.cumprod(1 - betas, 0).sqrt(), torch.cumprod(1 - rescaled, 0).sqrt()
    assert sqrt_ab_new[-1].item() == 0.0 and rescaled[-1].item() == pytest.approx(1.0)
    torch.testing.assert_close(sqrt_ab_new[0], sqrt_ab[0])
    # an affine map of sqrt(alpha_bar): Lin et al. 2023, Algorithm 1
    a, b = sqrt_ab[0], sqrt_ab[-1]
    torch.testing.assert_close(sqrt_ab_new, (sqrt_ab - b) * a / (a - b), atol=1e-5, rtol=0)


@pytest.mark.parametrize("t", [0, 50, 400, 999])
def test_add_noise_moments_are_q_xt_given_x0(t):
    """Ho et al. eq. 4: E[x_t] = sqrt(alpha_bar_t) x_0 and Var[x_t] = 1 - alpha_bar_t."""
    sched = AnnotatedDDPMScheduler()
    g = torch.Generator().manual_seed(t)
    n = 20000
    x0 = torch.tensor([-1.0, -0.3, 0.5, 1.0]).expand(n, 4)
    xt = sched.add_noise(x0, torch.randn(n, 4, generator=g), torch.full((n,), t))
    alpha_bar = sched.alphas_cumprod[t].item()
    std_err = math.sqrt((1 - alpha_bar) / n)
    assert (xt.mean(0) - math.sqrt(alpha_bar) * x0[0]).abs().max() < 5 * std_err
    torch.testing.assert_close(xt.var(0), torch.full((4,), 1 - alpha_bar), rtol=0.05, atol=0)


def test_posterior_variance_and_mean_are_ho_eq7():
    """beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t, and the step's mean and noise follow eq. 7."""
    sched = AnnotatedDDPMScheduler(prediction_type="sample", clip_sample=False)
    betas = make_betas("linear", 1000, 1e-4, 0.02).double()
    alpha_bar = torch.cumprod(1 - betas, 0)
    beta_tilde = (1 - alpha_bar[:-1]) / (1 - alpha_bar[1:]) * betas[1:]
    # float32, computed as diffusers does (beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}): absolute error < 1e-7
    torch.testing.assert_close(sched.posterior_variance[1:].double(), beta_tilde, atol=1e-7, rtol=1e-4)

    # The step's mean, from float64 eq. 7. Like diffusers, the coefficients are computed in float32 from
    # beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}, which cancels badly while beta_t ~ 1e-4: they are off
    # by up to ~1e-4 for t < 50 and by < 1e-6 after (kept for bit-level parity with diffusers).
    g = torch.Generator().manual_seed(0)
    x0, xt = torch.randn(20000, generator=g) * 0.1 + 0.3, torch.randn(20000, generator=g)
    for t, atol in ((1, 5e-4), (10, 5e-4), (500, 1e-5), (999, 1e-5)):
        x0_, xt_ = x0.double(), xt.double()
        mean = (alpha_bar[t - 1].sqrt() * betas[t] * x0_ + (1 - betas[t]).sqrt() * (1 - alpha_bar[t - 1]) * xt_) / (
            1 - alpha_bar[t]
        )
        prev = sched.step(x0, t, xt, generator=torch.Generator().manual_seed(t)).prev_sample.double()
        z = torch.randn(20000, generator=torch.Generator().manual_seed(t)).double()  # the noise step drew
        torch.testing.assert_close(prev - beta_tilde[t - 1].sqrt() * z, mean, atol=atol, rtol=0)
        assert (prev - mean).std().item() == pytest.approx(beta_tilde[t - 1].sqrt().item(), rel=0.03)


def test_velocity_and_epsilon_recover_x0():
    """x_0 = sqrt(ab) x_t - sqrt(1-ab) v and x_0 = (x_t - sqrt(1-ab) eps)/sqrt(ab) for the true v and eps."""
    t = torch.tensor([5, 300, 700])
    x0, eps = torch.rand(3, 1, 2, 2) * 2 - 1, torch.randn(3, 1, 2, 2)
    for prediction_type in ("epsilon", "v_prediction"):
        sched = AnnotatedDDPMScheduler(prediction_type=prediction_type, clip_sample=False)
        xt = sched.add_noise(x0, eps, t)
        target = eps if prediction_type == "epsilon" else sched.get_velocity(x0, eps, t)
        for i in range(3):
            x0_hat = sched.step(target[i : i + 1], t[i], xt[i : i + 1]).pred_original_sample
            torch.testing.assert_close(x0_hat, x0[i : i + 1], atol=2e-4, rtol=0)


# ------------------------------------------------------------------------------------------------
# Config round trips and saving


NON_DEFAULT = dict(
    num_train_timesteps=300,
    beta_schedule="squaredcos_cap_v2",
    prediction_type="v_prediction",
    variance_type="fixed_large",
    clip_sample=False,
    timestep_spacing="trailing",
    steps_offset=1,
    rescale_betas_zero_snr=True,
)


def our_config(s):
    return {k: v for k, v in s.config.items() if not k.startswith("_")}


@pytest.mark.parametrize("config", [{}, NON_DEFAULT], ids=["defaults", "non_default"])
@pytest.mark.parametrize("other_cls", [DDPMScheduler, DDIMScheduler, EulerDiscreteScheduler])
def test_from_config_round_trip_through_diffusers(config, other_cls):
    ours = AnnotatedDDPMScheduler(**config)
    other = other_cls.from_config(ours.config)
    back = AnnotatedDDPMScheduler.from_config(other.config)
    assert our_config(back) == our_config(ours)
    # Values that were set explicitly travel; values left at their defaults take the other class's defaults
    # (diffusers' `_use_default_values`), which is why identical defaults keep DDPM <-> ours swaps exact.
    explicit = set(our_config(ours)) - set(ours.config.get("_use_default_values", []))
    assert explicit == set(config)
    for key in explicit & set(other.config):
        assert other.config[key] == ours.config[key], key
    if other_cls is DDPMScheduler:
        torch.testing.assert_close(other.alphas_cumprod, ours.alphas_cumprod, atol=ATOL, rtol=0)


def test_config_keys_and_defaults_are_diffusers_ddpm():
    assert our_config(AnnotatedDDPMScheduler()) == {
        k: v for k, v in DDPMScheduler().config.items() if not k.startswith("_")
    }
    assert AnnotatedDDPMScheduler._compatibles == DDPMScheduler._compatibles
    assert AnnotatedDDPMScheduler.order == 1 and len(AnnotatedDDPMScheduler(num_train_timesteps=500, beta_schedule="cosine")) == 500
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = AnnotatedDDPMScheduler.from_config(DDPMScheduler(**NON_DEFAULT).config)
    assert our_config(ours) == {**our_config(AnnotatedDDPMScheduler()), **NON_DEFAULT}


def test_save_pretrained_round_trip(tmp_path):
    ours = AnnotatedDDPMScheduler(**NON_DEFAULT)
    ours.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert saved["_class_name"] == "AnnotatedDDPMScheduler" and saved["beta_schedule"] == "squaredcos_cap_v2"
    loaded = AnnotatedDDPMScheduler.from_pretrained(tmp_path)
    assert our_config(loaded) == our_config(ours)
    ours.set_timesteps(20)
    loaded.set_timesteps(20)
    assert run_chains(ours, loaded) == 0.0
    assert our_config(DDPMScheduler.from_pretrained(tmp_path)) == our_config(ours)


def test_modules_are_copyable_into_a_saved_pipeline(tmp_path):
    """Copied as diffusers copies remote code (the entry file plus its direct `from .x import` siblings), the
    scheduler loads through diffusers' dynamic-module loader with annotated_pipeline made unimportable."""
    entry = Path(sched_module.__file__)
    needed = get_relative_imports(entry)
    assert sorted(needed) == ["config", "schedules"]  # the checks (config.py) and the betas (schedules.py)
    folder = tmp_path / "saved" / "scheduler"
    folder.mkdir(parents=True)
    for name in ["scheduling_annotated_ddpm", *needed]:
        source = (entry.parent / f"{name}.py").read_text()
        assert "annotated_pipeline" not in source.replace("annotated_pipeline/", "")
        shutil.copy(entry.parent / f"{name}.py", folder)
    AnnotatedDDPMScheduler(**NON_DEFAULT).save_pretrained(folder)

    script = textwrap.dedent(
        f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "annotated_pipeline":
                    raise ImportError("annotated_pipeline is blocked in this test")
        sys.meta_path.insert(0, Block())
        import torch
        from diffusers.utils.dynamic_modules_utils import get_class_from_dynamic_module
        cls = get_class_from_dynamic_module({str(folder)!r}, "scheduling_annotated_ddpm.py",
                                            class_name="AnnotatedDDPMScheduler", trust_remote_code=True)
        assert "annotated_pipeline" not in cls.__module__, cls.__module__
        s = cls.from_pretrained({str(folder)!r})
        s.set_timesteps(10)
        x = torch.ones(1, 1, 2, 2)
        out = s.step(torch.zeros_like(x), s.timesteps[0], x, generator=torch.Generator().manual_seed(0))
        print("OK", cls.__module__, s.config.beta_schedule, len(s.timesteps), float(out.prev_sample.sum()))
        """
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    ok_line = result.stdout.strip().splitlines()[-1].split()
    assert ok_line[:4] == ["OK", ok_line[1], "squaredcos_cap_v2", "10"]

    ours = AnnotatedDDPMScheduler.from_pretrained(folder)
    ours.set_timesteps(10)
    x = torch.ones(1, 1, 2, 2)
    expected = ours.step(torch.zeros_like(x), ours.timesteps[0], x, generator=torch.Generator().manual_seed(0))
    assert float(ok_line[4]) == pytest.approx(float(expected.prev_sample.sum()), abs=1e-5)


# ------------------------------------------------------------------------------------------------
# Errors and warnings


@pytest.mark.parametrize(
    "config, message",
    [
        (dict(beta_schedule="exponential"), "beta_schedule 'exponential'.*cosine.*linear.*quadratic"),
        (dict(prediction_type="x0"), "prediction_type 'x0'.*epsilon, sample, v_prediction"),
        (dict(variance_type="learned"), "variance_type 'learned'.*fixed_small, fixed_small_log"),
        (dict(variance_type="learned_range"), "variance_type 'learned_range'.*fixed_large_log"),
        (dict(timestep_spacing="uniform"), "timestep_spacing 'uniform'.*linspace, leading, trailing"),
        (dict(num_train_timesteps=0), "num_train_timesteps must be an integer >= 1"),
        (dict(num_train_timesteps=2.5), "num_train_timesteps must be an integer >= 1"),
        (dict(beta_start=0.0), "0 < beta_start <= beta_end < 1"),
        (dict(beta_end=1.0), "0 < beta_start <= beta_end < 1"),
        (dict(beta_start=0.03, beta_end=0.02), "0 < beta_start <= beta_end < 1"),
        (dict(trained_betas=[0.1] * 10), "trained_betas has 10 values; it needs num_train_timesteps = 1000"),
        (dict(num_train_timesteps=3, trained_betas=[0.1, 0.0, 0.2]), r"trained_betas must all lie in \(0, 1\]"),
        (dict(num_train_timesteps=3, trained_betas=[0.1, 1.2, 0.2]), r"trained_betas must all lie in \(0, 1\]"),
        (dict(num_train_timesteps=4, trained_betas=[0.1, 1.0, 0.2, 0.3]), "equal 1 only at the last step"),
        (dict(steps_offset=-1), "steps_offset must be an integer >= 0"),
        (dict(steps_offset=1.5), "steps_offset must be an integer >= 0, got 1.5"),
        (dict(clip_sample_range=0.0), "clip_sample_range must be a finite number > 0"),
        (dict(clip_sample_range=float("nan")), "clip_sample_range must be a finite number > 0, got nan"),
        (dict(sample_max_value=float("inf")), "sample_max_value must be a finite number > 0, got inf"),
        (dict(beta_start=0.5, beta_end=0.9), "destroys all signal by t = 138: alpha_bar_t = prod"),
        (dict(num_train_timesteps=200, trained_betas=[0.9] * 199 + [1.0]), "destroys all signal by t = "),
        (dict(dynamic_thresholding_ratio=1.5), r"dynamic_thresholding_ratio must be in \(0, 1\]"),
    ],
)
def test_bad_config_raises(config, message):
    with pytest.raises(ValueError, match=message):
        AnnotatedDDPMScheduler(**config)


def test_bad_calls_raise():
    sched = AnnotatedDDPMScheduler(steps_offset=1)
    with pytest.raises(ValueError, match=r"num_inference_steps must be in \[1, num_train_timesteps = 1000\]"):
        sched.set_timesteps(1001)
    with pytest.raises(ValueError, match="num_inference_steps must be in"):
        sched.set_timesteps(0)
    with pytest.raises(ValueError, match="exactly one of"):
        sched.set_timesteps()
    with pytest.raises(ValueError, match="exactly one of"):
        sched.set_timesteps(10, timesteps=[5, 1])
    with pytest.raises(ValueError, match="strictly descending"):
        sched.set_timesteps(timesteps=[10, 20, 5])
    with pytest.raises(ValueError, match=r"\[0, num_train_timesteps = 1000\)"):
        sched.set_timesteps(timesteps=[1000, 10])
    with pytest.raises(ValueError, match="steps_offset = 1 pushes the first timestep to 1000"):
        sched.set_timesteps(1000)
    sched.set_timesteps(10)
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="timestep 5 is not in the current chain"):
        sched.step(x, 5, x)
    with pytest.raises(ValueError, match="learned variances are not supported"):
        sched.step(torch.zeros(1, 2, 2, 2), int(sched.timesteps[0]), x)
    with pytest.raises(ValueError, match=r"timesteps must lie in \[0, num_train_timesteps = 1000\)"):
        sched.add_noise(x, x, torch.tensor([1000]))


def test_terminal_signal_warning_for_linear_T300_and_not_for_cosine():
    """The Annotated Diffusion blog's trap: linear betas up to 0.02 over only T = 300 steps leave ~22% signal."""
    with pytest.warns(UserWarning, match=r"sqrt\(alpha_bar_T\) = 0.219.*squaredcos_cap_v2.*1000/T.*rescale_betas_zero_snr"):
        sched = AnnotatedDDPMScheduler(num_train_timesteps=300)
    closed_form = math.sqrt(np.prod(1 - np.linspace(1e-4, 0.02, 300)))
    assert sched.terminal_signal_level == pytest.approx(closed_form, rel=1e-5)
    assert 0.2 < sched.terminal_signal_level < 0.23
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        for config in (
            dict(num_train_timesteps=300, beta_schedule="cosine"),
            dict(num_train_timesteps=300, rescale_betas_zero_snr=True),
            dict(num_train_timesteps=300, beta_end=0.02 * 1000 / 300),
            dict(),
        ):
            assert AnnotatedDDPMScheduler(**config).terminal_signal_level < 0.05


def test_previous_timestep_has_diffusers_type():
    """A tensor timestep gives a tensor (diffusers' own test_custom_timesteps calls .item() on it), an int an int."""
    for chain in (dict(timesteps=[999, 500, 0]), dict(num_inference_steps=10)):
        ours, theirs = AnnotatedDDPMScheduler(), DDPMScheduler()
        ours.set_timesteps(**chain), theirs.set_timesteps(**chain)
        for t in ours.timesteps[:-1]:
            expected = theirs.previous_timestep(t)
            got = ours.previous_timestep(t)
            assert isinstance(got, torch.Tensor) and got.item() == expected.item() and got.dtype == t.dtype
            assert ours.previous_timestep(int(t)) == expected.item()


def test_a_saved_dpmsolver_folder_config_loads_with_variance_type_none(tmp_path):
    """A trained folder's scheduler is DPM-Solver++, whose config says variance_type: null; our scheduler built
    from it takes None as diffusers' default, fixed_small, and steps as one built with fixed_small."""
    from diffusers import DPMSolverMultistepScheduler

    ours = AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="squaredcos_cap_v2")
    dpm = DPMSolverMultistepScheduler.from_config({**ours.config, "variance_type": None})
    dpm.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert "variance_type" in saved and saved["variance_type"] is None
    back = AnnotatedDDPMScheduler.from_config(DPMSolverMultistepScheduler.from_pretrained(tmp_path).config)
    assert back.config.variance_type == "fixed_small"
    theirs = DDPMScheduler.from_config(back.config)  # diffusers' DDPM with the folder's settings, fixed_small
    assert theirs.config.variance_type == "fixed_small"
    back.set_timesteps(5)
    theirs.set_timesteps(5)
    assert run_chains(back, theirs) <= ATOL
