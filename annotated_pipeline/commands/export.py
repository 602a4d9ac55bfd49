"""A training checkpoint as a saved pipeline, and the loader that takes either:

    annotated-pipeline export out/checkpoint-2000 my-model            # EMA weights where the run kept them
    annotated-pipeline export out/checkpoint-2000 my-model --no-ema   # the training weights theta
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


def export(checkpoint, out, ema=None, num_samples=DEFAULT_NUM_SAMPLES):
    """Write the pipeline of `checkpoint` (see `pipeline_from_checkpoint`) into the new folder `out`, with
    `num_samples` samples as samples.png (0: none) and a model card; returns a one-line summary."""
    from ..hub import write_model_card
    from ..training.build import describe_data
    from ..training.checkpointing import checkpoint_step, read_training_args
    from ..training.outputs import SAMPLES_FILE, draw_samples, samples_image, sampling_recommended

    folder = model_folder(checkpoint, ema)  # refuses incomplete and model-less checkpoints first
    check_output_folder(out)
    if num_samples < 0:
        raise ValueError(f"--num_samples must be >= 0; got {num_samples}")
    used_ema = os.path.basename(folder) == EMA_FOLDER
    pipeline = pipeline_from_checkpoint(checkpoint, ema)
    step = checkpoint_step(checkpoint)
    record = read_training_args(checkpoint) or {}
    training_args = dict(record.get("args") or {})
    weights = "EMA weights" if used_ema else "training weights"
    # Written beside OUT, then renamed into place: a failed export leaves no half-written OUT.
    parent, name = os.path.split(os.path.abspath(out))
    incomplete = os.path.join(parent, f".{name}.incomplete")
    shutil.rmtree(incomplete, ignore_errors=True)
    grid_scheduler = training_args.get("grid_scheduler", "dpmsolver")
    grid_steps = training_args.get("ddpm_num_inference_steps", 20)
    try:
        # The folder samples as the run drew its grids: that sampler as its scheduler, those steps in model_index.json.
        sampling_recommended(pipeline, grid_scheduler, grid_steps).save_pretrained(incomplete)
        if num_samples:
            images = draw_samples(pipeline, num_samples, grid_steps, training_args.get("seed", 0),
                                  scheduler=grid_scheduler, progress=True)
            samples_image(images).save(os.path.join(incomplete, SAMPLES_FILE))
        dataset = None
        if training_args:  # recorded by the run (training_args.json)
            dataset = describe_data(Namespace(**{"dataset_name": None, "train_data_dir": None, **training_args}))
        training_args["global_step"] = step
        write_model_card(incomplete, repo_id_or_path=out, training_args=training_args, dataset_name=dataset,
                         samples_file=SAMPLES_FILE, extra=f"Exported from the training checkpoint `checkpoint-{step}` "
                                                          f"({weights}) with `annotated-pipeline export`.")
        os.replace(incomplete, out)  # onto an empty folder too
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
    parser.add_argument("--num_samples", type=int, default=DEFAULT_NUM_SAMPLES,
                        help="samples in samples.png, drawn as the training run draws its grids (0: none)")
    args = parser.parse_args(argv)

    def work():
        start = time.perf_counter()
        summary = export(args.checkpoint, args.out, args.ema, args.num_samples)
        print(f"Exported {summary} in {time.perf_counter() - start:.1f} s")

    return run_reporting(prog, work)


if __name__ == "__main__":
    sys.exit(main())
