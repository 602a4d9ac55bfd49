"""See inside the model: the figures of "The Annotated Diffusion Model", drawn from this package.

    images.py      PIL helpers: tensors to images, a heat colormap, labelled grids
    options.py     the sampling options the commands share (the sample command's names)
    attention.py   record the attention weights while sampling (a processor), draw them over the samples
    denoising.py   x_t and x_0_hat along the chain: a GIF and a PNG strip
    forward.py     q(x_t | x_0) for a real image, for each beta schedule
    schedules.py   alpha_bar_t and log SNR per schedule (matplotlib, the [plots] extra)

The functions return PIL images, for reuse (a demo, a notebook):

    attention_figure(pipe, ...)        -> PIL.Image        record_attention(unet, timesteps) -> store
    denoising_frames(pipe, ...)        -> list[PIL.Image]  collect_trajectory(pipe, ...) -> Trajectory
    denoising_strip(trajectory)        -> PIL.Image        save_gif(frames, path)
    forward_process_figure(x0, ...)    -> PIL.Image        schedules_figure(...) -> PIL.Image

Each module's `main(argv, prog)` is an `annotated-pipeline` subcommand: attention, denoise, forward, schedules.
"""

import importlib

_EXPORTS = {
    "attention_figure": ".attention", "record_attention": ".attention",
    "collect_trajectory": ".denoising", "denoising_frames": ".denoising", "denoising_strip": ".denoising",
    "save_gif": ".denoising",
    "forward_process_figure": ".forward", "embedded_image": ".forward",
    "schedules_figure": ".schedules",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
