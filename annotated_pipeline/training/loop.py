"""The training loop behind `train_accelerate.py`: Ho et al. 2020, Algorithm 1, run by Accelerate.

Algorithm 1 (Training):

    repeat
        x_0 ~ q(x_0)                       a batch of training images, scaled to [-1, 1]
        t ~ Uniform({1, ..., T})           one timestep per image (0..T-1 in code)
        eps ~ N(0, I)
        gradient step on  grad_theta || eps - eps_theta( sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t ) ||^2
    until converged

The loss is `p_losses` (eq. 14, with a choice of distance and target); everything around it is
Hugging Face Accelerate, so one script runs on a CPU, a GPU, or many processes (DDP) unchanged:

    Accelerator(...)                      devices, processes, mixed precision, trackers, project dir
    accelerator.prepare(...)              wraps model/optimizer/data loader/LR schedule for the setup
    accelerator.accumulate(model)         gradient accumulation: an optimizer step every N batches
    accelerator.backward, clip_grad_norm_ scaled (mixed precision) backward pass and clipping
    accelerator.reduce(loss, "mean")      the loss averaged over processes, for logging
    accelerator.save_state / load_state   checkpoints, including the EMA and RNG states
    accelerator.skip_first_batches        resuming in the middle of an epoch

One optimizer step is one "global step"; checkpoints, logs and --max_train_steps count those.
"""

import logging
import math
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.logging import get_logger
from accelerate.utils import InitProcessGroupKwargs, ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from ..resources import EMBEDDED_SAMPLE_DESCRIPTION, embedded_sample
from .args import TrainingConfigError, args_for_model_card
from .checkpointing import checkpoint_step, read_training_args, resolve_checkpoint, save_checkpoint
from .distributed import is_collective_timeout
from .safeguards import (changed_args, check_finite, check_output_dir, describe_changes,
                         refuse_non_finite_weights)
from .sampling import draw_samples, ema_weights, log_samples, make_pipeline, save_output_folder

logger = get_logger(__name__)

EMBEDDED_SAMPLE = str(embedded_sample())


# ------------------------------------------------------------------------------------------------
# Setup: everything that can reject a configuration runs before the first step
# ------------------------------------------------------------------------------------------------


def make_accelerator(args):
    """The Accelerator: processes and devices, gradient accumulation, mixed precision, trackers.

    The data order is drawn from a seedable sampler (seed `--seed`, reseeded every epoch), so a
    resumed run sees exactly the batches an uninterrupted run would, on every process.
    """
    project_config = ProjectConfiguration(
        project_dir=args.output_dir,
        logging_dir=os.path.join(args.output_dir, args.logging_dir),
    )
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.logger == "none" else args.logger,
        project_config=project_config,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
        # A collective that waits longer than this (a peer died or stopped) raises instead of hanging.
        kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=args.ddp_timeout))],
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > accelerator.num_processes:
        # torchrun started several processes, but without GPUs each one would train alone.
        raise TrainingConfigError(
            f"{launched} processes were launched but Accelerate sees {accelerator.num_processes} per run "
            "(no GPU to share?). To train on several CPU processes, launch with ACCELERATE_USE_CPU=1 in the "
            "environment: ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N ..."
        )
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


def count_classes(dataset, label_column):
    """K for class-conditional training: from a `ClassLabel` feature, else max(label) + 1.

    Every label must lie in 0..K-1; a `ClassLabel` column may hold -1 ("no label" in `datasets`), which
    is refused here rather than at the first batch that contains one."""
    feature = dataset.features[label_column]
    num_classes = getattr(feature, "num_classes", None)
    labels = dataset[label_column]
    if not all(isinstance(label, int) and not isinstance(label, bool) for label in labels):
        raise TrainingConfigError(f"--label_column {label_column!r} must hold integer class labels")
    if num_classes is None:
        num_classes = max(labels) + 1
    out_of_range = [label for label in labels if not 0 <= label < num_classes]
    if out_of_range:
        raise TrainingConfigError(
            f"--label_column {label_column!r}: {len(out_of_range)} of {len(labels)} labels lie outside 0..{num_classes - 1} "
            f"(e.g. {out_of_range[0]}; -1 means 'no label' in `datasets`): drop those examples first, e.g. "
            f"dataset.filter(lambda example: example[{label_column!r}] >= 0)"
        )
    return int(num_classes)


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
    from . import data

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
        data.check_columns(dataset, args.image_column, args.label_column)
        channels = args.num_channels or data.detect_channels(dataset, args.image_column)
        num_classes = count_classes(dataset, args.label_column) if args.label_column else None
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


