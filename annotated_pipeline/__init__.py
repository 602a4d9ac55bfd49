"""annotated-pipeline: Denoising Diffusion Probabilistic Models (Ho et al. 2020), annotated.

The package is laid out the way the model is built, the paper first:

    scheduler/   the forward process q and the reverse step p_theta: schedules, DDPM scheduler
    unet/        the noise-prediction network eps_theta(x_t, t): embeddings, blocks, attention, U-Net
    losses.py    the training objective (Ho et al. 2020, eq. (14) and its variants)
    pipelines/   the sampling loop (Algorithm 2) as a diffusers pipeline, and editing built on it
    datasets/    the image sets that training, evaluation and the figures read
    training/    Algorithm 1 run by Accelerate: arguments, checkpoints, the loop
    evaluation/  offline sample quality: classifier features, Frechet distance, KID, memorisation
    visualize/   the figures of the blog: forward process, schedules, denoising, attention
    hub/         the model card and the push to the Hugging Face Hub
    edition/     this package's source as The Annotated Diffusion Model, a static site (`docs`)
    commands/    the `annotated-pipeline` command, one module per subcommand

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
