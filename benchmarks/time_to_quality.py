"""Time to quality: a training recipe run for a fixed CPU-time budget, its checkpoints judged with one setting.

    python benchmarks/time_to_quality.py run --recipe shipped --budget_cpu_minutes 120 \\
        --results benchmarks/time_to_quality/results.jsonl --workdir runs/ttq
    python benchmarks/time_to_quality.py run --recipe_file my_recipes.json --recipe wide --budget_cpu_minutes 120 ...
    python benchmarks/time_to_quality.py plot --results benchmarks/time_to_quality/results.jsonl \\
        --output benchmarks/time_to_quality/quality.png

The protocol (issue 31):

1. A recipe is a list of `annotated-pipeline train` arguments (RECIPES below, or a JSON file
   {"name": [arguments, ...]}). The protocol adds --output_dir (WORKDIR/NAME) and
   --checkpointing_steps K, and refuses a recipe that sets those, --resume_from_checkpoint or
   --checkpoints_total_limit (every checkpoint is judged after the run, so none may be pruned).
2. `python -m annotated_pipeline.commands.cli train RECIPE` runs as one process tree. Its CPU time (user +
   system, summed over the tree and polled every --poll_seconds) is the clock: each checkpoint is
   stamped with the CPU seconds spent when it appeared (checkpoints are renamed into place when
   complete, training/checkpointing.py), and the tree is stopped (SIGTERM) when the budget is spent.
   CPU seconds, not wall seconds: other work on a shared machine then slows the run without
   charging it. A run with k threads spends about k CPU seconds per wall second (the first shipped
   recipe's 51-61 wall minutes on 2 cores are about 100-120 CPU minutes).
3. After the run, never beside it, each checkpoint (its EMA weights where it has them) is judged by
   the library's `annotated_pipeline.evaluation.evaluate.evaluate` with the card's setting: the
   classifier distance at N = 1,000 against the whole test split, DPM-Solver++ 20 steps, seed 0,
   and the card's guidance (pretrained/ddpm-fashion-mnist/card_inputs.json: scale 2 at 200 <= t <= 700)
   for a class-conditional model with a "no class" embedding; an unconditional one is sampled
   without guidance, and its rows say so.
4. One JSON line per checkpoint is appended to --results (recipe, arguments, step, CPU and wall
   seconds, the processor, the evaluation's settings and numbers); `plot` draws the distance
   against CPU minutes, one line per recipe, and the card's 7.6 as the target.

5. `inception` adds the field's units to rows already judged: the Inception FID and KID (the library's
   `evaluate(features="inception")`, extra [inception]) of the same checkpoints with the same sampler, N and
   seed, so the same samples; `--last` judges each recipe's last checkpoint only (3-8 minutes each on
   2 cores at N = 1,000). The rows are rewritten in place, atomically.

    python benchmarks/time_to_quality.py inception --results benchmarks/time_to_quality/results.jsonl --last

6. `posthoc` judges post-hoc EMAs (Karras et al. 2024) of a recipe trained with --posthoc_ema_every: each width
   is exported from the recipe's last checkpoint (`annotated-pipeline export --sigma_rel`) and judged as in 3,
   one row each, as the recipe "NAME post-hoc S".

    python benchmarks/time_to_quality.py posthoc --results R.jsonl --recipe NAME --sigma_rel 0.05 0.1 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine_peak import processor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CARD_INPUTS = REPO / "pretrained" / "ddpm-fashion-mnist" / "card_inputs.json"
CARD_SAMPLER = {"scheduler": "dpmsolver", "num_inference_steps": 20, "seed": 0}
CARD_DISTANCE = 7.581  # frechet_distance_dpmsolver20_n1000 of the first shipped model (its card): the goals' target
SET_BY_PROTOCOL = ("--output_dir", "--checkpointing_steps", "--resume_from_checkpoint", "--checkpoints_total_limit")


def wsd_b64(learning_rate: str, cooldown: int, steps: int, *extra: str) -> list[str]:
    """The first shipped recipe at batch 64 under warmup-stable-decay: 200 warmup steps, the rate held at
    `learning_rate`, then cooled linearly to 0 over the last `cooldown` of `steps`; `extra` arguments after."""
    return ["--train_data_dir", "/usr/share/datasets/fashion-mnist", "--train_batch_size", "64",
            "--learning_rate", learning_rate, "--lr_scheduler", "warmup_stable_decay", "--lr_warmup_steps", "200",
            "--lr_cooldown_steps", str(cooldown), "--snr_gamma", "5", "--label_column", "label",
            "--class_dropout_prob", "0.1", "--use_ema", "--max_train_steps", str(steps), "--logger", "none", *extra]


# The first shipped model's recipe (pretrained/train_reference.sh until 2026-12-07; the model shipped since is
# wsd-b64-lr2e-3-long-posthoc's post-hoc average of width 0.05) in one process, less the options
# the protocol sets: class-conditional with 10% label dropout, bf16 autocast, EMA, min-SNR-5.
RECIPES = {
    "shipped": ["--train_data_dir", "/usr/share/datasets/fashion-mnist",
                "--train_batch_size", "128", "--learning_rate", "1e-3", "--lr_scheduler", "constant_with_warmup",
                "--lr_warmup_steps", "200", "--snr_gamma", "5", "--label_column", "label",
                "--class_dropout_prob", "0.1", "--use_ema", "--max_train_steps", "7000", "--logger", "none"],
    # Half the compute: batch 64 (about half the CPU per step) for 6,000 steps, the rate held at its peak and
    # then cooled linearly to 0 over the last 1,200 (warmup-stable-decay), so the run ends annealed
    # whatever its length, with the EMA of the first shipped recipe.
    "wsd-b64": wsd_b64("1e-3", cooldown=1200, steps=6000),
    # wsd-b64 with twice the peak rate and twice the cooldown (the last 2,400 steps): more progress while the
    # rate is high, and a longer anneal to take the noise of that rate back out. README "Train" documents it.
    "wsd-b64-lr2e-3": wsd_b64("2e-3", cooldown=2400, steps=6000),
    # The same for the first shipped recipe's whole CPU time (about 107 minutes): 11,000 steps, the last 4,400 cooling.
    # Not kept: 7.75 at 86 CPU minutes, behind the 6,000-step run (RESULTS.md, "Time to quality").
    "wsd-b64-lr2e-3-long": wsd_b64("2e-3", cooldown=4400, steps=11000),
    # A wider U-Net (widths 24 / 48 / 96, 1.88M parameters; about twice the CPU per step) for the same CPU time:
    # 5,600 steps at a rate scaled down with the width, the last 2,240 cooling.
    "wsd-b64-dim24": wsd_b64("1.5e-3", 2240, 5600, "--dim", "24"),
    # wsd-b64-lr2e-3-long again, keeping post-hoc EMA snapshots (Karras et al. 2024) every 500 steps: the same
    # training (the averages change nothing in it), and the length of the weights' average chosen afterwards
    # (`posthoc` below).
    "wsd-b64-lr2e-3-long-posthoc": wsd_b64("2e-3", 4400, 11000, "--posthoc_ema_every", "500"),
}


# ----------------------------------------------------------------------------------------------------
# the run: CPU time as the clock


def check_recipe(name: str, arguments: list[str]) -> None:
    """ValueError for a recipe that sets what the protocol sets (before any work)."""
    if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
        raise ValueError(f"recipe {name!r}: expected a list of argument strings, got {arguments!r}")
    taken = [a for a in arguments if a.split("=", 1)[0] in SET_BY_PROTOCOL]
    if taken:
        raise ValueError(f"recipe {name!r} sets {', '.join(taken)}: the protocol sets --output_dir and "
                         "--checkpointing_steps and keeps every checkpoint; remove them from the recipe")


class TreeClock:
    """CPU seconds (user + system) spent by a process and its descendants, live and finished.

    A process's CPU time only grows, so the last value seen for each pid is kept: one that exits
    between two polls loses at most one poll interval's CPU time."""

    def __init__(self, pid: int):
        import psutil

        self.root = psutil.Process(pid)
        self.seen: dict[int, float] = {}

    def seconds(self) -> float:
        import psutil

        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            processes = []
        for process in processes:
            try:
                times = process.cpu_times()
                self.seen[process.pid] = max(self.seen.get(process.pid, 0.0), times.user + times.system)
            except psutil.NoSuchProcess:
                pass
        return sum(self.seen.values())