# ------------------------------------------------------------------------------------------------
# The training step: Algorithm 1
# ------------------------------------------------------------------------------------------------


class NoiseGenerator:
    """The source of t and eps in Algorithm 1: a `torch.Generator` of its own, saved in checkpoints.

    It is kept apart from torch's global RNG, which the data pipeline also draws from (random crops
    and flips, one batch ahead of training because Accelerate's loader looks ahead), so that a
    resumed run draws exactly the t and eps the uninterrupted run drew. Each process has its own
    stream (seed + process index). `state_dict`/`load_state_dict` make it checkpointable by
    `accelerator.register_for_checkpointing`.
    """

    def __init__(self, device, seed):
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def state_dict(self):
        return {"rng_state": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["rng_state"])


def training_step(model, batch, noise_scheduler, loss_type, generator, conditional=False, snr_gamma=None,
                  class_dropout_prob=0.0, num_classes=None):
    """One draw of Ho et al. 2020, Algorithm 1, lines 2-5, on a batch; returns the scalar loss.

        x_0 = batch["input"],  t ~ Uniform{0..T-1},  eps ~ N(0, I)
        loss = distance( target, model( sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t ) )   (eq. 14)

    A class-conditional model also gets the batch's labels y: eps_theta(x_t, t, y). With
    `class_dropout_prob` p each label is replaced by "no class" (label K = num_classes) with
    probability p (Ho & Salimans 2022, Algorithm 1, line 3), so the one network learns both
    eps_theta(x_t, t, y) and eps_theta(x_t, t, empty). With `snr_gamma` each image's loss is weighted by
    min-SNR-gamma (`losses.min_snr_weights`).
    """
    from ..losses import p_losses

    x_start = batch["input"]
    class_labels = batch["label"] if conditional else None
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (x_start.shape[0],),
                      device=x_start.device, generator=generator)
    noise = torch.randn(x_start.shape, device=x_start.device, dtype=x_start.dtype, generator=generator)
    if class_labels is not None and class_dropout_prob > 0:
        dropped = torch.rand(class_labels.shape, device=class_labels.device, generator=generator) < class_dropout_prob
        class_labels = torch.where(dropped, torch.full_like(class_labels, num_classes), class_labels)
    return p_losses(
        model, x_start, t, noise=noise, loss_type=loss_type, scheduler=noise_scheduler,
        class_labels=class_labels, snr_gamma=snr_gamma,
    )


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


