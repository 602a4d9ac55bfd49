"""Everything a training run is made of, built and checked before its first step.

    make_accelerator       processes, devices, mixed precision, trackers, the seedable data order
    build_noise_scheduler  the forward process q(x_t | x_0) (Ho et al. 2020, eq. (4)) and its reverse step
    build_unet             eps_theta, an AnnotatedUNet2DModel (or the base model's, base_model.py)
    load_data              the training set, its channels and its class count
    TrainingPlan           how many optimizer steps, batches and epochs the run has
    build_optimizer, build_lr_scheduler, build_ema

Each turns a bad argument into a TrainingConfigError naming the flags involved, so that  can
reject a configuration before any work is done.
"""

import math
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.logging import get_logger
from accelerate.utils import InitProcessGroupKwargs, ProjectConfiguration

from ..resources import EMBEDDED_SAMPLE_DESCRIPTION, embedded_sample
from ..datasets.labelled import count_classes
from .args import TrainingConfigError
from .base_model import load_base_model
from .precision import accelerate_mixed_precision, fit_threads
from .bounds import check_memory
from .distributed import keep_process_group
from .safeguards import check_output_dir
from .settings import replaced

logger = get_logger(__name__)

EMBEDDED_SAMPLE = str(embedded_sample())


def make_accelerator(args):
    """The Accelerator: processes and devices, gradient accumulation, mixed precision, trackers.

    The data order is drawn from a seedable sampler (seed `--seed`, reseeded every epoch), so a
    resumed run sees exactly the batches an uninterrupted run would, on every process.
    """
    project_config = ProjectConfiguration(
        project_dir=args.output_dir,
        logging_dir=os.path.join(args.output_dir, args.logging_dir),
    )
    args.mixed_precision = accelerate_mixed_precision(args.mixed_precision)  # "auto" -> what runs (precision.py)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.logger == "none" else args.logger,
        project_config=project_config,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
        # A collective that waits longer than this (a peer died or stopped) raises instead of hanging.
        kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=args.ddp_timeout))],
    )
    keep_process_group()  # never freed in this process: distributed.py says why
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > accelerator.num_processes:
        # torchrun started several processes, but without GPUs each one would train alone.
        raise TrainingConfigError(
            f"{launched} processes were launched but Accelerate sees {accelerator.num_processes} per run "
            "(no GPU to share?). To train on several CPU processes, launch with ACCELERATE_USE_CPU=1 in the "
            "environment: ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N ..."
        )
    if accelerator.device.type == "cpu":
        fit_threads(int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes)))
    return accelerator


def build_noise_scheduler(args):
    """The forward process q(x_t | x_0) and the reverse step: `AnnotatedDDPMScheduler` from the arguments.

    Two keys only matter for sampling and are saved with the pipeline: the --timestep_spacing of shorter
    chains, and the bound on x_0_hat. The training images lie in [-1, 1], so x_0_hat is bounded there by
    `thresholding` with `sample_max_value` 1: for DDPM and DDIM the same as `clip_sample`, and unlike
    `clip_sample` also read by DPM-Solver++, whose first step from t = T - 1 ("trailing") otherwise
    divides the model's error by sqrt(alphas_cumprod_{T-1}) ~ 0.0016 and goes wrong.
    """
    from ..scheduler import AnnotatedDDPMScheduler

    try:
        return AnnotatedDDPMScheduler(
            num_train_timesteps=args.ddpm_num_steps,
            beta_schedule=args.ddpm_beta_schedule,
            prediction_type=args.prediction_type,
            timestep_spacing=args.timestep_spacing,
            thresholding=True,
            sample_max_value=1.0,
        )
    except ValueError as error:
        raise TrainingConfigError(f"invalid diffusion configuration (--ddpm_*, --prediction_type): {error}") from None


def build_unet(args, channels, num_classes):
    """eps_theta: an `AnnotatedUNet2DModel` for `channels`-channel images at --resolution."""
    from ..unet import AnnotatedUNet2DModel

    try:
        return AnnotatedUNet2DModel(
            sample_size=args.resolution,
            in_channels=channels,
            dim=args.dim,
            dim_mults=tuple(args.dim_mults),
            block_type=args.block_type,
            num_class_embeds=num_classes,
            null_class_embed=num_classes is not None and args.class_dropout_prob > 0,
            linear_attention_levels=args.linear_attention_levels,
        )
    except ValueError as error:
        levels = args.linear_attention_levels
        levels = levels if isinstance(levels, str) else ",".join(map(str, levels))
        raise TrainingConfigError(
            f"invalid model configuration (--resolution {args.resolution}, --dim {args.dim}, "
            f"--dim_mults {','.join(map(str, args.dim_mults))}, --block_type {args.block_type}, "
            f"--linear_attention_levels {levels}): {error}"
        ) from None


def describe_data(args):
    """A short description of the training data for the log and the model card."""
    if args.dataset_name:
        return args.dataset_name
    if args.train_data_dir:
        return args.train_data_dir
    return EMBEDDED_SAMPLE_DESCRIPTION


