"""End-to-end runs of `accelerate launch train_accelerate.py`, as real subprocesses.

Three training runs (tiny U-Net, 16x16 images, T=20) are shared by the tests below:

    single    1 process, EMA, 4 steps, checkpoints every 2, TensorBoard, push to a local Hub server
    resumed   checkpoint-2 of `single` in a fresh folder, --resume_from_checkpoint latest,
              --checkpoints_total_limit 1, and a push to a Hub that is down
    multi     2 CPU processes (gloo), bf16, gradient accumulation 2, class-conditional, no EMA,
              min-SNR-gamma weighting and a learning-rate horizon longer than the run

What each test checks is read from what the run left on disk (the checkpoint's optimizer step
counts, its files, the TensorBoard event file, the Hub server's files) or from its log.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from hub_server import LocalHub, hub_env
from safetensors.torch import load_file

from annotated_pipeline.training.checkpointing import list_checkpoints
from annotated_pipeline import AnnotatedDDPMPipeline

from training_runs import ONE_PROCESS, REPO, TINY, launch, small_parquet

SECRET = "hf_test_secret_do_not_write_0123456789"


def optimizer_steps(checkpoint):
    """AdamW's per-parameter step count in a checkpoint: the number of optimizer steps taken."""
    state = torch.load(Path(checkpoint) / "optimizer.bin", weights_only=False)["state"]
    return {int(v["step"].item()) for v in state.values()}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """12 Fashion-MNIST images (with labels 0..2) from the embedded sample, as one parquet file."""
    return small_parquet(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def single(tmp_path_factory, data_dir):
    """One process, EMA, 4 optimizer steps, pushed to a local Hub server at the end."""
    root = tmp_path_factory.mktemp("single")
    with LocalHub(root / "hub") as hub:
        env = hub_env(hub.endpoint, root / "hf_home", token=SECRET)  # the token travels in HF_TOKEN only
        result = launch(ONE_PROCESS, [
            "--train_data_dir", str(data_dir), "--output_dir", str(root / "out"), *TINY,
            "--train_batch_size", "4", "--max_train_steps", "4", "--checkpointing_steps", "2",
            "--use_ema", "--logger", "tensorboard",
            "--push_to_hub", "--hub_model_id", "test-user/tiny-ddpm",
        ], root / "hf_home", env=env)
        hub_files = hub.files("test-user/tiny-ddpm") if hub.repo_exists("test-user/tiny-ddpm") else {}
    return root / "out", result, hub_files


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, single, data_dir):
    """checkpoint-2 of `single` alone in a new folder, resumed to 4 steps; the Hub is down at the end."""
    out_single, _, _ = single
    root = tmp_path_factory.mktemp("resumed")
    out = root / "out"
    out.mkdir()
    shutil.copytree(out_single / "checkpoint-2", out / "checkpoint-2")
    down = LocalHub(root / "hub").start()
    endpoint = down.endpoint
    down.stop()  # connections to `endpoint` are now refused
    env = hub_env(endpoint, root / "hf_home", token=SECRET)
    # No --quiet: accelerate's launcher prints its command line when the run fails, and no token is on it.
    result = launch(ONE_PROCESS, [
        "--train_data_dir", str(data_dir), "--output_dir", str(out), *TINY,
        "--train_batch_size", "4", "--max_train_steps", "4", "--checkpointing_steps", "2",
        "--use_ema", "--logger", "tensorboard", "--resume_from_checkpoint", "latest",
        "--checkpoints_total_limit", "1",
        "--push_to_hub", "--hub_model_id", "test-user/tiny-ddpm",
    ], root / "hf_home", env=env)
    return out, result


@pytest.fixture(scope="module")
def multi(tmp_path_factory, data_dir):
    """Two CPU processes (DDP over gloo), bf16 autocast, gradient accumulation, class labels with label
    dropout, no EMA."""
    root = tmp_path_factory.mktemp("multi")
    out = root / "out"
    env = dict(os.environ, ACCELERATE_USE_CPU="1")  # torchrun's processes join one CPU (gloo) group
    result = launch(
        ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "--main_process_port", "29533"],
        ["--train_data_dir", str(data_dir), "--output_dir", str(out), *TINY,
         "--train_batch_size", "2", "--num_epochs", "1", "--gradient_accumulation_steps", "2",
         "--checkpointing_steps", "2", "--mixed_precision", "bf16", "--label_column", "label",
         "--class_dropout_prob", "0.2", "--snr_gamma", "5", "--lr_decay_steps", "6", "--logger", "none"],
        root / "hf_home", env=env,
    )
    return out, result


