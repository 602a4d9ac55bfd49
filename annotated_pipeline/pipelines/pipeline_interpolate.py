"""Interpolation with a trained DDPM: between two seeds (slerp of x_T) and two classes, as a diffusers pipeline.

With a deterministic sampler (DDIM with eta = 0, DPM-Solver++) an image is a function of its starting
noise x_T and its class y, so a path between two starting points is a path between two images (Song
et al. 2021, DDIM, section 5.3).

Seeds. x_T^a and x_T^b are the N(0, I) draws of the two seeds, exactly as the sampling pipeline draws
them. They are joined by spherical linear interpolation (Shoemake 1985):

    slerp(x_a, x_b; w) = sin((1 - w) theta) / sin(theta) x_a + sin(w theta) / sin(theta) x_b,
    theta = arccos(<x_a, x_b> / (|x_a| |x_b|)),

not by the straight line (1 - w) x_a + w x_b: two independent draws in d dimensions are nearly
orthogonal with |x| ~ sqrt(d), and the midpoint of the line has norm ~ sqrt(d / 2), a point the model
never saw as x_T; slerp keeps the norm.

Classes. The U-Net adds a learned embedding E[y] to its time embedding (`unet.class_embedding`); the
path between classes y_a and y_b mixes the embeddings linearly,

    E(w) = (1 - w) E[y_a] + w E[y_b],

which the pipeline passes in by a forward hook on `unet.class_embedding` for the call. Seeds and classes
can change together; at w = 0 and w = 1 the images are the plain samples for (seed_a, y_a) and
(seed_b, y_b). With classifier-free guidance the conditional half of the batch gets E(w), the "no
class" half keeps E[K].
"""

import math

import torch
from diffusers.utils.torch_utils import randn_tensor

from .pipeline_editing import AnnotatedDDPMEditingPipeline
from .pipeline_inputs import chunk_size


def slerp(x_a, x_b, w):
    """Spherical linear interpolation (Shoemake 1985) between tensors of the same shape, for w in [0, 1]:

        slerp(x_a, x_b; w) = sin((1 - w) theta) / sin(theta) x_a + sin(w theta) / sin(theta) x_b,
        cos(theta) = <x_a, x_b> / (|x_a| |x_b|)

    (the angle over all elements). When x_a and x_b are parallel (sin(theta) ~ 0) it is the straight line.
    w = 0 gives x_a and w = 1 gives x_b exactly."""
    if x_a.shape != x_b.shape:
        raise ValueError(f"slerp needs two tensors of the same shape, got {tuple(x_a.shape)} and {tuple(x_b.shape)}.")
    a, b = x_a.double().flatten(), x_b.double().flatten()
    cos_theta = (a @ b / (a.norm() * b.norm())).clamp(-1.0, 1.0).item()
    theta = math.acos(cos_theta)
    if math.sin(theta) < 1e-6:
        c_a, c_b = 1.0 - w, float(w)
    else:
        c_a, c_b = math.sin((1.0 - w) * theta) / math.sin(theta), math.sin(w * theta) / math.sin(theta)
    return (c_a * x_a.double() + c_b * x_b.double()).to(x_a.dtype)


def check_deterministic(scheduler):
    """Raise a ValueError unless `scheduler.step` is deterministic: DDIM (it is called with eta = 0 here),
    DPM-Solver++ / DPM-Solver (not their SDE variants), Euler, PNDM. DDPM's ancestral steps add fresh
    noise, so the image would not be a function of x_T alone."""
    name = type(scheduler).__name__
    algorithm = scheduler.config.get("algorithm_type", "")
    ok = name in ("DDIMScheduler", "EulerDiscreteScheduler", "PNDMScheduler") or (
        name in ("DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler") and not algorithm.startswith("sde"))
    if not ok:
        kind = f"{name} (algorithm_type {algorithm!r})" if algorithm else name
        raise ValueError(f"interpolation needs a deterministic sampler, so that each image is a function of x_T and y: "
                         f"DDIMScheduler (eta = 0), DPMSolverMultistepScheduler (dpmsolver++), EulerDiscreteScheduler or "
                         f"PNDMScheduler; got {kind}.")


