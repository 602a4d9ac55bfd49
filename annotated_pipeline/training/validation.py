"""A validation loss: the training objective on held-out images, with t and eps fixed once per image.

    annotated-pipeline train ... --validation_examples 500 --validation_steps 200

The training loss (Ho et al. 2020, eq. (14)) draws a new t ~ Uniform{0..T-1} and eps ~ N(0, I) for every
image at every step, so its value moves with the draw as much as with the model. Here K images are held
out of the training set (a seeded choice, never trained on) and each gets one t_i and one eps_i, drawn
once from a generator seeded with --seed:

    L_val = 1/K sum_i  distance( target_i, model( sqrt(alpha_bar_t_i) x_0,i + sqrt(1 - alpha_bar_t_i) eps_i, t_i ) )

with the training's distance, target and min-SNR weighting (losses.p_losses) and the true labels of a
class-conditional model (no label dropout). The same images, timesteps and noise every time make the
values comparable from step to step: only the weights change. It is logged as `val/loss` (the weights
being trained) and `val/loss_ema` (the EMA weights, when --use_ema) every --validation_steps optimizer
steps (default: --eval_steps), and needs no classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from accelerate.logging import get_logger

logger = get_logger(__name__)


def validate_arguments(args) -> None:
    """TrainingConfigError for validation options that cannot work."""
    from .args import TrainingConfigError as error  # (args.py imports this module)

    if args.validation_examples < 0:
        raise error(f"--validation_examples must be >= 0, got {args.validation_examples}")
    if args.validation_examples == 0:
        if args.validation_steps is not None:
            raise error("--validation_steps needs --validation_examples K (how many images to hold out)")
        return
    if args.validation_steps is None and args.eval_steps is None:
        raise error("--validation_examples needs --validation_steps K (or --eval_steps K): how often to measure")
    if args.validation_steps is not None and args.validation_steps < 1:
        raise error(f"--validation_steps must be >= 1, got {args.validation_steps}")


def split_off(dataset, num_examples: int, seed: int):
    """(training set without them, the held-out set): a seeded choice of `num_examples` images, both in data order."""
    if num_examples == 0:
        return dataset, None
    if num_examples >= len(dataset):
        from .args import TrainingConfigError

        raise TrainingConfigError(f"--validation_examples {num_examples} would hold out all {len(dataset)} training images")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    held_out = sorted(order[:num_examples])
    kept = sorted(order[num_examples:])
    return dataset.select(kept), dataset.select(held_out)


@dataclass
class ValidationLoss:
    """The held-out x_0 (and labels), with their fixed t and eps; `loss(model)` is L_val."""

    x_start: torch.Tensor
    labels: torch.Tensor | None
    t: torch.Tensor
    noise: torch.Tensor
    every: int

    @classmethod
    def from_dataset(cls, held_out, noise_scheduler, args, conditional: bool):
        """None without a held-out set; else the images (through the training transform) and their t and eps."""
        if held_out is None:
            return None
        from ..datasets.loading import collate

        batch = collate([held_out[i] for i in range(len(held_out))])
        x_start = batch["input"]
        generator = torch.Generator().manual_seed(args.seed)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(x_start),), generator=generator)
        noise = torch.randn(x_start.shape, generator=generator)
        labels = batch["label"] if conditional else None
        return cls(x_start, labels, t, noise, args.validation_steps or args.eval_steps)

    def due(self, global_step: int) -> bool:
        return global_step % self.every == 0

    @torch.no_grad()
    def loss(self, model, noise_scheduler, loss_type: str, snr_gamma=None, batch_size: int = 256) -> float:
        """L_val: the mean of the per-batch losses weighted by batch size (each batch loss is a mean over images)."""
        from ..losses import p_losses

        device = next(model.parameters()).device
        total = 0.0
        for start in range(0, len(self.x_start), batch_size):
            part = slice(start, start + batch_size)
            labels = None if self.labels is None else self.labels[part].to(device)
            value = p_losses(model, self.x_start[part].to(device), self.t[part].to(device),
                             noise=self.noise[part].to(device), loss_type=loss_type, scheduler=noise_scheduler,
                             class_labels=labels, snr_gamma=snr_gamma)
            total += float(value) * len(self.t[part])
        return total / len(self.t)


def maybe_validate(args, accelerator, state, global_step: int) -> None:
    """After an optimizer step: every --validation_steps, log val/loss (and val/loss_ema) from the main process."""
    validation = state.validation
    if validation is None or not validation.due(global_step):
        return
    from .outputs import ema_weights

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unet = accelerator.unwrap_model(state.model)
        unet.eval()
        compute = lambda: validation.loss(unet, state.noise_scheduler, args.loss_type, args.snr_gamma,  # noqa: E731
                                          args.eval_batch_size)
        logs = {"val/loss": compute()}
        if state.ema is not None:
            with ema_weights(unet, state.ema):
                logs["val/loss_ema"] = compute()
        unet.train()
        accelerator.log(logs, step=global_step)
        logger.info(f"Step {global_step}: validation loss {logs['val/loss']:.5f}"
                    + (f" (EMA {logs['val/loss_ema']:.5f})" if "val/loss_ema" in logs else ""))
    accelerator.wait_for_everyone()