def load_data(args, accelerator):
    """Load and check the training set; returns (dataset with transform set, channels, num_classes).

    With neither --dataset_name nor --train_data_dir the embedded Fashion-MNIST sample is used.
    """
    from ..datasets import loading as data

    train_data_dir = args.train_data_dir
    if args.dataset_name is None and train_data_dir is None:
        train_data_dir = EMBEDDED_SAMPLE
        logger.info(f"No --dataset_name or --train_data_dir: training on the embedded sample {EMBEDDED_SAMPLE}")
    try:
        with accelerator.main_process_first():
            dataset = data.load_training_dataset(
                dataset_name=args.dataset_name,
                dataset_config_name=args.dataset_config_name,
                train_data_dir=train_data_dir,
                cache_dir=args.cache_dir,
            )
        if len(dataset) == 0:
            raise TrainingConfigError(f"the training data set ({describe_data(args)}) is empty")
        data.check_columns(dataset, args.image_column, args.label_column, train_data_dir)
        channels = args.num_channels or data.detect_channels(dataset, args.image_column)
        try:
            num_classes = count_classes(dataset, args.label_column) if args.label_column else None
        except ValueError as error:  # datasets/labelled.py says what is wrong with the labels
            raise TrainingConfigError(str(error)) from None
    except TrainingConfigError:
        raise
    except (ValueError, OSError, KeyError) as error:  # OSError: a missing file, an unreachable Hub
        raise TrainingConfigError(f"cannot use the training data ({describe_data(args)}): {error}") from None
    dataset.set_transform(data.make_transform(
        args.resolution, channels, args.center_crop, args.random_flip, args.image_column, args.label_column,
    ))
    return dataset, channels, num_classes


@dataclass
class TrainingPlan:
    """How long the run is, in optimizer steps, and how those map onto batches and epochs."""

    batches_per_epoch: int          # per process
    update_steps_per_epoch: int     # optimizer steps per epoch
    max_train_steps: int
    num_epochs: int
    total_batch_size: int           # images per optimizer step, over all processes

    @classmethod
    def from_args(cls, args, batches_per_epoch, num_processes):
        """--max_train_steps if given, else --num_epochs epochs; an epoch's last group may be short."""
        update_steps_per_epoch = math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
        if args.max_train_steps is None:
            max_train_steps = args.num_epochs * update_steps_per_epoch
        else:
            max_train_steps = args.max_train_steps
        return cls(
            batches_per_epoch=batches_per_epoch,
            update_steps_per_epoch=update_steps_per_epoch,
            max_train_steps=max_train_steps,
            num_epochs=math.ceil(max_train_steps / update_steps_per_epoch),
            total_batch_size=args.train_batch_size * num_processes * args.gradient_accumulation_steps,
        )


def build_optimizer(args, model):
    """AdamW with the diffusers example's hyperparameter names."""
    return torch.optim.AdamW(
        model.parameters(),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )


def build_lr_scheduler(args, optimizer, plan, num_processes):
    """Warmup then decay over the whole run, or over --lr_decay_steps when given (a run trained in
    stages keeps one schedule). A prepared schedule advances once per process on each optimizer step,
    so its lengths are counted in process-steps."""
    from diffusers.optimization import get_scheduler

    horizon = plan.max_train_steps if args.lr_decay_steps is None else args.lr_decay_steps
    if horizon < plan.max_train_steps:
        # Past its horizon diffusers' cosine schedule climbs again and the linear one stays at 0.
        raise TrainingConfigError(
            f"--lr_decay_steps ({horizon}) is shorter than the run ({plan.max_train_steps} optimizer steps); "
            "give at least the run's total steps"
        )
    if args.lr_scheduler == "warmup_stable_decay":
        if args.lr_cooldown_steps > horizon - args.lr_warmup_steps:
            raise TrainingConfigError(
                f"--lr_cooldown_steps ({args.lr_cooldown_steps}) does not fit between the warmup "
                f"({args.lr_warmup_steps} steps) and the end of the schedule ({horizon} steps)"
            )
        return warmup_stable_decay(optimizer, args.lr_warmup_steps * num_processes, args.lr_cooldown_steps * num_processes,
                                   horizon * num_processes)
    return get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * num_processes,
        num_training_steps=horizon * num_processes,
    )


def warmup_stable_decay(optimizer, warmup_steps, cooldown_steps, total_steps):
    """Warmup-stable-decay (Hu et al. 2024, MiniCPM; Hägele et al. 2024): the rate rises linearly for
    `warmup_steps`, stays at its peak, and falls linearly to 0 over the last `cooldown_steps`:

        lr(s) / peak = s / W                 for s < W
                     = 1                     for W <= s < S - C
                     = (S - s) / C           for S - C <= s <= S

    Until S - C the rate is the constant one, so a staged run can choose S (--lr_decay_steps) as late as
    the stage in which its cooldown starts."""
    from torch.optim.lr_scheduler import LambdaLR

    cooldown_start = total_steps - cooldown_steps

    def factor(step):
        if step < warmup_steps:
            return step / warmup_steps
        if step < cooldown_start:
            return 1.0
        return max(0.0, (total_steps - step) / cooldown_steps)

    return LambdaLR(optimizer, factor)


def build_ema(args, model):
    """diffusers' `EMAModel` with warmup (decay grows with the step, capped at --ema_max_decay)."""
    from diffusers.training_utils import EMAModel

    return EMAModel(
        model.parameters(),
        decay=args.ema_max_decay,
        use_ema_warmup=True,
        inv_gamma=args.ema_inv_gamma,
        power=args.ema_power,
    )


def setup(args, accelerator):
    """Build and check everything (output folder, data, schedule, model) before training;
    TrainingConfigError if impossible. Returns the run's arguments first: `args` itself, or when
    fine-tuning a copy with the options the base model decides resolved (base_model.py)."""
    if accelerator.is_main_process:
        check_output_dir(args.output_dir)
    base = load_base_model(args)  # fine-tuning (base_model.py)
    if base is not None:
        args = replaced(args, base.settings_for(args))
    noise_scheduler = build_noise_scheduler(args) if base is None or base.scheduler_config is None else base.noise_scheduler()
    dataset, channels, num_classes = load_data(args, accelerator)
    model = build_unet(args, channels, num_classes) if base is None else base.unet_for(args, channels, num_classes)
    check_memory(args, model, accelerator)  # bounds.py: refused now rather than killed by the OOM killer later
    return args, dataset, noise_scheduler, model, num_classes
