"""A training checkpoint as a saved pipeline, and the loader that takes either:

    annotated-pipeline export out/checkpoint-2000 my-model            # EMA weights where the run kept them
    annotated-pipeline export out/checkpoint-2000 my-model --no-ema   # the training weights theta
    annotated-pipeline export out/checkpoint-2000 my-model --sigma_rel 0.08   # a post-hoc EMA (--posthoc_ema_every)
    annotated-pipeline sample out/checkpoint-2000                     # sample/evaluate read checkpoints too

`checkpoint-N/` holds the U-Net as diffusers folders (unet/, unet_ema/, scheduler/; see
training/checkpoint_models.py). `pipeline_from_checkpoint` puts one of them and the scheduler into an
`AnnotatedDDPMPipeline`; `export` saves that as a full pipeline folder (model_index.json, configs,
safetensors, the code files that let plain diffusers load it with `trust_remote_code=True`), with a
sample grid drawn as the training run draws its own (its sampler, chain length and seed) and the model
card rendered from the run's training_args.json. The folder is what the run would have saved had it
stopped at step N, so it loads by both routes: `AnnotatedDDPMPipeline.from_pretrained(OUT)` with the
package installed, `DiffusionPipeline.from_pretrained(OUT, trust_remote_code=True)` without it.
"""

import argparse
import contextlib
import os
import shutil
import sys
import time
from argparse import Namespace

from ..utils.errors import run_reporting
from ..utils.outputs import output_folder
from ..checkpoints import EMA_FOLDER, model_folder, pipeline_from_checkpoint

DEFAULT_NUM_SAMPLES = 16


def check_output_folder(out):
    """`out` must not exist, or be an empty folder: an export never mixes with other files."""
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ValueError(f"{out} exists and is not an empty folder; give a new OUT folder")


_written = None  # while `failed_file` records: the paths opened for writing, in order (Python's "open" audit events)


def _record_writes(event, args):
    if _written is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1], args[2]
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR)):
            _written.append(os.fsdecode(args[0]))


@contextlib.contextmanager
def recording_writes():
    """Inside the block, the files the process opens for writing are recorded (`written_last`)."""
    global _written
    if not getattr(sys, "_annotated_pipeline_write_hook", False):  # an audit hook cannot be removed: added once
        sys.addaudithook(_record_writes)
        sys._annotated_pipeline_write_hook = True
    _written = []
    try:
        yield
    finally:
        _written = None


def failed_file(error, written):
    """The file whose write raised `error`: the last one opened for writing, or, for the safetensors writer (Rust,
    which Python's audit events do not see), the weights file beside the config.json diffusers writes before them."""
    from diffusers.utils import SAFETENSORS_WEIGHTS_NAME

    chain = []
    while error is not None:
        chain.append(type(error).__name__)
        error = error.__cause__ or error.__context__
    if "SafetensorError" in chain and written:
        return os.path.join(os.path.dirname(written[-1]), SAFETENSORS_WEIGHTS_NAME)
    return written[-1] if written else None


def posthoc_weights(pipeline, checkpoint, sigma_rel):
    """Put the post-hoc EMA of width `sigma_rel` at the checkpoint's step (training/posthoc_ema.py: synthesized
    from the run's OUTPUT_DIR/posthoc_ema/ snapshots) into `pipeline.unet`; its description, for the card."""
    import torch

    from ..training.checkpointing import checkpoint_step
    from ..training.posthoc_ema import synthesize

    run = os.path.dirname(os.path.abspath(checkpoint))
    theta_hat, used = synthesize(run, sigma_rel, checkpoint_step(checkpoint))
    parameters = dict(pipeline.unet.named_parameters())
    if set(parameters) != set(theta_hat):
        raise ValueError(f"the post-hoc EMA snapshots in {run} do not hold this checkpoint's parameters "
                         "(another model in the same folder?)")
    with torch.no_grad():
        for name, value in theta_hat.items():
            parameters[name].copy_(value)
    return (f"post-hoc EMA weights, sigma_rel {sigma_rel:g} (Karras et al. 2024), synthesized from "
            f"{len({step for step, _, _ in used})} snapshots")


