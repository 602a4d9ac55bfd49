"""outputs.py: a path a command cannot write is refused when the options are parsed, naming what would work;
and every command's output options go through it, so the refusal comes before any loading or sampling."""

import os

import pytest
from PIL import Image

from annotated_pipeline.commands import cli
from annotated_pipeline.utils import outputs


def test_files(tmp_path):
    assert outputs.check_output_file(tmp_path / "grid.png") == str(tmp_path / "grid.png")
    assert outputs.check_output_file(tmp_path / "grid.JPG") == str(tmp_path / "grid.JPG")
    assert outputs.check_output_file(tmp_path / "r.json", outputs.JSON)
    for path, suffixes, message in (
            (tmp_path / "missing" / "s.png", outputs.IMAGE, "the folder '.*missing' does not exist .*mkdir -p"),
            (tmp_path / "s.jpgg", outputs.IMAGE, r"\(.jpgg\); use one of .*\.jpg.*\.png"),
            (tmp_path / "s", outputs.IMAGE, "no suffix"),
            (tmp_path / "d.png", outputs.GIF, "use one of .gif"),
            (tmp_path / "r.txt", outputs.JSON, "use one of .json")):
        with pytest.raises(ValueError, match=message):
            outputs.check_output_file(path, suffixes)
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        outputs.check_output_file(tmp_path / "folder.png")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        outputs.check_output_file(tmp_path / "file" / "s.png")


def test_every_image_suffix_offered_is_one_pil_writes(tmp_path):
    for suffix in (".png", ".jpg", ".webp", ".gif", ".bmp"):
        assert suffix in outputs.image_suffixes()
        Image.new("RGB", (4, 4)).save(tmp_path / f"x{suffix}")  # the independent truth: PIL writes it


def test_folders(tmp_path):
    assert outputs.check_output_folder(tmp_path / "new" / "deeper") == str(tmp_path / "new" / "deeper")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        outputs.check_output_folder(tmp_path / "file")
    with pytest.raises(ValueError, match="is a file"):
        outputs.check_output_folder(tmp_path / "file" / "inside")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ValueError, match="not writable"):
        outputs.check_output_file(locked / "s.png")


# Each command with an unwritable output, and a pipeline that does not exist: the output is named, not the pipeline,
# so it was checked first.
BAD_OUTPUTS = [
    ("sample", ["nowhere-model", "--output", "{missing}/s.png"], "argument --output: cannot write"),
    ("sample", ["nowhere-model", "--output", "{tmp}/s.jpgg"], "argument --output: "),
    ("evaluate", ["nowhere-model", "--json", "{missing}/r.json"], "argument --json: cannot write"),
    ("nearest", ["nowhere-model", "--train_data", "x", "--output", "{tmp}/n.txt"], "argument --output: "),
    ("nearest", ["nowhere-model", "--train_data", "x", "--json", "{missing}/r.json"], "argument --json: "),
    ("inpaint", ["nowhere-model", "a.png", "--keep", "left", "--figure", "{missing}/f.png"], "argument --figure: "),
    ("img2img", ["nowhere-model", "a.png", "--output_dir", "{file}/out"], "argument --output_dir: "),
    ("interpolate", ["nowhere-model", "--figure", "{tmp}/f.jpgg"], "argument --figure: "),
    ("denoise", ["nowhere-model", "--output", "{tmp}/d.png"], "argument --output: "),
    ("attention", ["nowhere-model", "--output", "{missing}/a.png"], "argument --output: "),
    ("forward", ["--output", "{missing}/f.png"], "argument --output: "),
    ("schedules", ["--output", "{missing}/s.png"], "argument --output: "),
    ("export", ["nowhere/checkpoint-1", "{file}/out"], "argument out: "),
    ("train-classifier", ["nowhere-data", "--output_dir", "{file}"], "argument --output_dir: "),
    ("shapes", ["{file}"], "argument out_dir: "),
]


@pytest.mark.parametrize("command, argv, message", BAD_OUTPUTS)
def test_each_command_refuses_an_unwritable_output_before_any_work(command, argv, message, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    names = dict(tmp=tmp_path, missing=tmp_path / "missing", file=tmp_path / "file")
    assert cli.main([command, *(arg.format(**names) for arg in argv)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"annotated-pipeline {command}: error: {message}"), error
