"""The demo from the package (issue #33): `annotated-pipeline demo` and `python -m annotated_pipeline.commands.demo` serve the
page a wheel ships (demo_page.py); a model that does not load stops the command with one line; each click clears
the last request's outputs first; help texts name only commands an installed wheel has."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel
from annotated_pipeline.commands import cli

ROOT = Path(__file__).resolve().parents[2]
PRETRAINED = ROOT / "pretrained" / "ddpm-fashion-mnist"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)}
ENV.pop("ANNOTATED_PIPELINE_MODEL", None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_demo_subcommand_serves_the_page(tmp_path):
    port = free_port()
    log = open(tmp_path / "demo.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "annotated_pipeline.commands.cli", "demo", "--model", str(PRETRAINED),
                                "--host", "127.0.0.1", "--port", str(port)], cwd=tmp_path, env=ENV, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        deadline, page = time.monotonic() + 240, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode()
                    break
            except OSError:
                time.sleep(1)
        assert page is not None, (tmp_path / "demo.log").read_text()[-3000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=30) as response:
            assert "annotated-pipeline: a DDPM for Fashion-MNIST" in response.read().decode()
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


@pytest.mark.slow
@pytest.mark.parametrize("command", [["app.py"], ["-m", "annotated_pipeline.commands.demo"]])
def test_a_model_that_does_not_load_is_one_line_and_status_2(command, tmp_path):
    result = subprocess.run([sys.executable, *command, "--model", str(tmp_path / "typo")], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not load" in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(("python app.py: error: ", "python -m annotated_pipeline.commands.demo: error: "))


def test_each_click_clears_the_last_outputs_before_it_runs():
    from annotated_pipeline.commands.demo_page import build_demo

    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2,
                                attention_head_dim=8, num_class_embeds=3, null_class_embed=True)
    pipe = AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine"))
    page = build_demo("tiny", loaded=(pipe, None))
    dependencies = page.config["dependencies"]
    generate = next(d for d in dependencies if d.get("api_name") == "generate")
    clear = next(d for d in dependencies if d["id"] != generate["id"] and d["outputs"] == generate["outputs"])
    assert generate["trigger_after"] == clear["id"]  # `.then`: the run follows the clearing
    assert page.fns[clear["id"]].fn() == (None, None, None, None, "")  # samples, pictures and the summary emptied


def test_help_texts_name_commands_a_wheel_has(capsys):
    for name in cli.SUBCOMMANDS:
        if name == "demo":
            continue  # its --help imports Gradio: checked by the subcommand test above
        assert cli.main([name, "--help"]) == 0
        text = capsys.readouterr().out
        assert "train_accelerate.py" not in text and "app.py" not in text, name
    assert "demo" in cli.usage()
