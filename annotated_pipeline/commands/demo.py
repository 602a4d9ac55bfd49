"""What the browser demo (`app.py`) does with one click, without Gradio: check the settings, sample, time it.

    result = generate(pipe, DemoRequest(class_name="Sneaker", num_images=16, sampler="DPM-Solver++", steps=20,
                                        seed=0, **recommended_settings(pipe)))
    result.grid, result.denoising, result.animation, result.attention, result.summary

Sampling is Ho et al. 2020, Algorithm 2, with the chain shortened by a diffusers scheduler built from the
pipeline's own config (`pipelines.samplers`): DPM-Solver++ (Lu et al. 2022, steps uniform
in log-SNR), DDIM (Song et al. 2021, eta = 0) or DDPM (ancestral, Ho et al. 2020). A class-conditional
pipeline with a "no class" embedding is guided (Ho & Salimans 2022, eq. (6)):

    eps_tilde = eps(x_t, t, empty) + s * (eps(x_t, t, y) - eps(x_t, t, empty)),  at t_low <= t <= t_high only

with, by default, the steps, s and (t_low, t_high) the model's folder recommends (`recommended_settings`;
the shipped model: 20 steps, s = 2 at t = 200..700).

The work one request may ask for is bounded, so a public page cannot be made to hang: at most `MAX_IMAGES`
images, `MAX_STEPS` steps and `MAX_IMAGE_STEPS` images x steps (the U-Net's work), refused before any step;
and a request still sampling after `time_limit` seconds (`TIME_LIMIT_S` unless the page says otherwise) is
stopped at its next step (`TimeLimitError`, checked in the pipeline's step callback), with one message
saying so. The page queues at most `MAX_QUEUE` requests, so the longest wait is MAX_QUEUE x TIME_LIMIT_S
(5 minutes). What the pipeline itself refuses (guidance on an unconditional model, an interval outside
0..T-1) comes back as its own ValueError.

The pictures are the visualisation module's, drawn for the first `FIGURE_IMAGES` images of the batch:
"show the denoising" samples through `visualize.denoising.collect_trajectory` (the same samples, with x_t
and x_0-hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t), Ho et al. 2020, eq. (15), kept along
the chain) and returns its `denoising_strip` and the frames of its animation (`denoising_frames`);
"show the attention" draws `visualize.attention.attention_figure` (the bottleneck's attention weights at
four steps), which samples those first images once more. A failure of the attention figure does not lose
the samples: the summary says why it is missing.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time

import torch

from ..pipelines.samplers import SCHEDULERS, using_sampler
from ..datasets.fashion_mnist import FASHION_MNIST_CLASSES
from ..training.outputs import to_grid
from ..visualize.attention import attention_figure
from ..visualize.denoising import collect_trajectory, denoising_frames, denoising_strip

# Where app.py finds its model: this folder beside it (where a checkout, and a Space built with
# space/build_space.py --bundle_model, keeps the shipped model), unless this environment variable names another.
DEFAULT_MODEL_FOLDER = "pretrained/ddpm-fashion-mnist"
MODEL_ENV = "ANNOTATED_PIPELINE_MODEL"
ALL_CLASSES = "all classes"
# The samplers offered, by the name the page shows -> the name `set_scheduler` takes.
SAMPLERS = {"DPM-Solver++": "dpmsolver", "DDIM": "ddim", "DDPM": "ddpm"}
assert set(SAMPLERS.values()) <= set(SCHEDULERS)
MAX_IMAGES = 64
MAX_STEPS = 1000
MAX_IMAGE_STEPS = 2000  # images x steps: 16 images x 20 steps (the default) is 320; one image may walk 1000 steps
TIME_LIMIT_S = 30.0  # per request; 2000 image-steps of the shipped model take about 10 s on one busy core
MAX_QUEUE = 10  # requests waiting at most, each at most TIME_LIMIT_S: a 5-minute wait in the worst case
FIGURE_IMAGES = 4  # the denoising and attention pictures show the first this many images of the batch
ANIMATION_FRAMES = 25  # the animation keeps a step in every ceil(steps / 25), and the last (bounds its size)


class TimeLimitError(ValueError):
    """A request stopped at the demo's time limit (a ValueError: the page shows its message, not a traceback)."""


