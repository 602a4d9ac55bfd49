r"""Post-hoc EMA: the length of the weights' average chosen after training (Karras et al. 2024, sec. 3).

How long an average of the weights to sample from matters (on this project's runs the EMA is worth two
points of Frechet distance over the last weights), and the best length is only known once samples of
each can be compared. Karras et al. 2024 ("Analyzing and Improving the Training Dynamics of Diffusion
Models", sec. 3 and app. C) therefore keep two averages of a *power-function* profile during the run,
store them every K optimizer steps, and afterwards combine the stored snapshots into the average of any
other length.

**The power-function average** of the weights theta_tau over the run so far, tau in (0, t] (sec. 3.1):

    theta_hat_gamma(t) = integral_0^t p_{gamma,t}(tau) theta_tau d tau,
    p_{gamma,t}(tau)   = (gamma + 1) tau^gamma / t^(gamma + 1)

Its profile p puts more weight on recent steps the larger gamma is, and it stretches with t: its width
relative to t, sigma_rel, does not depend on t (the standard deviation of tau / t under p):

    sigma_rel^2 = (gamma + 1) / ((gamma + 2)^2 (gamma + 3))

**On optimizer steps** t = 1, 2, ... it is an EMA whose decay grows with t (sec. 3.1):

    theta_hat_t = beta_t theta_hat_{t-1} + (1 - beta_t) theta_t,    beta_t = (1 - 1/t)^(gamma + 1)

Unrolled, step tau gets the weight (tau^(gamma+1) - (tau-1)^(gamma+1)) / t^(gamma+1): exactly the integral of
p over (tau - 1, tau], so the EMA *is* the continuous average of the weights held constant within a step.

**Synthesis** (app. C): snapshot i is an average with profile p_i = p_{gamma_i, t_i}. A target profile p_r
is approximated by the combination sum_i x_i p_i nearest to it in L2,

    A x = b,    A_ij = <p_i, p_j>,    b_i = <p_i, p_r>,

and since an average is linear in the weights, theta_hat_r = sum_i x_i theta_hat_i. For t_a <= t_b the inner
product of two profiles is (integrating tau^(gamma_a + gamma_b) over (0, t_a], where both are non-zero)

    <p_a, p_b> = (gamma_a + 1)(gamma_b + 1) t_a^gamma_b / ((gamma_a + gamma_b + 1) t_b^(gamma_b + 1))

`PowerEMA` keeps the averages during a run (`training/loop.py` steps it; its state rides in every checkpoint;
`--posthoc_ema_every K` writes `OUTPUT_DIR/posthoc_ema/snapshot-STEP.safetensors`), and `synthesize` makes
the average of any sigma_rel at any snapshot step from them (`annotated-pipeline export --sigma_rel`).
"""

import json
import os
import re

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

SNAPSHOT_FOLDER = "posthoc_ema"
SNAPSHOT_FILE = "snapshot-{step:08d}.safetensors"
STATE_FILE = "posthoc_ema.safetensors"  # the running averages, inside each checkpoint
_SNAPSHOT_NAME = re.compile(r"^snapshot-(\d+)\.safetensors$")
MAX_SIGMA_REL = 12 ** -0.5  # gamma -> 0: the uniform average of the whole run, the widest profile
DEFAULT_SIGMA_RELS = (0.05, 0.10)  # the two profiles the paper tracks (gamma about 16.97 and 6.94)


def sigma_rel_of_gamma(gamma):
    """sigma_rel = sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3)))."""
    return ((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3))) ** 0.5


def gamma_of_sigma_rel(sigma_rel):
    """The gamma >= 0 of a sigma_rel in (0, 12^-1/2]: sigma_rel^2 (gamma + 2)^2 (gamma + 3) = gamma + 1 is the cubic
    gamma^3 + 7 gamma^2 + (16 - s) gamma + (12 - s) = 0 with s = sigma_rel^-2, whose largest real root it is."""
    if not 0 < sigma_rel <= MAX_SIGMA_REL:
        raise ValueError(f"sigma_rel must lie in (0, {MAX_SIGMA_REL:.4f}] (the width of the average relative to "
                         f"the run's length); got {sigma_rel}")
    s = sigma_rel ** -2
    roots = np.roots([1.0, 7.0, 16.0 - s, 12.0 - s])
    return max(0.0, float(roots[np.abs(roots.imag) < 1e-9].real.max()))


def profile_inner_product(t_a, gamma_a, t_b, gamma_b):
    """<p_{gamma_a,t_a}, p_{gamma_b,t_b}>, the integral of the product of two power-function profiles (closed form
    above; numpy arrays broadcast)."""
    t_a, gamma_a, t_b, gamma_b = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (t_a, gamma_a, t_b, gamma_b)))
    swap = t_a > t_b  # the formula wants t_a <= t_b; the product is symmetric
    t_a, t_b = np.where(swap, t_b, t_a), np.where(swap, t_a, t_b)
    gamma_a, gamma_b = np.where(swap, gamma_b, gamma_a), np.where(swap, gamma_a, gamma_b)
    return (gamma_a + 1) * (gamma_b + 1) * (t_a / t_b) ** gamma_b / ((gamma_a + gamma_b + 1) * t_b)


def synthesis_weights(snapshots, t_r, gamma_r):
    """x solving A x = b for snapshots [(t_i, gamma_i)] and the target (t_r, gamma_r): theta_hat_r = sum_i x_i theta_hat_i."""
    t, gamma = (np.array(v, dtype=np.float64) for v in zip(*snapshots))
    A = profile_inner_product(t[:, None], gamma[:, None], t[None, :], gamma[None, :])  # A_ij = <p_i, p_j>
    b = profile_inner_product(t, gamma, t_r, gamma_r)  # b_i = <p_i, p_r>
    return np.linalg.lstsq(A, b, rcond=None)[0]  # least squares: A is near-singular for close snapshots