def train_for_budget(name: str, arguments: list[str], budget_cpu_s: float, run_dir: Path, checkpointing_steps: int,
                     poll_seconds: float = 0.2, env: dict | None = None) -> dict:
    """Run `annotated-pipeline train ARGUMENTS` until it ends or has spent `budget_cpu_s` CPU seconds.

    Returns {"checkpoints": [{"path", "step", "cpu_seconds", "wall_seconds"}], "cpu_seconds", "wall_seconds",
    "stopped_by_budget", "log"}."""
    from annotated_pipeline.training.checkpointing import checkpoint_step, list_checkpoints

    check_recipe(name, arguments)
    run_dir.mkdir(parents=True, exist_ok=True)
    if list_checkpoints(run_dir):
        raise ValueError(f"{run_dir} already holds checkpoints: give each run a fresh --workdir")
    command = [sys.executable, "-m", "annotated_pipeline.commands.cli", "train", *arguments, "--output_dir", str(run_dir),
               "--checkpointing_steps", str(checkpointing_steps)]
    log_path = run_dir / "train.log"
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                   start_new_session=True)  # its own process group: stopped as one
    clock, stamped, stopped = TreeClock(process.pid), {}, False
    try:
        while True:
            cpu, ended = clock.seconds(), process.poll() is not None
            for path in list_checkpoints(run_dir):
                stamped.setdefault(path, (cpu, time.perf_counter() - start))
            if ended:
                break
            if cpu >= budget_cpu_s:
                # A hard stop: SIGTERM would make the run write one more checkpoint, past the budget.
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=120)
                stopped = True
                break
            time.sleep(poll_seconds)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if not stopped and process.returncode != 0:
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"recipe {name!r} failed (exit status {process.returncode}); the end of {log_path}:\n{tail}")
    checkpoints = [{"path": path, "step": checkpoint_step(path), "cpu_seconds": round(cpu, 2),
                    "wall_seconds": round(wall, 2)} for path, (cpu, wall) in stamped.items()
                   if os.path.isdir(path)]
    return {"checkpoints": sorted(checkpoints, key=lambda c: c["step"]), "cpu_seconds": round(clock.seconds(), 2),
            "wall_seconds": round(time.perf_counter() - start, 2), "stopped_by_budget": stopped, "log": str(log_path)}