@dataclasses.dataclass(frozen=True)
class DemoRequest:
    """The settings of one click. `guidance_interval` is (t_low, t_high) in training timesteps."""

    class_name: str = ALL_CLASSES
    num_images: int = 16
    sampler: str = "DPM-Solver++"
    steps: int = 20
    guidance_scale: float = 1.0
    guidance_interval: tuple[int, int] | None = None
    seed: int = 0
    show_denoising: bool = False
    show_attention: bool = False


@dataclasses.dataclass
class DemoResult:
    grid: object  # PIL image: the samples tiled by `to_grid`
    seconds: float  # wall time of the sampling alone
    summary: str  # what was drawn, how, and how long it took (and why a picture asked for is missing)
    denoising: object = None  # PIL image: visualize's `denoising_strip`, when asked for
    animation: list = dataclasses.field(default_factory=list)  # PIL frames of visualize's `denoising_frames`
    attention: object = None  # PIL image: visualize's `attention_figure`, when asked for and drawn


def class_names(pipe) -> tuple[str, ...]:
    """The names of the U-Net's classes: Fashion-MNIST's for a 10-class model, "class k" otherwise;
    () for an unconditional model."""
    num_classes = pipe.unet.config.get("num_class_embeds")
    if num_classes is None:
        return ()
    if num_classes == len(FASHION_MNIST_CLASSES):
        return FASHION_MNIST_CLASSES
    return tuple(f"class {k}" for k in range(num_classes))


def class_choices(pipe) -> list[str]:
    """What the class control offers: "all classes" (the classes in turn, or the unconditional model), then each class."""
    return [ALL_CLASSES, *class_names(pipe)]


def recommended_settings(pipe) -> dict:
    """The DemoRequest fields the pipeline's folder recommends (`AnnotatedDDPMPipeline.sampling_defaults`, from
    its model_index.json): {"steps": n, "guidance_scale": s, "guidance_interval": (t_low, t_high)}, as much of
    it as the folder sets; {} for a folder that recommends nothing."""
    config = pipe.config
    settings = {}
    if config.get("default_num_inference_steps") is not None:
        settings["steps"] = int(config["default_num_inference_steps"])
    if config.get("default_guidance_scale") is not None:
        settings["guidance_scale"] = float(config["default_guidance_scale"])
        if config.get("default_guidance_interval") is not None:
            settings["guidance_interval"] = tuple(int(t) for t in config["default_guidance_interval"])
    return settings


