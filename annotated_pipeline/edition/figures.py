"""The library's figures, drawn at build time with annotated_pipeline.visualize from the model given:
the schedules and the forward strip (no model needed), the denoising GIF and the attention maps (the
shipped model, or `--model`). Each is placed beside the code it illustrates (contents.FIGURE_PLACES).
"""

import time
from pathlib import Path

from .contents import FIGURE_PLACES

# key (contents.FIGURE_PLACES) -> (file name in images/, css class: a plot is smoothed, pixels are not)
FIGURE_FILES = {"schedules": ("schedules.png", "plot"), "forward": ("forward.png", "pixels"),
                "denoising": ("denoising.gif", "pixels"), "attention": ("attention.png", "pixels")}
DEFAULT_STEPS = 10  # DPM-Solver++ (the shipped model's sampler) needs few steps; its own setting is 20


def shipped_model():
    """The clone's pretrained/ddpm-fashion-mnist, if the package runs from a clone that has it; else None."""
    import annotated_pipeline

    candidate = Path(annotated_pipeline.__file__).resolve().parent.parent / "pretrained" / "ddpm-fashion-mnist"
    return candidate if (candidate / "model_index.json").exists() else None


def draw_figures(images, model, steps=DEFAULT_STEPS, log=print):
    """Write the figures of FIGURE_FILES into `images` (a folder)."""
    from ..visualize import embedded_image, forward_process_figure, schedules_figure

    images = Path(images)
    images.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    schedules_figure(dpi=70).save(images / FIGURE_FILES["schedules"][0])
    x0, _ = embedded_image(0)
    forward_process_figure(x0, scale=2).save(images / FIGURE_FILES["forward"][0])
    _model_figures(images, model, steps)
    log(f"figures: {', '.join(FIGURE_FILES)} in {time.perf_counter() - start:.1f} s")


def _model_figures(images, model, steps):
    import torch

    from .. import AnnotatedDDPMPipeline
    from ..visualize import attention_figure, denoising_frames, save_gif

    pipe = AnnotatedDDPMPipeline.from_pretrained(str(model))
    pipe.set_progress_bar_config(disable=True)
    labels = [0, 9, 7, 8]  # T-shirt, ankle boot, sneaker, bag
    with torch.inference_mode():
        frames = denoising_frames(pipe, num_images=4, scale=3, seed=0, num_inference_steps=steps, class_labels=labels)
    save_gif(frames, images / FIGURE_FILES["denoising"][0])
    attention_figure(pipe, num_images=2, num_timesteps=4, seed=0, num_inference_steps=steps,
                     class_labels=labels[:2]).save(images / FIGURE_FILES["attention"][0])


def placed(made):
    """(file name, caption, css class, qualified name) for each drawn figure, by page slug."""
    by_page = {}
    for key, (name, css) in made.items():
        slug, qualname, caption = FIGURE_PLACES[key]
        by_page.setdefault(slug, []).append((name, caption, css, qualname))
    return by_page
