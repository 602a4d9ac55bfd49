"""The demo's page: sample from a trained DDPM in the browser (Gradio), served by `annotated-pipeline demo`,
`python -m annotated_pipeline.commands.demo` and the Space's `app.py`.

    annotated-pipeline demo [--model PATH_OR_REPO_ID] [--trust_remote_code] [--threads 1] [--host H] [--port P]

The model is the folder or Hub repo id `--model` names (default: $ANNOTATED_PIPELINE_MODEL, else
`pretrained/ddpm-fashion-mnist` in the current folder, where a checkout and a Space hold the shipped model).
It loads with the installed package (`AnnotatedDDPMPipeline.from_pretrained`: no code from the folder runs);
`--trust_remote_code` loads it through plain diffusers instead, running the folder's own code files. A model
that does not load stops the command with one line; it does not serve a page that can only say so.

One click samples with `annotated_pipeline.commands.demo.generate` (the settings, their bounds and the sampling live
there; the denoising and attention pictures are `annotated_pipeline.visualize`'s). Requests are queued (at most
`demo.MAX_QUEUE`) and run one at a time, each for at most `--time_limit` seconds; a bad setting, or a request
stopped at the limit, is one message in the page (the outputs of the request before are cleared first), and the
app keeps serving (a picture that cannot be drawn is said so under the samples). Needs the `demo` extra (Gradio).
"""

import argparse
import os
import tempfile
from pathlib import Path

import gradio as gr
import torch

from . import demo
from ..visualize.denoising import save_gif

# The model when --model is not given: $ANNOTATED_PIPELINE_MODEL, else the shipped model's folder as a checkout
# (and a Space built with --bundle_model) holds it, relative to the current folder.
DEFAULT_MODEL = demo.DEFAULT_MODEL_FOLDER
DESCRIPTION = """\
# annotated-pipeline: a DDPM for Fashion-MNIST

A from-scratch, annotated DDPM (Ho et al. 2020, cosine schedule) packaged as a diffusers pipeline.
The shipped model has 0.86M parameters and is class-conditional, with classifier-free guidance.
Pick a class (or all of them in turn), a sampler and its number of steps, and press **Generate**.
"Show the denoising" adds x_t beside the model's prediction of the clean image x_0-hat along the chain (a strip and
an animation); "Show the attention" adds where the U-Net's bottleneck attention looks at four steps.
"""
# The samples fill their box, and 28x28 tiles are enlarged without blur (the pictures, which hold text, are smoothed).
CSS = "#samples img { object-fit: contain !important; image-rendering: pixelated; }"


def load_model(model, trust_remote_code=False):
    """(pipeline, None), or (None, a message saying why `model` did not load)."""
    try:
        if trust_remote_code:
            from diffusers import DiffusionPipeline

            pipe = DiffusionPipeline.from_pretrained(model, trust_remote_code=True)
        else:
            from annotated_pipeline import AnnotatedDDPMPipeline

            pipe = AnnotatedDDPMPipeline.from_pretrained(model)
    except Exception as error:  # noqa: BLE001 -- any failure is shown in the page, not raised
        return None, f"The model {model!r} did not load: {type(error).__name__}: {error}"
    pipe.set_progress_bar_config(disable=True)
    return pipe, None


def model_status(model, pipe, error):
    if error is not None:
        return f"**Model not available.** {error}"
    parameters = sum(p.numel() for p in pipe.unet.parameters())
    classes = demo.class_names(pipe)
    kind = f"class-conditional, {len(classes)} classes" if classes else "unconditional"
    here = Path.cwd()
    shown = Path(model).relative_to(here) if Path(model).is_absolute() and Path(model).is_relative_to(here) else model
    return f"Model: `{shown}` ({type(pipe.unet).__name__}, {parameters / 1e6:.2f}M parameters, {kind})"