def check_request(pipe, request: DemoRequest) -> int | None:
    """Raise a ValueError that says what is allowed unless the request is one the demo serves; return the
    class label to ask for (None: the classes in turn, 0, 1, ..., K - 1, 0, ...)."""
    if request.class_name != ALL_CLASSES and request.class_name not in class_names(pipe):
        raise ValueError(f"unknown class {request.class_name!r}; choose one of: {', '.join(class_choices(pipe))}")
    for name, value, limit in (("number of images", request.num_images, MAX_IMAGES), ("steps", request.steps, MAX_STEPS)):
        if not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= limit):
            raise ValueError(f"{name} must be a whole number from 1 to {limit} (the demo's bound on one request), "
                             f"got {value!r}")
    if request.num_images * request.steps > MAX_IMAGE_STEPS:
        raise ValueError(f"{request.num_images} images x {request.steps} steps is {request.num_images * request.steps} "
                         f"image-steps, over the demo's bound of {MAX_IMAGE_STEPS} for one request: ask for fewer "
                         "images or steps")
    if request.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {request.sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    if not isinstance(request.seed, int) or isinstance(request.seed, bool) or request.seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {request.seed!r}")
    return None if request.class_name == ALL_CLASSES else class_names(pipe).index(request.class_name)


def first_images(trajectory, k):
    """The trajectory of the batch's first k images (the same steps)."""
    return dataclasses.replace(trajectory, x_t=[x[:k] for x in trajectory.x_t], x0_hat=[x[:k] for x in trajectory.x0_hat],
                               samples=trajectory.samples[:k])


@torch.no_grad()
def generate(pipe, request: DemoRequest, on_step=None, time_limit=TIME_LIMIT_S) -> DemoResult:
    """Sample `request.num_images` images as the request says; deterministic for a seed, and the same images
    whether or not the pictures are asked for.

    on_step(i, n, what): called after each of the n steps of a sampling run, what = "sampling" or "attention"
    (the page's progress bar). After `time_limit` seconds the next step raises `TimeLimitError` (during the
    attention figure, the samples stand and the summary says it was stopped). The pipeline leaves with the
    scheduler it came with."""
    label = check_request(pipe, request)
    conditional = pipe.unet.config.get("num_class_embeds") is not None
    deadline = time.monotonic() + time_limit

    def report(i, n, what):  # after every step of every sampling run of the request
        if on_step is not None:
            on_step(i, n, what)
        if time.monotonic() > deadline:
            raise TimeLimitError(f"This request was stopped at the demo's time limit of {time_limit:g} s ({what}, after "
                                 f"{i} of {n} steps): ask for fewer images or steps.")
    with using_sampler(pipe, SAMPLERS[request.sampler]):  # the pipeline leaves with the scheduler it came with
        kwargs = {"class_labels": label} if conditional and label is not None else {}
        kwargs["guidance_scale"] = float(request.guidance_scale)  # explicit, even 1: not the folder's default
        if request.guidance_scale != 1.0:  # the pipeline says so if this model cannot be guided
            if request.guidance_interval is not None:
                kwargs["guidance_interval"] = tuple(request.guidance_interval)
        start = time.perf_counter()
        if request.show_denoising:
            trajectory = collect_trajectory(pipe, request.num_images, every=math.ceil(request.steps / ANIMATION_FRAMES),
                                            seed=request.seed, on_step=lambda i, n: report(i, n, "sampling"),
                                            num_inference_steps=request.steps, **kwargs)
            samples = trajectory.samples  # x_0 in [-1, 1]
        else:
            def callback(pipeline, i, t, tensors):
                report(i + 1, request.steps, "sampling")
                return {}

            samples = pipe(batch_size=request.num_images, generator=torch.Generator().manual_seed(request.seed),
                           num_inference_steps=request.steps, output_type="pt", callback_on_step_end=callback,
                           **kwargs).images * 2 - 1  # x_0 in [-1, 1], as collect_trajectory keeps it
        seconds = time.perf_counter() - start
        result = DemoResult(to_grid(((samples + 1) / 2).permute(0, 2, 3, 1).numpy()), seconds, "")
        shown = min(request.num_images, FIGURE_IMAGES)
        if request.show_denoising:
            trajectory = first_images(trajectory, shown)
            result.denoising = denoising_strip(trajectory)
            result.animation = denoising_frames(pipe, scale=3, trajectory=trajectory)
        notes = []
        if request.show_attention:
            try:
                result.attention = attention_figure(
                    pipe, shown, seed=request.seed, num_inference_steps=request.steps,
                    callback_on_step_end=lambda p, i, t, tensors: report(i + 1, request.steps, "attention") or {},
                    **kwargs)
            except TimeLimitError as stopped:
                notes.append(f"The attention maps were not drawn: {stopped}")
            except Exception as failure:  # noqa: BLE001 -- the samples stand; the page says why the maps do not
                notes.append(f"The attention maps could not be drawn: {type(failure).__name__}: {failure}")
    guidance = f", guidance {request.guidance_scale:g}" if request.guidance_scale != 1.0 else ""
    if "guidance_interval" in kwargs:
        guidance += " at t in {}..{}".format(*request.guidance_interval)
    pictures = [what for what, asked in (("denoising", request.show_denoising), ("attention", result.attention is not None))
                if asked]
    if pictures and shown < request.num_images:
        notes.insert(0, f"The {' and '.join(pictures)} pictures show the first {shown} of the {request.num_images} images.")
    result.summary = "\n\n".join([f"{request.num_images} images of {request.class_name} ({request.sampler}, {request.steps} "
                                   f"steps{guidance}, seed {request.seed}) in {seconds:.2f} s", *notes])
    return result


def main(argv=None, prog="python -m annotated_pipeline.commands.demo"):
    """Serve the page (demo_page.py) until stopped: `annotated-pipeline demo`, `python -m annotated_pipeline.commands.demo`.
    Without Gradio (the `demo` extra) one line says how to install it."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        print(f"{prog}: error: the demo needs Gradio: pip install 'annotated-pipeline[demo]'", file=sys.stderr)
        return 2
    from .demo_page import main as serve

    return serve(argv, prog)


if __name__ == "__main__":
    sys.exit(main())
