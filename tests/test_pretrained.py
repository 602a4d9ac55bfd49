"""The shipped reference pipeline (pretrained/ddpm-fashion-mnist): loads by both routes, same images, a card that parses."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler
from huggingface_hub import ModelCard

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained" / "ddpm-fashion-mnist"

ROUTE2 = """
import sys
sys.modules["annotated_pipeline"] = None
import numpy as np, torch
from diffusers import DDIMScheduler, DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True)
pipe.set_progress_bar_config(disable=True)
pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
images = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=3, output_type="np").images
np.save(sys.argv[2], images)
"""


def test_shipped_pipeline_loads_by_both_routes_with_the_same_images(tmp_path):
    pipe = AnnotatedDDPMPipeline.from_pretrained(PRETRAINED)
    assert type(pipe.unet) is AnnotatedUNet2DModel and type(pipe.scheduler) is AnnotatedDDPMScheduler
    # The project's defaults: the shipped model is what `AnnotatedUNet2DModel()` builds.
    defaults = AnnotatedUNet2DModel().config
    for key in ("dim", "dim_mults", "block_type", "resnet_block_groups", "attention_heads", "sample_size",
                "linear_attention_levels"):
        assert pipe.unet.config[key] == defaults[key], key
    assert pipe.scheduler.config.beta_schedule == "squaredcos_cap_v2"
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    images = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=3, output_type="np").images

    script = tmp_path / "route2.py"
    script.write_text(ROUTE2)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "home"), HF_MODULES_CACHE=str(tmp_path / "home" / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, str(script), str(PRETRAINED), str(tmp_path / "r2.npy")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "r2.npy"), images)


def test_shipped_card_parses_and_states_how_it_was_made():
    card = ModelCard.load(PRETRAINED / "README.md")
    assert card.data.library_name == "diffusers"
    assert {"diffusers", "unconditional-image-generation"} <= set(card.data.tags)
    for needle in ("train_reference.sh", "Frechet distance", "DDIM, 50 steps", "DDPM, 1000 steps", "minutes"):
        assert needle in card.text, needle
    assert (PRETRAINED / "samples.png").is_file()
    assert not list(PRETRAINED.rglob("*.bin")) and not list(PRETRAINED.rglob("checkpoint-*"))
