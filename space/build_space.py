"""Assemble the demo's Hugging Face Space in a folder, ready to upload. This script never uploads.

    python space/build_space.py OUT --bundle_model                  # the Space carries the shipped model
    python space/build_space.py OUT --model_repo_id USER/MODEL      # the Space reads a model from the Hub

OUT then holds what a Space runs (`python app.py` in a folder with these files):

    README.md            space/README.md: the Space's front matter (sdk gradio, sdk_version, app_file) and page;
                         with --model_repo_id its `models` lists the model, which links the two on the Hub
    app.py               the demo
    requirements.txt     the package's dependencies, from pyproject.toml (gradio comes from sdk_version)
    annotated_pipeline/  the package's source, which app.py imports (it is not on PyPI)
    pretrained/ddpm-fashion-mnist/   with --bundle_model: the shipped model, app.py's default

Upload it (with a token that may write to USER):

    from huggingface_hub import create_repo, upload_folder
    create_repo("USER/ddpm-demo", repo_type="space", space_sdk="gradio",
                space_variables=[{"key": "ANNOTATED_PIPELINE_MODEL", "value": "USER/MODEL"}])  # only with --model_repo_id
    upload_folder(repo_id="USER/ddpm-demo", repo_type="space", folder_path="OUT")

The Space's Gradio is the one its front matter names (`sdk_version`); it must be the `demo` extra's pin
in pyproject.toml, and `build_space` refuses to assemble a Space where the two differ.
"""

import argparse
import shutil
import sys
import tomllib
from pathlib import Path

from annotated_pipeline.commands.demo import DEFAULT_MODEL_FOLDER, MODEL_ENV

ROOT = Path(__file__).resolve().parent.parent
SPACE_README = ROOT / "space" / "README.md"
PACKAGE = "annotated_pipeline"
MODEL = Path(DEFAULT_MODEL_FOLDER)
# A Space's CPU: torch's CPU wheels (a plain `torch` from PyPI is the CUDA build, gigabytes larger).
TORCH_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def gradio_pin(pyproject=ROOT / "pyproject.toml") -> str:
    """The version in the `demo` extra's "gradio==X" requirement."""
    extras = tomllib.loads(Path(pyproject).read_text())["project"]["optional-dependencies"]
    pins = [req.split("==", 1)[1].strip() for req in extras.get("demo", []) if req.replace(" ", "").startswith("gradio==")]
    if len(pins) != 1:
        raise ValueError(f"pyproject.toml's `demo` extra must pin gradio once as gradio==X, got {extras.get('demo')!r}")
    return pins[0]


def requirements(pyproject=ROOT / "pyproject.toml") -> str:
    """requirements.txt: the package's own dependencies, one a line, after the CPU index for torch."""
    dependencies = tomllib.loads(Path(pyproject).read_text())["project"]["dependencies"]
    return "\n".join([TORCH_INDEX, *dependencies]) + "\n"


def build_space(out, model_repo_id=None, bundle_model=False) -> Path:
    """Write the Space's files into `out` (which must be empty or absent); return its path.

    Exactly one of `model_repo_id` (the Space reads that Hub model, through the Space variable
    ANNOTATED_PIPELINE_MODEL) and `bundle_model` (the Space carries pretrained/ddpm-fashion-mnist)."""
    from huggingface_hub import SpaceCard

    if bool(model_repo_id) == bool(bundle_model):
        raise ValueError("give exactly one of model_repo_id (a Hub model the Space loads) and bundle_model=True "
                         "(the Space carries the shipped model)")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; assemble the Space into an empty or new folder")
    card = SpaceCard.load(SPACE_README)
    pin = gradio_pin()
    if str(card.data.sdk_version) != pin:
        raise ValueError(f"space/README.md says sdk_version {card.data.sdk_version}, but pyproject.toml's demo extra "
                         f"pins gradio=={pin}: make them the same")
    if model_repo_id:
        card.data.models = [model_repo_id]
    out.mkdir(parents=True, exist_ok=True)
    card.save(out / "README.md")
    shutil.copy2(ROOT / "app.py", out / "app.py")
    (out / "requirements.txt").write_text(requirements())
    shutil.copytree(ROOT / PACKAGE, out / PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if bundle_model:
        shutil.copytree(ROOT / MODEL, out / MODEL, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return out


def main(argv=None, prog="python space/build_space.py"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="an empty or new folder for the Space's files")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model_repo_id", help="the Hub model the Space loads (listed in its front matter)")
    model.add_argument("--bundle_model", action="store_true", help=f"put the shipped model ({MODEL}) in the Space")
    args = parser.parse_args(argv)
    try:
        out = build_space(args.out, args.model_repo_id, args.bundle_model)
    except ValueError as error:
        parser.exit(2, f"{prog}: error: {error}\n")
    files = sorted(p for p in out.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    print(f"{len(files)} files ({size / 1e6:.1f} MB) in {out}; model: "
          f"{args.model_repo_id + f' (set the Space variable {MODEL_ENV})' if args.model_repo_id else MODEL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
