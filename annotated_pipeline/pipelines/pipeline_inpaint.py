"""Inpainting with a trained DDPM: RePaint (Lugmayr et al. 2022), as a diffusers pipeline.

Given an image x_0 and a mask m (1 = keep the pixel, 0 = fill it in), RePaint runs the ordinary
reverse chain, but after every step it puts back the known pixels at the noise level the chain has
reached. The unconditional model never sees the mask; no training is needed.

One step, t -> t-1 (RePaint, eq. (8a)-(8c)):

    x_{t-1}^known   = sqrt(alpha_bar_{t-1}) x_0 + sqrt(1 - alpha_bar_{t-1}) eps,  eps ~ N(0, I)   (8a)
    x_{t-1}^unknown ~ p_theta(x_{t-1} | x_t)          (one reverse step, `scheduler.step`)        (8b)
    x_{t-1}         = m * x_{t-1}^known + (1 - m) * x_{t-1}^unknown                               (8c)

(8a) is q(x_{t-1} | x_0), Ho et al. 2020 eq. (4), drawn with the scheduler's `add_noise` at the
timestep the step lands on. (The paper's (8a) and Algorithm 1 write the level as alpha_bar_t; both
halves of (8c) must sit at the same level, that of x_{t-1}.) After the last step x_0^known = x_0, so the
kept pixels of the output are the input's exactly.

Resampling. (8c) glues two halves that do not yet agree: the unknown half was denoised without
knowing the known half's noise. RePaint lets the model harmonise them by going back up the chain
and down again. Going up one step is the forward process, Ho et al. 2020 eq. (1):

    x_t ~ q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I),

and j steps at once, from level s up to level t > s, its product:

    x_t ~ q(x_t | x_s) = N(sqrt(alpha_bar_t / alpha_bar_s) x_s, (1 - alpha_bar_t / alpha_bar_s) I).

Algorithm 1 resamples every step r times; the paper's schedule (its section 4.2, "jump length" j and
"jump_n_sample" r) instead walks down j steps, jumps back up j steps, and repeats, so that each
stretch of j steps is walked r times in all (`repaint_walk`). With N steps that costs about N r U-Net
calls; r = 1 is (8a)-(8c) without resampling. The paper's setting: N = 250, j = 10, r = 10.

Schedulers. Jumping back needs a reverse step that depends on (x_t, t) only, not on a history of
earlier steps: our `AnnotatedDDPMScheduler`, diffusers' `DDPMScheduler` and `DDIMScheduler` (eta = 0
makes the reverse step deterministic; the jumps still add noise). Multistep solvers (DPM-Solver++)
are refused. The known half is noised to the next timestep of the scheduler's chain; diffusers' DDIM
and DDPM step to t - T // N, which is that timestep whenever N divides T (and one off otherwise).
"""

import torch
from diffusers.utils.torch_utils import randn_tensor

from diffusers.utils import logging

from .pipeline_editing import AnnotatedDDPMEditingPipeline

logger = logging.get_logger(__name__)

# Schedulers whose `step` depends only on (model output, t, x_t), so the chain can be walked back up.
RESAMPLING_SCHEDULERS = ("AnnotatedDDPMScheduler", "DDPMScheduler", "DDIMScheduler")
KEEP_SIDES = ("left", "right", "top", "bottom")