# ------------------------------------------------------------------------------------------------
# One process
# ------------------------------------------------------------------------------------------------


def test_single_process_run_trains_checkpoints_and_saves(single):
    out, result, _ = single
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Processes = 1" in result.stderr
    assert "Finished training: 4 optimizer steps" in result.stderr
    assert [p.name for p in map(Path, list_checkpoints(out))] == ["checkpoint-2", "checkpoint-4"]
    assert optimizer_steps(out / "checkpoint-2") == {2}
    assert optimizer_steps(out / "checkpoint-4") == {4}
    assert json.loads((out / "checkpoint-4" / "ema.json").read_text())["optimization_step"] == 4
    for name in ("model_index.json", "pipeline.py", "samples.png", "README.md", "unet", "scheduler"):
        assert (out / name).exists(), name


def test_saved_pipeline_holds_the_ema_weights(single):
    from annotated_pipeline import AnnotatedUNet2DModel

    out, _, _ = single
    saved = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    training = load_file(out / "checkpoint-4" / "model.safetensors")
    ema = load_file(out / "checkpoint-4" / "ema.safetensors")  # EMAModel's shadow_params, by parameter name
    unet = AnnotatedUNet2DModel.from_config(AnnotatedUNet2DModel.load_config(out / "unet"))
    names = [name for name, _ in unet.named_parameters()]
    assert sorted(names) == sorted(ema)
    for name in names:
        torch.testing.assert_close(saved[name], ema[name], rtol=0, atol=0)
    assert any(not torch.equal(saved[n], training[n]) for n in names), "EMA and training weights should differ"


def test_saved_output_loads_by_both_routes_and_samples(single):
    from diffusers import DiffusionPipeline

    out, _, _ = single
    for pipe in (AnnotatedDDPMPipeline.from_pretrained(out),
                 DiffusionPipeline.from_pretrained(out, trust_remote_code=True)):
        assert type(pipe.unet).__name__ == "AnnotatedUNet2DModel"
        assert pipe.scheduler.config.num_train_timesteps == 20
        assert pipe.scheduler.config.beta_schedule == "squaredcos_cap_v2"
        # sampling settings saved with the pipeline: trailing spacing, x_0_hat bounded to [-1, 1]
        assert pipe.scheduler.config.timestep_spacing == "trailing"
        assert pipe.scheduler.config.thresholding and pipe.scheduler.config.sample_max_value == 1.0
        pipe.set_progress_bar_config(disable=True)
        images = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=3,
                      output_type="np").images
        assert images.shape == (2, 16, 16, 1) and np.isfinite(images).all()


def test_model_card_metadata_parses_and_has_no_token(single):
    out, result, _ = single
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "diffusers"
    assert "annotated_pipeline" not in card.data.to_dict()  # the card's inputs are in card_inputs.json
    from annotated_pipeline import hub

    args = hub._card_inputs(out)["training_args"]
    assert args["max_train_steps"] == 4 and args["use_ema"] is True and args["global_step"] == 4
    assert "hub_token" not in args
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"token written to {path}"
    assert SECRET not in result.stdout + result.stderr


def test_tensorboard_has_scalars_and_sample_grid(single):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _, _ = single
    event_files = list((out / "logs").rglob("events.out.tfevents.*"))
    tags = {"scalars": set(), "images": set()}
    steps = set()
    for path in event_files:
        acc = EventAccumulator(str(path))
        acc.Reload()
        tags["scalars"] |= set(acc.Tags()["scalars"])
        tags["images"] |= set(acc.Tags()["images"])
        if "loss" in acc.Tags()["scalars"]:
            steps |= {event.step for event in acc.Scalars("loss")}
    assert {"loss", "lr", "step", "ema_decay"} <= tags["scalars"]
    assert any(tag.startswith("samples") for tag in tags["images"]), tags["images"]
    assert steps == {1, 2, 3, 4}


def test_push_to_hub_uploads_the_pipeline_without_checkpoints(single):
    _, result, hub_files = single
    assert "Pushed" in result.stderr
    assert {"model_index.json", "pipeline.py", "samples.png", "README.md",
            "unet/diffusion_pytorch_model.safetensors"} <= set(hub_files)
    assert not any(name.startswith(("checkpoint-", "logs/")) for name in hub_files)
    assert all(SECRET.encode() not in content for content in hub_files.values())


