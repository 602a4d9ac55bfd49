"""Arguments of train_accelerate.py: names, defaults, validation, and configurations refused before training.

These run in-process (no subprocess, no training step), so they are fast; the end-to-end runs are
in test_train_accelerate.py.
"""

import importlib.util
import sys
from pathlib import Path

import datasets
import pytest
import torch

from annotated_pipeline.training.args import TrainingConfigError, args_for_model_card, parse_args
from annotated_pipeline.training.options import build_parser, parse_dim_mults, parse_linear_attention_levels

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
from train_accelerate import cli  # noqa: E402

# The flags of diffusers' examples/unconditional_image_generation/train_unconditional.py that we keep.
DIFFUSERS_FLAGS = """
dataset_name dataset_config_name train_data_dir image_column cache_dir resolution center_crop random_flip
train_batch_size eval_batch_size dataloader_num_workers num_epochs max_train_steps gradient_accumulation_steps
learning_rate lr_scheduler lr_warmup_steps adam_beta1 adam_beta2 adam_weight_decay adam_epsilon use_ema
ema_max_decay ema_inv_gamma ema_power mixed_precision checkpointing_steps checkpoints_total_limit
resume_from_checkpoint output_dir logging_dir logger save_images_epochs save_model_epochs push_to_hub
hub_model_id hub_token hub_private_repo seed ddpm_num_steps ddpm_num_inference_steps ddpm_beta_schedule
prediction_type
""".split()
OUR_FLAGS = ("timestep_spacing loss_type dim dim_mults block_type linear_attention_levels label_column num_channels "
             "accept_changed_args ddp_timeout").split()


def test_every_flag_exists_and_has_help():
    parser = build_parser()
    actions = {action.dest: action for action in parser._actions}
    for flag in DIFFUSERS_FLAGS + OUR_FLAGS:
        assert flag in actions, flag
        assert actions[flag].help, flag
    text = parser.format_help()
    assert "--ddpm_beta_schedule" in text and "Fashion-MNIST sample" in text


def test_project_defaults():
    args = parse_args(["--logger", "none"])
    assert args.ddpm_beta_schedule == "squaredcos_cap_v2"
    assert args.loss_type == "huber"
    assert args.resolution == 28
    assert args.dim_mults == (1, 2, 4)
    assert args.linear_attention_levels == "middle"
    assert args.dim == 16
    assert args.prediction_type == "epsilon"
    assert args.timestep_spacing == "trailing"
    assert args.dataset_name is None and args.train_data_dir is None  # -> the embedded sample
    assert args.mixed_precision == "auto"  # -> the launcher's bf16/fp16, else bf16 where native (training/precision.py)
    assert args.use_ema is False and args.seed == 0


def test_dim_mults_parsing():
    assert parse_dim_mults("1,2,4,8") == (1, 2, 4, 8)
    for bad in ("1,x", "", "1,0", "2,-1"):
        with pytest.raises(Exception, match="comma-separated positive integers"):
            parse_dim_mults(bad)


def test_linear_attention_levels_parsing():
    assert parse_linear_attention_levels("all") == "all"
    assert parse_linear_attention_levels("below_full_resolution") == "below_full_resolution"
    assert parse_linear_attention_levels("middle") == "middle"
    assert parse_linear_attention_levels("1,2") == (1, 2)
    for bad in ("every", "1,x", ""):
        with pytest.raises(Exception, match="middle, below_full_resolution, all, or comma-separated level indices"):
            parse_linear_attention_levels(bad)


def test_malformed_flag_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--dim_mults", "1,two"])
    assert exit_info.value.code == 2
    assert "--dim_mults" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--push_to_hub"], "--push_to_hub needs --hub_model_id"),
    (["--ddpm_num_steps", "50", "--ddpm_num_inference_steps", "100"], "cannot exceed --ddpm_num_steps"),
    (["--train_batch_size", "0"], "--train_batch_size must be a positive integer"),
    (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be a positive integer"),
    (["--checkpoints_total_limit", "0"], "--checkpoints_total_limit must be a positive integer"),
    (["--learning_rate", "-1"], "--learning_rate must be > 0"),
    (["--ema_max_decay", "1.5"], "--ema_max_decay must lie in"),
    (["--snr_gamma", "0"], "--snr_gamma must be > 0"),
    (["--lr_warmup_steps", "200", "--lr_decay_steps", "200"], r"--lr_decay_steps \(200\) must exceed --lr_warmup_steps"),
    (["--lr_scheduler", "constant_with_warmup", "--lr_decay_steps", "3000"],
     "--lr_decay_steps has no effect with --lr_scheduler constant_with_warmup"),
    (["--lr_scheduler", "warmup_stable_decay"], "--lr_cooldown_steps goes with --lr_scheduler warmup_stable_decay"),
    (["--lr_scheduler", "cosine", "--lr_cooldown_steps", "5"], "--lr_cooldown_steps goes with"),
    (["--lr_scheduler", "warmup_stable_decay", "--lr_cooldown_steps", "0"], "--lr_cooldown_steps must be >= 1"),
    (["--label_column", "label", "--class_dropout_prob", "1"], r"--class_dropout_prob must lie in \[0, 1\)"),
    (["--label_column", "label", "--class_dropout_prob", "-0.1"], r"--class_dropout_prob must lie in \[0, 1\)"),
    (["--class_dropout_prob", "0.1"], "--class_dropout_prob drops class labels, so it needs --label_column"),
])
def test_validation_names_the_problem(argv, message):
    with pytest.raises(TrainingConfigError, match=message):
        parse_args(["--logger", "none", *argv])


