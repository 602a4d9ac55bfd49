"""The package works wherever it is installed: build the wheel, install it into a fresh virtual
environment outside the checkout, and from an empty folder train, sample and push with the console script.

The new environment gets the project's dependencies from the test environment's site-packages (a .pth
line: importable, but the editable install of the checkout in there is not), and the project itself only
from the wheel, so anything the package reads from the checkout instead of from itself fails here.
"""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hub_server import LocalHub, hub_env

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                            str(root / "dist"), str(REPO)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((root / "dist").glob("annotated_pipeline-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    new_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    Path(new_site, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                                "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    if "no such option: --python" in installed.stderr:  # pip < 22.3: install with the new environment's own pip
        installed = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                                   capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    work = root / "empty"
    work.mkdir()
    return venv, work, wheel


def run(venv, work, *argv, env=None, timeout=600):
    env = dict(os.environ if env is None else env, PYTHONSAFEPATH="1", PATH=f"{venv / 'bin'}:{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], cwd=work, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_wheel_holds_the_package_data(wheel_env):
    import zipfile

    _, _, wheel = wheel_env
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("annotated_pipeline/data/fashion-mnist-sample/train.parquet",
                 "annotated_pipeline/data/fashion-mnist-sample/README.md",
                 "annotated_pipeline/templates/model_card.md",
                 "annotated_pipeline/evaluation/weights/diffusion_pytorch_model.safetensors"):
        assert name in names, name


def test_installed_wheel_trains_samples_and_pushes_from_an_empty_folder(wheel_env, tmp_path):
    venv, work, _ = wheel_env
    where = run(venv, work, "python", "-c", "import annotated_pipeline; print(annotated_pipeline.__file__)")
    assert where.returncode == 0, where.stderr[-2000:]
    assert str(venv) in where.stdout and str(REPO) not in where.stdout  # the wheel's copy, not the checkout

    with LocalHub(tmp_path / "hub") as hub:
        env = hub_env(hub.endpoint, tmp_path / "hf_home")
        trained = run(venv, work, "annotated-pipeline", "train", "--output_dir", "out", "--max_train_steps", "3",
                      "--dim", "8", "--dim_mults", "1,2", "--ddpm_num_steps", "20", "--ddpm_num_inference_steps", "2",
                      "--eval_batch_size", "2", "--train_batch_size", "4", "--lr_warmup_steps", "1", "--logger", "none",
                      "--push_to_hub", "--hub_model_id", "test-user/from-a-wheel", env=env)
        assert trained.returncode == 0, trained.stderr[-3000:]
        assert "Fashion-MNIST (2,000-image sample shipped with annotated-pipeline), 2000 images" in trained.stderr
        pushed = hub.files("test-user/from-a-wheel")
    out = work / "out"
    # The folder's scheduler is the grid's sampler, diffusers' DPM-Solver++ (no code file needed), 2 steps by default.
    for name in ("model_index.json", "pipeline.py", "unet/unet_2d.py", "scheduler/scheduler_config.json",
                 "unet/diffusion_pytorch_model.safetensors", "samples.png", "README.md"):
        assert (out / name).is_file(), name
        assert name in pushed, name
    card = ModelCard.load(out / "README.md")
    assert "annotated-pipeline" in card.data.tags and "from_pretrained" in card.text

    sampled = run(venv, work, "annotated-pipeline", "sample", "out", "--num_images", "4", "--num_inference_steps", "2",
                  "--output", "grid.png")
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    assert (work / "grid.png").is_file() and "4 samples" in sampled.stdout
    sampled = run(venv, work, "annotated-pipeline", "sample", "out", "--num_images", "2", "--output", "defaults.png")
    assert sampled.returncode == 0 and "2 samples (DPMSolverMultistepScheduler, 2 steps, seed 0)" in sampled.stdout


def test_the_wheel_has_the_demo_and_names_only_its_own_commands(wheel_env):
    venv, work, _ = wheel_env
    for argv in (["annotated-pipeline", "demo", "--help"], ["python", "-m", "annotated_pipeline.commands.demo", "--help"]):
        shown = run(venv, work, *argv)
        assert shown.returncode == 0 and shown.stdout.startswith("usage: ") and "--model" in shown.stdout, shown.stderr
    refused = run(venv, work, "annotated-pipeline", "demo", "--model", "no-such-model", env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].startswith("annotated-pipeline demo: error: ")
    trained = run(venv, work, "annotated-pipeline", "train", "--help")
    words = " ".join(trained.stdout.split())  # argparse wraps the description
    assert "train_accelerate.py" not in words and "accelerate launch -m annotated_pipeline.train" in words


def test_installed_wheel_builds_the_annotated_edition(wheel_env, tmp_path):
    """`annotated-pipeline docs` from the wheel: templates and assets are package data, the source is the wheel's,
    and with no model beside the install the figures are asked for, in one line, before any work."""
    import zipfile

    venv, work, wheel = wheel_env
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("templates/page.html", "templates/index.md", "assets/edition.css", "assets/edition.js"):
        assert f"annotated_pipeline/edition/{name}" in names, name
    refused = run(venv, work, "annotated-pipeline", "docs", "--output", str(tmp_path / "refused"))
    assert refused.returncode == 2 and not (tmp_path / "refused").exists()
    assert refused.stderr.strip().splitlines()[-1].startswith("annotated-pipeline docs: error: no model to draw the figures")
    built = run(venv, work, "annotated-pipeline", "docs", "--output", str(tmp_path / "site"), "--no-figures")
    assert built.returncode == 0, built.stderr[-3000:]
    unet_page = (tmp_path / "site" / "unet.html").read_text()
    assert 'id="AnnotatedUNet2DModel"' in unet_page and str(venv) not in unet_page
    listing = (tmp_path / "site" / "source" / "annotated_pipeline.losses.html").read_text()
    installed = next(venv.rglob("site-packages/annotated_pipeline/losses.py")).read_text()
    assert "def q_sample" in installed and "q_sample" in listing
    assert "this build had none" in (tmp_path / "site" / "notebook.html").read_text()  # no notebook in a wheel


def test_installed_wheel_computes_the_inception_fid_offline(wheel_env, tmp_path):
    """`annotated-pipeline fid` from the wheel with the [inception] extra present (its package from the test
    environment): the same FID as the checkout's library on the same folders, statistics saved and reused."""
    import json

    import numpy as np
    from PIL import Image

    from annotated_pipeline.evaluation.fid import fid

    venv, work, _ = wheel_env
    rng = np.random.default_rng(0)
    for name, shift in (("a", 0), ("b", 60)):
        (tmp_path / name).mkdir()
        for i in range(8):  # two small sets of noisy grey squares, b brighter than a
            pixels = np.clip(rng.normal(100 + shift, 40, (28, 28)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(tmp_path / name / f"{i}.png")
    result = run(venv, work, "annotated-pipeline", "fid", str(tmp_path / "a"), str(tmp_path / "b"), "--kid",
                 "--kid_subset_size", "4", "--kid_subsets", "5", "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("FID: ") and "KID: " in result.stdout
    wheel_fid = json.loads((tmp_path / "r.json").read_text())["fid"]
    assert abs(wheel_fid - fid(str(tmp_path / "a"), str(tmp_path / "b"))["fid"]) <= 1e-6 * wheel_fid
    saved = run(venv, work, "annotated-pipeline", "fid", str(tmp_path / "a"), "--save-stats", str(tmp_path / "a.npz"))
    assert saved.returncode == 0, saved.stderr[-3000:]
    again = run(venv, work, "annotated-pipeline", "fid", str(tmp_path / "a.npz"), str(tmp_path / "b"),
                "--json", str(tmp_path / "s.json"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert abs(json.loads((tmp_path / "s.json").read_text())["fid"] - wheel_fid) <= 1e-6 * wheel_fid
