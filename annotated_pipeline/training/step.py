r"""One training step: Ho et al. 2020, Algorithm 1.

1. repeat
2. $\quad x_0 \sim q(x_0)$: a batch of training images, scaled to $[-1, 1]$
3. $\quad t \sim \mathrm{Uniform}(\{1, \dots, T\})$: one timestep per image ($0 \dots T-1$ in code)
4. $\quad \epsilon \sim \mathcal{N}(0, I)$
5. $\quad$ take a gradient step on $\nabla_\theta \big\lVert \epsilon - \epsilon_\theta\big(\sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon,\ t\big) \big\rVert^2$
6. until converged

The loss is `p_losses` (eq. (14), with a choice of distance and target, losses.py); t and eps come
from a generator of the run's own, so a resumed run draws exactly what an uninterrupted one would.
"""

import torch


class NoiseGenerator:
    """The source of t and eps in Algorithm 1: a `torch.Generator` of its own, saved in checkpoints.

    It is kept apart from torch's global RNG, which the data pipeline also draws from (random crops
    and flips, one batch ahead of training because Accelerate's loader looks ahead), so that a
    resumed run draws exactly the t and eps the uninterrupted run drew. Each process has its own
    stream (seed + process index). `state_dict`/`load_state_dict` restore it; checkpoints hold its state as
    `noise_generator_{rank}.safetensors` (run_state.py).
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
