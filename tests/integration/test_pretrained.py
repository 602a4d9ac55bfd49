"""The shipped reference pipeline (pretrained/ddpm-fashion-mnist): loads by both routes, same images, a card that parses."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
from huggingface_hub import ModelCard

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel

PRETRAINED = Path(__file__).resolve().parents[2] / "pretrained" / "ddpm-fashion-mnist"

ROUTE2 = """
import sys
sys.modules["annotated_pipeline"] = None
import numpy as np, torch
from diffusers import DDIMScheduler, DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True)
pipe.set_progress_bar_config(disable=True)
pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
images = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=3, output_type="np").images
np.save(sys.argv[2], images)
"""


def test_shipped_pipeline_loads_by_both_routes_with_the_same_images(tmp_path):
    pipe = AnnotatedDDPMPipeline.from_pretrained(PRETRAINED)
    assert type(pipe.unet) is AnnotatedUNet2DModel and type(pipe.scheduler) is DPMSolverMultistepScheduler
    # The project's defaults: the shipped model is what `AnnotatedUNet2DModel()` builds.
    defaults = AnnotatedUNet2DModel().config
    for key in ("dim", "dim_mults", "block_type", "resnet_block_groups", "attention_heads", "sample_size",
                "linear_attention_levels"):
        assert pipe.unet.config[key] == defaults[key], key
    assert pipe.scheduler.config.beta_schedule == "squaredcos_cap_v2"
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    images = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=3, output_type="np").images

    script = tmp_path / "route2.py"
    script.write_text(ROUTE2)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "home"), HF_MODULES_CACHE=str(tmp_path / "home" / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, str(script), str(PRETRAINED), str(tmp_path / "r2.npy")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "r2.npy"), images)


def test_shipped_pipeline_samples_as_its_card_says_with_no_arguments():
    """pipe() draws what the card's numbers describe: DPM-Solver++ in log-SNR steps, 20 steps, guidance 2 at
    t = 200..700 (the folder's scheduler and model_index.json), and Algorithm 2 is one swap away."""
    pipe = AnnotatedDDPMPipeline.from_pretrained(PRETRAINED)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.scheduler.config.use_lu_lambdas and pipe.scheduler.config.thresholding
    assert pipe.sampling_defaults == {"num_inference_steps": 20, "guidance_scale": 2.0, "guidance_interval": (200, 700)}
    plain = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), output_type="np").images
    explicit = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), output_type="np", num_inference_steps=20,
                    guidance_scale=2.0, guidance_interval=(200, 700)).images
    np.testing.assert_array_equal(plain, explicit)
    card = ModelCard.load(PRETRAINED / "README.md")
    assert "images = pipe(batch_size=16, generator=generator).images" in card.content
    assert "DPMSolverMultistepScheduler, 20 steps, guidance_scale=2 at 200 <= t <= 700" in card.content
    assert "annotated_pipeline" not in card.data.to_dict()  # the card's inputs live in card_inputs.json
    pipe.scheduler = AnnotatedDDPMScheduler.from_config(pipe.scheduler.config)
    assert pipe.scheduler.config.timestep_spacing == "trailing" and pipe.scheduler.config.clip_sample


def test_shipped_code_is_the_packages_code_bundled_as_save_pretrained_writes_it():
    """The folder's code files are generated (one bundle per component); they may not drift from the source."""
    from annotated_pipeline.pipelines import pipeline as pipeline_module
    from annotated_pipeline.pipelines.pipeline_saving import bundle_module
    from annotated_pipeline.unet import unet_2d

    # The scheduler is diffusers' DPMSolverMultistepScheduler: no code file of its own.
    assert sorted(os.listdir(PRETRAINED / "scheduler")) == ["scheduler_config.json"]
    for module, shipped in [(pipeline_module, "pipeline.py"), (unet_2d, "unet/unet_2d.py")]:
        expected = bundle_module(Path(module.__file__))
        assert (PRETRAINED / shipped).read_text(encoding="utf-8") == expected, (
            f"{shipped} differs from the package's code: run `python pretrained/package_reference.py --code_only`")