# ------------------------------------------------------------------------------------------------
# Resuming
# ------------------------------------------------------------------------------------------------


def test_resume_latest_continues_at_the_checkpoint_step(resumed):
    _, result = resumed
    assert "Resumed from checkpoint-2 at global step 2" in result.stderr
    assert "starting at step 2" in result.stderr
    assert "Finished training: 4 optimizer steps" in result.stderr


def test_resumed_run_matches_the_uninterrupted_one_exactly(single, resumed):
    """Same optimizer step count, and bit-identical weights, optimizer state and EMA at step 4:
    data order (seedable sampler), t/eps (checkpointed generator) and all states are restored."""
    out_single, _, _ = single
    out, _ = resumed
    a, b = out_single / "checkpoint-4", out / "checkpoint-4"
    assert optimizer_steps(a) == optimizer_steps(b) == {4}
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=0)
    counters_a, counters_b = (json.loads((c / "ema.json").read_text()) for c in (a, b))
    assert counters_a == counters_b and counters_a["optimization_step"] == 4
    ema_a, ema_b = load_file(a / "ema.safetensors"), load_file(b / "ema.safetensors")
    assert ema_a.keys() == ema_b.keys()
    for name in ema_a:
        torch.testing.assert_close(ema_a[name], ema_b[name], rtol=0, atol=0)
    sa = torch.load(a / "scheduler.bin", weights_only=False)
    sb = torch.load(b / "scheduler.bin", weights_only=False)
    assert sa["last_epoch"] == sb["last_epoch"] == 4


def test_checkpoints_total_limit_prunes_the_oldest(resumed):
    out, result = resumed
    assert [Path(p).name for p in list_checkpoints(out)] == ["checkpoint-4"]
    assert "Removed old checkpoint" in result.stderr


def test_failed_push_is_a_clear_error_and_leaves_the_output(resumed):
    out, result = resumed
    assert result.returncode != 0
    assert "train_accelerate.py: error: push to the Hub repo test-user/tiny-ddpm failed" in result.stderr
    assert f"the trained pipeline stays in {out}" in result.stderr
    assert SECRET not in result.stderr + result.stdout
    for name in ("model_index.json", "samples.png", "README.md", "unet", "scheduler", "checkpoint-4"):
        assert (out / name).exists(), name


# ------------------------------------------------------------------------------------------------
# Two processes, bf16, gradient accumulation, class labels
# ------------------------------------------------------------------------------------------------


def test_two_processes_bf16_gradient_accumulation(multi):
    """12 images, batch 2 per process, 2 processes: 3 batches per process; accumulating 2 gives
    2 optimizer steps (the epoch's last, short group also steps); without accumulation it would be 3."""
    out, result = multi
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Processes = 2" in result.stderr
    assert "mixed precision = bf16" in result.stderr
    assert "Finished training: 2 optimizer steps" in result.stderr
    checkpoint = out / "checkpoint-2"
    assert optimizer_steps(checkpoint) == {2}
    # The prepared LR schedule advances once per process per optimizer step.
    assert torch.load(checkpoint / "scheduler.bin", weights_only=False)["last_epoch"] == 4
    files = {p.name for p in checkpoint.iterdir()}
    assert {"random_states_0.pkl", "random_states_1.pkl", "noise_generator_0.safetensors",
            "noise_generator_1.safetensors"} <= files
    assert "ema.safetensors" not in files  # no EMA without --use_ema
    assert not any(name.startswith("custom_checkpoint") for name in files)  # nothing unpickled with weights_only=False
    assert not (out / "logs").exists()  # --logger none


def test_class_conditional_output_samples_each_class(multi, data_dir):
    from annotated_pipeline import AnnotatedDDPMPipeline

    out, _ = multi
    pipe = AnnotatedDDPMPipeline.from_pretrained(out)
    # The label column is a ClassLabel with Fashion-MNIST's 10 names: K comes from it, not from the
    # 3 labels that happen to occur in these 12 images.
    label_feature = datasets.load_dataset("parquet", data_dir=str(data_dir), split="train").features["label"]
    assert label_feature.num_classes == 10
    assert pipe.unet.config.num_class_embeds == 10
    assert pipe.unet.config.null_class_embed is True  # --class_dropout_prob 0.2 trained a "no class" row
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=3, class_labels=[0, 1, 2], generator=torch.Generator().manual_seed(0),
                  num_inference_steps=3, output_type="np").images
    assert images.shape == (3, 16, 16, 1)
    guided = pipe(batch_size=3, class_labels=[0, 1, 2], generator=torch.Generator().manual_seed(0),
                  num_inference_steps=3, output_type="np", guidance_scale=3.0).images
    assert guided.shape == (3, 16, 16, 1) and not np.allclose(guided, images)


