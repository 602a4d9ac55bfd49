"""Drawing the samples an evaluation judges: N images from a pipeline, in batches, seeded, checked.

A class-conditional pipeline is asked for the labels 0, 1, ..., K - 1, 0, ... in turn, so the samples
are as balanced as the test split; every batch is checked for NaN as it is drawn, so a broken
pipeline stops at its first batch rather than after all the sampling.
"""

from __future__ import annotations

import inspect
import sys

import numpy as np
import torch
from tqdm.auto import tqdm

from annotated_pipeline.pipelines.pipeline import NonFiniteSampleError

# The call arguments evaluate itself gives the pipeline (not settable through pipeline_kwargs).
RESERVED_CALL_ARGUMENTS = ("batch_size", "generator", "num_inference_steps", "output_type", "eta", "class_labels",
                           "guidance_scale", "guidance_interval")


def conditioning_labels(pipeline, num_samples: int) -> torch.Tensor | None:
    """The labels 0, 1, ..., K - 1, 0, 1, ... (N of them) for a class-conditional pipeline, else None."""
    unet_config = getattr(getattr(pipeline, "unet", None), "config", None)
    num_classes = unet_config.get("num_class_embeds") if unet_config is not None else None
    if num_classes is None:
        return None
    return torch.arange(num_samples) % num_classes


@torch.no_grad()
def generate_samples(pipeline, num_samples: int, num_inference_steps: int, batch_size: int, seed: int,
                     eta: float = 0.0, class_labels: torch.Tensor | None = None,
                     guidance_scale: float = 1.0, guidance_interval: tuple[int, int] | None = None,
                     pipeline_kwargs: dict | None = None) -> torch.Tensor:
    """N samples as a float tensor (N, C, H, W) in [0, 1]; one generator seeded once drives every batch.

    eta is DDIM's (Song et al. 2021, eq. (16)): 0 the deterministic sampler, 1 DDPM's noise level; the
    pipeline passes it only to schedulers whose `step` takes it. class_labels: one per sample, for a
    class-conditional pipeline; guidance_scale: its classifier-free guidance (1 = none), applied only
    where guidance_interval[0] <= t <= guidance_interval[1] if that is given. pipeline_kwargs: more keyword
    arguments for every pipeline call (e.g. use_clipped_model_output).

    Progress: where the pipeline shows its progress bar (diffusers' default; `evaluate` and `nearest` load it so),
    one bar counts the images on stderr instead of a bar of steps per batch; its own setting comes back afterwards."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    own_config = dict(getattr(pipeline, "_progress_bar_config", {}))
    if hasattr(pipeline, "set_progress_bar_config"):
        pipeline.set_progress_bar_config(disable=True)
    bar = tqdm(total=num_samples, desc="Sampling", unit="image", file=sys.stderr,
               disable=own_config.get("disable", False) or not hasattr(pipeline, "set_progress_bar_config"))
    try:
        return torch.cat(list(_batches(pipeline, num_samples, num_inference_steps, batch_size, generator, eta, class_labels,
                                       guidance_scale, guidance_interval, pipeline_kwargs, bar)))
    finally:
        bar.close()
        if hasattr(pipeline, "set_progress_bar_config"):
            pipeline._progress_bar_config = own_config


def _batches(pipeline, num_samples, num_inference_steps, batch_size, generator, eta, class_labels, guidance_scale,
             guidance_interval, pipeline_kwargs, bar):
    """Each batch of `generate_samples`, (n, C, H, W) in [0, 1], checked for NaN as it is drawn."""
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        extra = {"eta": eta} if eta else {}  # pipelines without an eta argument (DDPMPipeline) still work
        if class_labels is not None:
            extra["class_labels"] = class_labels[start:start + n].tolist()
        if guidance_scale != 1.0 or "guidance_scale" in inspect.signature(pipeline.__call__).parameters:
            extra["guidance_scale"] = guidance_scale  # explicit: not the folder's recommended scale
        if guidance_interval is not None:
            extra["guidance_interval"] = guidance_interval
        extra.update(pipeline_kwargs or {})
        images = pipeline(
            batch_size=n, generator=generator, num_inference_steps=num_inference_steps, output_type="pt", **extra
        ).images
        if isinstance(images, np.ndarray):  # output_type "np" layout (N, H, W, C)
            images = torch.from_numpy(images).permute(0, 3, 1, 2)
        images = images.detach().float().cpu()
        broken = int((~torch.isfinite(images)).flatten(1).any(dim=1).sum())
        if broken:  # pipelines other than ours return NaN as it is
            raise NonFiniteSampleError(f"{broken} of the {n} samples of batch {start // batch_size + 1} hold NaN or inf: "
                                       "the pipeline's weights or scheduler settings are broken; nothing was evaluated")
        bar.update(n)
        yield images

