"""The settings of a training run, by group: one frozen dataclass per group of `annotated-pipeline train --help`.

Each field is one command-line option, defined once here: its type (a `Literal[...]` lists the allowed
values, as diffusers' configs do), its default, and its help text (the field's metadata, with "parse"
where the type alone does not say how to read the text). From these classes

    options.build_parser()   generates the argument parser: --NAME, argparse `choices` from the Literal,
                             the type from the annotation, the default and the help;
    args.validate_args()     checks what the values alone can tell;
    TrainingArgs             is the flat view the run's modules read (`args.dim`, `args.seed`, ...).

The names follow diffusers' train_unconditional.py where it has one.
"""

import argparse
import copy
from dataclasses import dataclass, field, fields
from typing import ClassVar, Literal

from ..evaluation.inception_measure import Features
from ..losses import LOSS_TYPES
from ..pipelines.samplers import Sampler
from ..scheduler.config import PredictionType, TimestepSpacing
from ..unet import BLOCK_TYPES, LINEAR_ATTENTION_NAMES
from .posthoc_ema import DEFAULT_SIGMA_RELS
from .option_types import parse_dim_mults, parse_linear_attention_levels, parse_sigma_rels

Logger = Literal["tensorboard", "wandb", "none"]
# Accelerate's names, and "auto": the launcher's choice, else bf16 where it is native (hardware.py), else no.
MixedPrecision = Literal["auto", "no", "fp16", "bf16"]
LRScheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                      "warmup_stable_decay"]
BlockType = Literal[BLOCK_TYPES]
LossType = Literal[tuple(LOSS_TYPES)]
# A name ("middle", "below_full_resolution", "all") or the indices of the levels, 0 = full resolution.
LinearAttentionLevels = Literal[LINEAR_ATTENTION_NAMES] | tuple[int, ...]


def option(default, help, parse=None):
    """A field that is a command-line option: its default, its `--help` text and, optionally, the function
    that reads its text (option_types.py) where the field's type does not say."""
    metadata = {"help": help} if parse is None else {"help": help, "parse": parse}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class DataSettings:
    """The training images: where they come from, their size, channels, labels and loading."""

    TITLE: ClassVar[str] = "data"
    dataset_name: str | None = option(
        None, "A data set on the Hugging Face Hub, or a local folder/file that `datasets` can load.")
    dataset_config_name: str | None = option(None, "The configuration of --dataset_name, if it has several.")
    train_data_dir: str | None = option(
        None, "A local folder of training images (an `imagefolder`, parquet files, or the Fashion-MNIST IDX "
        "files). Ignored when --dataset_name is given.")
    image_column: str = option("image", "The column that holds the images.")
    label_column: str | None = option(
        None, "A column of integer class labels. When given, the model is class-conditional and the number of "
        "classes is read from the data.")
    class_dropout_prob: float = option(
        0.0, "With --label_column: replace each label by 'no class' with this probability, so that the model also"
        " learns eps_theta(x_t, t) without a class and can be sampled with classifier-free guidance (Ho & "
        "Salimans 2022 use 0.1-0.2). 0 (default): no dropout and no 'no class' embedding.")
    cache_dir: str | None = option(None, "Where `datasets` caches downloaded data.")
    resolution: int = option(28, "Images are resized to resolution x resolution.")
    center_crop: bool = option(False, "Center-crop to the resolution after resizing (default: resize only).")
    random_flip: bool = option(False, "Flip training images horizontally at random.")
    num_channels: Literal[1, 3] | None = option(
        None, "Image channels for the model (1 grey, 3 RGB). Default: detected from the data.")
    dataloader_num_workers: int = option(
        0, "Data-loading subprocesses per training process (0: load in the main process).")


