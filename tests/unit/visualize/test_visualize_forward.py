"""The forward-process strip and the schedule curves against the closed forms; the four subcommands on the shipped model."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from annotated_pipeline.commands.cli import SUBCOMMANDS
from annotated_pipeline.commands.cli import main as cli
from annotated_pipeline.scheduler import make_betas
from annotated_pipeline.visualize.forward import SCHEDULES, embedded_image, forward_process_figure
from annotated_pipeline.visualize.images import to_pil
from annotated_pipeline.visualize.schedules import log_snr, schedules_figure

PRETRAINED = Path(__file__).resolve().parents[3] / "pretrained" / "ddpm-fashion-mnist"


def test_forward_strip_cells_are_eq_4_with_one_eps():
    x0 = torch.linspace(-1, 1, 64).reshape(1, 8, 8)
    timesteps = [0, 100, 299]
    figure = forward_process_figure(x0, timesteps, ["linear", "squaredcos_cap_v2"], num_train_timesteps=300, seed=3, scale=1)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    alpha_bar = torch.cumprod(1 - make_betas("linear", 300, 1e-4, 0.02), 0)
    canvas = np.asarray(figure)
    for j, t in enumerate(timesteps):  # row 0 is the linear schedule: find each expected cell in the canvas
        expected = np.asarray(to_pil(alpha_bar[t].sqrt() * x0 + (1 - alpha_bar[t]).sqrt() * eps))
        found = any(np.array_equal(canvas[y:y + 8, x:x + 8], expected)
                    for y in range(canvas.shape[0] - 7) for x in range(canvas.shape[1] - 7))
        assert found, t
    with pytest.raises(ValueError, match="0..299"):
        forward_process_figure(x0, [300], num_train_timesteps=300)
    with pytest.raises(ValueError, match="unknown schedules"):
        forward_process_figure(x0, [0], ["cosine"])  # the alias is the scheduler's; the figures take diffusers' names


def test_embedded_image_and_log_snr():
    x0, name = embedded_image(0)
    assert x0.shape == (1, 28, 28) and -1 <= x0.min() and x0.max() <= 1 and isinstance(name, str)
    a = torch.tensor([0.5, 0.9, 1e-9])
    torch.testing.assert_close(log_snr(a), torch.log(a.double() / (1 - a.double())))
    figure = schedules_figure(["linear", "squaredcos_cap_v2"], (1000, 300), dpi=40)
    assert figure.mode == "RGB" and figure.width > 200


def test_the_four_subcommands_write_their_pictures_from_the_shipped_model(tmp_path, capsys):
    for name in ("attention", "denoise", "forward", "schedules"):
        assert name in SUBCOMMANDS
    fast = ["--num_images", "2", "--num_inference_steps", "4", "--scheduler", "dpmsolver", "--seed", "1"]
    assert cli(["attention", str(PRETRAINED), *fast, "--num_timesteps", "2", "--class_labels", "9",
                "--guidance_scale", "2", "--guidance_interval", "200", "700", "--output", str(tmp_path / "a.png")]) == 0
    assert cli(["denoise", str(PRETRAINED), *fast, "--every", "2", "--output", str(tmp_path / "d.gif")]) == 0
    assert cli(["forward", "--timesteps", "0", "500", "999", "--output", str(tmp_path / "f.png")]) == 0
    assert cli(["schedules", "--dpi", "40", "--output", str(tmp_path / "s.png")]) == 0
    with Image.open(tmp_path / "d.gif") as gif:
        assert gif.n_frames == 4  # steps 0 and 2, the last step (3), then the samples
    for name in ("a.png", "d.png", "f.png", "s.png"):
        with Image.open(tmp_path / name) as image:
            assert image.width > 50
    out = capsys.readouterr().out
    assert "-> " + str(tmp_path / "a.png") in out and "-> " + str(tmp_path / "d.gif") in out
    # bad options: one line, exit 2
    assert cli(["attention", str(PRETRAINED), "--num_images", "2", "--class_labels", "1", "2", "3"]) == 2
    assert cli(["attention", str(PRETRAINED), "--num_inference_steps", "4", "--timesteps", "5"]) == 2
    assert cli(["denoise", str(PRETRAINED), "--output", "x.png"]) == 2
    assert cli(["forward", "--schedules", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--class_labels takes one class or one per image" in err and "not in the sampler's chain" in err
    assert "use one of .gif" in err and "invalid choice: 'nope'" in err


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule_has_a_label(name):
    from annotated_pipeline.visualize.forward import SCHEDULE_LABELS

    assert SCHEDULE_LABELS[name]
