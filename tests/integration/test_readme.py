"""Every code block of README.md runs as written, in a fresh folder that links the clone's
`pretrained/` and `docs/`: the Python block in a fresh interpreter (its printed output checked against
the block after it), the shell blocks with bash, their work scaled down by the substitutions listed
here (step and sample counts only, never what a command does).

Five blocks are not run here, each for a reason, and each is run elsewhere: `bash quickstart.sh` and
`bash .ci/run` (the whole install; CI runs .ci/run, and test_wheel.py installs the package from a wheel),
the install block (test_wheel.py), `python app.py` (serves until stopped; test_app.py serves and drives
it), the test command itself (it is this suite), and the two-machine launch (it needs two machines;
tests/integration/test_multi_machine.py runs it as two commands on localhost).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
OFFICIAL = Path("/usr/share/datasets/fashion-mnist")
BLOCKS = FENCE.findall((REPO / "README.md").read_text())
OUTPUT_OPTION = re.compile(r"--(?:output|output_dir|figure|json) (\S+)")  # what a block says it writes
NOT_RUN = ("bash quickstart.sh", "python3 -m venv .venv", 'pip install ".[demo]"', 'pip install -e ".[test]"',
           "# Two machines")

# Substitutions per block, matched by a text the block holds; each must occur.
SCALE = {
    "annotated-pipeline sample pretrained/": [],  # 20 DPM-Solver++ steps: already small
    "I=docs/images/edit-inputs": [("--num_inference_steps 50", "--num_inference_steps 4"),
                                  ("--num_samples 4", "--num_samples 1"), ("--jump_n_sample 3", "--jump_n_sample 1")],
    "# 300 steps": [("--max_train_steps 11000", "--max_train_steps 3"), ("--max_train_steps 300", "--max_train_steps 2"),
                    ("--max_train_steps 600", "--max_train_steps 4"), ("--checkpointing_steps 300", "--checkpointing_steps 2"),
                    ("--checkpointing_steps 500", "--checkpointing_steps 1"), ("--train_batch_size 64", "--train_batch_size 8"),
                    ("--lr_warmup_steps 200", "--lr_warmup_steps 1"), ("--lr_cooldown_steps 4400", "--lr_cooldown_steps 1"),
                    ("--posthoc_ema_every 500", "--posthoc_ema_every 1"), ("checkpoint-11000", "checkpoint-3")],
    "annotated-pipeline evaluate pretrained/": [("--num_samples 1000", "--num_samples 20"),
                                                ("--num_inference_steps 50", "--num_inference_steps 3")],
    "annotated-pipeline shapes shapes": [("--num_images 2000", "--num_images 60"), ("--epochs 4", "--epochs 1"),
                                         ("--max_train_steps 1500", "--max_train_steps 2"),
                                         ("--lr_warmup_steps 100", "--lr_warmup_steps 1"),
                                         ("--checkpointing_steps 500", "--checkpointing_steps 2"),
                                         ("--eval_steps 500", "--eval_steps 2"), ("--eval_num_samples 200", "--eval_num_samples 4"),
                                         ("checkpoint-1500", "checkpoint-2"), ("--num_samples 400", "--num_samples 8"),
                                         ("--num_inference_steps 20", "--num_inference_steps 2"),
                                         ("--num_samples 64 --num_show 6", "--num_samples 4 --num_show 2")],
}


def shell_blocks():
    blocks = [body for lang, body in BLOCKS if lang == "bash"]
    return [b for b in blocks if not b.lstrip().startswith(NOT_RUN)]


def test_every_block_is_run_here_or_named_as_run_elsewhere():
    bash = [body for lang, body in BLOCKS if lang == "bash"]
    assert len(bash) - len(shell_blocks()) == len(NOT_RUN)
    assert [next(k for k in SCALE if k in b) for b in shell_blocks()] == list(SCALE)
    assert [lang for lang, _ in BLOCKS].count("python") == 1


@pytest.fixture
def reader(tmp_path):
    """An empty folder as a reader's working directory, with the clone's shipped model and example images."""
    for name in ("pretrained", "docs"):
        (tmp_path / name).symlink_to(REPO / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(HF_HUB_OFFLINE="1", PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    return tmp_path, env


def test_the_python_block_prints_what_the_readme_shows(reader):
    folder, env = reader
    index = [lang for lang, _ in BLOCKS].index("python")
    result = subprocess.run([sys.executable, "-c", BLOCKS[index][1]], cwd=folder, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == BLOCKS[index + 1][1]


@pytest.mark.parametrize("key", list(SCALE))
def test_each_shell_block_runs(reader, key):
    folder, env = reader
    block = next(b for b in shell_blocks() if key in b)
    for text, replacement in SCALE[key]:
        assert text in block, text
        block = block.replace(text, replacement)
    if str(OFFICIAL) in block and not OFFICIAL.is_dir():
        pytest.fail(f"{OFFICIAL} is missing: `apt-get install dataset-fashion-mnist` (.ci/run installs it)")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=folder, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, f"{block}\n---\n{result.stderr[-3000:]}"
    # What the block says it writes is there, and reads back: images as images, JSON as JSON, folders not empty.
    outputs = OUTPUT_OPTION.findall(block)
    assert outputs, "every README shell block writes something"
    for path in outputs:
        written = folder / path
        assert written.exists(), f"{path} (named in the block) was not written"
        if written.is_dir():
            assert any(written.iterdir()), f"{path} is empty"
        elif written.suffix in (".png", ".gif"):
            with Image.open(written) as image:
                assert min(image.size) >= 28, (path, image.size)
        elif written.suffix == ".json":
            assert json.loads(written.read_text())
