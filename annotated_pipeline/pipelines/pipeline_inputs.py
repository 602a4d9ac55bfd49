"""What a pipeline call may be given: every argument checked before the first step.

The sampling pipeline and the editing pipelines call these through their methods (`_check_inputs`,
`_class_labels_tensor`, `_check_sigma_spacing`), so a bad argument is one ValueError that says what
was wrong and what is allowed, before any work: nothing is rounded or dropped silently. Like
pipeline.py, this file is bundled into saved folders and imports nothing from the package.
"""

import math
import numbers

import torch

from .pipeline_loading import installed_module

OUTPUT_TYPES = ("pil", "np", "pt")
# s of classifier-free guidance (Ho & Salimans 2022, eq. (6)): 1 = none, 0 = the unconditional model; their
# figures go to w = 4 (s = 5), and far beyond ~20 every sample saturates. The one range of the pipeline's check,
# the folder's default and every command's --guidance_scale.
GUIDANCE_SCALE_RANGE = (0.0, 50.0)
DEFAULT_MAX_BATCH_SIZE = 256  # images per U-Net call when a call leaves max_batch_size out


def chunk_size(unet, batch_size, max_batch_size, guided, device):
    """The images per U-Net call of a call for `batch_size` images: `max_batch_size` (a positive int), or
    DEFAULT_MAX_BATCH_SIZE for None. With the package installed, a ValueError when the images and one chunk
    cannot fit in `device`'s memory (utils/memory.py); as remote code there is no estimate, but the chunks
    still bound the U-Net's part of the peak."""
    if max_batch_size is not None and (not is_int(max_batch_size) or max_batch_size < 1):
        raise ValueError(f"max_batch_size must be a positive integer (images per U-Net call), got {max_batch_size!r}.")
    chunk = DEFAULT_MAX_BATCH_SIZE if max_batch_size is None else int(max_batch_size)
    memory = installed_module("utils.memory")
    if memory is not None:
        memory.check_sampling_memory(unet, batch_size, chunk, guided, device, "lower the number of images "
                                     "(batch_size) or max_batch_size")
    return chunk


def check_guidance_interval(guidance_interval, num_train_timesteps=None, guidance_scale=None):
    """Raise a ValueError unless `guidance_interval` is two ints (t_low, t_high), training timesteps with
    0 <= t_low <= t_high (< num_train_timesteps when that is given), and, when `guidance_scale` is given,
    unless it guides (an interval with s = 1 would say where to guide but guide nowhere). The one rule
    for the pipeline, `evaluate` and the model card."""
    if guidance_scale is not None and guidance_scale == 1.0:
        raise ValueError(f"guidance_interval={guidance_interval!r} says where to guide, but guidance_scale is 1 "
                         "(no guidance): give a guidance_scale other than 1 with it, or no interval.")
    ok = (isinstance(guidance_interval, (tuple, list)) and len(guidance_interval) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in guidance_interval)
          and 0 <= guidance_interval[0] <= guidance_interval[1]
          and (num_train_timesteps is None or guidance_interval[1] < num_train_timesteps))
    if not ok:
        bound = "" if num_train_timesteps is None else f" < {num_train_timesteps}"
        raise ValueError(f"guidance_interval must be two ints (t_low, t_high) with 0 <= t_low <= t_high{bound} "
                         f"(training timesteps), got {guidance_interval!r}.")


def check_guidance_scale(guidance_scale, what="guidance_scale"):
    """A ValueError unless `guidance_scale` is a number in GUIDANCE_SCALE_RANGE."""
    low, high = GUIDANCE_SCALE_RANGE
    if not (isinstance(guidance_scale, numbers.Real) and not isinstance(guidance_scale, bool)
            and math.isfinite(guidance_scale) and low <= guidance_scale <= high):
        raise ValueError(f"{what} must be a number in {low:g}..{high:g} (1 = no guidance, 0 = the unconditional "
                         f"model; beyond that range every sample saturates), got {guidance_scale!r}.")