# ----------------------------------------------------------------------------------------------------
# the judging: the library's evaluate, one setting for every checkpoint


def card_guidance() -> tuple[float, tuple[int, int] | None]:
    """The shipped card's guidance scale and interval (card_inputs.json)."""
    card = json.loads(CARD_INPUTS.read_text())
    interval = card.get("guidance_interval")
    return float(card.get("guidance_scale", 1.0)), tuple(interval) if interval else None


def evaluation_settings(pipeline, num_samples: int, data_root: str | None, batch_size: int) -> dict:
    """evaluate()'s keyword arguments for one pipeline: the card's sampler, its guidance where the model has
    a "no class" embedding."""
    from annotated_pipeline.evaluation.reference import DEFAULT_ROOT

    settings = {**CARD_SAMPLER, "num_samples": num_samples, "batch_size": batch_size,
                "data_root": data_root or DEFAULT_ROOT, "kid_subset_size": min(1000, num_samples)}
    if pipeline.unet.config.get("null_class_embed", False):
        settings["guidance_scale"], settings["guidance_interval"] = card_guidance()
    return settings


def evaluate_checkpoint(checkpoint: str, num_samples: int, data_root: str | None, batch_size: int = 250,
                        device: str = "cpu", features: str = "classifier", judged_with: dict | None = None) -> dict:
    """`evaluate`'s report on one checkpoint (its EMA weights where it has them) with the card's settings, sampling
    on `device`. `judged_with`: a row judged before, whose guidance the settings must still be (checked first)."""
    from annotated_pipeline.checkpoints import load_pipeline
    from annotated_pipeline.evaluation.evaluate import evaluate

    pipeline = load_pipeline(checkpoint).to(device)
    settings = evaluation_settings(pipeline, num_samples, data_root, batch_size)
    if judged_with is not None:
        before = judged_with.get("guidance_scale", 1.0), judged_with.get("guidance_interval")
        if (settings.get("guidance_scale", 1.0), settings.get("guidance_interval")) != (
                before[0], tuple(before[1]) if before[1] else None):
            raise ValueError(f"{checkpoint}: its row was judged with other guidance than the card's now")
    return evaluate(pipeline, **settings, features=features)