class PowerEMA:
    """Power-function averages of a model's parameters, one per gamma (`step` after every optimizer step t)."""

    def __init__(self, named_parameters, sigma_rels):
        self.names = [name for name, _ in named_parameters]
        self.sigma_rels = tuple(float(s) for s in sigma_rels)
        self.gammas = [gamma_of_sigma_rel(s) for s in self.sigma_rels]
        params = [p for _, p in named_parameters]
        self.averages = [[p.detach().float().clone() for p in params] for _ in self.gammas]
        self.t = 0

    @torch.no_grad()
    def step(self, parameters):
        """theta_hat_t = beta_t theta_hat_{t-1} + (1 - beta_t) theta_t, beta_t = (1 - 1/t)^(gamma + 1), t the new step."""
        self.t += 1
        theta = [p.detach().to(a.dtype) for p, a in zip(parameters, self.averages[0], strict=True)]
        for gamma, average in zip(self.gammas, self.averages):
            beta = (1 - 1 / self.t) ** (gamma + 1)
            torch._foreach_lerp_(average, theta, 1 - beta)  # beta * average + (1 - beta) * theta

    def tensors(self):
        """{"k/name": theta_hat} for profile k: what a snapshot and a checkpoint hold."""
        return {f"{k}/{name}": a.detach().contiguous().cpu()
                for k, average in enumerate(self.averages) for name, a in zip(self.names, average)}

    def save(self, path):
        """Write the averages, t and the sigma_rels to `path` (safetensors), atomically: a rename of a finished file."""
        incomplete = f"{path}.incomplete"
        save_file(self.tensors(), incomplete, metadata={"step": str(self.t), "sigma_rels": json.dumps(self.sigma_rels)})
        os.replace(incomplete, path)

    def load(self, path):
        """Restore what `save` wrote (a checkpoint's state); ValueError if it was another model or other sigma_rels."""
        with safe_open(path, framework="pt") as f:
            meta = f.metadata()
            if tuple(json.loads(meta["sigma_rels"])) != self.sigma_rels:
                raise ValueError(f"{path} holds post-hoc EMA profiles sigma_rel {json.loads(meta['sigma_rels'])}, this run "
                                 f"asks for {list(self.sigma_rels)}: resume with the same --posthoc_ema_sigma_rels")
            stored = set(f.keys())
            missing = [f"{k}/{name}" for k in range(len(self.averages)) for name in self.names
                       if f"{k}/{name}" not in stored]
            if missing:
                raise ValueError(f"{path} does not hold this model's parameters (e.g. no {missing[0]})")
            for k, average in enumerate(self.averages):
                for name, a in zip(self.names, average):
                    a.copy_(f.get_tensor(f"{k}/{name}"))
        self.t = int(meta["step"])


def list_snapshots(output_dir, up_to_step=None):
    """[(step, path)] of OUTPUT_DIR/posthoc_ema/snapshot-STEP.safetensors, by step (up to `up_to_step`)."""
    folder = os.path.join(output_dir, SNAPSHOT_FOLDER)
    found = []
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        match = _SNAPSHOT_NAME.match(name)
        if match and (up_to_step is None or int(match.group(1)) <= up_to_step):
            found.append((int(match.group(1)), os.path.join(folder, name)))
    return sorted(found)


def remove_snapshots_after(output_dir, step):
    """Delete the snapshots past `step` (a run that resumes from checkpoint `step` writes its own); their paths."""
    stale = [path for snapshot_step, path in list_snapshots(output_dir) if snapshot_step > step]
    for path in stale:
        os.remove(path)
    return stale


def synthesize(output_dir, sigma_rel, step):
    """{parameter name: theta_hat} of the power-function average with `sigma_rel` at optimizer step `step`, from
    the snapshots of OUTPUT_DIR/posthoc_ema/ up to that step (ValueError where there are none, or `step` is
    without one at `step`); returns (state dict, [(snapshot step, sigma_rel, weight x_i)])."""
    gamma_r = gamma_of_sigma_rel(sigma_rel)
    snapshots = list_snapshots(output_dir, up_to_step=step)
    if not snapshots:
        raise ValueError(f"{os.path.join(output_dir, SNAPSHOT_FOLDER)} holds no snapshot up to step {step}: "
                         "train with --posthoc_ema_every K to keep them")
    if snapshots[-1][0] != step:  # nothing is known of the weights between the last snapshot and `step`
        raise ValueError(f"{os.path.join(output_dir, SNAPSHOT_FOLDER)} has no snapshot at step {step} (the last "
                         f"before it is at step {snapshots[-1][0]}); every checkpoint's step has one")
    profiles, files = [], []
    for snapshot_step, path in snapshots:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata()
        for k, s in enumerate(json.loads(meta["sigma_rels"])):
            profiles.append((snapshot_step, gamma_of_sigma_rel(s)))
            files.append((path, k, s))
    x = synthesis_weights(profiles, step, gamma_r)
    theta_hat = {}
    for (path, k, _), x_i in zip(files, x):
        with safe_open(path, framework="pt") as f:
            for key in f.keys():
                index, name = key.split("/", 1)
                if int(index) == k:
                    term = f.get_tensor(key).double() * x_i
                    theta_hat[name] = theta_hat[name] + term if name in theta_hat else term
    used = [(p[0], s, float(x_i)) for p, (_, _, s), x_i in zip(profiles, files, x)]
    return {name: value.float() for name, value in theta_hat.items()}, used
