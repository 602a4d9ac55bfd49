"""What the editing pipelines share: images in, conditioning, one guided noise prediction.

A trained DDPM edits images without any further training (inpainting, `pipeline_inpaint.py`; SDEdit,
`pipeline_img2img.py`; interpolation, `pipeline_interpolate.py`). Each of them is an
`AnnotatedDDPMPipeline` with another `__call__`: the same components (`unet`, `scheduler`), so
`AnnotatedDDPMInpaintPipeline.from_pipe(pipe)` reuses a loaded pipeline's modules, and the same saving
and loading. This module holds what all three need beyond `AnnotatedDDPMPipeline` itself.

Images in. An edit starts from images in the range the pipeline gives out, so a sample can be fed
back: a PIL image (mode "L" for a one-channel model, "RGB" for three), a list of them, a numpy array
(B, H, W, C) or a tensor (B, C, H, W) of floats in [0, 1]. They are mapped to the model's range as in
Ho et al. 2020, section 3.3: x_0 = 2 * image - 1 in [-1, 1]. Their size must be the U-Net's
`sample_size` and their channels its `in_channels`; nothing is resized or converted on the way.

Conditioning. A class-conditional U-Net with a "no class" embedding (label K) edits an image it
knows nothing about with that embedding when `class_labels` is None: the unconditional model,
eps_theta(x_t, t, empty). (The sampling pipeline's None means the classes in turn instead; an edit
should not invent a class for an image it was given.) `class_labels` and classifier-free guidance
(`guidance_scale`, `guidance_interval`) then work as in `AnnotatedDDPMPipeline.__call__`.

Like pipeline.py, this file is copied into saved folders (bundled with the pipeline module that
imports it), so it imports nothing from the package except relatively.
"""

import numpy as np
import PIL.Image
import torch
from diffusers.utils import logging

from .pipeline import SAMPLING_DEFAULT_KEYS, AnnotatedDDPMPipeline

logger = logging.get_logger(__name__)

PIL_MODES = {1: "L", 3: "RGB"}  # in_channels -> the PIL mode of its images


