"""The training run behind `train_accelerate.py`: Ho et al. 2020, Algorithm 1 (step.py), run by Accelerate.

One script runs on a CPU, a GPU, or many processes (DDP) unchanged, because everything around the
step is Hugging Face Accelerate:

    Accelerator(...)                      devices, processes, mixed precision, trackers, project dir
    accelerator.prepare(...)              wraps model/optimizer/data loader/LR schedule for the setup
    accelerator.accumulate(model)         gradient accumulation: an optimizer step every N batches
    accelerator.backward, clip_grad_norm_ scaled (mixed precision) backward pass and clipping
    accelerator.reduce(loss, "mean")      the loss averaged over processes, for logging
    accelerator.save_state                checkpoints (loaded without unpickling code: run_state.py)
    accelerator.skip_first_batches        resuming in the middle of an epoch

One optimizer step is one "global step"; checkpoints, logs and --max_train_steps count those. The
pieces are built in build.py, resumed in resume.py, checkpointed in checkpointing.py, guarded in
safeguards.py, sampled and saved in sampling.py and pushed in push.py; this module runs them.
"""

import logging
import math
import os
from dataclasses import dataclass

import torch
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from .args import TrainingConfigError, args_for_model_card
from .build import (TrainingPlan, build_ema, build_lr_scheduler, build_optimizer, describe_data, make_accelerator,
                    setup)
from .checkpoint_models import register_model_folders
from .checkpointing import save_checkpoint, write_failure
from .interrupt import StopOnSignal, TrainingInterrupted
from .ownership import claim_output_dir
from .push import push_output_dir
from .quality import QualityCheck, maybe_evaluate
from .validation import ValidationLoss, maybe_validate, split_off
from .resume import apply_new_learning_rate, resume_global_step
from .run_state import register_run_state
from ..pipelines.pipeline import NonFiniteSampleError
from .safeguards import (TrainingDiverged, check_finite, last_good_checkpoint, refuse_diverged_weights,
                         refuse_non_finite_weights)
from .outputs import draw_samples, ema_weights, log_samples, make_pipeline, save_output_folder
from .posthoc_ema import SNAPSHOT_FILE, SNAPSHOT_FOLDER, PowerEMA, remove_snapshots_after
from .step import NoiseGenerator, training_step

logger = get_logger(__name__)


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
    quality: QualityCheck | None = None  # --eval_steps
    validation: ValidationLoss | None = None  # --validation_examples
    stop: StopOnSignal | None = None     # SIGINT/SIGTERM: checkpoint and stop after the step
    posthoc: PowerEMA | None = None      # --posthoc_ema_every: power-function averages (posthoc_ema.py)


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
            try:
                images = draw_samples(pipeline, args.eval_batch_size, args.ddpm_num_inference_steps, args.seed,
                                      scheduler=args.grid_scheduler, progress=True)
            except NonFiniteSampleError as error:  # finite weights that sample NaN: nothing is saved from them
                raise TrainingDiverged(f"training diverged by step {global_step}: {error} The pipeline was not "
                                       f"saved; {last_good_checkpoint(args.output_dir)}") from None
            if args.logger != "none":
                log_samples(accelerator, args.logger, images, global_step)
            if save_model:
                try:
                    save_output_folder(pipeline, images, args, global_step, describe_data(args))
                except Exception as error:  # a full disk, permissions: one line naming what is intact
                    raise write_failure(error, args.output_dir, "the pipeline") from error
                logger.info(f"Saved the pipeline, samples.png and README.md to {args.output_dir} (step {global_step})")
        unet.train()
    accelerator.wait_for_everyone()


def save_snapshot(args, accelerator, state, global_step):
    """With --posthoc_ema_every: OUTPUT_DIR/posthoc_ema/snapshot-{global_step}.safetensors (main process)."""
    if state.posthoc is None or not accelerator.is_main_process:
        return
    folder = os.path.join(args.output_dir, SNAPSHOT_FOLDER)
    os.makedirs(folder, exist_ok=True)
    try:
        state.posthoc.save(os.path.join(folder, SNAPSHOT_FILE.format(step=global_step)))
    except Exception as error:  # a full disk, permissions: one line naming what is intact
        raise write_failure(error, args.output_dir, "a post-hoc EMA snapshot") from error


