"""Training with Accelerate, one concept per module, in the order a run meets them:

    settings.py       the settings, one dataclass per group: each option's type, allowed values, default, help
    options.py        the argument parser, generated from settings.py (option_types.py: reading the text)
    args.py           parse_args and the checks of what the arguments alone can tell
    data.py           the training images: a Hub data set, a folder, or the embedded sample
    fashion_mnist.py  the Fashion-MNIST files (IDX, SHA-256 checked) and class names
    base_model.py     fine-tuning: the U-Net and schedule of a saved pipeline, repo or checkpoint
    build.py          accelerator, noise scheduler, U-Net, data, plan, optimizer, LR schedule, EMA
    step.py           one step of Ho et al. 2020, Algorithm 1
    resume.py         --resume_from_checkpoint, and the check of changed arguments
    checkpointing.py  atomic checkpoints, `latest`, pruning
    posthoc_ema.py    power-function averages of the weights, any length chosen after training (Karras et al. 2024)
    run_state.py      what resuming loads, as safetensors/JSON/weights-only: never code from the folder
    ownership.py      the lock on --output_dir, and a folder that holds another run
    checkpoint_models.py  checkpoint-N/unet/, unet_ema/, scheduler/: checkpoints that are models
    safeguards.py     a run that diverges, an output folder that cannot be written
    distributed.py    a peer that stops answering
    sampling.py       sample grids and the saved pipeline folder
    push.py           --push_to_hub
    loop.py           the run: all of the above, in order

Nothing is imported here so that `import annotated_pipeline.datasets.fashion_mnist` stays cheap;
import the submodule you need.
"""