def test_wandb_logger_needs_wandb():
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(TrainingConfigError, match="pip install wandb"):
            parse_args(["--logger", "wandb"])
    else:
        assert parse_args(["--logger", "wandb"]).logger == "wandb"


def test_hub_token_on_the_command_line_is_refused_and_never_reaches_the_card():
    with pytest.raises(TrainingConfigError, match="--hub_token is refused.*HF_TOKEN"):
        parse_args(["--logger", "none", "--hub_token", "hf_secret"])
    args = parse_args(["--logger", "none", "--dim_mults", "1,2"])
    args.hub_token = "hf_secret"  # set by a caller of the library
    card_args = args_for_model_card(args)
    assert "hub_token" not in card_args and "hf_secret" not in str(card_args)
    assert card_args["dim_mults"] == [1, 2]


# ------------------------------------------------------------------------------------------------
# Configurations that only the data or the model/scheduler constructors can refuse: `cli` stops
# before the first step with exit status 2 and one line naming the problem.
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A folder with 4 Fashion-MNIST images from the embedded sample, and one with an empty parquet file."""
    ds = datasets.load_dataset("parquet", data_files=str(REPO / "data/fashion-mnist-sample/train.parquet"),
                               split="train").select(range(4))
    full, empty = tmp_path_factory.mktemp("full"), tmp_path_factory.mktemp("empty")
    ds.to_parquet(str(full / "train.parquet"))
    ds.select([]).to_parquet(str(empty / "train.parquet"))
    return full, empty


def run_cli(capsys, tmp_path, *argv):
    out = tmp_path / "out"
    code = cli(["--output_dir", str(out), "--logger", "none", "--dim", "8", "--dim_mults", "1,2",
                "--resolution", "16", "--max_train_steps", "1", *argv])
    err = capsys.readouterr().err
    assert not (out / "checkpoint-1").exists() and not (out / "model_index.json").exists()
    return code, err


@pytest.mark.parametrize("extra, message", [
    (["--ddpm_beta_schedule", "cosinus"], "cosinus"),
    (["--resolution", "18", "--dim_mults", "1,2,4"], "invalid model configuration (--resolution 18"),
    (["--dim", "7"], "invalid model configuration"),
    (["--linear_attention_levels", "0,5"], "--linear_attention_levels 0,5): linear_attention_levels must hold"),
    (["--image_column", "picture"], "'picture' is not a column"),
    (["--label_column", "class"], "'class' is not a column"),
    (["--lr_warmup_steps", "0", "--lr_decay_steps", "2", "--max_train_steps", "3"],
     "--lr_decay_steps (2) is shorter than the run (3 optimizer steps)"),
])
def test_impossible_configuration_stops_before_training(capsys, tmp_path, tiny_data, extra, message):
    full, _ = tiny_data
    code, err = run_cli(capsys, tmp_path, "--train_data_dir", str(full), *extra)
    assert code == 2
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("train_accelerate.py: error: ")
    assert message in last_line
    assert "Traceback" not in err


def test_empty_data_set_stops_before_training(capsys, tmp_path, tiny_data):
    _, empty = tiny_data
    code, err = run_cli(capsys, tmp_path, "--train_data_dir", str(empty))
    assert code == 2
    assert "empty" in err


def test_missing_data_folder_stops_before_training(capsys, tmp_path):
    code, err = run_cli(capsys, tmp_path, "--train_data_dir", str(tmp_path / "nowhere"))
    assert code == 2
    assert "nowhere" in err and "is not a folder" in err


def learning_rates(argv, max_train_steps):
    """The rate of each optimizer step of a run with these arguments (`build_lr_scheduler`, one process)."""
    import torch

    from annotated_pipeline.training.build import TrainingPlan, build_lr_scheduler

    args = parse_args(["--logger", "none", "--max_train_steps", str(max_train_steps), *argv])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=args.learning_rate)
    schedule = build_lr_scheduler(args, optimizer, TrainingPlan.from_args(args, 100, 1), 1)
    rates = []
    for _ in range(max_train_steps):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    return rates


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_lr_decay_steps_fix_the_horizon_across_stages(name):
    """A run trained in stages (--max_train_steps 4, then 10) with --lr_decay_steps 10 follows, step by
    step, the schedule of one 10-step run."""
    argv = ["--learning_rate", "1.0", "--lr_scheduler", name, "--lr_warmup_steps", "2"]
    whole = learning_rates(argv, 10)
    assert whole[2] == 1.0 and whole[-1] < 0.2  # warms up, then decays over the whole run by default
    assert learning_rates([*argv, "--lr_decay_steps", "10"], 4) == whole[:4]
    assert learning_rates(argv, 4) != whole[:4]  # without it, a 4-step stage decays within 4 steps


def test_warmup_stable_decay_follows_its_closed_form_across_stages():
    """lr(s) / peak = s / W during warmup, 1 until the cooldown, (S - s) / C over the last C steps; a
    staged run (--max_train_steps 6, then 12) with --lr_decay_steps 12 follows the 12-step schedule."""
    argv = ["--learning_rate", "2.0", "--lr_scheduler", "warmup_stable_decay", "--lr_warmup_steps", "2",
            "--lr_cooldown_steps", "4"]
    expected = [0.0, 1.0] + [2.0] * 6 + [2.0, 1.5, 1.0, 0.5]  # S = 12, C = 4: the decay starts at step 8
    assert learning_rates(argv, 12) == pytest.approx(expected)
    assert learning_rates([*argv, "--lr_decay_steps", "12"], 6) == pytest.approx(expected[:6])


def test_cooldown_longer_than_the_schedule_is_refused():
    import torch

    from annotated_pipeline.training.build import TrainingPlan, build_lr_scheduler

    args = parse_args(["--logger", "none", "--lr_scheduler", "warmup_stable_decay", "--lr_warmup_steps", "5",
                       "--lr_cooldown_steps", "8", "--max_train_steps", "10"])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(TrainingConfigError, match=r"--lr_cooldown_steps \(8\) does not fit"):
        build_lr_scheduler(args, optimizer, TrainingPlan.from_args(args, 100, 1), 1)


def test_snr_gamma_none_switches_off_an_earlier_gamma():
    # pretrained/train_reference.sh passes --snr_gamma 5 before the user's own arguments.
    assert parse_args(["--logger", "none", "--snr_gamma", "5"]).snr_gamma == 5.0
    assert parse_args(["--logger", "none", "--snr_gamma", "5", "--snr_gamma", "none"]).snr_gamma is None
    assert parse_args(["--logger", "none", "--snr_gamma", "OFF"]).snr_gamma is None
    with pytest.raises(SystemExit) as excinfo:  # argparse: a malformed value exits with status 2
        parse_args(["--logger", "none", "--snr_gamma", "five"])
    assert excinfo.value.code == 2


class RecordingModel(torch.nn.Module):
    """Returns zeros and keeps the class labels it was called with."""

    def __init__(self):
        super().__init__()
        self.labels = []

    def forward(self, x, t, class_labels=None):
        self.labels.append(class_labels)
        return torch.zeros_like(x)


@pytest.mark.parametrize("p", [0.0, 0.25])
def test_label_dropout_replaces_labels_by_no_class_at_rate_p(p):
    from annotated_pipeline.scheduler import AnnotatedDDPMScheduler
    from annotated_pipeline.training.step import training_step

    model, n = RecordingModel(), 4000
    labels = torch.arange(n) % 10
    batch = {"input": torch.zeros(n, 1, 2, 2), "label": labels}
    training_step(model, batch, AnnotatedDDPMScheduler(num_train_timesteps=10, beta_schedule="squaredcos_cap_v2"), "l2", torch.Generator().manual_seed(0),
                  conditional=True, class_dropout_prob=p, num_classes=10)
    seen = model.labels[0]
    dropped = seen == 10
    # Each label is dropped independently with probability p: the count is Binomial(4000, p), sd <= 28.
    assert abs(dropped.sum().item() - p * n) <= 4 * (n * p * (1 - p)) ** 0.5 + 1e-9
    torch.testing.assert_close(seen[~dropped], labels[~dropped])  # the rest keep their label


def test_gradient_checkpointing_trains_the_same_weights(capsys, caplog, tmp_path, tiny_data):
    """--gradient_checkpointing changes memory, not the result: 3 optimizer steps give the same weights."""
    from safetensors.torch import load_file

    full, _ = tiny_data
    weights = {}
    caplog.set_level("INFO")
    for flag in ([], ["--gradient_checkpointing"]):
        caplog.clear()
        out = tmp_path / ("ckpt" if flag else "plain")
        code = cli(["--train_data_dir", str(full), "--output_dir", str(out), "--logger", "none", "--dim", "8",
                    "--dim_mults", "1,2", "--resolution", "16", "--max_train_steps", "3", "--train_batch_size", "2",
                    "--ddpm_num_steps", "20", "--ddpm_num_inference_steps", "2", "--eval_batch_size", "2",
                    "--lr_warmup_steps", "1", "--learning_rate", "1e-3", *flag])
        err = capsys.readouterr().err
        assert code == 0, err[-2000:]
        assert ("Gradient checkpointing on" in caplog.text) == bool(flag)
        weights[bool(flag)] = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    for name, value in weights[False].items():
        torch.testing.assert_close(weights[True][name], value, rtol=0, atol=1e-6, msg=name)