@dataclass(frozen=True)
class ModelSettings:
    """The U-Net eps_theta, the diffusion (T, the beta schedule, the target) and the loss; or a base model."""

    TITLE: ClassVar[str] = "model and diffusion"
    pretrained_model_name_or_path: str | None = option(
        None, "Fine-tune: start from the U-Net of a saved pipeline (a folder or a Hub repo id) or of a training "
        "checkpoint-N folder (its EMA weights where it has them), with its noise schedule and prediction type. "
        "The architecture and schedule options then come from it: leave them out, or give the base model's "
        "values.")
    model_config_name_or_path: str | None = option(
        None, "Build a fresh U-Net (new weights) from a saved config: a folder with config.json, or a pipeline "
        "folder (its unet/). The architecture options then come from it.")
    reset_class_embedding: bool = option(
        False, "With --pretrained_model_name_or_path: replace the base model's class embedding by a fresh one for"
        " the training data's classes (another class count, or conditional vs unconditional), keeping every other"
        " weight.")
    dim: int = option(16, "Base channel width of the U-Net (the blog's is 28).")
    dim_mults: tuple[int, ...] = option(
        (1, 2, 4), "Channel multipliers per U-Net level, comma-separated; the resolution must be divisible by "
        "2**(levels-1).", parse=parse_dim_mults)
    linear_attention_levels: LinearAttentionLevels = option(
        "middle", "U-Net levels with a linear attention: middle (default: neither the full nor the bottleneck's "
        "resolution), below_full_resolution (every level but the first), all (the blog's architecture), or "
        "indices such as 1,2.", parse=parse_linear_attention_levels)
    block_type: BlockType = option("resnet", "The U-Net's residual block: ResNet (Ho et al. 2020) or ConvNeXt.")
    ddpm_num_steps: int = option(1000, "T, the number of forward-process steps.")
    ddpm_num_inference_steps: int = option(
        20, "Steps of the chain that draws the sample grids (with --grid_scheduler).")
    grid_scheduler: Sampler = option(
        "dpmsolver", "The sampler of the sample grids: dpmsolver (DPM-Solver++, log-SNR steps: 20 are enough), "
        "ddim, ddpm, or default (the pipeline's own DDPM scheduler, one step per timestep).")
    ddpm_beta_schedule: str = option(
        "squaredcos_cap_v2", "The beta schedule: squaredcos_cap_v2 (alias cosine; Nichol & Dhariwal 2021), linear"
        " (Ho et al. 2020), scaled_linear, sigmoid or quadratic.")
    timestep_spacing: TimestepSpacing = option(
        "trailing", "Which timesteps a shorter sampling chain visits (saved in the scheduler config; training "
        "does not read it). trailing (default) starts at t = T - 1 (Lin et al. 2023); leading is diffusers' "
        "DDPMScheduler default.")
    prediction_type: PredictionType = option(
        "epsilon", "What the network predicts: the noise (epsilon, Ho et al. 2020), the clean image (sample) or v"
        " (v_prediction, Salimans & Ho 2022).")
    loss_type: LossType = option("huber", "Distance between the network's prediction and its target.")
    snr_gamma: float | None = option(
        None, "Weight each timestep's loss by min-SNR-gamma (Hang et al. 2023; they use 5). Default (or 'none'): "
        "every timestep weighs the same (Ho et al. eq. 14); 'none' lets a later argument switch off a gamma that "
        "an earlier one set.")


@dataclass(frozen=True)
class OptimisationSettings:
    """Batches, steps, the learning-rate schedule, AdamW, precision and the seed."""

    TITLE: ClassVar[str] = "optimisation"
    train_batch_size: int = option(16, "Batch size per process.")
    eval_batch_size: int = option(16, "How many images each sample grid shows.")
    num_epochs: int = option(100, "Passes over the data (ignored when --max_train_steps is given).")
    max_train_steps: int | None = option(None, "Total optimizer steps; overrides --num_epochs.")
    gradient_accumulation_steps: int = option(1, "Batches whose gradients are summed before each optimizer step.")
    learning_rate: float = option(1e-4, "Peak learning rate (after warmup).")
    lr_scheduler: LRScheduler = option("cosine", "Learning-rate schedule (diffusers.optimization.get_scheduler).")
    lr_warmup_steps: int = option(500, "Optimizer steps of linear learning-rate warmup.")
    lr_decay_steps: int | None = option(
        None, "Optimizer steps over which the learning rate decays to its end value (the schedule's horizon). "
        "Default: the run's total steps. Set it when a run is trained in stages that each raise "
        "--max_train_steps, so all stages follow one schedule; it may not be shorter than the run.")
    lr_cooldown_steps: int | None = option(
        None, "With --lr_scheduler warmup_stable_decay: the last optimizer steps of the horizon "
        "(--lr_decay_steps, else the run), over which the rate falls linearly to 0; before them it stays at its "
        "peak.")
    adam_beta1: float = option(0.95, "AdamW beta1.")
    adam_beta2: float = option(0.999, "AdamW beta2.")
    adam_weight_decay: float = option(1e-6, "AdamW weight decay.")
    adam_epsilon: float = option(1e-8, "AdamW epsilon.")
    max_grad_norm: float = option(1.0, "Gradients are clipped to this global norm before each optimizer step.")
    gradient_checkpointing: bool = option(
        False, "Recompute the U-Net's activations in the backward pass instead of storing them: the same "
        "gradients in less memory (for large images), for a second forward pass per block.")
    mixed_precision: MixedPrecision = option(
        "auto", "auto: what `accelerate launch --mixed_precision` chose if bf16 or fp16, else bf16 where the "
        "processor runs it natively (AVX512-BF16, AMX, Arm BF16, a bf16 GPU) and no (fp32) elsewhere. bf16 where "
        "it is only emulated (e.g. an AVX2 CPU) runs ~100x slower and warns; fp16 needs a GPU.")
    seed: int = option(0, "Seed for weights, noise, timesteps and data order (runs are reproducible).")