@dataclass
class TrainingState:
    """The objects the loop works on (after `accelerator.prepare`)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: object
    dataloader: object
    noise_scheduler: object
    ema: object
    noise_generator: NoiseGenerator
    num_classes: int | None


def resume_global_step(args, accelerator):
    """Load the checkpoint named by --resume_from_checkpoint; return its global step (0 if none)."""
    if args.resume_from_checkpoint is None:
        return 0
    try:
        path = resolve_checkpoint(args.output_dir, args.resume_from_checkpoint)
    except ValueError as error:
        raise TrainingConfigError(str(error)) from None
    if path is None:
        logger.info(f"--resume_from_checkpoint latest: no complete checkpoint in {args.output_dir} yet, starting fresh")
        return 0
    check_resumed_args(args, path)
    try:
        accelerator.load_state(path)
    except (FileNotFoundError, RuntimeError, KeyError, ValueError) as error:
        if is_collective_timeout(error):  # a peer stopped answering: train.main reports that
            raise
        first_lines = " ".join(str(error).splitlines()[:2])
        raise TrainingConfigError(
            f"cannot resume from {path}: {type(error).__name__}: {first_lines} ... (was it saved with the "
            "same model arguments and --use_ema setting?)"
        ) from None
    global_step = checkpoint_step(path)
    logger.info(f"Resumed from {os.path.basename(path)} at global step {global_step}")
    return global_step


def check_resumed_args(args, path):
    """Refuse to resume from a checkpoint trained with other arguments (another run's, or a changed
    objective, schedule or rate), unless --accept_changed_args; then the changes are recorded in
    `args.resumed_with_changes`, which later checkpoints and the model card carry."""
    record = read_training_args(path)
    if record is None:
        logger.warning(f"{path} records no training arguments (written by an older version), so they cannot "
                       "be compared with this run's")
        return
    history = list(record["args"].get("resumed_with_changes") or [])
    changes = changed_args(record["args"], args_for_model_card(args))
    if changes and not args.accept_changed_args:
        raise TrainingConfigError(
            f"{path} was trained with other arguments: {describe_changes(changes)} (checkpoint -> now). Resume "
            "with the checkpoint's arguments, pass --accept_changed_args to go on with the new ones, or start a "
            "new run in another --output_dir"
        )
    if changes:
        logger.warning(f"Resuming {path} with changed arguments (--accept_changed_args): {describe_changes(changes)}")
        history.append(f"at step {checkpoint_step(path)}: {describe_changes(changes)}")
    if history:
        args.resumed_with_changes = history


def apply_new_learning_rate(args, state):
    """After `load_state` the optimizer and LR schedule carry the checkpoint's peak rate; when
    --learning_rate was changed (and accepted), scale both so that the schedule goes on with the new peak."""
    schedule = getattr(state.lr_scheduler, "scheduler", state.lr_scheduler)  # accelerate wraps it
    ratio = args.learning_rate / schedule.base_lrs[0]
    if ratio == 1.0:
        return
    schedule.base_lrs = [lr * ratio for lr in schedule.base_lrs]
    for group in state.optimizer.param_groups:
        group["lr"] *= ratio
        if "initial_lr" in group:
            group["initial_lr"] *= ratio


def tracker_config(args):
    """The hyperparameters shown by the tracker: plain scalars only, never the Hub token."""
    config = {}
    for key, value in vars(args).items():
        if key == "hub_token" or value is None:
            continue
        config[key] = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value
    return config


def log_run_header(args, dataset, plan, accelerator, global_step):
    """Say what is about to run: data, processes, batch sizes, length in optimizer steps."""
    logger.info("***** Running training *****")
    logger.info(f"  Data = {describe_data(args)}, {len(dataset)} images")
    logger.info(f"  Processes = {accelerator.num_processes}, device = {accelerator.device}, "
                f"mixed precision = {accelerator.mixed_precision}, CPU threads per process = {torch.get_num_threads()}")
    idle_cores = (os.cpu_count() or 1) // accelerator.num_processes
    if accelerator.device.type == "cpu" and torch.get_num_threads() == 1 and idle_cores > 1:
        # `accelerate launch` sets OMP_NUM_THREADS=1 per process unless told otherwise.
        logger.warning(f"  Training on the CPU with one thread while {idle_cores} cores per process are free: "
                       f"pass `accelerate launch --num_cpu_threads_per_process {idle_cores} ...` to use them.")
    logger.info(f"  Batch size per process = {args.train_batch_size}, gradient accumulation steps = "
                f"{args.gradient_accumulation_steps}, total batch size = {plan.total_batch_size}")
    logger.info(f"  Epochs = {plan.num_epochs}, optimizer steps per epoch = {plan.update_steps_per_epoch}, "
                f"total optimizer steps = {plan.max_train_steps}, starting at step {global_step}")


def end_of_epoch(args, accelerator, state, epoch, global_step, last):
    """Every --save_images_epochs: draw a sample grid (EMA weights) and log it; every
    --save_model_epochs and at the end: save pipeline, samples.png and model card to --output_dir."""
    save_images = (epoch + 1) % args.save_images_epochs == 0 or last
    save_model = (epoch + 1) % args.save_model_epochs == 0 or last
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and (save_images or save_model):
        unet = accelerator.unwrap_model(state.model)
        unet.eval()
        with ema_weights(unet, state.ema):
            refuse_non_finite_weights(unet, global_step, args.output_dir, "the pipeline or a sample grid")
            pipeline = make_pipeline(unet, state.noise_scheduler)
            images = draw_samples(pipeline, args.eval_batch_size, args.ddpm_num_inference_steps, args.seed,
                                  state.num_classes, scheduler=args.grid_scheduler, progress=True)
            if args.logger != "none":
                log_samples(accelerator, args.logger, images, global_step)
            if save_model:
                save_output_folder(pipeline, images, args, global_step, describe_data(args))
                logger.info(f"Saved the pipeline, samples.png and README.md to {args.output_dir} (step {global_step})")
        unet.train()
    accelerator.wait_for_everyone()


def run_epoch(args, accelerator, state, plan, epoch, global_step, progress_bar):
    """Train until the epoch's data is used up or --max_train_steps is reached; returns the global step.

    Batches are grouped by `accelerator.accumulate`: gradients add up over
    --gradient_accumulation_steps batches, and `sync_gradients` is True on the batch that ends the
    group, which is when the optimizer stepped, the EMA is updated and the global step advances.
    """
    state.dataloader.set_epoch(epoch)
    dataloader = state.dataloader
    done_in_epoch = global_step - epoch * plan.update_steps_per_epoch
    if done_in_epoch > 0:  # resuming mid-epoch: skip the batches already trained on
        dataloader = accelerator.skip_first_batches(dataloader, done_in_epoch * args.gradient_accumulation_steps)

    loss_sum, num_batches = 0.0, 0  # over the batches of the current accumulation group
    for batch in dataloader:
        with accelerator.accumulate(state.model):
            loss = training_step(state.model, batch, state.noise_scheduler, args.loss_type,
                                 state.noise_generator.generator, conditional=state.num_classes is not None,
                                 snr_gamma=args.snr_gamma, class_dropout_prob=args.class_dropout_prob,
                                 num_classes=state.num_classes)
            batch_loss = accelerator.reduce(loss.detach(), reduction="mean").item()  # mean over processes
            check_finite(global_step + 1, args.output_dir, loss=batch_loss)
            loss_sum += batch_loss
            num_batches += 1
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                grad_norm = accelerator.clip_grad_norm_(state.model.parameters(), args.max_grad_norm)
                if accelerator.mixed_precision != "fp16":  # fp16's loss scaler skips inf steps by design
                    check_finite(global_step + 1, args.output_dir, grad_norm=float(grad_norm))
            state.optimizer.step()
            state.lr_scheduler.step()
            state.optimizer.zero_grad(set_to_none=True)

        if not accelerator.sync_gradients:
            continue
        # An optimizer step happened.
        global_step += 1
        if state.ema is not None:
            state.ema.step(state.model.parameters())
        logs = {
            "loss": loss_sum / num_batches,
            "lr": state.lr_scheduler.get_last_lr()[0],
            "step": global_step,
        }
        if state.ema is not None:
            logs["ema_decay"] = state.ema.cur_decay_value
        loss_sum, num_batches = 0.0, 0
        progress_bar.update(1)
        progress_bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}", step=global_step)
        accelerator.log(logs, step=global_step)

        if global_step % args.checkpointing_steps == 0:
            refuse_non_finite_weights(state.model, global_step, args.output_dir, f"checkpoint-{global_step}")
            path, removed = save_checkpoint(accelerator, args.output_dir, global_step, args.checkpoints_total_limit,
                                            training_args={"args": args_for_model_card(args)})
            for folder in removed:
                logger.info(f"Removed old checkpoint {folder}")
            logger.info(f"Saved checkpoint {path}")
        if global_step >= plan.max_train_steps:
            break
    return global_step


def setup(args, accelerator):
    """Build and check everything (output folder, data, schedule, model) before training;
    TrainingConfigError if impossible."""
    if accelerator.is_main_process:
        check_output_dir(args.output_dir)
    noise_scheduler = build_noise_scheduler(args)
    dataset, channels, num_classes = load_data(args, accelerator)
    model = build_unet(args, channels, num_classes)
    return dataset, noise_scheduler, model, num_classes


def main(args):
    """Train a DDPM as configured by `args` (see `args.py`); returns the final global step."""
    accelerator = make_accelerator(args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # our own lines say what was saved where
    set_seed(args.seed, device_specific=True)  # different noise on each process, same everywhere on rerun

    dataset, noise_scheduler, model, num_classes = setup(args, accelerator)
    if args.gradient_checkpointing:
        model.enable_gradient_checkpointing()
        logger.info("Gradient checkpointing on: activations are recomputed in the backward pass")
    from . import data

    dataloader = data.make_dataloader(dataset, args.train_batch_size, True, args.dataloader_num_workers)
    plan = TrainingPlan.from_args(args, math.ceil(len(dataloader) / accelerator.num_processes),
                                  accelerator.num_processes)
    optimizer = build_optimizer(args, model)
    lr_scheduler = build_lr_scheduler(args, optimizer, plan, accelerator.num_processes)
    model, optimizer, dataloader, lr_scheduler = accelerator.prepare(model, optimizer, dataloader, lr_scheduler)
    if len(dataloader) != plan.batches_per_epoch:  # the plan (and the LR schedule) assumed another sharding
        raise RuntimeError(f"expected {plan.batches_per_epoch} batches per process and epoch, got {len(dataloader)}")

    # Checkpointed besides model, optimizer and LR schedule (in this order: custom_checkpoint_0, _1).
    noise_generator = NoiseGenerator(accelerator.device, args.seed + accelerator.process_index)
    accelerator.register_for_checkpointing(noise_generator)
    ema = None
    if args.use_ema:
        ema = build_ema(args, accelerator.unwrap_model(model))
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)
    state = TrainingState(model, optimizer, lr_scheduler, dataloader, noise_scheduler, ema, noise_generator,
                          num_classes)

    if accelerator.is_main_process and args.logger != "none":
        accelerator.init_trackers("train_accelerate", config=tracker_config(args))

    global_step = resume_global_step(args, accelerator)
    apply_new_learning_rate(args, state)
    if ema is not None:
        ema.to(accelerator.device)  # load_state puts the EMA weights on the CPU
    log_run_header(args, dataset, plan, accelerator, global_step)

    progress_bar = tqdm(total=plan.max_train_steps, initial=global_step, desc="Steps",
                        disable=not accelerator.is_local_main_process)
    model.train()
    first_epoch = global_step // plan.update_steps_per_epoch
    try:
        if global_step >= plan.max_train_steps:  # resumed from the last checkpoint of a finished run
            end_of_epoch(args, accelerator, state, first_epoch, global_step, last=True)
        else:
            for epoch in range(first_epoch, plan.num_epochs):
                global_step = run_epoch(args, accelerator, state, plan, epoch, global_step, progress_bar)
                last = global_step >= plan.max_train_steps
                end_of_epoch(args, accelerator, state, epoch, global_step, last)
                if last:
                    break
    finally:
        progress_bar.close()  # before any error message, so that the message is the last line
    logger.info(f"Finished training: {global_step} optimizer steps")
    accelerator.end_training()

    if args.push_to_hub and accelerator.is_main_process:
        push_output_dir(args)
    return global_step


class HubPushError(RuntimeError):
    """Pushing the finished output folder to the Hub failed (the local folder is intact)."""


def push_output_dir(args):
    """Upload --output_dir (pipeline, samples.png, README.md) to --hub_model_id, after the local save.

    The token comes from HF_TOKEN or the login cache. A failure becomes a HubPushError whose message
    never contains the token.
    """
    from ..hub import push_folder_to_hub

    try:
        url = push_folder_to_hub(
            args.output_dir, args.hub_model_id, private=args.hub_private_repo,
            commit_message="Upload DDPM trained with train_accelerate.py",
        )
    except Exception as error:  # any failure: network, auth, repo; report it without a traceback
        message = f"{type(error).__name__}: {error}"
        token = os.environ.get("HF_TOKEN")
        if token:
            message = message.replace(token, "***")
        raise HubPushError(
            f"push to the Hub repo {args.hub_model_id} failed: {message} "
            f"(the trained pipeline stays in {args.output_dir})"
        ) from None
    logger.info(f"Pushed {args.output_dir} to {url}")
    return url