def test_package_reference_code_only_rewrites_just_the_code(tmp_path):
    target = tmp_path / "shipped"
    shutil.copytree(PRETRAINED, target)
    (target / "unet" / "unet_2d.py").write_text("# stale\n")
    weights = (target / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    result = subprocess.run([sys.executable, str(PRETRAINED.parents[0] / "package_reference.py"), "--code_only",
                             "--target", str(target)], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (target / "unet" / "unet_2d.py").read_text() == (PRETRAINED / "unet" / "unet_2d.py").read_text()
    assert (target / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == weights
    assert (target / "model_index.json").read_text() == (PRETRAINED / "model_index.json").read_text()


def test_shipped_card_parses_and_states_how_it_was_made():
    card = ModelCard.load(PRETRAINED / "README.md")
    assert card.data.library_name == "diffusers"
    assert {"diffusers", "unconditional-image-generation"} <= set(card.data.tags)
    for needle in ("train_reference.sh", "Frechet distance", "DDIM, 50 steps", "DDPM, 1000 steps", "minutes"):
        assert needle in card.text, needle
    assert (PRETRAINED / "samples.png").is_file()
    assert not list(PRETRAINED.rglob("*.bin")) and not list(PRETRAINED.rglob("checkpoint-*"))


# ------------------------------------------------------------------------------------------------
# The scripts that made it: pretrained/train_reference.sh and pretrained/package_reference.py
# ------------------------------------------------------------------------------------------------


def load_package_reference():
    import importlib.util

    spec = importlib.util.spec_from_file_location("package_reference", PRETRAINED.parent / "package_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_script_is_valid_bash_and_exports_after_training():
    script = PRETRAINED.parent / "train_reference.sh"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = script.read_text()
    # The post-hoc average is built once training has ended, never beside it (two torch processes on 2 cores
    # slow each other 3-6x).
    assert text.index("reference training done") < text.index('annotated-pipeline export "$RUN')
    assert "&\n" not in text.split("reference training done")[1]  # nothing sent to the background
    assert "--resume_from_checkpoint latest" in text and "timing.tsv" in text and "--posthoc_ema_every" in text
    # The work sits in a function that bash parses whole, so editing the script during an hour-long run
    # cannot shift what that run reads next; nothing but the call and exit follows it.
    assert text.rstrip().endswith('}\n\nmain "$@"; exit') and text.count("main() {") == 1


FAKE_ACCELERATE = """#!/usr/bin/env bash
# Stands in for `accelerate launch train_accelerate.py ...`: records the call, then writes what a finished
# run leaves in --output_dir (after FAKE_SLEEP seconds, when set).
out=""; steps=""; prev=""
for a in "$@"; do
  [ "$prev" = "--output_dir" ] && out="$a"; [ "$prev" = "--max_train_steps" ] && steps="$a"; prev="$a"
done
echo "$*" >> "$out/launches.txt"
[ -n "${FAKE_SLEEP:-}" ] && sleep "$FAKE_SLEEP"
mkdir -p "$out/checkpoint-$steps" "$out/posthoc_ema"
touch "$out/checkpoint-$steps/model.safetensors"
"""
FAKE_CLI = """#!/usr/bin/env bash
# Stands in for `annotated-pipeline export CHECKPOINT OUT --sigma_rel S`.
echo "$*" >> "$(dirname "$2")/exports.txt"
mkdir -p "$3" && touch "$3/model_index.json"
"""


def test_training_script_resumes_after_a_kill_counts_the_time_of_every_attempt_and_exports(tmp_path):
    import signal
    import time

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in [("accelerate", FAKE_ACCELERATE), ("annotated-pipeline", FAKE_CLI)]:
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    run = tmp_path / "run"
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", RUN=str(run))
    script = [str(PRETRAINED.parent / "train_reference.sh"), "--learning_rate", "1e-3"]

    first = subprocess.Popen(["bash", *script], env=dict(env, FAKE_SLEEP="60"), start_new_session=True)
    deadline = time.time() + 60
    while not (run / "launches.txt").is_file() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    os.killpg(first.pid, signal.SIGTERM)  # what `kill -- -PGID` does to a run in the background
    assert first.wait(timeout=60) != 0
    prior = int((run / ".seconds").read_text())
    assert prior >= 1 and not (run / "timing.tsv").exists() and not (run / "stage-11000").exists()

    subprocess.run(["bash", *script], env=env, check=True, timeout=120, capture_output=True)
    launches = (run / "launches.txt").read_text().splitlines()
    assert len(launches) == 2  # launched again: it resumes from the newest checkpoint
    assert all("--resume_from_checkpoint latest" in line and line.endswith("--learning_rate 1e-3") for line in launches)
    timing = [line.split("\t") for line in (run / "timing.tsv").read_text().splitlines()]
    assert [row[0] for row in timing] == ["11000"] and int(timing[0][1]) >= prior
    assert not (run / ".seconds").exists()
    assert (run / "exports.txt").read_text().split() == [
        "export", str(run / "checkpoint-11000"), str(run / "stage-11000"), "--sigma_rel", "0.05"]
    assert (run / "stage-11000" / "model_index.json").is_file()

    subprocess.run(["bash", *script], env=env, check=True, timeout=120, capture_output=True)
    assert len((run / "launches.txt").read_text().splitlines()) == 2  # finished: a third run trains nothing
    assert len((run / "exports.txt").read_text().splitlines()) == 1  # and exports nothing


def test_package_reference_reads_the_stage_times_and_the_curve(tmp_path):
    import json

    package_reference = load_package_reference()
    run = tmp_path / "run"
    (run / "stage-800").mkdir(parents=True)
    (run / "stage-1600").mkdir()
    (run / "timing.tsv").write_text("800\t600\t2026-01-01T00:10:00Z\n1600\t660\t2026-01-01T00:21:00Z\n")
    assert package_reference.timed_minutes(run, 800) == 10.0
    assert package_reference.timed_minutes(run, 1600) == 21.0
    assert package_reference.stage_minutes(run, 1600) == "21" and package_reference.stage_minutes(tmp_path, 1) == "?"
    report = {"frechet_distance": 1.0}
    (run / "stage-1600" / "eval-ddim50-n500-whole.json").write_text(json.dumps(report))
    (run / "stage-800" / "eval-ddim50-n500-whole.json").write_text(json.dumps({"frechet_distance": 2.0}))
    (run / "stage-1600" / "eval-ddim50-n1000-whole.json").write_text(json.dumps(report))  # another N: not on the curve
    (run / "stage-800" / "eval-ddim50-n500.json").write_text(json.dumps({"frechet_distance": 9.0}))  # first definition: not either
    curve = package_reference.stage_curve(run, 500)
    assert [(step, r["frechet_distance"]) for step, r in curve] == [(800, 2.0), (1600, 1.0)]
    with pytest.raises(SystemExit, match="timing.tsv is missing"):
        package_reference.timed_minutes(tmp_path, 800)


def test_package_reference_describes_the_recipe_from_the_recorded_arguments():
    from annotated_pipeline.training.args import args_for_model_card, parse_args

    package_reference = load_package_reference()
    plain = args_for_model_card(parse_args(["--logger", "none", "--learning_rate", "1e-3", "--use_ema",
                                            "--mixed_precision", "bf16", "--lr_warmup_steps", "200"]))
    assert package_reference.recipe(plain) == (
        "batch 16 per process, AdamW lr 0.001 (cosine schedule, 200 warmup steps), huber loss, bf16 autocast, EMA")
    weighted = args_for_model_card(parse_args(["--logger", "none", "--snr_gamma", "5", "--lr_decay_steps", "3000",
                                               "--loss_type", "l2", "--train_batch_size", "128",
                                               "--gradient_accumulation_steps", "2"]))
    assert package_reference.recipe(weighted) == (
        "batch 128 per process x 2 accumulation steps, AdamW lr 0.0001 (cosine schedule, 500 warmup steps, horizon 3000 steps), l2 loss with min-SNR-5 weighting")
    assert package_reference.recipe(None) == "bf16 autocast, EMA"  # a run that recorded no arguments
    conditional = args_for_model_card(parse_args(["--logger", "none", "--label_column", "label",
                                                  "--class_dropout_prob", "0.1"]))
    assert package_reference.recipe(conditional).endswith(", huber loss, class-conditional on the 'label' column "
                                                          "with 10% label dropout")
    posthoc = args_for_model_card(parse_args(["--logger", "none", "--use_ema", "--posthoc_ema_every", "500"]))
    assert package_reference.recipe(posthoc).endswith(", EMA, power-function EMA snapshots every 500 steps "
                                                      "(Karras et al. 2024)")


def test_add_inception_keeps_one_row_per_sampler_and_n_and_replaces_a_remeasured_one(tmp_path):
    """`package_reference.py --add_inception REPORT.json` on a copy of the shipped folder: a new sampler and N
    adds a row, its four metrics and its command beside the card's; the same sampler and N again replaces its row."""
    package_reference = load_package_reference()
    folder = tmp_path / "model"
    shutil.copytree(PRETRAINED, folder)

    def rows():
        section = (folder / "README.md").read_text().split(package_reference.INCEPTION_HEADING)[1]
        return [line.split(" | ") for line in section.split("```")[0].splitlines() if re.match(r"\| \d", line)]

    def inception_metrics():
        return {result.metric_name.split(" ")[0]: result.metric_value
                for result in ModelCard.load(folder / "README.md").data.eval_results if result.metric_type in ("FID", "KID")}

    shipped = json.loads((folder / "evaluation.json").read_text())
    before, metrics_before = rows(), inception_metrics()
    assert len(before) == len([key for key in shipped if key.startswith("inception_")]) >= 1
    first = next(value for key, value in shipped.items() if key.startswith("inception_"))
    new = {**first, "num_samples": 300, "scheduler": "ddim", "num_inference_steps": 7, "frechet_distance": 40.5,
           "frechet_distance_floor": 30.25, "kid": 0.0123, "kid_floor": 0.0001, "total_seconds": 120.0,
           "processor": "CPU a test one"}
    (tmp_path / "new.json").write_text(json.dumps(new))
    package_reference.add_inception(folder, tmp_path / "new.json")
    after = rows()
    assert after[0][:4] == ["| 300", "ddim, 7 steps, guidance 2 at t in 200..700, bf16", "40.50", "30.25"]
    assert after[0][-1] == "2 |" and after[1:] == before  # smallest N first; the card's rows unchanged
    card = (folder / "README.md").read_text()
    assert "--num_samples 300 --scheduler ddim --num_inference_steps 7" in card and "CPU a test one" in card
    assert card.count(package_reference.INCEPTION_HEADING) == 1
    assert inception_metrics() == {**metrics_before, "inception_fid_ddim7_n300": 40.5, "inception_fid_floor_n300": 30.25,
                                   "inception_kid_ddim7_n300": 0.0123, "inception_kid_floor_n300": 0.0001}
    assert json.loads((folder / "evaluation.json").read_text())["inception_ddim7_n300"] == new

    (tmp_path / "again.json").write_text(json.dumps({**new, "frechet_distance": 39.0}))
    package_reference.add_inception(folder, tmp_path / "again.json")
    assert [row[2] for row in rows()] == ["39.00"] + [row[2] for row in before]


def test_the_readmes_inception_headline_is_the_cards_measurement():
    readme = (PRETRAINED.parents[1] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| shipped model: Inception FID / KID at N = "))
    n = int(re.search(r"N = ([\d,]+), ", row).group(1).replace(",", ""))
    report = json.loads((PRETRAINED / "evaluation.json").read_text())[f"inception_dpmsolver20_n{n}"]
    assert row.endswith(f"| {report['frechet_distance']:.1f} / {report['kid']:.4f} "
                        f"({report['frechet_distance_floor']:.1f} / {report['kid_floor']:.4f}) |"), row