@dataclass(frozen=True)
class EMASettings:
    """The exponential moving average of the weights (diffusers' EMAModel with warmup)."""

    TITLE: ClassVar[str] = "exponential moving average of the weights"
    use_ema: bool = option(False, "Keep an EMA of the weights; samples and the saved pipeline use it.")
    ema_max_decay: float = option(0.9999, "The EMA decay never exceeds this.")
    ema_inv_gamma: float = option(1.0, "EMA warmup: decay = 1 - (1 + step / inv_gamma) ** -power.")
    ema_power: float = option(3 / 4, "EMA warmup power (see --ema_inv_gamma).")
    posthoc_ema_every: int | None = option(
        None, "Post-hoc EMA (Karras et al. 2024): keep power-function averages of the weights and store them in "
        "OUTPUT_DIR/posthoc_ema/ every this many optimizer steps (and at every checkpoint), so that `annotated-pipeline "
        "export CHECKPOINT OUT --sigma_rel S` can build the average of any length S afterwards.")
    posthoc_ema_sigma_rels: tuple[float, ...] | None = option(
        None, "The widths (relative to the run's length) of the averages that --posthoc_ema_every tracks, "
        f"comma-separated (default {','.join(map(str, DEFAULT_SIGMA_RELS))}, the paper's).", parse=parse_sigma_rels)


@dataclass(frozen=True)
class OutputSettings:
    """The output folder, trackers, sample grids, checkpoints and resuming."""

    TITLE: ClassVar[str] = "outputs, logging and checkpoints"
    output_dir: str = option(
        "ddpm-fashion-mnist", "Where the pipeline, samples.png, README.md, checkpoints and logs go.")
    logging_dir: str = option("logs", "Tracker directory, relative to --output_dir.")
    logger: Logger = option(
        "tensorboard", "Where scalars and sample grids are logged (wandb needs `pip install wandb`).")
    save_images_epochs: int = option(10, "Draw a sample grid every this many epochs (and at the end).")
    save_model_epochs: int = option(10, "Save the pipeline to --output_dir every this many epochs (and at the end).")
    checkpointing_steps: int = option(
        500, "Save the full training state (checkpoint-STEP) every this many optimizer steps.")
    checkpoints_total_limit: int | None = option(None, "Keep only the newest this many checkpoints.")
    resume_from_checkpoint: str | None = option(
        None, 'Resume from a checkpoint folder, or "latest" for the newest complete one in --output_dir (with '
        "none there, a fresh run starts, unless a saved pipeline would be overwritten).")
    overwrite_output_dir: bool = option(
        False, "Replace the run already in --output_dir (its pipeline, checkpoints and logs are deleted first). "
        "Without it, or --resume_from_checkpoint, such a folder is refused.")
    accept_changed_args: bool = option(
        False, "Resume even if arguments that shape the run (learning rate, model, schedule, objective, data...) "
        "differ from the checkpoint's; the new values are used and the model card lists the changes. Without it "
        "such a resume is refused.")
    trust_checkpoint: bool = option(
        False, "Resume from a checkpoint whose files need full unpickling (which can run code); only for folders "
        "you wrote. Without it such files are refused.")
    ddp_timeout: int = option(
        600, "Seconds a process waits for the others in a collective operation before the run stops with an error"
        " naming its rank (a peer that died or stopped responding).")