def half_mask(side, height, width):
    """A (1, 1, H, W) mask that keeps one half of the image (1 = keep): `side` in KEEP_SIDES. An odd side
    length keeps the smaller half (floor(W / 2) columns or floor(H / 2) rows)."""
    if side not in KEEP_SIDES:
        raise ValueError(f"Unknown side {side!r}; allowed: {', '.join(KEEP_SIDES)}.")
    mask = torch.zeros(1, 1, height, width)
    if side == "left":
        mask[..., : width // 2] = 1
    elif side == "right":
        mask[..., width - width // 2 :] = 1
    elif side == "top":
        mask[..., : height // 2, :] = 1
    else:
        mask[..., height - height // 2 :, :] = 1
    return mask


def repaint_walk(num_inference_steps, jump_length, jump_n_sample):
    """The positions 0, 1, ..., N of the chain that RePaint visits, in order (position p holds x at the
    p-th timestep of the chain; position N is x_0). A move p -> p + 1 is one reverse step; a move
    p -> p - j jumps back up j steps (q(x_t | x_s) above).

    Jump points are the positions p = N - 1, N - 1 - j, N - 1 - 2j, ... with p >= j (counted from the end of the
    chain, as the paper counts t from 0). Arriving at one by a reverse step, the walk jumps back j steps,
    until it has done so r - 1 times there; so every stretch of j steps is walked r times.

        repaint_walk(4, 1, 2) == [0, 1, 0, 1, 2, 1, 2, 3, 2, 3, 4]
    """
    for name, value in (("num_inference_steps", num_inference_steps), ("jump_length", jump_length),
                        ("jump_n_sample", jump_n_sample)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    jumps_left = {p: jump_n_sample - 1 for p in range(num_inference_steps - 1, jump_length - 1, -jump_length)}
    position, walk = 0, [0]
    while position < num_inference_steps:
        position += 1
        walk.append(position)
        if jumps_left.get(position, 0) > 0:
            jumps_left[position] -= 1
            position -= jump_length
            walk.append(position)
    return walk


class AnnotatedDDPMInpaintPipeline(AnnotatedDDPMEditingPipeline):
    """Fill in the masked region of images with a DDPM, RePaint (Lugmayr et al. 2022); see the module docstring.

    Components: the same `unet` and `scheduler` as `AnnotatedDDPMPipeline` (`from_pipe(pipe)` reuses them).
    """

    def _choose_sampler(self, explicit):
        """The pipeline's scheduler where RePaint can walk back up with it; otherwise (a folder that recommends
        DPM-Solver++, a multistep solver, like the shipped model) DDIM built from its config, eta = 0 by default,
        with a logged line saying so. `sampler_choice` records which and why."""
        name = type(self.scheduler).__name__
        if explicit or name in RESAMPLING_SCHEDULERS:
            return super()._choose_sampler(explicit)
        from diffusers import DDIMScheduler

        self.scheduler = DDIMScheduler.from_config(self.scheduler.config)
        self.sampler_choice = (f"DDIMScheduler (built from the config of the pipeline's {name}, which RePaint cannot "
                               f"use: it jumps back up the chain, so it needs one of {', '.join(RESAMPLING_SCHEDULERS)})")
        logger.warning(f"{type(self).__name__} samples with {self.sampler_choice}; assign pipe.scheduler to choose another.")
        return self

    def _check_scheduler(self):
        name = type(self.scheduler).__name__
        if name not in RESAMPLING_SCHEDULERS:
            raise ValueError(f"RePaint jumps back up the chain, so it needs a scheduler whose step depends on (x_t, t) "
                             f"only: one of {', '.join(RESAMPLING_SCHEDULERS)}; got {name} (e.g. "
                             "pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)).")

    def _alpha_bar(self, timestep):
        """alpha_bar_t as a float64 scalar; t = -1 (after the last step, x_0) has alpha_bar = 1."""
        if timestep < 0:
            return torch.tensor(1.0, dtype=torch.float64)
        return self.scheduler.alphas_cumprod[int(timestep)].detach().to("cpu", torch.float64)

    @torch.no_grad()
    def __call__(
        self,
        image,
        mask_image,
        num_inference_steps: int = 250,
        jump_length: int = 10,
        jump_n_sample: int = 10,
        eta: float = 0.0,
        generator=None,
        output_type: str = "pil",
        return_dict: bool = True,
        class_labels=None,
        guidance_scale: float = 1.0,
        guidance_interval: tuple[int, int] | None = None,
        num_images_per_image: int = 1,
        use_clipped_model_output: bool | None = None,
    ):
        """Inpaint: RePaint's eq. (8a)-(8c) at every step, with the jumps of `repaint_walk`.

        Args:
            image: the images to complete (see `pipeline_editing`: PIL "L"/"RGB", or (B, H, W, C) / (B, C, H, W) in [0, 1]).
            mask_image: 1 (a white PIL pixel) keeps the input's pixel, 0 (black) fills it in; one mask
                for all images or one per image, one channel, binary.
            num_inference_steps: N, the length of the reverse chain (the paper: 250).
            jump_length: j, how many steps each jump goes back up (the paper: 10).
            jump_n_sample: r, how many times each stretch of j steps is walked (1 = no resampling; the paper: 10).
            eta: DDIM's eta (for `DDIMScheduler`; 0 = deterministic reverse steps).
            generator: a `torch.Generator` (or one per output image) for x_T, eps of (8a), the jumps and the steps.
            output_type, return_dict: as `AnnotatedDDPMPipeline.__call__`.
            class_labels, guidance_scale, guidance_interval: as `AnnotatedDDPMPipeline.__call__`, except
                that class_labels=None means the "no class" embedding (see `pipeline_editing`).
            num_images_per_image: completions drawn for each input image (outputs come image by image).
            use_clipped_model_output: for DDIM; see `AnnotatedDDPMPipeline._step_kwargs`.
        """
        self._check_scheduler()
        x0 = self._image_x0(image, num_images_per_image)
        batch_size = len(x0)
        mask = self._mask_tensor(mask_image, batch_size // num_images_per_image, num_images_per_image)
        self._check_inputs(batch_size, num_inference_steps, output_type, class_labels, guidance_scale, guidance_interval)
        walk = repaint_walk(num_inference_steps, jump_length, jump_n_sample)

        device = self._execution_device
        dtype = self._latents_dtype()
        x0, mask = x0.to(device, dtype), mask.to(device, dtype)
        labels = self._edit_labels(class_labels, batch_size, guidance_scale, device)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = [int(t) for t in self.scheduler.timesteps] + [-1]  # position p -> timestep; p = N is x_0
        step_kwargs = self._step_kwargs(generator, eta, use_clipped_model_output)

        def noise():
            return randn_tensor(x0.shape, generator=generator, device=device, dtype=dtype)

        latents = noise() * self.scheduler.init_noise_sigma  # x_T ~ N(0, I), unknown everywhere
        moves = list(zip(walk[:-1], walk[1:]))
        for here, there in self.progress_bar(moves):
            t, t_next = timesteps[here], timesteps[there]
            if there == here + 1:  # down one step: (8b), then (8a) and (8c) at the level reached
                eps = self._noise_prediction(latents, self.scheduler.timesteps[here], labels, guidance_scale, guidance_interval)
                unknown = self.scheduler.step(eps, self.scheduler.timesteps[here], latents, **step_kwargs).prev_sample
                known = x0 if t_next < 0 else self.scheduler.add_noise(x0, noise(), torch.full((batch_size,), t_next, device=device))
                latents = mask * known + (1 - mask) * unknown
            else:  # back up: x_{t_next} ~ q(x_{t_next} | x_t), the forward process over the jump
                ratio = (self._alpha_bar(t_next) / self._alpha_bar(t)).item()
                latents = ratio**0.5 * latents + (1 - ratio) ** 0.5 * noise()
        return self._finish(latents, output_type, return_dict)