def export(checkpoint, out, ema=None, num_samples=DEFAULT_NUM_SAMPLES, sigma_rel=None):
    """Write the pipeline of `checkpoint` (see `pipeline_from_checkpoint`) into the new folder `out`, with
    `num_samples` samples as samples.png (0: none) and a model card; returns a one-line summary. With
    `sigma_rel`, the U-Net's weights are the run's post-hoc EMA of that width (`posthoc_weights`)."""
    from ..hub import write_model_card
    from ..training.build import describe_data
    from ..training.checkpointing import checkpoint_step, is_disk_full, read_training_args
    from ..pipelines.pipeline_inputs import DEFAULT_MAX_BATCH_SIZE
    from ..training.outputs import (SAMPLES_FILE, SAMPLES_SCALE, check_grid, draw_samples, samples_image,
                                    sampling_recommended)
    from ..utils.memory import check_sampling_memory

    if sigma_rel is not None and ema:
        raise ValueError("--ema and --sigma_rel each choose the weights: give one")
    if sigma_rel is not None:
        ema = False  # the training weights' folder gives the config; the weights are then replaced
    folder = model_folder(checkpoint, ema)  # refuses incomplete and model-less checkpoints first
    check_output_folder(out)
    if num_samples < 0:
        raise ValueError(f"--num_samples must be >= 0; got {num_samples}")
    used_ema = os.path.basename(folder) == EMA_FOLDER
    pipeline = pipeline_from_checkpoint(checkpoint, ema)
    weights = "EMA weights" if used_ema else "training weights"
    if sigma_rel is not None:
        weights = posthoc_weights(pipeline, checkpoint, sigma_rel)
    if num_samples:  # samples.png is one image: refused before any work where it, or its samples, cannot fit
        check_grid(num_samples, pipeline.unet.config.sample_size, SAMPLES_SCALE, "--num_samples")
        check_sampling_memory(pipeline.unet, num_samples, DEFAULT_MAX_BATCH_SIZE, False, pipeline.device,
                              "lower --num_samples")
    step = checkpoint_step(checkpoint)
    record = read_training_args(checkpoint) or {}
    training_args = dict(record.get("args") or {})
    # Written beside OUT, then renamed into place: a failed export leaves no half-written OUT.
    parent, name = os.path.split(os.path.abspath(out))
    incomplete = os.path.join(parent, f".{name}.incomplete")
    shutil.rmtree(incomplete, ignore_errors=True)
    grid_scheduler = training_args.get("grid_scheduler", "dpmsolver")
    grid_steps = training_args.get("ddpm_num_inference_steps", 20)
    written = []
    try:
        # The folder samples as the run drew its grids: that sampler as its scheduler, those steps in model_index.json.
        images = None
        if num_samples:
            images = draw_samples(pipeline, num_samples, grid_steps, training_args.get("seed", 0),
                                  scheduler=grid_scheduler, progress=True)
        dataset = None
        if training_args:  # recorded by the run (training_args.json)
            dataset = describe_data(Namespace(**{"dataset_name": None, "train_data_dir": None, **training_args}))
        training_args["global_step"] = step
        with recording_writes():  # a full disk names the file it stopped
            written = _written
            sampling_recommended(pipeline, grid_scheduler, grid_steps).save_pretrained(incomplete)
            if images is not None:
                samples_image(images).save(os.path.join(incomplete, SAMPLES_FILE))
            write_model_card(incomplete, repo_id_or_path=out, training_args=training_args, dataset_name=dataset,
                             samples_file=SAMPLES_FILE, extra=f"Exported from the training checkpoint `checkpoint-{step}` "
                                                              f"({weights}) with `annotated-pipeline export`.")
        os.replace(incomplete, out)  # onto an empty folder too
    except Exception as error:
        if not is_disk_full(error, parent):
            raise
        free = shutil.disk_usage(parent).free / 2**20
        file = failed_file(error, written)
        file = os.path.join(out, os.path.relpath(file, incomplete)) if file else out
        raise ValueError(f"could not write {file}: no space left on the device "
                         f"that holds {parent} ({free:.1f} MiB free); nothing was exported, free some space and run "
                         "it again") from None
    finally:
        shutil.rmtree(incomplete, ignore_errors=True)
    samples = f", {SAMPLES_FILE} ({num_samples} samples)" if num_samples else ""
    return f"checkpoint-{step} ({weights}) -> {out}: pipeline, README.md{samples}"


def main(argv=None, prog="python -m annotated_pipeline.commands.export"):
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write a training checkpoint (OUTPUT_DIR/checkpoint-N) as a saved pipeline folder that loads with "
                    "AnnotatedDDPMPipeline.from_pretrained or plain diffusers (trust_remote_code=True): the EMA weights "
                    "where the run kept them, the run's grid sampler and steps as the folder's sampling defaults, "
                    "samples.png and a model card.",
        epilog=f"examples:\n  {prog} runs/quick/checkpoint-300 my-model\n  {prog} runs/quick/checkpoint-300 my-model "
               "--no-ema   # the training weights theta")
    parser.add_argument("checkpoint", help="a training checkpoint folder, output_dir/checkpoint-N")
    parser.add_argument("out", type=output_folder, help="the pipeline folder to write (new, or empty)")
    parser.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                        help="--ema: the EMA weights (an error if the run kept none); --no-ema: the training "
                             "weights; default: the EMA weights where the checkpoint has them")
    parser.add_argument("--sigma_rel", type=float, default=None,
                        help="the post-hoc EMA of this width relative to the run's length, synthesized from the "
                             "snapshots of a run trained with --posthoc_ema_every (Karras et al. 2024; e.g. 0.05-0.15)")
    parser.add_argument("--num_samples", type=int, default=DEFAULT_NUM_SAMPLES,
                        help="samples in samples.png, drawn as the training run draws its grids (0: none)")
    args = parser.parse_args(argv)

    def work():
        start = time.perf_counter()
        summary = export(args.checkpoint, args.out, args.ema, args.num_samples, args.sigma_rel)
        print(f"Exported {summary} in {time.perf_counter() - start:.1f} s")

    return run_reporting(prog, work)


if __name__ == "__main__":
    sys.exit(main())
