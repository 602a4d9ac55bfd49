"""The options of `annotated-pipeline train` (and `accelerate launch -m annotated_pipeline.train`), by group.

Each option is defined here once: its name, type, default and allowed values (the tuples below, and the
library's own: LOSS_TYPES, PREDICTION_TYPES, SCHEDULERS, ...), so `--help`, argparse's `choices` and the
checks in args.py read the same definition. The names follow diffusers' train_unconditional.py where it
has one.
"""

import argparse
import math

from ..evaluation.inception_measure import FEATURES
from ..losses import LOSS_TYPES
from ..pipelines.samplers import SCHEDULERS
from ..scheduler import PREDICTION_TYPES, TIMESTEP_SPACINGS
from ..unet import BLOCK_TYPES, LINEAR_ATTENTION_NAMES
from . import validation

LOGGERS = ("tensorboard", "wandb", "none")
# Accelerate's names, and "auto": the launcher's choice, else bf16 where it is native (hardware.py), else no.
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "warmup_stable_decay",
)
CONSTANT_LR_SCHEDULERS = ("constant", "constant_with_warmup")  # nothing to decay: --lr_decay_steps is meaningless
# What a base model decides (base_model.py). With --pretrained_model_name_or_path all of these, with
# --model_config_name_or_path the architecture: an option left out takes the base model's value, one
# given on the command line must agree with it (or the run is refused, naming it).
ARCHITECTURE_OPTIONS = ("dim", "dim_mults", "block_type", "linear_attention_levels")
SCHEDULE_OPTIONS = ("ddpm_num_steps", "ddpm_beta_schedule", "prediction_type", "timestep_spacing")


def parse_dim_mults(text):
    """Parse `--dim_mults` like "1,2,4" into a tuple of positive ints, one per U-Net resolution level."""
    try:
        mults = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--dim_mults must be comma-separated positive integers such as 1,2,4; got {text!r}"
        ) from None
    if not mults or any(m < 1 for m in mults):
        raise argparse.ArgumentTypeError(
            f"--dim_mults must be comma-separated positive integers such as 1,2,4; got {text!r}"
        )
    return mults


def parse_linear_attention_levels(text):
    """Parse `--linear_attention_levels`: "middle", "below_full_resolution", "all", or level indices like "1,2"."""
    if text in LINEAR_ATTENTION_NAMES:
        return text
    try:
        levels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--linear_attention_levels must be {', '.join(LINEAR_ATTENTION_NAMES)}, or comma-separated level indices "
            f"such as 1,2 (0 = full resolution); got {text!r}"
        ) from None
    return levels


def finite_float(text):
    """A finite float: argparse's `float` also takes 'nan' and 'inf', which no numeric flag here can use."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def float_or_none(text):
    """A finite float, or None for 'none' / 'off' (any case): for flags whose default is 'not used'."""
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        return finite_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a finite number or 'none', got {text!r}") from None


def build_parser(prog="train_accelerate.py"):
    """The argument parser; `--help` lists every option with its default."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Train an annotated DDPM (Ho et al. 2020) with Hugging Face Accelerate. Run it as "
            "`annotated-pipeline train ...` (one process) or `accelerate launch -m annotated_pipeline.train ...` "
            "(one or many processes, CPU or GPU). With neither --dataset_name nor --train_data_dir it "
            "trains on the 2,000-image Fashion-MNIST sample shipped with the project."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_data_options(parser.add_argument_group("data"))
    _add_model_options(parser.add_argument_group("model and diffusion"))
    _add_opt_options(parser.add_argument_group("optimisation"))
    _add_ema_options(parser.add_argument_group("exponential moving average of the weights"))
    _add_out_options(parser.add_argument_group("outputs, logging and checkpoints"))
    _add_quality_options(parser.add_argument_group("sample quality during training (training/quality.py)"))
    validation.add_arguments(parser.add_argument_group("validation loss (training/validation.py)"))
    _add_hub_options(parser.add_argument_group("Hugging Face Hub"))
    return parser


