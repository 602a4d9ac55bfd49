"""annotated-pipeline: Denoising Diffusion Probabilistic Models (Ho et al. 2020), annotated.

The package is laid out the way the model is built:

    unet/        the noise-prediction network eps_theta(x_t, t): embeddings, blocks, attention, U-Net
    scheduler/   the forward process q and the reverse step p_theta: schedules, DDPM scheduler
    losses.py    the training objective (Ho et al. 2020, eq. 14 and its variants)
    pipeline.py  the sampling loop (Ho et al. 2020, Algorithm 2) as a diffusers pipeline
    pipeline_inpaint.py, pipeline_img2img.py, pipeline_interpolate.py
                 editing with a trained DDPM: RePaint, SDEdit, interpolation (pipeline_editing.py: shared)
    training/    data, arguments and the Accelerate training loop behind train_accelerate.py
    hub.py       the model card and the push to the Hugging Face Hub
    evaluation/  an offline Frechet distance for Fashion-MNIST

Names are resolved lazily so that `import annotated_pipeline` stays cheap and each subpackage can be
used (and copied into a saved pipeline) on its own.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "AnnotatedUNet2DModel": ".unet",
    "Unet": ".unet",
    "AnnotatedDDPMScheduler": ".scheduler",
    "AnnotatedDDPMPipeline": ".pipelines.pipeline",
    "AnnotatedDDPMInpaintPipeline": ".pipelines.pipeline_inpaint",
    "AnnotatedDDPMImg2ImgPipeline": ".pipelines.pipeline_img2img",
    "AnnotatedDDPMInterpolationPipeline": ".pipelines.pipeline_interpolate",
    "p_losses": ".losses",
    "q_sample": ".losses",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
