"""What the browser demo (`app.py`) does with one click, without Gradio: check the settings, sample, time it.

    result = generate(pipe, DemoRequest(class_name="Sneaker", num_images=16, sampler="DPM-Solver++", steps=20,
                                        seed=0, **card_guidance("pretrained/ddpm-fashion-mnist")))
    result.grid, result.denoising, result.summary

Sampling is Ho et al. 2020, Algorithm 2, with the chain shortened by a diffusers scheduler built from the
pipeline's own config (`evaluation.evaluate.set_scheduler`): DPM-Solver++ (Lu et al. 2022, steps uniform
in log-SNR), DDIM (Song et al. 2021, eta = 0) or DDPM (ancestral, Ho et al. 2020). A class-conditional
pipeline with a "no class" embedding is guided (Ho & Salimans 2022, eq. (6)):

    eps_tilde = eps(x_t, t, empty) + s * (eps(x_t, t, y) - eps(x_t, t, empty)),  at t_low <= t <= t_high only

with, by default, the s and (t_low, t_high) the model's card says it samples with (`card_guidance`; the
shipped model: s = 2 at t = 200..700).

The work one request may ask for is bounded (`MAX_IMAGES`, `MAX_STEPS`), so a public page cannot be
made to hang; what the pipeline itself refuses (guidance on an unconditional model, an interval outside
0..T-1) comes back as its own ValueError.

The denoising view is the chain's x_t, read after each step through the pipeline's
`callback_on_step_end` (and x_0-hat beside it when the pipeline offers "pred_original_sample" among its
callback tensors). `denoising_frames` only tiles them with `training.sampling.to_grid`: the drawing of
the denoising animation and the attention maps belongs to the visualisation module, which replaces it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from .evaluation.evaluate import SCHEDULERS, set_scheduler
from .training.fashion_mnist import FASHION_MNIST_CLASSES
from .training.sampling import to_grid

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
NUM_DENOISING_FRAMES = 6  # x_t shown at this many steps of the chain (the last is the sample x_0)


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


@dataclasses.dataclass
class DemoResult:
    grid: object  # PIL image: the samples tiled by `to_grid`
    denoising: list  # [(PIL image, caption)], empty unless asked for
    seconds: float  # wall time of the sampling alone
    summary: str  # one line: what was drawn, how, and how long it took


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


def card_guidance(model) -> dict:
    """The guidance a model's card says it samples with: {"guidance_scale": s, "guidance_interval": (t_low, t_high)},
    as much of it as the card's metadata holds (`hub.model_card` writes it there); {} for a model without one, or
    a Hub repo id whose card cannot be fetched."""
    from .hub import CARD_FILE, _card_inputs

    folder = Path(model)
    if not folder.is_dir():
        try:
            from huggingface_hub import hf_hub_download

            folder = Path(hf_hub_download(str(model), CARD_FILE)).parent
        except Exception:  # noqa: BLE001 -- offline, no such repo, no card: no recommendation
            return {}
    inputs = _card_inputs(folder)
    guidance = {}
    if isinstance(inputs.get("guidance_scale"), (int, float)):
        guidance["guidance_scale"] = float(inputs["guidance_scale"])
    if isinstance(inputs.get("guidance_interval"), list) and len(inputs["guidance_interval"]) == 2:
        guidance["guidance_interval"] = tuple(int(t) for t in inputs["guidance_interval"])
    return guidance


def check_request(pipe, request: DemoRequest) -> int | None:
    """Raise a ValueError that says what is allowed unless the request is one the demo serves; return the
    class label to ask for (None: the classes in turn, 0, 1, ..., K - 1, 0, ...)."""
    if request.class_name != ALL_CLASSES and request.class_name not in class_names(pipe):
        raise ValueError(f"unknown class {request.class_name!r}; choose one of: {', '.join(class_choices(pipe))}")
    for name, value, limit in (("number of images", request.num_images, MAX_IMAGES), ("steps", request.steps, MAX_STEPS)):
        if not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= limit):
            raise ValueError(f"{name} must be a whole number from 1 to {limit} (the demo's bound on one request), "
                             f"got {value!r}")
    if request.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {request.sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    if not isinstance(request.seed, int) or isinstance(request.seed, bool) or request.seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {request.seed!r}")
    return None if request.class_name == ALL_CLASSES else class_names(pipe).index(request.class_name)


def denoising_frames(frames: list[tuple[int, int, dict]], num_steps: int) -> list:
    """[(PIL grid, caption)] for the captured steps: x_t of the whole batch, tiled by `to_grid`, and x_0-hat
    beside it when the pipeline gave it. x_t lives in [-1, 1] plus noise, so it is mapped by (x + 1) / 2 and
    clipped to [0, 1] for display.

    frames: (step index i, timestep t of that step, {"latents": x_t after it, ["pred_original_sample": x_0-hat]}).
    (A placeholder for the visualisation module's denoising animation, which will replace it.)
    """
    shown = []
    for i, t, tensors in frames:
        for key, what in (("latents", "x_t"), ("pred_original_sample", "x_0-hat")):
            if key in tensors:
                images = ((tensors[key].float().cpu() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
                shown.append((to_grid(images), f"{what} after step {i + 1}/{num_steps} (t = {t})"))
    return shown


def frame_steps(num_steps: int, num_frames: int = NUM_DENOISING_FRAMES) -> set[int]:
    """Step indices spread evenly over 0..num_steps - 1, the last step always among them."""
    if num_steps <= num_frames:
        return set(range(num_steps))
    return {round(k * (num_steps - 1) / (num_frames - 1)) for k in range(num_frames)}


@torch.no_grad()
def generate(pipe, request: DemoRequest, on_step=None) -> DemoResult:
    """Sample `request.num_images` images as the request says; deterministic for a seed.

    on_step(i, n): called after each of the n steps (the page's progress bar). The pipeline leaves with
    the scheduler it came with."""
    label = check_request(pipe, request)
    conditional = pipe.unet.config.get("num_class_embeds") is not None
    available = getattr(pipe, "_callback_tensor_inputs", ["latents"])
    tensor_inputs = [name for name in ("latents", "pred_original_sample") if name in available]
    captured, wanted = [], frame_steps(request.steps) if request.show_denoising else set()

    def callback(pipeline, i, t, tensors):
        if i in wanted:
            captured.append((i, int(t), {name: tensors[name].clone() for name in tensor_inputs if name in tensors}))
        if on_step is not None:
            on_step(i + 1, request.steps)
        return {}

    original_scheduler = pipe.scheduler
    try:
        set_scheduler(pipe, SAMPLERS[request.sampler])
        kwargs = {"class_labels": label} if conditional and label is not None else {}
        if request.guidance_scale != 1.0:  # the pipeline says so if this model cannot be guided
            kwargs["guidance_scale"] = float(request.guidance_scale)
            if request.guidance_interval is not None:
                kwargs["guidance_interval"] = tuple(request.guidance_interval)
        start = time.perf_counter()
        images = pipe(batch_size=request.num_images, generator=torch.Generator().manual_seed(request.seed),
                      num_inference_steps=request.steps, output_type="np", callback_on_step_end=callback,
                      callback_on_step_end_tensor_inputs=tensor_inputs, **kwargs).images
        seconds = time.perf_counter() - start
    finally:
        pipe.scheduler = original_scheduler
    guidance = f", guidance {request.guidance_scale:g}" if "guidance_scale" in kwargs else ""
    if "guidance_interval" in kwargs:
        guidance += " at t in {}..{}".format(*request.guidance_interval)
    summary = (f"{request.num_images} images of {request.class_name} ({request.sampler}, {request.steps} steps{guidance}, "
               f"seed {request.seed}) in {seconds:.2f} s")
    return DemoResult(to_grid(images), denoising_frames(captured, request.steps), seconds, summary)