def is_int(value):
    """A Python or numpy integer, not a bool (2.5 or True are not a number of steps or a class label)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_sigma_spacing(scheduler, num_inference_steps):
    """Refuse a chain that diffusers' sigma-spaced schedulers cannot walk, before any step is taken.

    With use_karras_sigmas (or exponential / beta sigmas) the chain is spaced in sigma = sqrt((1 -
    alpha_bar_t) / alpha_bar_t) and rounded to integer timesteps. The cosine schedule's sigma at t = T - 1
    is ~20,000 (~640 at T - 2), so the largest sigmas all round to the same timestep, and a solver that counts its steps
    by timestep runs past its table of sigmas (IndexError) part-way through sampling.
    """
    config = scheduler.config
    spacing = [key for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas") if config.get(key)]
    timesteps = scheduler.timesteps
    if spacing and len(torch.unique(timesteps)) < len(timesteps):
        raise ValueError(
            f"{type(scheduler).__name__} with {spacing[0]}=True gives repeated timesteps for "
            f"num_inference_steps={num_inference_steps} with this beta schedule "
            f"({config.beta_schedule!r}): {timesteps[:10].tolist()} ... Its sigma-spaced chain cannot be "
            f"walked one timestep per step. Use the scheduler without {spacing[0]} (the saved "
            f"timestep_spacing, e.g. 'trailing'), or another beta schedule."
        )


def check_call_inputs(unet, scheduler, batch_size, num_inference_steps, output_type, class_labels, guidance_scale,
                  guidance_interval=None, generator=None, eta=0.0):
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    num_train_timesteps = scheduler.config.num_train_timesteps
    if not is_int(num_inference_steps):
        raise ValueError(f"num_inference_steps must be an integer in 1..{num_train_timesteps}, got {num_inference_steps!r}.")
    if num_inference_steps < 1 or num_inference_steps > num_train_timesteps:
        raise ValueError(
            f"num_inference_steps={num_inference_steps} is outside 1..{num_train_timesteps}: the scheduler "
            f"was trained with num_train_timesteps={num_train_timesteps}, and a chain cannot be longer."
        )
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"Unknown output_type {output_type!r}; allowed: {', '.join(OUTPUT_TYPES)}.")
    if unet.config.get("sample_size") is None:
        raise ValueError(
            "unet.config.sample_size is None, so the pipeline does not know what size of image to draw: "
            "build the U-Net with a sample_size, e.g. Unet(dim=28, channels=1, dim_mults=(1, 2, 4), sample_size=28)."
        )
    num_class_embeds = unet.config.get("num_class_embeds")
    if class_labels is not None and num_class_embeds is None:
        raise ValueError(
            "class_labels were given, but the U-Net is unconditional (num_class_embeds=None). "
            "Sample without class_labels, or train a class-conditional model (--label_column)."
        )
    if isinstance(generator, list) and len(generator) != batch_size:
        raise ValueError(f"Got a list of {len(generator)} generators for batch_size={batch_size}; give one "
                         "generator, or one per image.")
    if not (isinstance(eta, numbers.Real) and math.isfinite(eta) and eta >= 0):
        raise ValueError(f"eta must be a finite number >= 0 (0 = deterministic DDIM, 1 = DDPM-like noise), got {eta!r}.")
    check_guidance_scale(guidance_scale)
    if guidance_scale != 1.0 and not unet.config.get("null_class_embed", False):
        raise ValueError(
            f"guidance_scale={guidance_scale}: classifier-free guidance needs a class-conditional U-Net with a "
            "'no class' embedding (null_class_embed=True, trained with --label_column and --class_dropout_prob); "
            "this U-Net has none, so use guidance_scale=1.0."
        )
    if guidance_interval is not None:
        check_guidance_interval(guidance_interval, num_train_timesteps, guidance_scale)


def class_labels_tensor(unet, class_labels, batch_size, device):
    """One label per image; None means the classes in turn, 0, 1, ..., K - 1, 0, 1, ..."""
    if class_labels is None:
        return torch.arange(batch_size, device=device) % unet.config.num_class_embeds
    allowed = ("class_labels must be None (the classes in turn), an int, a list or tuple of ints, or an integer "
               f"tensor or array (class indices); got {class_labels!r} ({type(class_labels).__name__}).")
    if isinstance(class_labels, (str, bytes)) or (isinstance(class_labels, (list, tuple)) and not all(
            is_int(y) or (isinstance(y, torch.Tensor) and y.numel() == 1) for y in class_labels)):
        raise ValueError(allowed)
    try:
        labels = torch.as_tensor(class_labels, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(allowed) from None
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"class_labels must be integers (class indices), got {class_labels!r}.")
    labels = labels.to(torch.long).reshape(-1)
    if labels.numel() == 1:
        labels = labels.expand(batch_size)
    num_classes = unet.config.num_class_embeds
    if labels.numel() != batch_size:
        raise ValueError(f"Got {labels.numel()} class_labels for batch_size={batch_size}; give one or {batch_size}.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"class_labels must lie in 0..{num_classes - 1}, got {labels.tolist()}.")
    return labels