def judge(checkpoint: str, num_samples: int, data_root: str | None, batch_size: int = 250, device: str = "cpu") -> dict:
    """The numbers of one checkpoint, as `annotated-pipeline evaluate` would print them with the card's settings."""
    report = evaluate_checkpoint(checkpoint, num_samples, data_root, batch_size, device)
    keep = ("frechet_distance", "frechet_distance_floor", "kid", "kid_floor", "num_reference", "scheduler",
            "num_inference_steps", "guidance_scale", "seed", "sampling_seconds", "label_accuracy")
    row = {key: report[key] for key in keep if key in report}
    row["guidance_interval"] = report.get("guidance_interval")
    row["min_class_share"] = report["class_coverage"]["min_share"]
    row["num_samples"] = num_samples
    return row


def run_protocol(name: str, arguments: list[str], budget_cpu_minutes: float, workdir: Path, results: Path,
                 checkpointing_steps: int, num_samples: int = 1000, data_root: str | None = None,
                 poll_seconds: float = 0.2, env: dict | None = None, device: str = "cpu") -> list[dict]:
    """Train `name` for the budget, judge every checkpoint (sampling on `device`), append one JSON line each to
    `results`. The run itself uses the device the trainer picks (CUDA where there is one)."""
    import torch

    check_recipe(name, arguments)
    if budget_cpu_minutes <= 0 or checkpointing_steps < 1 or num_samples < 2:
        raise ValueError("the budget must be > 0 minutes, --checkpointing_steps >= 1 and --num_samples >= 2; got "
                         f"{budget_cpu_minutes}, {checkpointing_steps}, {num_samples}")
    from annotated_pipeline.evaluation.reference import DEFAULT_ROOT

    if not Path(data_root or DEFAULT_ROOT).is_dir():
        raise ValueError(f"the evaluation's reference data {data_root or DEFAULT_ROOT} is not a folder "
                         "(apt-get install dataset-fashion-mnist, or give --data_root)")
    run = train_for_budget(name, arguments, budget_cpu_minutes * 60, workdir / name, checkpointing_steps,
                           poll_seconds, env)
    if not run["checkpoints"]:
        raise RuntimeError(f"recipe {name!r} wrote no checkpoint within {budget_cpu_minutes} CPU minutes "
                           f"(--checkpointing_steps {checkpointing_steps}); see {run['log']}")
    machine = processor(torch.device(device))
    rows = []
    results.parent.mkdir(parents=True, exist_ok=True)
    for point in run["checkpoints"]:
        row = {"recipe": name, "arguments": arguments, "step": point["step"], "cpu_seconds": point["cpu_seconds"],
               "cpu_minutes": round(point["cpu_seconds"] / 60, 3), "wall_seconds": point["wall_seconds"],
               "budget_cpu_minutes": budget_cpu_minutes, "run_cpu_seconds": run["cpu_seconds"],
               "stopped_by_budget": run["stopped_by_budget"], "processor": machine, "data_root": data_root,
               "checkpoint": point["path"], **judge(point["path"], num_samples, data_root, device=device)}
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{name} step {row['step']:6d}  {row['cpu_minutes']:8.2f} CPU min  distance "
              f"{row['frechet_distance']:.3f} (floor {row['frechet_distance_floor']:.3f})  [{machine}]", flush=True)
        rows.append(row)
    return rows


def add_inception(results: Path, recipes: list[str] | None = None, last_only: bool = False, device: str = "cpu") -> int:
    """Add the Inception FID/KID to the rows of `results` that lack them (see the module docstring, 5); the count."""
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    chosen = [row for row in rows if "checkpoint" in row and (not recipes or row["recipe"] in recipes)]
    if last_only:  # each recipe's newest checkpoint, judged or not: an earlier one never stands in for it
        newest = {}
        for row in chosen:
            if row["step"] >= newest.get(row["recipe"], row)["step"]:
                newest[row["recipe"]] = row
        chosen = list(newest.values())
    chosen = [row for row in chosen if "inception_fid" not in row]
    for row in chosen:
        report = evaluate_checkpoint(row["checkpoint"], row["num_samples"], row.get("data_root"), 250, device,
                                     features="inception", judged_with=row)
        row.update(inception_fid=report["frechet_distance"], inception_fid_floor=report["frechet_distance_floor"],
                   inception_kid=report.get("kid"), inception_kid_floor=report.get("kid_floor"))
        print(f"{row['recipe']} step {row['step']:6d}  {row['cpu_minutes']:8.2f} CPU min  Inception FID "
              f"{row['inception_fid']:.3f} (floor {row['inception_fid_floor']:.3f})", flush=True)
        partial = results.with_suffix(".partial")
        partial.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(partial, results)  # after each checkpoint: an interrupted pass keeps what it measured
    return len(chosen)


