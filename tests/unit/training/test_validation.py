"""training/validation.py: the held-out split, the fixed t and eps, the loss in batches, the option checks."""

import datasets
import pytest
import torch

from annotated_pipeline.losses import p_losses
from annotated_pipeline.scheduler import AnnotatedDDPMScheduler
from annotated_pipeline.training.args import TrainingConfigError, parse_args
from annotated_pipeline.training.validation import ValidationLoss, split_off


def toy_dataset(n=20):
    ds = datasets.Dataset.from_dict({"value": list(range(n))})
    ds.set_transform(lambda batch: {"input": [torch.full((1, 4, 4), v / 10.0) for v in batch["value"]],
                                    "label": batch["value"]})
    return ds


def test_split_off_is_seeded_disjoint_and_keeps_the_transform():
    kept, held = split_off(toy_dataset(), 5, seed=0)
    kept_values = [int(kept[i]["input"][0, 0, 0] * 10 + 0.5) for i in range(len(kept))]
    held_values = [int(held[i]["input"][0, 0, 0] * 10 + 0.5) for i in range(len(held))]
    assert len(held) == 5 and len(kept) == 15
    assert sorted(kept_values + held_values) == list(range(20)) and kept_values == sorted(kept_values)
    assert held_values == [int(held2["input"][0, 0, 0] * 10 + 0.5) for held2 in split_off(toy_dataset(), 5, seed=0)[1]]
    assert held_values != [int(x["input"][0, 0, 0] * 10 + 0.5) for x in split_off(toy_dataset(), 5, seed=1)[1]]
    assert split_off(toy_dataset(), 0, seed=0)[1] is None
    with pytest.raises(TrainingConfigError, match="would hold out all 20"):
        split_off(toy_dataset(), 20, seed=0)


class Args:
    seed, validation_steps, eval_steps = 3, 2, None


class TimeScaledConv(torch.nn.Module):
    """A stand-in for eps_theta(x_t, t) that depends on both x_t and t."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, t, class_labels=None):
        return self.conv(x) * (1 + t.float().view(-1, 1, 1, 1) / 50)


def test_the_loss_is_eq_14_on_fixed_t_and_eps_whatever_the_batch_size():
    scheduler = AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="squaredcos_cap_v2")
    torch.manual_seed(0)
    model = TimeScaledConv()
    _, held = split_off(toy_dataset(), 7, seed=0)
    validation = ValidationLoss.from_dataset(held, scheduler, Args, conditional=False)
    again = ValidationLoss.from_dataset(held, scheduler, Args, conditional=False)
    assert torch.equal(validation.t, again.t) and torch.equal(validation.noise, again.noise)  # fixed by the seed
    assert validation.every == 2 and validation.due(4) and not validation.due(3)
    with torch.no_grad():  # Ho et al. 2020, eq. (14) on all 7 images at once, with their t and eps
        whole = p_losses(model, validation.x_start, validation.t, noise=validation.noise, loss_type="l2",
                         scheduler=scheduler)
    for batch_size in (1, 3, 7):
        assert validation.loss(model, scheduler, "l2", batch_size=batch_size) == pytest.approx(float(whole), rel=1e-6)


def test_options_are_checked_before_training(tmp_path):
    base = ["--output_dir", str(tmp_path / "out")]
    args = parse_args(base + ["--validation_examples", "10", "--eval_steps", "5", "--eval_num_samples", "4"])
    assert args.validation_examples == 10 and args.validation_steps is None  # -> every --eval_steps
    for bad, message in ((["--validation_examples", "10"], "needs --validation_steps"),
                         (["--validation_steps", "3"], "needs --validation_examples"),
                         (["--validation_examples", "-1"], ">= 0"),
                         (["--validation_examples", "4", "--validation_steps", "0"], ">= 1"),
                         (["--eval_features", "inception"], "need --eval_steps")):
        with pytest.raises(TrainingConfigError, match=message):
            parse_args(base + bad)
