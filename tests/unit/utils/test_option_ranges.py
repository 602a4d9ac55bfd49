"""Numeric options within documented ranges (utils/options.py): refused when parsed, in one line, exit status 2;
--guidance_scale's range is the pipeline's own (pipelines/pipeline_inputs.py, GUIDANCE_SCALE_RANGE)."""

import importlib

import pytest

from annotated_pipeline.pipelines.pipeline_inputs import GUIDANCE_SCALE_RANGE
from annotated_pipeline.utils.options import SCALE_RANGE, number_in

# Every command with --guidance_scale, and one with --scale; "missing" is never loaded: parsing refuses first.
GUIDED = ["commands.sample", "commands.interpolate", "commands.img2img", "commands.inpaint", "evaluation.evaluate",
          "visualize.denoising", "visualize.attention"]


def test_number_in_takes_the_range_and_refuses_the_rest():
    scale = number_in(int, 1, 32)
    assert scale("1") == 1 and scale("32") == 32
    for bad in ("0", "33", "2.5", "x"):
        with pytest.raises(Exception, match=r"1\.\.32"):
            scale(bad)
    guidance = number_in(float, 0.0, 50.0)
    assert guidance("0") == 0.0 and guidance("7.5") == 7.5
    for bad in ("1e30", "-0.1", "nan", "inf"):
        with pytest.raises(Exception, match=r"must be in 0\.\.50, got"):
            guidance(bad)


def parse_error(module, argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(f"annotated_pipeline.{module}").main(["missing", *argv], prog="p")
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize("module", GUIDED)
def test_guidance_scale_outside_the_pipeline_s_range_is_refused_when_parsed(module, capsys):
    assert parse_error(module, ["--guidance_scale", "1e30"], capsys) == \
        "p: error: argument --guidance_scale: must be in 0..50, got 1e30"
    with pytest.raises(SystemExit):
        importlib.import_module(f"annotated_pipeline.{module}").main(["--help"], prog="p")
    assert "0..50" in " ".join(capsys.readouterr().out.split())  # the help says the range it checks
    assert GUIDANCE_SCALE_RANGE == (0.0, 50.0)


@pytest.mark.parametrize("module", ["commands.sample", "commands.interpolate", "visualize.denoising"])
def test_scale_outside_its_range_is_refused_when_parsed(module, capsys):
    assert parse_error(module, ["--scale", "100000"], capsys) == \
        f"p: error: argument --scale: must be in {SCALE_RANGE[0]}..{SCALE_RANGE[1]}, got 100000"
