"""Every file or folder a command will write, checked when its options are parsed: before any model is loaded
or any image sampled, a path that cannot be written is one argparse error (`prog: error: argument --output:
...`, exit status 2) that says what is wrong and what would work.

    parser.add_argument("--output", type=output_file(IMAGE), default="grid.png")
    parser.add_argument("--json", type=output_file(JSON))
    parser.add_argument("--output_dir", type=output_folder)

A file: its suffix must be one the writer takes (IMAGE: those PIL saves, e.g. .png .jpg .webp .gif; GIF;
JSON), its folder must exist and be writable, and it must not be a folder itself. A folder (created by the
command, with its parents): it must not be a file, and the nearest folder that exists above it must be writable.
"""

import argparse
import os
from pathlib import Path

GIF = (".gif",)
JSON = (".json",)


def image_suffixes() -> tuple[str, ...]:
    """The suffixes of the image formats PIL can write here (".png", ".jpg", ".webp", ...), sorted."""
    from PIL import Image

    Image.init()
    return tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE))


IMAGE = "image"  # resolved to image_suffixes() when checked


def check_output_file(path, suffixes=IMAGE) -> str:
    """`path` if a file can be written there, else a ValueError naming the problem and what is allowed."""
    path = os.fspath(path)
    allowed = image_suffixes() if suffixes == IMAGE else tuple(suffixes)
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        shown = ", ".join(s for s in allowed if s in (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tiff", ".json"))
        raise ValueError(f"{path!r} does not end in a format this writes ({suffix or 'no suffix'}); use one of "
                         f"{shown or ', '.join(allowed)}")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a folder; give a file name inside it, e.g. {os.path.join(path, 'out' + allowed[0])}")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        what = "is a file" if os.path.exists(folder) else "does not exist"
        raise ValueError(f"cannot write {path!r}: the folder {folder!r} {what} (create it first: mkdir -p {folder})")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write {path!r}: the folder {folder!r} is not writable")
    return path


def check_output_folder(path) -> str:
    """`path` if it is, or can be made, a writable folder; else a ValueError naming the problem."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{path!r} is a file, not a folder")
    existing = Path(os.path.abspath(path))
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"cannot create the folder {path!r}: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK):
        raise ValueError(f"cannot write into {path!r}: {str(existing)!r} is not writable")
    return path


def output_file(suffixes=IMAGE):
    """An argparse `type` for a file the command writes (see `check_output_file`)."""
    def parse(text):
        try:
            return check_output_file(text, suffixes)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def output_folder(text):
    """An argparse `type` for a folder the command writes into (see `check_output_folder`)."""
    try:
        return check_output_folder(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