def add_posthoc(results: Path, recipe: str, sigma_rels: list[float], last_only: bool = True, device: str = "cpu") -> int:
    """Judge post-hoc EMAs of a recipe's checkpoints (a run trained with --posthoc_ema_every): for each width, the
    library's `export --sigma_rel` into CHECKPOINT/../posthoc-STEP-sigma-S/, judged like a checkpoint. Each is a
    row of the recipe "RECIPE post-hoc S" at its checkpoint's CPU time (the averages' cost is in the run's);
    returns the count."""
    from annotated_pipeline.commands.export import export

    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    chosen = sorted((row for row in rows if row["recipe"] == recipe and "sigma_rel" not in row), key=lambda r: r["step"])
    if not chosen:
        raise ValueError(f"{results} has no rows of recipe {recipe!r}")
    count = 0
    for row in chosen[-1:] if last_only else chosen:
        for sigma_rel in sigma_rels:
            out = Path(row["checkpoint"]).parent / f"posthoc-{row['step']}-sigma-{sigma_rel:g}"
            if not out.is_dir():
                export(row["checkpoint"], str(out), sigma_rel=sigma_rel, num_samples=0)
            judged = judge(str(out), row["num_samples"], row.get("data_root"), device=device)
            new = {**{k: v for k, v in row.items() if not k.startswith("inception_")}, **judged,
                   "recipe": f"{recipe} post-hoc {sigma_rel:g}", "sigma_rel": sigma_rel, "checkpoint": str(out)}
            with open(results, "a") as f:
                f.write(json.dumps(new) + "\n")
            print(f"{new['recipe']} step {new['step']:6d}  {new['cpu_minutes']:8.2f} CPU min  distance "
                  f"{new['frechet_distance']:.3f}", flush=True)
            count += 1
    return count


# ----------------------------------------------------------------------------------------------------
# the plot


def read_results(results: Path) -> dict[str, list[dict]]:
    """The JSON lines of `results`, grouped by recipe, each recipe's rows by CPU time."""
    recipes: dict[str, list[dict]] = {}
    for line in Path(results).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            recipes.setdefault(row["recipe"], []).append(row)
    return {name: sorted(rows, key=lambda r: r["cpu_seconds"]) for name, rows in recipes.items()}


def half_shipped_cpu_minutes(rows: list[dict]) -> float | None:
    """Half the CPU minutes of the first shipped recipe's 7,000 steps, at the rate its rows were written (None without rows)."""
    steps = int(RECIPES["shipped"][RECIPES["shipped"].index("--max_train_steps") + 1])
    measured = [r for r in rows if r.get("step")]
    if not measured:
        return None
    last = max(measured, key=lambda r: r["step"])
    return last["cpu_minutes"] / last["step"] * steps / 2