# ------------------------------------------------------------------------------------------------
# Bad arguments through the real launcher; checkpoint helpers
# ------------------------------------------------------------------------------------------------


def test_bad_schedule_stops_before_training_without_traceback(tmp_path, data_dir):
    out = tmp_path / "out"
    result = launch(["--quiet", *ONE_PROCESS], [
        "--train_data_dir", str(data_dir), "--output_dir", str(out), *TINY,
        "--ddpm_beta_schedule", "cosine_typo",
    ], tmp_path / "hf_home", timeout=120)
    assert result.returncode != 0
    assert "train_accelerate.py: error:" in result.stderr and "cosine_typo" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list_checkpoints(out) and not (out / "logs").exists()


def test_pushed_run_loads_by_repo_id_without_the_package(single):
    """The training script's push, downloaded by someone with only diffusers: the same images as the local output."""
    out, _, _ = single
    local = AnnotatedDDPMPipeline.from_pretrained(out)
    local.set_progress_bar_config(disable=True)
    expected = local(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=2, output_type="np").images
    code = (
        "import numpy as np, torch\n"
        "from diffusers import DiffusionPipeline\n"
        "pipe = DiffusionPipeline.from_pretrained('test-user/tiny-ddpm', trust_remote_code=True)\n"
        "pipe.set_progress_bar_config(disable=True)\n"
        "images = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=2, output_type='np').images\n"
        f"np.save({str(out.parent / 'from_hub.npy')!r}, images)\n"
    )
    with LocalHub(out.parent / "hub") as hub:  # the same repos, served again
        env = hub_env(hub.endpoint, out.parent / "fresh_home", token=None, hide_modules=("annotated_pipeline",))
        result = subprocess.run([sys.executable, "-c", code], env=env, cwd=out.parent / "fresh_home",
                                capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_array_equal(np.load(out.parent / "from_hub.npy"), expected)


def test_header_reports_threads_and_warns_about_a_single_cpu_thread(tmp_path, data_dir):
    """Without --cpu, `accelerate launch` gives each process one CPU thread; on a CPU run the script says so."""
    no_cpu_flag = ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    result = launch(no_cpu_flag, ["--train_data_dir", str(data_dir), "--output_dir", str(tmp_path / "out"), *TINY,
                                  "--max_train_steps", "1", "--logger", "none"], tmp_path / "hf_home")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CPU threads per process = 1" in result.stderr
    if (os.cpu_count() or 1) > 1:
        assert f"--num_cpu_threads_per_process {os.cpu_count()}" in result.stderr


def test_a_stopped_peer_ends_a_two_process_run_within_the_timeout(tmp_path, data_dir):
    """SIGSTOP one of two DDP workers mid-run: the other gives up after --ddp_timeout and says which rank it
    waited for, and the whole launch ends (instead of waiting for accelerate's 30-minute default)."""
    import signal
    import time

    import psutil

    out = tmp_path / "out"
    env = dict(os.environ, ACCELERATE_USE_CPU="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"),
               CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29541",
           str(REPO / "train_accelerate.py"), "--train_data_dir", str(data_dir), "--output_dir", str(out), *TINY,
           "--train_batch_size", "2", "--max_train_steps", "10000", "--checkpointing_steps", "2", "--logger", "none",
           "--ddp_timeout", "10"]
    launcher = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    workers = []
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoint-2").exists() and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert (out / "checkpoint-2").exists(), "the run did not reach its first checkpoint"
        workers = [p for p in psutil.Process(launcher.pid).children(recursive=True)
                   if p.environ().get("RANK") == "1" and "train_accelerate.py" in " ".join(p.cmdline())]
        assert len(workers) == 1
        workers[0].send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        _, stderr = launcher.communicate(timeout=150)
        took = time.monotonic() - stopped_at
    finally:
        if launcher.poll() is None:
            workers += psutil.Process(launcher.pid).children(recursive=True)
            launcher.kill()
        for process in workers:  # the stopped worker, if the launcher left it behind
            if process.is_running():
                process.kill()
    assert launcher.returncode != 0
    assert "process 0 of 2 waited more than --ddp_timeout 10 s for rank(s) 1" in stderr, stderr[-3000:]
    assert took < 120, took
