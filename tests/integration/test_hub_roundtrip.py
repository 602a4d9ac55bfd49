"""A real pipeline through a (local) Hub: `pipe.push_to_hub`, then `DiffusionPipeline.from_pretrained(repo_id,
trust_remote_code=True)` on a "machine" without the package: an empty HF_HOME, annotated_pipeline hidden."""

import textwrap

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from hub_server import hub_env, local_hub, run_python  # noqa: F401 (fixture)

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel

REPO = "test-user/tiny-ddpm"
STEPS = 3

PUSH = textwrap.dedent(
    """
    import sys
    from annotated_pipeline import AnnotatedDDPMPipeline
    pipe = AnnotatedDDPMPipeline.from_pretrained(sys.argv[1])
    info = pipe.push_to_hub(sys.argv[2], card_kwargs={"dataset_name": "zalando-datasets/fashion_mnist",
                                                      "training_args": {"hub_token": "hf_secret_never_in_card"}})
    print("pushed", info.oid)
    """
)

LOAD = textwrap.dedent(
    """
    import sys
    import numpy as np, torch
    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == "AnnotatedDDPMPipeline" and type(pipe.unet).__module__.startswith("diffusers_modules")
    images = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=%d, output_type="np").images
    np.save(sys.argv[2], images)
    """
    % STEPS
)


def tiny_pipeline(seed):
    torch.manual_seed(seed)
    unet = AnnotatedUNet2DModel(sample_size=8, in_channels=1, dim=8, dim_mults=(1, 2), resnet_block_groups=2,
                                attention_heads=2, attention_head_dim=8)
    pipe = AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_images(pipe):
    return pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=STEPS, output_type="np").images


def push(pipe, folder, hub, tmp_path):
    pipe.save_pretrained(folder)
    result = run_python(PUSH.replace("sys.argv[1]", repr(str(folder))).replace("sys.argv[2]", repr(REPO)),
                        hub_env(hub.endpoint, tmp_path / "pusher_home"), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def load_without_package(repo_or_path, hub, hf_home, out):
    code = LOAD.replace("sys.argv[1]", repr(repo_or_path)).replace("sys.argv[2]", repr(str(out)))
    return run_python(code, hub_env(hub.endpoint, hf_home, token=None, hide_modules=("annotated_pipeline",)), timeout=300)


def test_push_then_load_by_repo_id_without_the_package(local_hub, tmp_path):
    first, second = tiny_pipeline(seed=0), tiny_pipeline(seed=1)
    push(first, tmp_path / "first", local_hub, tmp_path)

    # The repo holds the saved folder and a card; no pickles.
    files = local_hub.files(REPO)
    for name in ["model_index.json", "pipeline.py", "README.md", "unet/unet_2d.py", "unet/config.json",
                 "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"]:
        assert name in files, sorted(files)
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pkl"))]
    card_path = tmp_path / "README.md"
    card_path.write_bytes(files["README.md"])
    card = ModelCard.load(card_path)
    assert card.data.library_name == "diffusers"
    assert {"diffusers", "unconditional-image-generation"} <= set(card.data.tags)
    assert "zalando-datasets/fashion_mnist" in card.data.datasets
    assert "hf_secret_never_in_card" not in files["README.md"].decode()

    # A user with only diffusers: same images as the local pipeline for the same generator.
    home = tmp_path / "user_home"
    result = load_without_package(REPO, local_hub, home, tmp_path / "a.npy")
    assert result.returncode == 0, result.stdout + result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), reference_images(first))

    # Pushing new weights makes a second commit, and the next download (same cache) picks them up.
    commits_before = len(local_hub.commits(REPO))
    push(second, tmp_path / "second", local_hub, tmp_path)
    assert len(local_hub.commits(REPO)) == commits_before + 1
    result = load_without_package(REPO, local_hub, home, tmp_path / "b.npy")
    assert result.returncode == 0, result.stdout + result.stderr
    new = np.load(tmp_path / "b.npy")
    np.testing.assert_array_equal(new, reference_images(second))
    assert not np.array_equal(new, reference_images(first))


def test_wrong_repo_id_or_missing_file_is_huggingface_hubs_error(local_hub, tmp_path):
    # Plain diffusers: its OSError, caused by huggingface_hub's RepositoryNotFoundError; no frame of ours.
    result = load_without_package("test-user/no-such-repo", local_hub, tmp_path / "home", tmp_path / "x.npy")
    assert result.returncode != 0
    assert "huggingface_hub.errors.RepositoryNotFoundError" in result.stderr, result.stderr[-2000:]
    assert "test-user/no-such-repo" in result.stderr.strip().splitlines()[-1]
    assert "pipeline.py" not in result.stderr and "annotated_pipeline" not in result.stderr

    # With the package (route 1): one OSError that names both readings of the name and huggingface_hub's error.
    code = "from annotated_pipeline import AnnotatedDDPMPipeline\nAnnotatedDDPMPipeline.from_pretrained('test-user/no-such-repo')"
    result = run_python(code, hub_env(local_hub.endpoint, tmp_path / "home3", token=None), timeout=300)
    final_exception = result.stderr[result.stderr.rindex("Traceback"):]
    assert "During handling" not in final_exception and "direct cause" not in final_exception
    assert ("\nOSError: No folder 'test-user/no-such-repo' here, and downloading it as a Hub repo id failed: "
            "RepositoryNotFoundError: 404") in final_exception, result.stderr[-2000:]

    # A repo whose unet weights are missing: diffusers/huggingface_hub say which file, not our code.
    pipe = tiny_pipeline(seed=0)
    pipe.save_pretrained(tmp_path / "broken")
    (tmp_path / "broken" / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    result = load_without_package(str(tmp_path / "broken"), local_hub, tmp_path / "home2", tmp_path / "y.npy")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "diffusion_pytorch_model" in last_line and "annotated" not in last_line, last_line


def test_push_from_python_to_a_down_hub_is_a_clear_error(tmp_path):
    from hub_server import LocalHub

    hub = LocalHub(tmp_path / "hub").start()
    hub.stop()
    pipe = tiny_pipeline(seed=0)
    pipe.save_pretrained(tmp_path / "saved")
    code = PUSH.replace("sys.argv[1]", repr(str(tmp_path / "saved"))).replace("sys.argv[2]", repr(REPO))
    result = run_python(code, hub_env(hub.endpoint, tmp_path / "home"), timeout=300)
    assert result.returncode != 0
    assert "HubUnavailableError" in result.stderr and hub.endpoint in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    # push_to_hub saved into a temporary folder, now gone: the message offers no folder to push later.
    assert "Nothing was uploaded and nothing was kept on disk" in last and "intact" not in last
    assert "save_pretrained(folder)" in last
    assert (tmp_path / "saved" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