def plot(results: Path, output: Path):
    """Distance against CPU minutes, one line per recipe; the card's distance as the target. Returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipes = read_results(results)
    if not recipes:
        raise ValueError(f"{results} holds no results")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    posthoc = {name: rows for name, rows in recipes.items() if all("sigma_rel" in r for r in rows)}
    if posthoc:  # the post-hoc averages of one checkpoint: one series of points, each marked with its width
        points = sorted((r for rows in posthoc.values() for r in rows), key=lambda r: r["sigma_rel"])
        ax.plot([r["cpu_minutes"] for r in points], [r["frechet_distance"] for r in points], linestyle="none",
                marker="x", color="black", label="post-hoc EMA of a last checkpoint (sigma_rel marked)")
        for r in points:
            ax.annotate(f"{r['sigma_rel']:g}", (r["cpu_minutes"], r["frechet_distance"]), textcoords="offset points",
                        xytext=(-14, -3), fontsize=6)
    for name, rows in recipes.items():
        if name in posthoc:
            continue
        ax.plot([r["cpu_minutes"] for r in rows], [r["frechet_distance"] for r in rows], marker="o", label=name)
        for r in rows:
            if r.get("inception_fid") is not None:
                ax.annotate(f"Inception FID {r['inception_fid']:.1f}", (r["cpu_minutes"], r["frechet_distance"]),
                            textcoords="offset points", xytext=(4, 6), fontsize=7)
    ax.axhline(CARD_DISTANCE, color="grey", linestyle="--", linewidth=1,
               label=f"first shipped model ({CARD_DISTANCE:.1f})")
    half = half_shipped_cpu_minutes(recipes.get("shipped", []))
    if half is not None:
        ax.axvline(half, color="grey", linestyle=":", linewidth=1,
                   label=f"half the first shipped recipe's CPU time ({half:.0f} min, from its rate)")
    ax.set_xlabel("CPU minutes (user + system, the training process tree)")
    sizes = sorted({row["num_samples"] for rows in recipes.values() for row in rows})
    ax.set_ylabel(f"classifier distance, N = {', '.join(map(str, sizes))} (lower is better)")
    ax.set_yscale("log")
    machines = sorted({row["processor"] for rows in recipes.values() for row in rows})
    ax.set_title("time to quality: " + "; ".join(machines), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return fig


# ----------------------------------------------------------------------------------------------------
# command line


def load_recipes(recipe_file: str | None) -> dict[str, list[str]]:
    if recipe_file is None:
        return dict(RECIPES)
    recipes = json.loads(Path(recipe_file).read_text())
    if not isinstance(recipes, dict):
        raise ValueError(f"{recipe_file}: expected a JSON object {{name: [arguments]}}")
    for name, arguments in recipes.items():
        check_recipe(name, arguments)
    return recipes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="time_to_quality.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train recipes for a CPU budget and judge their checkpoints")
    run.add_argument("--recipe", action="append", required=True, help="a recipe's name (repeat for several)")
    run.add_argument("--recipe_file", default=None, help="JSON {name: [train arguments]} (default: the built-in ones)")
    run.add_argument("--budget_cpu_minutes", type=float, required=True)
    run.add_argument("--checkpointing_steps", type=int, default=500, help="a point on the curve every K steps")
    run.add_argument("--num_samples", type=int, default=1000, help="N of the distance (the card's: 1000)")
    run.add_argument("--data_root", default=None, help="the evaluation's reference (default: evaluate's)")
    run.add_argument("--workdir", type=Path, default=Path("runs/time_to_quality"))
    run.add_argument("--results", type=Path, default=Path("benchmarks/time_to_quality/results.jsonl"))
    run.add_argument("--plot", type=Path, default=None, help="also draw the plot of --results here")
    run.add_argument("--poll_seconds", type=float, default=0.2)
    add = sub.add_parser("inception", help="add the Inception FID/KID to judged rows that lack them")
    add.add_argument("--results", type=Path, required=True)
    add.add_argument("--recipe", action="append", default=None, help="only this recipe's rows (repeat)")
    add.add_argument("--last", action="store_true", help="only each recipe's last checkpoint")
    posthoc = sub.add_parser("posthoc", help="judge post-hoc EMAs of a recipe's checkpoints (--posthoc_ema_every runs)")
    posthoc.add_argument("--results", type=Path, required=True)
    posthoc.add_argument("--recipe", required=True)
    posthoc.add_argument("--sigma_rel", type=float, nargs="+", required=True, help="the widths to synthesize and judge")
    posthoc.add_argument("--all", dest="last_only", action="store_false", help="every checkpoint, not only the last")
    draw = sub.add_parser("plot", help="draw distance against CPU minutes from a results file")
    draw.add_argument("--results", type=Path, required=True)
    draw.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "plot":
            plot(args.results, args.output)
            return 0
        if args.command == "inception":
            if not args.results.is_file():
                raise ValueError(f"--results {args.results} is not a file")
            add_inception(args.results, args.recipe, args.last)
            return 0
        if args.command == "posthoc":
            if not args.results.is_file():
                raise ValueError(f"--results {args.results} is not a file")
            add_posthoc(args.results, args.recipe, args.sigma_rel, args.last_only)
            return 0
        recipes = load_recipes(args.recipe_file)
        unknown = [name for name in args.recipe if name not in recipes]
        if unknown:
            parser.error(f"unknown recipe(s) {', '.join(unknown)}; known: {', '.join(recipes)}")
        for name in args.recipe:
            run_protocol(name, recipes[name], args.budget_cpu_minutes, args.workdir, args.results,
                         args.checkpointing_steps, args.num_samples, args.data_root, args.poll_seconds)
        if args.plot:
            plot(args.results, args.plot)
    except ValueError as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