def _add_data_options(data):
    """The options of the group "data"."""
    data.add_argument("--dataset_name", type=str, default=None,
                      help="A data set on the Hugging Face Hub, or a local folder/file that `datasets` can load.")
    data.add_argument("--dataset_config_name", type=str, default=None,
                      help="The configuration of --dataset_name, if it has several.")
    data.add_argument("--train_data_dir", type=str, default=None,
                      help="A local folder of training images (an `imagefolder`, parquet files, or the "
                           "Fashion-MNIST IDX files). Ignored when --dataset_name is given.")
    data.add_argument("--image_column", type=str, default="image",
                      help="The column that holds the images.")
    data.add_argument("--label_column", type=str, default=None,
                      help="A column of integer class labels. When given, the model is class-conditional "
                           "and the number of classes is read from the data.")
    data.add_argument("--class_dropout_prob", type=finite_float, default=0.0,
                      help="With --label_column: replace each label by 'no class' with this probability, "
                           "so that the model also learns eps_theta(x_t, t) without a class and can be "
                           "sampled with classifier-free guidance (Ho & Salimans 2022 use 0.1-0.2). "
                           "0 (default): no dropout and no 'no class' embedding.")
    data.add_argument("--cache_dir", type=str, default=None,
                      help="Where `datasets` caches downloaded data.")
    data.add_argument("--resolution", type=int, default=28,
                      help="Images are resized to resolution x resolution.")
    data.add_argument("--center_crop", action="store_true",
                      help="Center-crop to the resolution after resizing (default: resize only).")
    data.add_argument("--random_flip", action="store_true",
                      help="Flip training images horizontally at random.")
    data.add_argument("--num_channels", type=int, default=None, choices=(1, 3),
                      help="Image channels for the model (1 grey, 3 RGB). Default: detected from the data.")
    data.add_argument("--dataloader_num_workers", type=int, default=0,
                      help="Data-loading subprocesses per training process (0: load in the main process).")


def _add_model_options(model):
    """The options of the group "model and diffusion"."""
    model.add_argument("--pretrained_model_name_or_path", type=str, default=None,
                       help="Fine-tune: start from the U-Net of a saved pipeline (a folder or a Hub repo id) or of a "
                            "training checkpoint-N folder (its EMA weights where it has them), with its noise "
                            "schedule and prediction type. The architecture and schedule options then come from it: "
                            "leave them out, or give the base model's values.")
    model.add_argument("--model_config_name_or_path", type=str, default=None,
                       help="Build a fresh U-Net (new weights) from a saved config: a folder with config.json, or a "
                            "pipeline folder (its unet/). The architecture options then come from it.")
    model.add_argument("--reset_class_embedding", action="store_true",
                       help="With --pretrained_model_name_or_path: replace the base model's class embedding by a fresh "
                            "one for the training data's classes (another class count, or conditional vs "
                            "unconditional), keeping every other weight.")
    model.add_argument("--dim", type=int, default=16,
                       help="Base channel width of the U-Net (the blog's is 28).")
    model.add_argument("--dim_mults", type=parse_dim_mults, default=(1, 2, 4),
                       help="Channel multipliers per U-Net level, comma-separated; the resolution must be "
                            "divisible by 2**(levels-1).")
    model.add_argument("--linear_attention_levels", type=parse_linear_attention_levels,
                       default="middle",
                       help="U-Net levels with a linear attention: middle (default: neither the full nor the "
                            "bottleneck's resolution), below_full_resolution (every level but the first), all "
                            "(the blog's architecture), or indices such as 1,2.")
    model.add_argument("--block_type", type=str, default="resnet", choices=BLOCK_TYPES,
                       help="The U-Net's residual block: ResNet (Ho et al. 2020) or ConvNeXt.")
    model.add_argument("--ddpm_num_steps", type=int, default=1000,
                       help="T, the number of forward-process steps.")
    model.add_argument("--ddpm_num_inference_steps", type=int, default=20,
                       help="Steps of the chain that draws the sample grids (with --grid_scheduler).")
    model.add_argument("--grid_scheduler", type=str, default="dpmsolver", choices=SCHEDULERS,
                       help="The sampler of the sample grids: dpmsolver (DPM-Solver++, log-SNR steps: 20 are enough), "
                            "ddim, ddpm, or default (the pipeline's own DDPM scheduler, one step per timestep).")
    model.add_argument("--ddpm_beta_schedule", type=str, default="squaredcos_cap_v2",
                       help="The beta schedule: squaredcos_cap_v2 (alias cosine; Nichol & Dhariwal 2021), "
                            "linear (Ho et al. 2020), scaled_linear, sigmoid or quadratic.")
    model.add_argument("--timestep_spacing", type=str, default="trailing", choices=TIMESTEP_SPACINGS,
                       help="Which timesteps a shorter sampling chain visits (saved in the scheduler config; "
                            "training does not read it). trailing (default) starts at t = T - 1 (Lin et al. 2023); "
                            "leading is diffusers' DDPMScheduler default.")
    model.add_argument("--prediction_type", type=str, default="epsilon", choices=PREDICTION_TYPES,
                       help="What the network predicts: the noise (epsilon, Ho et al. 2020), the clean "
                            "image (sample) or v (v_prediction, Salimans & Ho 2022).")
    model.add_argument("--loss_type", type=str, default="huber", choices=LOSS_TYPES,
                       help="Distance between the network's prediction and its target.")
    model.add_argument("--snr_gamma", type=float_or_none, default=None,
                       help="Weight each timestep's loss by min-SNR-gamma (Hang et al. 2023; they use 5). "
                            "Default (or 'none'): every timestep weighs the same (Ho et al. eq. 14); 'none' "
                            "lets a later argument switch off a gamma that an earlier one set.")


