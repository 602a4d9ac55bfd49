"""The `annotated-pipeline` command (cli.py) and one module per subcommand that is not a library module's own.

    cli.py          the entry point: `annotated-pipeline SUBCOMMAND [options]`
    train.py        train (the run itself: training/)
    sample.py       sample a grid from a saved pipeline or a checkpoint
    export.py       a training checkpoint as a saved pipeline folder
    editing.py      what inpaint, img2img and interpolate share (inputs, outputs, figures)
    inpaint.py, img2img.py, interpolate.py
    demo.py         the Gradio demo

evaluate, train-classifier and nearest are `main`s of evaluation/; attention, denoise, forward and
schedules of visualize/; shapes of datasets/shapes.py.
"""