def build_demo(model=DEFAULT_MODEL, trust_remote_code=False, loaded=None, time_limit=demo.TIME_LIMIT_S):
    """The Gradio Blocks of the page, with the model loaded (or the reason it did not); `loaded`: the (pipeline,
    error) of `load_model` where the caller has loaded it already; `time_limit`: seconds one request may sample."""
    pipe, error = load_model(model, trust_remote_code) if loaded is None else loaded
    guided = pipe is not None and bool(pipe.unet.config.get("null_class_embed", False))
    defaults = demo.DemoRequest(**demo.recommended_settings(pipe)) if pipe is not None else demo.DemoRequest()
    last_t = pipe.scheduler.config.num_train_timesteps - 1 if pipe is not None else 999
    interval = defaults.guidance_interval or (0, last_t)  # no interval: every step
    animations = tempfile.TemporaryDirectory(prefix="annotated-pipeline-demo-")  # GIFs, until Gradio copies them

    def run(class_name, num_images, sampler, steps, guidance_scale, t_low, t_high, seed, show_denoising,
            show_attention, progress=gr.Progress()):
        if pipe is None:
            raise gr.Error(error)
        try:
            request = demo.DemoRequest(class_name, _whole(num_images), sampler, _whole(steps), float(guidance_scale),
                                       (_whole(t_low), _whole(t_high)), _whole(seed), bool(show_denoising),
                                       bool(show_attention))
            result = demo.generate(pipe, request, on_step=lambda i, n, what: progress((i, n), desc=what, unit="steps"),
                                   time_limit=time_limit)
        except ValueError as bad_input:
            raise gr.Error(str(bad_input)) from None
        except Exception as failure:  # noqa: BLE001 -- shown in the page; the app keeps serving
            raise gr.Error(f"Sampling failed: {type(failure).__name__}: {failure}") from None
        animation = None
        if result.animation:
            for old in Path(animations.name).glob("*.gif"):  # the last request's, which Gradio has copied by now
                old.unlink()
            animation = tempfile.NamedTemporaryFile(suffix=".gif", dir=animations.name, delete=False).name
            save_gif(result.animation, animation)
        return result.grid, result.denoising, animation, result.attention, result.summary

    with gr.Blocks(title="annotated-pipeline DDPM demo", analytics_enabled=False) as page:
        gr.Markdown(DESCRIPTION)
        gr.Markdown(model_status(model, pipe, error), elem_id="model-status")
        with gr.Row():
            with gr.Column(scale=1):
                choices = demo.class_choices(pipe) if pipe is not None else [demo.ALL_CLASSES]
                class_name = gr.Dropdown(choices, value=defaults.class_name, label="Class")
                num_images = gr.Slider(1, demo.MAX_IMAGES, value=defaults.num_images, step=1, label="Number of images")
                sampler = gr.Radio(list(demo.SAMPLERS), value=defaults.sampler, label="Sampler")
                steps = gr.Slider(1, demo.MAX_STEPS, value=defaults.steps, step=1, elem_id="steps",
                                  label=f"Steps (images x steps: at most {demo.MAX_IMAGE_STEPS})")
                guidance_scale = gr.Slider(0, 8, value=defaults.guidance_scale, step=0.1, interactive=guided,
                                           label="Guidance scale s (1 = none)")
                with gr.Row():
                    t_low = gr.Number(interval[0], precision=0, label="Guide from t =", interactive=guided)
                    t_high = gr.Number(interval[1], precision=0, label="to t =", interactive=guided,
                                       elem_id="t_high")
                seed = gr.Number(defaults.seed, precision=0, label="Seed")
                show_denoising = gr.Checkbox(defaults.show_denoising, label="Show the denoising")
                show_attention = gr.Checkbox(defaults.show_attention, label="Show the attention")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
                animation = gr.Image(label="Denoising, animated", type="filepath", elem_id="animation")
            with gr.Column(scale=2):
                grid = gr.Image(label="Samples", type="pil", format="png", elem_id="samples", height=448)
                timing = gr.Markdown(elem_id="timing")
                denoising = gr.Image(label="Denoising", type="pil", format="png",
                                     elem_id="denoising")
                attention = gr.Image(label="Attention", type="pil",
                                     format="png", elem_id="attention")
        outputs = [grid, denoising, animation, attention, timing]
        # Each click first empties the outputs, so an error never stands under the last request's samples and summary.
        cleared = button.click(lambda: (None, None, None, None, ""), None, outputs, queue=False, api_visibility="private")
        cleared.then(run, [class_name, num_images, sampler, steps, guidance_scale, t_low, t_high, seed, show_denoising,
                           show_attention], outputs, api_name="generate", concurrency_limit=1)
    page.queue(max_size=demo.MAX_QUEUE)  # each request at most time_limit seconds: a bounded wait
    return page


def _whole(value):
    """A number the page sends (a float from a slider) as an int if it is whole; otherwise as given, for
    `demo.check_request` to refuse by name."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def main(argv=None, prog="python -m annotated_pipeline.commands.demo", default_model=None):
    """Serve the page until stopped. A model that does not load is one line on stderr and exit status 2."""
    parser = argparse.ArgumentParser(prog=prog, description="Sample from a trained DDPM in the browser (Gradio): "
                                                            "class, sampler, steps, guidance, seed, denoising and attention.")
    default_model = os.environ.get(demo.MODEL_ENV, default_model or DEFAULT_MODEL)
    parser.add_argument("--model", default=default_model,
                        help=f"a saved pipeline folder or a Hub repo id (default: ${demo.MODEL_ENV}, else {default_model})")
    parser.add_argument("--trust_remote_code", action="store_true",
                        help="load through plain diffusers, running the code files that came with the model")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch's CPU threads for sampling (default 1: on a busy shared CPU, such as a free Space's, more "
                             "threads wait on each other; 16 images took 25 s with 2 threads and 1.8 s with 1 on 2 "
                             "cores under load. Raise it on a machine of your own)")
    parser.add_argument("--time_limit", type=float, default=demo.TIME_LIMIT_S,
                        help="seconds one request may sample before it is stopped with a message in the page")
    parser.add_argument("--host", default=None, help="address to serve on (default: Gradio's, 127.0.0.1 or $GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, default=None, help="port (default: Gradio's, 7860 or $GRADIO_SERVER_PORT)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if not 0 < args.time_limit <= 3600:
        parser.error(f"--time_limit must be in (0, 3600] seconds, got {args.time_limit:g}")
    torch.set_num_threads(args.threads)
    pipe, error = load_model(args.model, args.trust_remote_code)
    if error is not None:  # not a page that can only say so
        parser.exit(2, f"{prog}: error: {error} (give --model a saved pipeline folder or a Hub repo id)\n")
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts to fetch
    build_demo(args.model, args.trust_remote_code, loaded=(pipe, None), time_limit=args.time_limit).launch(
        server_name=args.host, server_port=args.port, show_error=True, theme=theme, css=CSS)
    return 0