def _add_opt_options(opt):
    """The options of the group "optimisation"."""
    opt.add_argument("--train_batch_size", type=int, default=16,
                     help="Batch size per process.")
    opt.add_argument("--eval_batch_size", type=int, default=16,
                     help="How many images each sample grid shows.")
    opt.add_argument("--num_epochs", type=int, default=100,
                     help="Passes over the data (ignored when --max_train_steps is given).")
    opt.add_argument("--max_train_steps", type=int, default=None,
                     help="Total optimizer steps; overrides --num_epochs.")
    opt.add_argument("--gradient_accumulation_steps", type=int, default=1,
                     help="Batches whose gradients are summed before each optimizer step.")
    opt.add_argument("--learning_rate", type=finite_float, default=1e-4,
                     help="Peak learning rate (after warmup).")
    opt.add_argument("--lr_scheduler", type=str, default="cosine", choices=LR_SCHEDULERS,
                     help="Learning-rate schedule (diffusers.optimization.get_scheduler).")
    opt.add_argument("--lr_warmup_steps", type=int, default=500,
                     help="Optimizer steps of linear learning-rate warmup.")
    opt.add_argument("--lr_decay_steps", type=int, default=None,
                     help="Optimizer steps over which the learning rate decays to its end value (the "
                          "schedule's horizon). Default: the run's total steps. Set it when a run is "
                          "trained in stages that each raise --max_train_steps, so all stages follow one "
                          "schedule; it may not be shorter than the run.")
    opt.add_argument("--lr_cooldown_steps", type=int, default=None,
                     help="With --lr_scheduler warmup_stable_decay: the last optimizer steps of the horizon "
                          "(--lr_decay_steps, else the run), over which the rate falls linearly to 0; before "
                          "them it stays at its peak.")
    opt.add_argument("--adam_beta1", type=finite_float, default=0.95, help="AdamW beta1.")
    opt.add_argument("--adam_beta2", type=finite_float, default=0.999, help="AdamW beta2.")
    opt.add_argument("--adam_weight_decay", type=finite_float, default=1e-6, help="AdamW weight decay.")
    opt.add_argument("--adam_epsilon", type=finite_float, default=1e-8, help="AdamW epsilon.")
    opt.add_argument("--max_grad_norm", type=finite_float, default=1.0,
                     help="Gradients are clipped to this global norm before each optimizer step.")
    opt.add_argument("--gradient_checkpointing", action="store_true",
                     help="Recompute the U-Net's activations in the backward pass instead of storing them: the "
                          "same gradients in less memory (for large images), for a second forward pass per block.")
    opt.add_argument("--mixed_precision", type=str, default="auto", choices=MIXED_PRECISION,
                     help="auto: what `accelerate launch --mixed_precision` chose if bf16 or fp16, else bf16 where the "
                          "processor runs it natively (AVX512-BF16, AMX, Arm BF16, a bf16 GPU) and no (fp32) elsewhere. "
                          "bf16 where it is only emulated (e.g. an AVX2 CPU) runs ~100x slower and warns; fp16 needs a GPU.")
    opt.add_argument("--seed", type=int, default=0,
                     help="Seed for weights, noise, timesteps and data order (runs are reproducible).")


def _add_ema_options(ema):
    """The options of the group "exponential moving average of the weights"."""
    ema.add_argument("--use_ema", action="store_true",
                     help="Keep an EMA of the weights; samples and the saved pipeline use it.")
    ema.add_argument("--ema_max_decay", type=finite_float, default=0.9999,
                     help="The EMA decay never exceeds this.")
    ema.add_argument("--ema_inv_gamma", type=finite_float, default=1.0,
                     help="EMA warmup: decay = 1 - (1 + step / inv_gamma) ** -power.")
    ema.add_argument("--ema_power", type=finite_float, default=3 / 4,
                     help="EMA warmup power (see --ema_inv_gamma).")


