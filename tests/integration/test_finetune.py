"""Fine-tuning: --pretrained_model_name_or_path, --model_config_name_or_path, --reset_class_embedding.

The base model is a tiny saved pipeline built here with a schedule and target the defaults do not have
(T = 20, linear betas, v-prediction, 10 classes with a "no class" embedding), so that what a run takes
from the base model is visible. The checks run in-process (`build.setup`, the training CLI's `main`):
what the run is built from, before any step; two short runs (one resumed) check the rest.
"""

import json
import os
import shutil
import subprocess
import sys

import datasets
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from training_runs import EMBEDDED

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel
from annotated_pipeline.train import main as train_main
from annotated_pipeline.training.args import parse_args
from annotated_pipeline.training.build import make_accelerator, setup

PROG = "annotated-pipeline train"
SHORT = ["--logger", "none", "--train_batch_size", "4", "--eval_batch_size", "2", "--ddpm_num_inference_steps", "2",
         "--lr_warmup_steps", "1", "--learning_rate", "1e-3"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    torch.manual_seed(1)
    unet = AnnotatedUNet2DModel(sample_size=16, in_channels=1, dim=8, dim_mults=(1, 2), num_class_embeds=10,
                                null_class_embed=True)
    scheduler = AnnotatedDDPMScheduler(num_train_timesteps=20, beta_schedule="linear", prediction_type="v_prediction",
                                       thresholding=True, sample_max_value=1.0)
    folder = tmp_path_factory.mktemp("base") / "tiny-base"
    AnnotatedDDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Folders of 8 Fashion-MNIST images: `ten` keeps the 10-class ClassLabel, `three` has plain labels 0..2."""
    ds = datasets.load_dataset("parquet", data_files=str(EMBEDDED), split="train")
    ten, three = tmp_path_factory.mktemp("ten"), tmp_path_factory.mktemp("three")
    ds.select(range(8)).to_parquet(str(ten / "train.parquet"))
    small = ds.filter(lambda example: example["label"] < 3).select(range(8))
    small.cast_column("label", datasets.Value("int64")).to_parquet(str(three / "train.parquet"))
    return {"ten": ten, "three": three}


def built(tmp_path, *argv):
    """(args, noise scheduler, U-Net) of a run with these arguments, as `setup` builds them before step 1."""
    args = parse_args(["--output_dir", str(tmp_path / "out"), *SHORT, *argv])
    args, _, noise_scheduler, model, _ = setup(args, make_accelerator(args))
    return args, noise_scheduler, model


def base_weights(folder, subfolder="unet"):
    return load_file(folder / subfolder / "diffusion_pytorch_model.safetensors")


def assert_same_weights(model, weights, skip=()):
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}
    assert state.keys() == {k for k in weights if not k.startswith(skip)}
    for name, value in state.items():
        torch.testing.assert_close(value, weights[name], rtol=0, atol=0, msg=name)


def test_a_fine_tuning_run_starts_from_the_base_weights_and_schedule(base, data, tmp_path):
    args, noise_scheduler, model = built(tmp_path, "--pretrained_model_name_or_path", str(base),
                                         "--train_data_dir", str(data["ten"]), "--label_column", "label",
                                         "--class_dropout_prob", "0.1", "--resolution", "16")
    assert_same_weights(model, base_weights(base))
    saved = json.loads((base / "scheduler" / "scheduler_config.json").read_text())
    for key in ("num_train_timesteps", "beta_schedule", "prediction_type", "timestep_spacing", "thresholding"):
        assert noise_scheduler.config[key] == saved[key], key
    # The options the base model decides were left out: they now say what is trained.
    assert (args.dim, args.dim_mults, args.ddpm_num_steps, args.ddpm_beta_schedule, args.prediction_type) == (
        8, (1, 2), 20, "linear", "v_prediction")
    # Given with the base model's values (in any spelling), they are accepted.
    built(tmp_path, "--pretrained_model_name_or_path", str(base), "--train_data_dir", str(data["ten"]),
          "--label_column", "label", "--resolution", "16", "--dim", "8", "--dim_mults", "1,2", "--prediction_type",
          "v_prediction", "--ddpm_num_steps", "20", "--linear_attention_levels", "middle")


def test_fine_tune_records_the_base_model_resumes_and_starts_from_checkpoints(base, data, tmp_path, capsys):
    argv = ["--pretrained_model_name_or_path", str(base), "--train_data_dir", str(data["ten"]), "--label_column",
            "label", "--class_dropout_prob", "0.1", "--resolution", "16", "--max_train_steps", "2",
            "--checkpointing_steps", "1", "--use_ema", *SHORT]
    first = tmp_path / "first"
    assert train_main(["--output_dir", str(first), *argv], prog=PROG) == 0, capsys.readouterr().err[-2000:]
    card = ModelCard.load(first / "README.md")
    assert card.data.base_model == str(base)
    assert f"It was fine-tuned from **{base}**" in card.text
    recorded = json.loads((first / "checkpoint-2" / "training_args.json").read_text())["args"]
    assert recorded["pretrained_model_name_or_path"] == str(base) and recorded["prediction_type"] == "v_prediction"

    # Resuming the fine-tuning run from checkpoint-1 ends where the uninterrupted run did.
    second = tmp_path / "second"
    second.mkdir()
    shutil.copytree(first / "checkpoint-1", second / "checkpoint-1")
    code = train_main(["--output_dir", str(second), *argv, "--resume_from_checkpoint", "latest"], prog=PROG)
    assert code == 0, capsys.readouterr().err[-2000:]
    uninterrupted, resumed = (load_file(f / "checkpoint-2" / "model.safetensors") for f in (first, second))
    assert uninterrupted.keys() == resumed.keys()
    for name in uninterrupted:
        torch.testing.assert_close(resumed[name], uninterrupted[name], rtol=0, atol=0, msg=name)

    # A checkpoint folder as the base model: its EMA weights, its schedule.
    _, noise_scheduler, model = built(tmp_path, "--pretrained_model_name_or_path", str(first / "checkpoint-2"),
                                      "--train_data_dir", str(data["ten"]), "--label_column", "label",
                                      "--resolution", "16")
    assert_same_weights(model, base_weights(first / "checkpoint-2", "unet_ema"))
    assert noise_scheduler.config.prediction_type == "v_prediction"


def test_a_hub_repo_id_is_downloaded_as_from_pretrained_does(base, data, tmp_path):
    """A repo id resolves through the Hugging Face cache (offline: a cache laid out as a download leaves it).
    The run's first optimizer step has learning rate 0 (linear warmup from 0, --lr_warmup_steps 1), so the
    pipeline it saves after that step holds exactly the weights it started from."""
    snapshot = tmp_path / "cache" / "models--test-user--tiny-base" / "snapshots" / ("0" * 40)
    shutil.copytree(base, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache"), "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "from-hub"
    result = subprocess.run([sys.executable, "-m", "annotated_pipeline.train", "--pretrained_model_name_or_path",
                             "test-user/tiny-base", "--train_data_dir", str(data["ten"]), "--label_column", "label",
                             "--resolution", "16", "--output_dir", str(out), *SHORT, "--max_train_steps", "1"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting from the base model test-user/tiny-base" in result.stderr
    started_from = AnnotatedUNet2DModel.from_pretrained(out / "unet")
    assert_same_weights(started_from, base_weights(base))
    assert ModelCard.load(out / "README.md").data.base_model == "test-user/tiny-base"


def refusal(capsys, tmp_path, *argv):
    out = tmp_path / "refused"
    code = train_main(["--output_dir", str(out), *SHORT, "--max_train_steps", "1", *argv], prog=PROG)
    err = capsys.readouterr().err
    assert "Traceback" not in err and not (out / "checkpoint-1").exists() and not (out / "model_index.json").exists()
    return code, err.strip().splitlines()[-1]


PRETRAINED, CONFIG = "--pretrained_model_name_or_path", "--model_config_name_or_path"
LABELS = ["--label_column", "label"]


@pytest.mark.parametrize("flag, folder, extra, messages", [
    (PRETRAINED, "ten", [*LABELS, "--num_channels", "3"],
     ["takes 1-channel images, the training data has 3 channel(s)", "--num_channels 1"]),
    (PRETRAINED, "three", LABELS,
     ["is conditioned on 10 classes, the training data has 3 classes (--label_column label)", "--reset_class_embedding"]),
    (PRETRAINED, "ten", [], ["is conditioned on 10 classes, the training data has no classes (unconditional)"]),
    (PRETRAINED, "ten", [*LABELS, "--resolution", "28"],
     ["works on 16x16 images (sample_size 16), but --resolution is 28", "--resolution 16"]),
    (PRETRAINED, "ten", [*LABELS, "--prediction_type", "epsilon"],  # the default's value, but given: refused
     ["--prediction_type epsilon (the base model has v_prediction)"]),
    (PRETRAINED, "ten", [*LABELS, "--dim", "16", "--ddpm_beta_schedule", "cosine"],
     ["--dim 16 (the base model has 8); --ddpm_beta_schedule cosine (the base model has linear)"]),
    (CONFIG, "ten", [*LABELS, "--dim_mults", "1,2,2"],
     ["(--model_config_name_or_path) decides the architecture, but --dim_mults 1,2,2 (the base model has 1,2)"]),
])
def test_what_does_not_fit_the_base_model_is_refused_naming_both_sides(base, data, tmp_path, capsys, flag, folder,
                                                                        extra, messages):
    resolution = [] if "--resolution" in extra else ["--resolution", "16"]
    code, line = refusal(capsys, tmp_path, flag, str(base), "--train_data_dir", str(data[folder]), *resolution, *extra)
    assert code == 2
    assert line.startswith(f"{PROG}: error: the base model {base} (")
    for message in messages:
        assert message in line


@pytest.mark.parametrize("argv, message", [
    (["--pretrained_model_name_or_path", "B", "--model_config_name_or_path", "B"], "exclude each other"),
    (["--reset_class_embedding"], "--reset_class_embedding replaces the class embedding of a base model"),
    (["--pretrained_model_name_or_path", "./nowhere"], "--pretrained_model_name_or_path ./nowhere: cannot load it: no such folder"),
])
def test_misused_base_model_options_are_refused(base, data, tmp_path, capsys, argv, message):
    argv = [str(base) if a == "B" else a for a in argv]
    code, line = refusal(capsys, tmp_path, "--train_data_dir", str(data["ten"]), "--resolution", "16", *argv)
    assert code == 2 and line.startswith(f"{PROG}: error: ") and message in line


def test_reset_class_embedding_keeps_every_other_weight(base, data, tmp_path):
    argv = ["--pretrained_model_name_or_path", str(base), "--train_data_dir", str(data["three"]), "--label_column",
            "label", "--class_dropout_prob", "0.1", "--resolution", "16", "--reset_class_embedding"]
    _, _, model = built(tmp_path, *argv)
    assert model.config.num_class_embeds == 3 and model.config.null_class_embed
    assert tuple(model.class_embedding.weight.shape) == (4, base_weights(base)["class_embedding.weight"].shape[1])
    assert_same_weights(model, base_weights(base), skip=("class_embedding.",))
    # The fresh rows are a new embedding, not the base model's first rows.
    assert not torch.equal(model.class_embedding.weight[:3], base_weights(base)["class_embedding.weight"][:3])


def test_model_config_builds_the_same_architecture_with_fresh_weights(base, data, tmp_path):
    args, noise_scheduler, model = built(tmp_path, "--model_config_name_or_path", str(base), "--train_data_dir",
                                         str(data["ten"]), "--label_column", "label", "--resolution", "16",
                                         "--class_dropout_prob", "0.1")
    config = json.loads((base / "unet" / "config.json").read_text())
    for key, value in config.items():
        if not key.startswith("_"):
            assert model.config[key] == (tuple(value) if isinstance(value, list) else value), key
    weights = base_weights(base)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(v.shape) for k, v in weights.items()}
    assert not torch.equal(model.state_dict()["init_conv.weight"], weights["init_conv.weight"])
    # Only the architecture comes from the config: the schedule is this run's (T = 1000 by default).
    assert args.dim == 8 and noise_scheduler.config.num_train_timesteps == 1000
    assert noise_scheduler.config.prediction_type == "epsilon"