class AnnotatedDDPMEditingPipeline(AnnotatedDDPMPipeline):
    """Base of the editing pipelines: `AnnotatedDDPMPipeline` plus image inputs and a guided eps_theta."""

    @classmethod
    def from_pipe(cls, pipeline, **kwargs):
        """This pipeline on the components of another (no copy, no reload), e.g.
        `AnnotatedDDPMInpaintPipeline.from_pipe(AnnotatedDDPMPipeline.from_pretrained(path))`; `unet=` or
        `scheduler=` replace one. The folder's sampling defaults (`sampling_defaults`) come along.

        Not diffusers' `from_pipe`: that one carries a model over only when its type is exactly the one
        annotated in `__init__` (`ModelMixin` here, never a subclass such as `AnnotatedUNet2DModel`), and
        casts every model to float32 unless told otherwise. The progress-bar settings come along."""
        explicit = kwargs.get("scheduler") is not None
        components = {name: kwargs.pop(name, getattr(pipeline, name)) for name in ("unet", "scheduler")}
        if kwargs:
            raise ValueError(f"from_pipe takes only unet= and scheduler=, got {sorted(kwargs)}.")
        defaults = {key: pipeline.config.get(key) for key in SAMPLING_DEFAULT_KEYS}
        new = cls(**components, **defaults)
        name_or_path = pipeline.config.get("_name_or_path")
        if name_or_path is not None:
            new.register_to_config(_name_or_path=name_or_path)
        new.set_progress_bar_config(**getattr(pipeline, "_progress_bar_config", {}))
        return new._choose_sampler(explicit)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """As `AnnotatedDDPMPipeline.from_pretrained`, then the folder's scheduler if this edit can use it, else one
        that can (`_choose_sampler`; `sampler_choice` says which)."""
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)._choose_sampler(explicit=False)

    def _choose_sampler(self, explicit):
        """Keep the scheduler, and record in `sampler_choice` which it is and why. An edit that cannot walk
        with some schedulers (RePaint) overrides this to swap in one that can, unless the scheduler was
        passed explicitly (then its own call raises, naming the schedulers it takes)."""
        self.sampler_choice = f"{type(self.scheduler).__name__} ({'given' if explicit else 'the pipeline' + chr(39) + 's own'})"
        return self

    # ----------------------------------------------------------------------------------------
    # Images in
    # ----------------------------------------------------------------------------------------

    def _expected_image_shape(self):
        size = self.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        return self.unet.config.in_channels, height, width

    def _to_unit_tensor(self, image, name, channels):
        """(B, C, H, W) float32 in [0, 1] from a PIL image, a list of them, an array (B, H, W, C) or a tensor (B, C, H, W)."""
        if isinstance(image, PIL.Image.Image):
            image = [image]
        if isinstance(image, (list, tuple)) and image and all(isinstance(im, PIL.Image.Image) for im in image):
            mode = PIL_MODES.get(channels)
            bad = sorted({im.mode for im in image if im.mode != mode})
            if bad:
                raise ValueError(f"{name} is a PIL image of mode {bad[0]!r}, but {channels} channel(s) are needed "
                                 f"(mode {mode!r}); convert it first, e.g. image.convert({mode!r}).")
            arrays = [np.asarray(im, dtype=np.float32) / 255.0 for im in image]
            tensor = torch.from_numpy(np.stack([a if a.ndim == 3 else a[..., None] for a in arrays])).permute(0, 3, 1, 2)
        elif isinstance(image, np.ndarray):
            if image.ndim != 4:
                raise ValueError(f"{name} as a numpy array must be (B, H, W, C) floats in [0, 1], got shape {image.shape}.")
            tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(0, 3, 1, 2)
        elif isinstance(image, torch.Tensor):
            if image.ndim != 4:
                raise ValueError(f"{name} as a tensor must be (B, C, H, W) floats in [0, 1], got shape {tuple(image.shape)}.")
            tensor = image.detach().to(device="cpu", dtype=torch.float32)
        else:
            raise ValueError(f"{name} must be a PIL image, a list of PIL images, a numpy array (B, H, W, C) or a tensor "
                             f"(B, C, H, W) in [0, 1]; got {type(image).__name__}.")
        _, height, width = self._expected_image_shape()
        if tuple(tensor.shape[1:]) != (channels, height, width):
            raise ValueError(f"{name} has (channels, height, width) = {tuple(tensor.shape[1:])}, but the U-Net reads "
                             f"{(channels, height, width)} (in_channels, sample_size); nothing is resized.")
        if tensor.numel() and (tensor.min() < 0 or tensor.max() > 1 or not torch.isfinite(tensor).all()):
            raise ValueError(f"{name} values must lie in [0, 1] (the pipeline's output range), got "
                             f"[{tensor.min().item():.3g}, {tensor.max().item():.3g}].")
        return tensor

    def _image_x0(self, image, repeats=1):
        """x_0 = 2 * image - 1 (Ho et al. 2020, sec. 3.3), (B * repeats, C, H, W), each image `repeats` times in a row."""
        channels = self.unet.config.in_channels
        x0 = self._to_unit_tensor(image, "image", channels) * 2.0 - 1.0
        return x0.repeat_interleave(_positive_int("num_images_per_image", repeats), dim=0)

    def _mask_tensor(self, mask_image, num_images, repeats=1):
        """m in {0, 1}, (B * repeats, 1, H, W): 1 = keep the input's pixel, 0 = fill it in. One mask for
        every image, or one per image; a PIL mask is 0 (fill) or 255 (keep)."""
        mask = self._to_unit_tensor(mask_image, "mask_image", 1)
        if not torch.all((mask == 0) | (mask == 1)):
            raise ValueError("mask_image must be binary: 1 (white, 255) keeps a pixel, 0 (black) fills it in; "
                             f"it has {int(((mask != 0) & (mask != 1)).sum())} other values.")
        if len(mask) not in (1, num_images):
            raise ValueError(f"got {len(mask)} masks for {num_images} images; give one mask, or one per image.")
        if bool(mask.all()):
            logger.warning("mask_image keeps every pixel: the output is the input.")
        elif not bool(mask.any()):
            logger.warning("mask_image keeps no pixel: the output is a plain sample that ignores the input.")
        mask = mask.expand(num_images, -1, -1, -1) if len(mask) == 1 else mask
        return mask.repeat_interleave(repeats, dim=0)

    # ----------------------------------------------------------------------------------------
    # Conditioning and the guided noise prediction
    # ----------------------------------------------------------------------------------------

    def _edit_labels(self, class_labels, batch_size, guidance_scale, device):
        """One label per image, or None for an unconditional U-Net. class_labels=None means "no class" (K)."""
        num_classes = self.unet.config.get("num_class_embeds")
        if num_classes is None:
            return None
        if class_labels is not None:
            return self._class_labels_tensor(class_labels, batch_size, device)
        if not self.unet.config.get("null_class_embed", False):
            raise ValueError(f"this U-Net is class-conditional (num_class_embeds={num_classes}) without a 'no class' "
                             f"embedding: pass class_labels (0..{num_classes - 1}).")
        if guidance_scale != 1.0:
            raise ValueError(f"guidance_scale={guidance_scale} guides towards a class: pass class_labels as well "
                             "(without them the edit uses the 'no class' embedding, the unconditional model).")
        return torch.full((batch_size,), num_classes, device=device, dtype=torch.long)


def _positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value