def _add_out_options(out):
    """The options of the group "outputs, logging and checkpoints"."""
    out.add_argument("--output_dir", type=str, default="ddpm-fashion-mnist",
                     help="Where the pipeline, samples.png, README.md, checkpoints and logs go.")
    out.add_argument("--logging_dir", type=str, default="logs",
                     help="Tracker directory, relative to --output_dir.")
    out.add_argument("--logger", type=str, default="tensorboard", choices=LOGGERS,
                     help="Where scalars and sample grids are logged (wandb needs `pip install wandb`).")
    out.add_argument("--save_images_epochs", type=int, default=10,
                     help="Draw a sample grid every this many epochs (and at the end).")
    out.add_argument("--save_model_epochs", type=int, default=10,
                     help="Save the pipeline to --output_dir every this many epochs (and at the end).")
    out.add_argument("--checkpointing_steps", type=int, default=500,
                     help="Save the full training state (checkpoint-STEP) every this many optimizer steps.")
    out.add_argument("--checkpoints_total_limit", type=int, default=None,
                     help="Keep only the newest this many checkpoints.")
    out.add_argument("--resume_from_checkpoint", type=str, default=None,
                     help='Resume from a checkpoint folder, or "latest" for the newest complete one in --output_dir '
                          "(with none there, a fresh run starts, unless a saved pipeline would be overwritten).")
    out.add_argument("--overwrite_output_dir", action="store_true",
                     help="Replace the run already in --output_dir (its pipeline, checkpoints and logs are deleted "
                          "first). Without it, or --resume_from_checkpoint, such a folder is refused.")
    out.add_argument("--accept_changed_args", action="store_true",
                     help="Resume even if arguments that shape the run (learning rate, model, schedule, "
                          "objective, data...) differ from the checkpoint's; the new values are used and the "
                          "model card lists the changes. Without it such a resume is refused.")
    out.add_argument("--trust_checkpoint", action="store_true",
                     help="Resume from a checkpoint whose files need full unpickling (which can run code); "
                          "only for folders you wrote. Without it such files are refused.")
    out.add_argument("--ddp_timeout", type=int, default=600,
                     help="Seconds a process waits for the others in a collective operation before the run "
                          "stops with an error naming its rank (a peer that died or stopped responding).")


def _add_quality_options(quality):
    """The options of the group "sample quality during training (training/quality.py)"."""
    quality.add_argument("--eval_steps", type=int, default=None,
                         help="Every this many optimizer steps, measure --eval_num_samples samples (EMA weights): "
                              "Frechet distance, KID and class coverage, logged as quality/... beside the sample grids.")
    quality.add_argument("--eval_num_samples", type=int, default=500, help="Samples per quality measurement.")
    quality.add_argument("--eval_classifier", type=str, default=None,
                         help="The classifier folder (annotated-pipeline train-classifier) whose features judge the "
                              "samples. Default for Fashion-MNIST data: the shipped one; other data need it.")
    quality.add_argument("--eval_reference", type=str, default=None,
                         help="The labelled data set whose test split is the reference. Default for Fashion-MNIST data: "
                              "the official test split; other data need it.")
    quality.add_argument("--save_best", action="store_true",
                         help="Keep the pipeline with the lowest KID so far as OUTPUT_DIR/best/ (written atomically).")
    quality.add_argument("--eval_features", choices=FEATURES, default="classifier",
                         help="Also measure FID and KID in Inception-v3 features (quality/inception_...; needs pip "
                              "install 'annotated-pipeline[inception]'); --save_best then keeps the lowest Inception KID.")


def _add_hub_options(hub):
    """The options of the group "Hugging Face Hub"."""
    hub.add_argument("--push_to_hub", action="store_true",
                     help="Push --output_dir (pipeline, samples, model card) to the Hub after training.")
    hub.add_argument("--hub_model_id", type=str, default=None,
                     help='The Hub repository, "user/name"; required with --push_to_hub.')
    hub.add_argument("--hub_token", type=str, default=None,
                     help="Refused: a token on the command line shows in process lists, and `accelerate "
                          "launch` prints its command line when a run fails. The push reads HF_TOKEN or the "
                          "token `hf auth login` stored.")
    hub.add_argument("--hub_private_repo", action="store_true",
                     help="Create the Hub repository as private.")
