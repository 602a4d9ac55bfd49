"""benchmarks/average_checkpoints.py: the weights are the stated exponential weights, the average is that
weighted sum, and the written pipeline loads and is scored.

A tiny untrained pipeline; its "checkpoints" are its own weights shifted by known constants, so the
average is known in closed form.
"""

import math
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file, save_file

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, os.fspath(ROOT / "benchmarks"))

import average_checkpoints as ac  # noqa: E402


def test_weights_are_exponential_in_the_distance_to_the_last_step():
    w = ac.averaging_weights([1000, 1100, 1200], tau=100.0)
    assert sum(w) == pytest.approx(1.0)
    assert w[1] / w[2] == pytest.approx(math.exp(-1)) and w[0] / w[2] == pytest.approx(math.exp(-2))
    assert ac.averaging_weights([5, 10, 15, 20], tau=math.inf) == pytest.approx([0.25] * 4)
    with pytest.raises(ValueError, match="tau must be > 0"):
        ac.averaging_weights([1, 2], tau=0.0)


def test_average_is_the_weighted_sum_in_each_tensors_dtype(tmp_path):
    paths = []
    for i, shift in enumerate([0.0, 1.0, 4.0]):
        path = tmp_path / f"{i}.safetensors"
        save_file({"w": torch.full((2, 3), shift), "h": torch.full((4,), shift, dtype=torch.float16),
                   "count": torch.tensor([i])}, path)
        paths.append(str(path))
    out = ac.average_state_dicts(paths, [0.5, 0.25, 0.25])
    assert torch.equal(out["w"], torch.full((2, 3), 1.25)) and out["h"].dtype == torch.float16
    assert torch.equal(out["h"], torch.full((4,), 1.25, dtype=torch.float16))
    assert torch.equal(out["count"], torch.tensor([2]))  # not floating point: the last checkpoint's
    save_file({"w": torch.zeros(2, 3)}, tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="does not hold the same tensors"):
        ac.average_state_dicts([*paths, str(tmp_path / "missing.safetensors")], [0.25] * 4)
    save_file({"w": torch.zeros(3, 2), "h": torch.zeros(4, dtype=torch.float16), "count": torch.tensor([0])},
              tmp_path / "shape.safetensors")
    with pytest.raises(ValueError, match=r"w has shape \(3, 2\), expected \(2, 3\)"):
        ac.average_state_dicts([str(tmp_path / "shape.safetensors"), paths[0]], [0.5, 0.5])


@pytest.mark.slow  # trains, averages and evaluates (11 CPU-s)
def test_command_writes_loadable_averages_and_scores_them(tmp_path, capsys):
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=28, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2,
                                attention_head_dim=4)
    pipe = AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=100,
                                                                               beta_schedule="squaredcos_cap_v2"))
    run = tmp_path / "run"
    pipe.save_pretrained(run / "stage-300")
    base = {k: v.clone() for k, v in unet.state_dict().items()}
    names = [name for name, _ in unet.named_parameters()]
    for step, shift in [(100, 3.0), (200, 1.0), (300, 0.0)]:  # checkpoint-100 is left out by --since
        (run / f"checkpoint-{step}").mkdir()
        save_file({k: v + shift for k, v in base.items()}, run / f"checkpoint-{step}" / "model.safetensors")
        # EMAModel.state_dict(): shadow_params in parameter order; here the raw weights shifted by -shift.
        torch.save({"decay": 0.9999, "shadow_params": [base[n] - shift for n in names]},
                   run / f"checkpoint-{step}" / "custom_checkpoint_1.pkl")
    data = tmp_path / "data"
    data.mkdir()
    table = pq.read_table(ROOT / "data" / "fashion-mnist-sample" / "train.parquet")
    pq.write_table(table.slice(0, 16), data / "test.parquet")
    pq.write_table(table.slice(100, 16), data / "train.parquet")

    ac.main([str(run), "--template", str(run / "stage-300"), "--taus", "100", "inf", "--since", "150",
             "--num_samples", "16", "--batch_size", "16", "--num_inference_steps", "4", "--data_root", str(data)])
    table_rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 100 ") or line.startswith("| inf ")]
    assert len(table_rows) == 2 and all(row.split("|")[2].strip() == "2" for row in table_rows)

    ac.main([str(run), "--template", str(run / "stage-300"), "--taus", "inf", "--since", "150", "--source", "ema",
             "--no_eval"])
    w_200 = math.exp(-1) / (1 + math.exp(-1))  # tau = 100: checkpoint-200 weighs e^-1 against checkpoint-300's 1
    for name, shift in [("raw-tau-100-since-200", w_200 * 1.0), ("raw-tau-inf-since-200", 0.5),
                        ("ema-tau-inf-since-200", -0.5)]:
        loaded = AnnotatedDDPMPipeline.from_pretrained(run / "averaged" / name)
        for key, value in loaded.unet.state_dict().items():
            torch.testing.assert_close(value, base[key] + shift, rtol=0, atol=1e-6)
    assert not any(p.name.startswith("eval") for p in (run / "averaged" / "raw-tau-inf-since-200").iterdir())
    with pytest.raises(ValueError, match="no checkpoint-<step>/model.safetensors with step >= 400"):
        ac.find_checkpoints(str(run), since=400)
    assert load_file(run / "stage-300" / ac.WEIGHTS).keys() == base.keys()
    torch.save({"decay": 0.9999, "shadow_params": [base[n] for n in names[:-1]]},
               run / "checkpoint-300" / "custom_checkpoint_1.pkl")
    with pytest.raises(ValueError, match=f"expected {len(names)} shadow_params, found {len(names) - 1}"):
        ac.ema_state_dict(str(run / "checkpoint-300"), names)