@dataclass(frozen=True)
class QualitySettings:
    """Sample quality measured during training (training/quality.py)."""

    TITLE: ClassVar[str] = "sample quality during training (training/quality.py)"
    eval_steps: int | None = option(
        None, "Every this many optimizer steps, measure --eval_num_samples samples (EMA weights): Frechet "
        "distance, KID and class coverage, logged as quality/... beside the sample grids.")
    eval_num_samples: int = option(500, "Samples per quality measurement.")
    eval_classifier: str | None = option(
        None, "The classifier folder (annotated-pipeline train-classifier) whose features judge the samples. "
        "Default for Fashion-MNIST data: the shipped one; other data need it.")
    eval_reference: str | None = option(
        None, "The labelled data set whose test split is the reference. Default for Fashion-MNIST data: the "
        "official test split; other data need it.")
    save_best: bool = option(
        False, "Keep the pipeline with the lowest KID so far as OUTPUT_DIR/best/ (written atomically).")
    eval_features: Features = option(
        "classifier", "Also measure FID and KID in Inception-v3 features (quality/inception_...; needs pip "
        "install 'annotated-pipeline[inception]'); --save_best then keeps the lowest Inception KID.")


@dataclass(frozen=True)
class ValidationSettings:
    """The validation loss on held-out images (training/validation.py)."""

    TITLE: ClassVar[str] = "validation loss (training/validation.py)"
    validation_examples: int = option(
        0, "Hold this many training images out (a seeded choice) for a validation loss with fixed t and eps per "
        "image, logged as val/loss (training/validation.py). Default 0: none.")
    validation_steps: int | None = option(
        None, "Every this many optimizer steps, log the validation loss (default: --eval_steps).")


@dataclass(frozen=True)
class HubSettings:
    """Pushing the output folder to the Hugging Face Hub."""

    TITLE: ClassVar[str] = "Hugging Face Hub"
    push_to_hub: bool = option(False, "Push --output_dir (pipeline, samples, model card) to the Hub after training.")
    hub_model_id: str | None = option(None, 'The Hub repository, "user/name"; required with --push_to_hub.')
    hub_token: str | None = option(
        None, "Refused: a token on the command line shows in process lists, and `accelerate launch` prints its "
        "command line when a run fails. The push reads HF_TOKEN or the token `hf auth login` stored.")
    hub_private_repo: bool = option(False, "Create the Hub repository as private.")


GROUPS = (DataSettings, ModelSettings, OptimisationSettings, EMASettings, OutputSettings, QualitySettings,
          ValidationSettings, HubSettings)  # in the order of --help


def from_flat(group, values):
    """The `group` dataclass holding its fields' entries of the mapping `values` (e.g. `vars(args)`)."""
    return group(**{f.name: values[f.name] for f in fields(group)})


@dataclass(frozen=True)
class TrainingSettings:
    """A whole training configuration: one instance of each group."""

    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    optimisation: OptimisationSettings = field(default_factory=OptimisationSettings)
    ema: EMASettings = field(default_factory=EMASettings)
    outputs: OutputSettings = field(default_factory=OutputSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    hub: HubSettings = field(default_factory=HubSettings)

    @classmethod
    def from_flat(cls, values):
        return cls(*(from_flat(f.type, values) for f in fields(cls)))

    def flat(self):
        """{option name: value} over every group."""
        return {f.name: getattr(group, f.name) for group in (getattr(self, g.name) for g in fields(self))
                for f in fields(group)}


class TrainingArgs(argparse.Namespace):
    """The flat view of a TrainingSettings that the run's modules read, as they would argparse's Namespace:
    `args.dim`, `args.seed`, ... `vars(args)` holds the options (and what the run records beside them, such as
    `resumed_with_changes`); `given` is the set of options named on the command line, kept out of `vars`
    because it is not a setting (base_model.py reads it: an option given must agree with a base model)."""

    __slots__ = ("given",)

    @classmethod
    def from_settings(cls, settings, given=()):
        args = cls(**settings.flat())
        args.given = frozenset(given)
        return args

    def settings(self):
        return TrainingSettings.from_flat(vars(self))


def given(args):
    """The options named on the command line (none for an args object that does not record them)."""
    return getattr(args, "given", frozenset())


def replaced(args, *groups):
    """A copy of `args` with the values of these group instances (`args` itself is unchanged)."""
    new = copy.copy(args)
    for group in groups:
        vars(new).update({f.name: getattr(group, f.name) for f in fields(group)})
    return new
