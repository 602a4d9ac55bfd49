"""Image-to-image with a trained DDPM: SDEdit (Meng et al. 2022), as a diffusers pipeline.

SDEdit turns a rough or foreign image into a plausible one: noise it part of the way up the forward
process, then run the reverse chain back down from there. In the paper's SDE notation it starts from

    x(t_0) ~ N(alpha(t_0) x, sigma^2(t_0) I),

with t_0 in (0, 1], and solves the reverse SDE (or ODE) from t_0 to 0. For a DDPM the forward
marginal is Ho et al. 2020, eq. (4):

    q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I),

so alpha(t_0) = sqrt(alpha_bar_t) and sigma^2(t_0) = 1 - alpha_bar_t at the timestep t = t_0 T (drawn with
the scheduler's own `add_noise`). `strength` is t_0, the fraction of the chain walked: the pipeline
sets the scheduler's chain of `num_inference_steps` timesteps over [0, T), starts at the first of them
below strength * T, and walks the rest, about strength * num_inference_steps steps, as diffusers'
img2img pipelines do. The trade-off (the paper's Figure 3): a small strength keeps the input (strength -> 0
returns it), a large one makes the image realistic but forgets it (strength = 1 starts from
sqrt(alpha_bar_{T-1}) x_0 + sqrt(1 - alpha_bar_{T-1}) eps, which for the cosine schedule, sqrt(alpha_bar_{T-1})
~ 5e-5, is a fresh sample).

Every scheduler that the sampling pipeline takes works here (DDPM, DDIM, DPM-Solver++, Euler):
schedulers that count their steps are told where the walk begins (`set_begin_index`).
"""

import torch
from diffusers.utils.torch_utils import randn_tensor

from .pipeline_editing import AnnotatedDDPMEditingPipeline


def sdedit_start(timesteps, strength, num_train_timesteps):
    """The index in the descending chain `timesteps` where SDEdit starts: the first timestep t < strength * T.

    Raises a ValueError unless 0 < strength <= 1 and the chain reaches below strength * T."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
        raise ValueError(f"strength must lie in (0, 1] (the fraction of the chain walked; 1 = a fresh sample), got {strength!r}.")
    below = [i for i, t in enumerate(timesteps) if int(t) < strength * num_train_timesteps]
    if not below:
        lowest = int(timesteps[-1])
        raise ValueError(f"strength={strength} starts below every timestep of the {len(timesteps)}-step chain (the lowest "
                         f"is t = {lowest}), so it would walk no step; use strength > {(lowest + 1) / num_train_timesteps:g} "
                         "or more num_inference_steps.")
    return below[0]


class AnnotatedDDPMImg2ImgPipeline(AnnotatedDDPMEditingPipeline):
    """SDEdit (Meng et al. 2022) with a DDPM: noise the input to t = strength * T, denoise; see the module docstring.

    Components: the same `unet` and `scheduler` as `AnnotatedDDPMPipeline` (`from_pipe(pipe)` reuses them).
    """

    @torch.no_grad()
    def __call__(
        self,
        image,
        strength: float = 0.5,
        num_inference_steps: int = 50,
        generator=None,
        output_type: str = "pil",
        return_dict: bool = True,
        class_labels=None,
        guidance_scale: float = 1.0,
        guidance_interval: tuple[int, int] | None = None,
        eta: float = 0.0,
        num_images_per_image: int = 1,
        use_clipped_model_output: bool | None = None,
    ):
        """Edit `image`: x_t ~ q(x_t | x_0) at t = strength * T (Ho et al. eq. (4)), then the reverse chain to x_0.

        Args:
            image: the images to edit (see `pipeline_editing`: PIL "L"/"RGB", or (B, H, W, C) / (B, C, H, W) in [0, 1]).
            strength: t_0 in (0, 1], the fraction of the chain walked (see the module docstring).
            num_inference_steps: length of the whole chain over [0, T); SDEdit walks its last ~strength share.
            generator: a `torch.Generator` (or one per output image) for the noise of q(x_t | x_0) and the steps.
            output_type, return_dict, eta, use_clipped_model_output: as `AnnotatedDDPMPipeline.__call__`.
            class_labels, guidance_scale, guidance_interval: as `AnnotatedDDPMPipeline.__call__`, except
                that class_labels=None means the "no class" embedding (see `pipeline_editing`).
            num_images_per_image: edits drawn for each input image (outputs come image by image).
        """
        x0 = self._image_x0(image, num_images_per_image)
        batch_size = len(x0)
        self._check_inputs(batch_size, num_inference_steps, output_type, class_labels, guidance_scale, guidance_interval)
        device = self._execution_device
        dtype = self._latents_dtype()
        x0 = x0.to(device, dtype)
        labels = self._edit_labels(class_labels, batch_size, guidance_scale, device)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        self._check_sigma_spacing(num_inference_steps)
        start = sdedit_start(self.scheduler.timesteps, strength, self.scheduler.config.num_train_timesteps)
        if hasattr(self.scheduler, "set_begin_index"):  # DPM-Solver, Euler: their step counter starts here
            self.scheduler.set_begin_index(start)
        timesteps = self.scheduler.timesteps[start:]

        # x_{t_0} ~ q(x_{t_0} | x_0), Ho et al. eq. (4); the same draw as the sampling pipeline's x_T for a generator.
        noise = randn_tensor(x0.shape, generator=generator, device=device, dtype=dtype)
        latents = self.scheduler.add_noise(x0, noise, timesteps[:1].repeat(batch_size))
        step_kwargs = self._step_kwargs(generator, eta, use_clipped_model_output)
        for t in self.progress_bar(timesteps):
            eps = self._noise_prediction(latents, t, labels, guidance_scale, guidance_interval)
            latents = self.scheduler.step(eps, t, latents, **step_kwargs).prev_sample
        return self._finish(latents, output_type, return_dict)
