"""The annotated-pipeline demo: sample Fashion-MNIST images from a trained DDPM in the browser (Gradio).

    python app.py                                   # the shipped model, http://127.0.0.1:7860
    python app.py --model PATH_OR_REPO_ID [--trust_remote_code] [--threads 1] [--host 0.0.0.0] [--port 7860]

This file is a Hugging Face Space's `app.py` (see space/README.md); the page itself is the package's
(`annotated_pipeline/commands/demo_page.py`, also served by `annotated-pipeline demo` from an installed wheel). Here the
default model is `pretrained/ddpm-fashion-mnist` beside this file, unless `--model` (or the environment variable
ANNOTATED_PIPELINE_MODEL, how a Space is told) names another. A model that does not load is one line on stderr
and exit status 2.
"""

import sys
from pathlib import Path

from annotated_pipeline.commands import demo
from annotated_pipeline.commands.demo_page import CSS, DESCRIPTION, build_demo, load_model, model_status  # noqa: F401
from annotated_pipeline.commands.demo_page import main as serve

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = str(HERE / demo.DEFAULT_MODEL_FOLDER)


def main(argv=None):
    return serve(argv, prog="python app.py", default_model=DEFAULT_MODEL)


if __name__ == "__main__":
    sys.exit(main())
