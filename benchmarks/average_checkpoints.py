"""How long should the weight average be? Average a run's saved checkpoints after training and measure.

    python benchmarks/average_checkpoints.py RUN_DIR --template RUN_DIR/stage-3000 --taus 200 400 800 inf \\
        [--since 1500] [--num_samples 500] [--output_dir RUN_DIR/averaged]

Training keeps an exponential moving average (EMA) of the weights, theta_bar <- beta theta_bar + (1 - beta)
theta, with diffusers' warmup beta_s = 1 - (1 + s / inv_gamma) ** -power (Polyak & Juditsky 1992 for
averaging iterates; Song & Ermon 2020 for EMA in diffusion models). Unrolled, the EMA at step S is a
weighted sum of past weights, sum_s w_s theta_s with w_s proportional to beta ** (S - s), i.e. about
exp(-(S - s) / tau) with a time constant tau = 1 / (1 - beta) steps: at S = 3,000 with power 3/4 that is
tau ~ 400 steps. Whether another tau would be better is a question about weights that were already
seen, so it can be answered after training (the idea behind Karras et al. 2024's post-hoc EMA, here
in its simplest form): keep the raw weights every few steps (`--checkpointing_steps 100
--checkpoints_total_limit 40`) and average them here,

    theta_bar(tau) = sum_i w_i theta_{s_i} / sum_i w_i,   w_i = exp(-(s_last - s_i) / tau),

over the checkpoints with s_i >= --since (tau = inf: the plain mean). With checkpoints every k steps this
is the EMA sampled every k steps, close to the real one only when tau >> k: the raw weights' noise
changes from step to step, and a few snapshots average little of it away. `--source ema` averages the
EMA weights that each checkpoint also holds instead (Karras et al. average stored EMA profiles rather
than raw weights for this reason): each is already a smooth ~tau_train-step average, and their weighted
sum is an average over a longer window, the convolution of the two kernels. Each average is written as a
pipeline folder (the template's folder with the averaged U-Net weights) and scored with the project's
offline Frechet distance (DDIM, 50 steps by default; our classifier's features, NOT an Inception FID).

Not a test; each tau costs one evaluation (~2.5 minutes at N = 500 on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

WEIGHTS = os.path.join("unet", "diffusion_pytorch_model.safetensors")
CHECKPOINT_WEIGHTS = "model.safetensors"  # what Accelerator.save_state writes for the first prepared model
CHECKPOINT_EMA = "ema.safetensors"  # the EMA's shadow weights by parameter name, with --use_ema (training/run_state.py)
LEGACY_CHECKPOINT_EMA = "custom_checkpoint_1.pkl"  # the same, as accelerate pickled it before run_state.py


def find_checkpoints(run_dir: str, since: int = 0) -> list[tuple[int, str]]:
    """(step, path of the raw weights) for every `checkpoint-<step>` in run_dir with step >= since, by step."""
    from annotated_pipeline.training.checkpointing import checkpoint_step, list_checkpoints

    found = [(checkpoint_step(folder), os.path.join(folder, CHECKPOINT_WEIGHTS)) for folder in list_checkpoints(run_dir)]
    found = [(step, path) for step, path in found if step >= since and os.path.isfile(path)]
    if not found:
        raise ValueError(f"no checkpoint-<step>/{CHECKPOINT_WEIGHTS} with step >= {since} in {run_dir}")
    return found


def ema_state_dict(checkpoint_dir: str, parameter_names: list[str]) -> dict[str, torch.Tensor]:
    """The EMA weights of one checkpoint as a state dict: EMAModel keeps them as a list, `shadow_params`,
    in the order of the model's parameters (`parameter_names`, from `named_parameters()`)."""
    path = os.path.join(checkpoint_dir, CHECKPOINT_EMA)
    if os.path.isfile(path):
        shadow = load_file(path)
        if sorted(shadow) != sorted(parameter_names):
            raise ValueError(f"{path} is not an EMA of this model: its parameter names differ")
        return {name: shadow[name] for name in parameter_names}
    path = os.path.join(checkpoint_dir, LEGACY_CHECKPOINT_EMA)
    if not os.path.isfile(path):
        raise ValueError(f"{os.path.join(checkpoint_dir, CHECKPOINT_EMA)} is missing: --source ema needs a run "
                         "trained with --use_ema")
    state = torch.load(path, map_location="cpu", weights_only=True)
    shadow = state.get("shadow_params") if isinstance(state, dict) else None
    if shadow is None or len(shadow) != len(parameter_names):
        raise ValueError(f"{path} is not an EMA of this model: expected {len(parameter_names)} shadow_params, "
                         f"found {None if shadow is None else len(shadow)}")
    return dict(zip(parameter_names, shadow))


def averaging_weights(steps: list[int], tau: float) -> list[float]:
    """w_i = exp(-(s_last - s_i) / tau), normalised to sum to 1; tau = inf gives the plain mean."""
    if not tau > 0:
        raise ValueError(f"tau must be > 0 steps (or inf for the plain mean); got {tau}")
    last = max(steps)
    raw = [math.exp(-(last - s) / tau) for s in steps]
    total = sum(raw)
    return [w / total for w in raw]