def checkpoint(args, accelerator, state, global_step):
    """Write checkpoint-{global_step} from weights that pass `refuse_diverged_weights`, pruning after; its path.
    A post-hoc EMA snapshot is written at every checkpoint's step, so any checkpoint can be exported with it."""
    refuse_diverged_weights(accelerator.unwrap_model(state.model), state.noise_scheduler, global_step,
                            args.output_dir, f"checkpoint-{global_step}", state.ema)
    save_snapshot(args, accelerator, state, global_step)
    path, removed = save_checkpoint(accelerator, args.output_dir, global_step, args.checkpoints_total_limit,
                                    training_args={"args": args_for_model_card(args)})
    for folder in removed:
        logger.info(f"Removed old checkpoint {folder}")
    logger.info(f"Saved checkpoint {path}")
    return path


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
        if state.posthoc is not None:
            state.posthoc.step(state.model.parameters())
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

        path = None
        if global_step % args.checkpointing_steps == 0 or global_step >= plan.max_train_steps:  # the last step too
            path = checkpoint(args, accelerator, state, global_step)  # with its post-hoc EMA snapshot
        elif state.posthoc is not None and global_step % args.posthoc_ema_every == 0:
            save_snapshot(args, accelerator, state, global_step)
        maybe_evaluate(args, accelerator, state, global_step)
        maybe_validate(args, accelerator, state, global_step)
        signum = state.stop.requested() if state.stop is not None else None
        if signum:
            raise TrainingInterrupted(signum, global_step, path or checkpoint(args, accelerator, state, global_step),
                                      announce=accelerator.is_main_process)
        if global_step >= plan.max_train_steps:
            break
    return global_step


def main(args):
    """Train a DDPM as configured by `args` (see `args.py`); returns the final global step.

    The main process owns --output_dir for the run (ownership.py); a run refused before its first step
    leaves nothing behind."""
    accelerator = make_accelerator(args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # our own lines say what was saved where
    with StopOnSignal(accelerator) as stop:
        claim = claim_output_dir(args) if accelerator.is_main_process else None
        try:
            return train(args, accelerator, claim, stop)
        except TrainingConfigError:
            if claim is not None:
                claim.abandon()
            raise
        finally:
            if claim is not None:
                claim.release()


def train(args, accelerator, claim, stop=None):
    """The run itself, on every process (`claim`: the main process's OutputDirClaim, else None; `stop`:
    the StopOnSignal asked after each step)."""
    set_seed(args.seed, device_specific=True)  # different noise on each process, same everywhere on rerun

    args, dataset, noise_scheduler, model, num_classes = setup(args, accelerator)  # fine-tuning: resolved
    dataset, held_out = split_off(dataset, args.validation_examples, args.seed)  # --validation_examples
    validation = ValidationLoss.from_dataset(held_out, noise_scheduler, args, conditional=num_classes is not None)
    quality = QualityCheck.from_args(args, model.config.in_channels)  # checked before any training
    if args.gradient_checkpointing:
        model.enable_gradient_checkpointing()
        logger.info("Gradient checkpointing on: activations are recomputed in the backward pass")
    from ..datasets import loading as data

    dataloader = data.make_dataloader(dataset, args.train_batch_size, True, args.dataloader_num_workers)
    plan = TrainingPlan.from_args(args, math.ceil(len(dataloader) / accelerator.num_processes),
                                  accelerator.num_processes)
    optimizer = build_optimizer(args, model)
    lr_scheduler = build_lr_scheduler(args, optimizer, plan, accelerator.num_processes)
    model, optimizer, dataloader, lr_scheduler = accelerator.prepare(model, optimizer, dataloader, lr_scheduler)
    if len(dataloader) != plan.batches_per_epoch:  # the plan (and the LR schedule) assumed another sharding
        raise RuntimeError(f"expected {plan.batches_per_epoch} batches per process and epoch, got {len(dataloader)}")

    # Checkpointed besides model, optimizer and LR schedule, as safetensors and JSON (run_state.py).
    noise_generator = NoiseGenerator(accelerator.device, args.seed + accelerator.process_index)
    ema = None
    if args.use_ema:
        ema = build_ema(args, accelerator.unwrap_model(model))
        ema.to(accelerator.device)
    posthoc = None
    if args.posthoc_ema_every is not None:  # Karras et al. 2024's power-function averages, for export --sigma_rel
        posthoc = PowerEMA(list(accelerator.unwrap_model(model).named_parameters()), args.posthoc_ema_sigma_rels)
    register_run_state(accelerator, noise_generator, ema, posthoc)
    register_model_folders(accelerator, noise_scheduler, ema)  # checkpoint-N/unet/, unet_ema/, scheduler/
    state = TrainingState(model, optimizer, lr_scheduler, dataloader, noise_scheduler, ema, noise_generator,
                          num_classes, quality, validation, stop, posthoc)

    global_step = resume_global_step(args, accelerator, state)
    if accelerator.is_main_process:  # snapshots written after the checkpoint, by the run that stopped
        for path in remove_snapshots_after(args.output_dir, global_step):
            logger.info(f"Removed {path}: written after step {global_step}, where this run goes on")
    apply_new_learning_rate(args, state)
    if claim is not None:
        claim.training_started = True
    if accelerator.is_main_process and args.logger != "none":  # logs/ only for a run that trains
        accelerator.init_trackers("train_accelerate", config=tracker_config(args))
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