class AnnotatedDDPMInterpolationPipeline(AnnotatedDDPMEditingPipeline):
    """A row of images between two seeds and/or two classes; see the module docstring.

    Components: the same `unet` and `scheduler` as `AnnotatedDDPMPipeline` (`from_pipe(pipe)` reuses
    them); the scheduler must be deterministic (swap in DDIM or DPM-Solver++).
    """

    def _labels_pair(self, class_labels, guidance_scale, device):
        """(y_a, y_b) as two (1,) tensors, or (None, None) for an unconditional U-Net."""
        if class_labels is None or isinstance(class_labels, int) or (torch.is_tensor(class_labels) and class_labels.ndim == 0):
            label = self._edit_labels(class_labels, 1, guidance_scale, device)
            return label, label
        if len(class_labels) != 2:
            raise ValueError(f"class_labels must be None, one label, or two (y_a, y_b), got {class_labels!r}.")
        pair = self._edit_labels(list(class_labels), 2, guidance_scale, device)
        return (None, None) if pair is None else (pair[:1], pair[1:])

    @torch.no_grad()
    def __call__(
        self,
        seeds: tuple[int, int] = (0, 1),
        class_labels=None,
        num_images: int = 8,
        num_inference_steps: int = 50,
        output_type: str = "pil",
        return_dict: bool = True,
        guidance_scale: float = 1.0,
        guidance_interval: tuple[int, int] | None = None,
        use_clipped_model_output: bool | None = None,
        max_batch_size: int | None = None,
    ):
        """Draw `num_images` images at w = 0, 1/(n-1), ..., 1 between (seed_a, y_a) and (seed_b, y_b).

        Args:
            seeds: (seed_a, seed_b); x_T of each is the N(0, I) draw of `torch.Generator().manual_seed(seed)`,
                as the sampling pipeline draws it for `batch_size=1`. Equal seeds keep x_T fixed.
            class_labels: for class-conditional U-Nets: None (the "no class" embedding), one label for both
                ends, or (y_a, y_b), whose embeddings are mixed linearly.
            num_images: n >= 2, the end points included.
            num_inference_steps, output_type, return_dict, guidance_scale, guidance_interval,
                use_clipped_model_output, max_batch_size: as `AnnotatedDDPMPipeline.__call__` (the sampler is
                deterministic, so chunks give the images of one batch).
        """
        check_deterministic(self.scheduler)
        if (not isinstance(seeds, (tuple, list)) or len(seeds) != 2
                or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
            raise ValueError(f"seeds must be two ints (seed_a, seed_b), got {seeds!r}.")
        if not isinstance(num_images, int) or isinstance(num_images, bool) or num_images < 2:
            raise ValueError(f"num_images must be an int >= 2 (the two end points and what lies between), got {num_images!r}.")
        self._check_inputs(num_images, num_inference_steps, output_type, class_labels, guidance_scale, guidance_interval)
        device = self._execution_device
        dtype = self._latents_dtype()
        label_a, label_b = self._labels_pair(class_labels, guidance_scale, device)

        chunk = chunk_size(self.unet, num_images, max_batch_size, guidance_scale != 1.0, device)
        shape = (1, *self._expected_image_shape())
        x_a, x_b = (randn_tensor(shape, generator=torch.Generator().manual_seed(s), device=device, dtype=dtype) for s in seeds)
        weights = [i / (num_images - 1) for i in range(num_images)]
        latents = torch.cat([slerp(x_a, x_b, w) for w in weights]) * self.scheduler.init_noise_sigma
        for start in range(0, num_images, chunk):  # each chunk's x_0 replaces its x_T
            part = slice(start, start + chunk)
            latents[part] = self._interpolate(latents[part], weights[part], label_a, label_b, num_inference_steps,
                                              guidance_scale, guidance_interval, use_clipped_model_output)
        return self._finish(latents, output_type, return_dict)

    def _interpolate(self, latents, weights, label_a, label_b, num_inference_steps, guidance_scale, guidance_interval,
                     use_clipped_model_output):
        """x_T -> x_0 for the images at `weights`, with the class embedding E(w) mixed in by a hook for the call."""
        n, labels, hook = len(latents), None, None
        if label_a is not None:
            labels = label_a.expand(n)
            if not torch.equal(label_a, label_b):
                embedding = self.unet.class_embedding
                w = torch.tensor(weights, device=latents.device).unsqueeze(1)

                def mix(module, inputs, output):  # rows 0..n-1 are the conditional batch: E(w) replaces E[y_a]
                    mixed = (1 - w.to(output.dtype)) * module.weight[label_a] + w.to(output.dtype) * module.weight[label_b]
                    return torch.cat([mixed.to(output.dtype), output[n:]])

                hook = embedding.register_forward_hook(mix)
        try:
            return self._denoise(latents, labels, num_inference_steps, None, guidance_scale, guidance_interval,
                                 self._step_kwargs(None, 0.0, use_clipped_model_output))
        finally:
            if hook is not None:
                hook.remove()