def average_state_dicts(paths: list[str], weights: list[float], load=load_file) -> dict[str, torch.Tensor]:
    """sum_i w_i theta_i, accumulated in float64 and returned in each tensor's own dtype.

    `load(path)` reads one state dict (default: a safetensors file). Tensors that are not floating point
    (none in our U-Net; counters in other models) are taken from the last checkpoint. Every checkpoint
    must hold the same names and shapes."""
    if len(paths) != len(weights) or not paths:
        raise ValueError(f"need one weight per checkpoint; got {len(paths)} paths and {len(weights)} weights")
    last = load(paths[-1])
    sums = {k: torch.zeros(v.shape, dtype=torch.float64) for k, v in last.items() if v.is_floating_point()}
    for path, weight in zip(paths, weights):
        state = load(path)
        if set(state) != set(last):
            raise ValueError(f"{path} does not hold the same tensors as {paths[-1]}: "
                             f"differs in {sorted(set(state) ^ set(last))[:5]}")
        for key, acc in sums.items():
            if state[key].shape != acc.shape:
                raise ValueError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {tuple(acc.shape)}")
            acc.add_(state[key].to(torch.float64), alpha=weight)
    return {k: (sums[k].to(v.dtype) if k in sums else v) for k, v in last.items()}


def write_averaged_pipeline(template: str, state: dict[str, torch.Tensor], output: str) -> str:
    """Copy the saved pipeline `template` (config, code, scheduler) to `output` with these U-Net weights."""
    template_weights = load_file(os.path.join(template, WEIGHTS))
    if set(template_weights) != set(state):
        raise ValueError(f"the checkpoints' tensors do not match {os.path.join(template, WEIGHTS)}: "
                         f"differs in {sorted(set(template_weights) ^ set(state))[:5]}")
    if os.path.exists(output):
        shutil.rmtree(output)
    shutil.copytree(template, output, ignore=shutil.ignore_patterns("eval*", "*.png"))
    save_file({k: v.to(template_weights[k].dtype).contiguous() for k, v in state.items()},
              os.path.join(output, WEIGHTS))
    return output


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a train_accelerate.py output folder with checkpoint-<step> folders")
    parser.add_argument("--template", required=True, help="a saved pipeline of this run (its config and code)")
    parser.add_argument("--taus", type=float, nargs="+", default=[200.0, 400.0, 800.0, math.inf],
                        help="time constants in optimizer steps; inf = plain mean")
    parser.add_argument("--since", type=int, default=0, help="only checkpoints at this step or later")
    parser.add_argument("--source", choices=["raw", "ema"], default="raw",
                        help="average the raw weights (model.safetensors) or the EMA weights of each checkpoint")
    parser.add_argument("--output_dir", default=None, help="where the averaged pipelines go (default RUN_DIR/averaged)")
    parser.add_argument("--num_samples", type=int, default=500)
    parser.add_argument("--num_inference_steps", type=int, default=50, help="DDIM steps of each evaluation")
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_root", default=None, help="official Fashion-MNIST files (default: the Debian path)")
    parser.add_argument("--no_eval", action="store_true", help="only write the averaged pipelines")
    args = parser.parse_args(argv)

    from annotated_pipeline.evaluation.evaluate import evaluate
    from annotated_pipeline.evaluation.reference import DEFAULT_ROOT

    checkpoints = find_checkpoints(args.run_dir, args.since)
    steps = [s for s, _ in checkpoints]
    output_dir = args.output_dir or os.path.join(args.run_dir, "averaged")
    load = load_file
    if args.source == "ema":
        from annotated_pipeline import AnnotatedUNet2DModel

        unet_config = AnnotatedUNet2DModel.load_config(os.path.join(args.template, "unet"))
        names = [name for name, _ in AnnotatedUNet2DModel.from_config(unet_config).named_parameters()]
        def load(path):
            return ema_state_dict(os.path.dirname(path), names)
    print(f"{len(steps)} checkpoints, steps {steps[0]} .. {steps[-1]}")
    print("| tau (steps) | checkpoints | weight of the last | Frechet distance | floor | smallest class share |")
    print("|---|---|---|---|---|---|")
    for tau in args.taus:
        weights = averaging_weights(steps, tau)
        folder = write_averaged_pipeline(args.template, average_state_dicts([p for _, p in checkpoints], weights, load),
                                         os.path.join(output_dir, f"{args.source}-tau-{tau:g}-since-{steps[0]}"))
        if args.no_eval:
            print(f"| {tau:g} | {len(steps)} | {weights[-1]:.3f} | (not evaluated: {folder}) | | |", flush=True)
            continue
        report = evaluate(folder, num_samples=args.num_samples, scheduler="ddim",
                          num_inference_steps=args.num_inference_steps,
                          batch_size=args.batch_size, seed=args.seed, data_root=args.data_root or DEFAULT_ROOT)
        print(f"| {tau:g} | {len(steps)} | {weights[-1]:.3f} | {report['frechet_distance']:.2f} | "
              f"{report['frechet_distance_floor']:.2f} | {report['class_coverage']['min_share']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
