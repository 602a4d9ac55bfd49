"""Every weight the package loads is safetensors: a folder that holds its weights only as a pickle
(`diffusion_pytorch_model.bin`, which can run code when loaded) is refused, never unpickled.

Each case saves a real model with `safe_serialization=False`, so the `.bin` would load if asked to:
the refusal comes from the loader, not from a broken file. (And a folder whose model_index.json
names another U-Net class than its unet/ holds is one clear ValueError, not a TypeError deep in torch.)
"""

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: training_runs

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel  # noqa: E402
from annotated_pipeline.evaluation.classifier import ImageClassifier, load_classifier  # noqa: E402
from annotated_pipeline.train import main as train_main  # noqa: E402
from annotated_pipeline.training.checkpoint_models import load_checkpoint_models  # noqa: E402

PROG = "annotated-pipeline train"


def tiny_unet():
    torch.manual_seed(0)
    return AnnotatedUNet2DModel(sample_size=16, in_channels=1, dim=8, dim_mults=(1, 2))


@pytest.fixture
def pickled_pipeline(tmp_path):
    """A saved pipeline whose U-Net weights are only diffusion_pytorch_model.bin."""
    folder = tmp_path / "pickled"
    scheduler = AnnotatedDDPMScheduler(num_train_timesteps=20, beta_schedule="squaredcos_cap_v2")
    AnnotatedDDPMPipeline(unet=tiny_unet(), scheduler=scheduler).save_pretrained(folder)  # safetensors only
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), folder / "unet" / "diffusion_pytorch_model.bin")  # as older diffusers wrote it
    weights.unlink()
    assert (folder / "unet" / "diffusion_pytorch_model.bin").is_file()
    assert not list(folder.rglob("*.safetensors"))
    return folder


def test_fine_tuning_from_a_pickled_base_model_is_refused(pickled_pipeline, tmp_path, capsys):
    code = train_main(["--pretrained_model_name_or_path", str(pickled_pipeline), "--output_dir", str(tmp_path / "out"),
                       "--logger", "none", "--max_train_steps", "1", "--resolution", "16"], prog=PROG)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"{PROG}: error: --pretrained_model_name_or_path {pickled_pipeline}: cannot load it")
    assert "safetensors" in line
    assert "Defaulting to unsafe serialization" not in err


def test_a_pickled_checkpoint_model_folder_is_refused(tmp_path):
    checkpoint = tmp_path / "checkpoint-2"
    for name in ("optimizer.bin", "scheduler.bin", "random_states_0.pkl", "model.safetensors"):
        (checkpoint / name).parent.mkdir(parents=True, exist_ok=True)
        (checkpoint / name).write_bytes(b"")
    tiny_unet().save_pretrained(checkpoint / "unet", safe_serialization=False)
    AnnotatedDDPMScheduler(num_train_timesteps=20, beta_schedule="squaredcos_cap_v2").save_pretrained(checkpoint / "scheduler")
    with pytest.raises(OSError, match="safetensors"):
        load_checkpoint_models(checkpoint, ema=False)


def test_a_pickled_classifier_is_refused(tmp_path):
    folder = tmp_path / "classifier"
    ImageClassifier().save_pretrained(folder, safe_serialization=False)
    assert (folder / "diffusion_pytorch_model.bin").is_file()
    with pytest.raises(FileNotFoundError, match="is not a saved classifier"):
        load_classifier(folder)


def test_the_pipeline_loader_reads_only_safetensors(pickled_pipeline):
    with pytest.raises(OSError, match="safetensors"):
        AnnotatedDDPMPipeline.from_pretrained(pickled_pipeline)


def test_a_model_index_that_names_another_unet_class_is_one_clear_error(pickled_pipeline, tmp_path):
    import json
    import shutil

    folder = tmp_path / "contradicting"
    shutil.copytree(pickled_pipeline, folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "unet": ["diffusers", "UNet2DModel"]}))
    with pytest.raises(ValueError, match=r"unet is saved as \['diffusers', 'UNet2DModel'\] in model_index.json, but "
                                         r"unet/ holds a AnnotatedUNet2DModel config"):
        AnnotatedDDPMPipeline.from_pretrained(folder)
