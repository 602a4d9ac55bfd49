"""annotated_pipeline/hub/__init__.py: the model card (parsed back with huggingface_hub's own loader) and
`push_folder_to_hub` against a LocalHub, with the real client in a subprocess."""

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub.errors import HFValidationError
from PIL import Image
from hub_server import LocalHub, hub_env, local_hub, run_python  # noqa: F401 (fixture)

from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel, hub

SECRET = "hf_do_not_publish_this_0123456789"
TRAINING_ARGS = {
    "dataset_name": "fashion_mnist",
    "resolution": 28,
    "dim_mults": (1, 2, 4),
    "learning_rate": 1e-4,
    "ddpm_beta_schedule": "squaredcos_cap_v2",
    "ddpm_num_steps": 1000,
    "label_column": None,
    "hub_token": SECRET,
    "tracker": {"wandb_api_key": SECRET, "project": "ddpm"},
}


def make_output_dir(root: Path) -> dict[str, bytes]:
    """What a training run leaves behind: the saved pipeline + samples, and things that must stay local."""
    pipeline = {
        "model_index.json": b'{"_class_name": ["pipeline", "AnnotatedDDPMPipeline"]}\n',
        "pipeline.py": b"# pipeline code\n",
        "unet/config.json": b'{"sample_size": 28}\n',
        "unet/unet_2d.py": b"# unet code\n",
        "unet/diffusion_pytorch_model.safetensors": bytes(range(256)) * 16,
        "scheduler/scheduler_config.json": b'{"num_train_timesteps": 1000}\n',
        "samples.png": b"\x89PNG fake image bytes",
    }
    local_only = {
        "checkpoint-10/model.safetensors": b"checkpoint weights",
        "checkpoint-10/optimizer.bin": b"optimizer state",
        "logs/train_accelerate/events.out.tfevents.1": b"tensorboard",
        "runs/x.log": b"log",
        "optimizer.pt": b"pickle",
        "unet/__pycache__/unet_2d.cpython-311.pyc": b"bytecode",
        "posthoc_ema/snapshot-00000010.safetensors": b"post-hoc EMA snapshot",
    }
    for rel, data in {**pipeline, **local_only}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return pipeline


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def client(code: str, env: dict, timeout: float = 120) -> dict:
    proc = run_python(textwrap.dedent(code), env, timeout=timeout)
    assert proc.returncode == 0, f"client failed:\nSTDOUT:\n{proc.stdout}\nSTDERR:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# The card
# ------------------------------------------------------------------------------------------------


def test_card_metadata_parses_and_holds_no_secret(tmp_path):
    (tmp_path / "samples.png").write_bytes(b"png")
    path = hub.write_model_card(tmp_path, training_args=TRAINING_ARGS, dataset_name="fashion_mnist",
                                metrics={"fid": 12.5})
    assert path == tmp_path / "README.md"

    card = ModelCard.load(path)
    assert card.data.library_name == "diffusers"
    assert card.data.license == "mit"
    assert card.data.pipeline_tag == "unconditional-image-generation"
    assert {"diffusers", "unconditional-image-generation", "pytorch", "ddpm", "annotated-pipeline"} <= set(card.data.tags)
    assert card.data.datasets == ["fashion_mnist"]

    text = path.read_text()
    assert SECRET not in text and "hub_token" not in text and "wandb_api_key" not in text
    assert "| `learning_rate` | `0.0001` |" in text and "| `dim_mults` | `[1, 2, 4]` |" in text
    assert "| fid | 12.5 |" in text
    assert "![samples](samples.png)" in text
    # Both loading routes, pointing at the folder (no repo id yet).
    assert f'DiffusionPipeline.from_pretrained("{tmp_path}", trust_remote_code=True)' in text
    assert f'AnnotatedDDPMPipeline.from_pretrained("{tmp_path}")' in text
    assert "cosine noise schedule of Nichol & Dhariwal (2021)" in text
    assert "@inproceedings{ho2020denoising" in text and "@inproceedings{nichol2021improved" in text
    assert "https://huggingface.co/blog/annotated-diffusion" in text


def test_card_only_claims_what_it_knows(tmp_path):
    """No samples image unless the file exists; descriptions and local folders are not Hub datasets."""
    local_data = tmp_path / "my_images"
    local_data.mkdir()
    for dataset_name, training_args in [
        ("Fashion-MNIST (2,000-image sample shipped with annotated-pipeline)", None),
        (str(local_data), {"train_data_dir": str(local_data)}),
        ("data/train", {"train_data_dir": "data/train"}),
    ]:
        card = ModelCard.load(hub.write_model_card(tmp_path, training_args=training_args, dataset_name=dataset_name))
        assert card.data.datasets is None, dataset_name
        assert f"It was trained on **{dataset_name}**." in card.content
        assert "![samples]" not in card.content
        assert ("## Training configuration" in card.content) == (training_args is not None)
    card = hub.model_card("alice/ddpm", license="apache-2.0", samples_file=None,
                          training_args={"ddpm_beta_schedule": "linear", "label_column": "label"})
    assert card.data.license == "apache-2.0"
    assert "the `linear` noise schedule" in card.content and "Nichol" not in card.content.split("## How")[0]
    # No 16 labels for a model of fewer classes: without class_labels the images cycle through the classes.
    assert "class_labels=list" not in card.content and "cycle through the classes" in card.content
    assert "guidance_scale" not in card.content
    guided = hub.model_card("alice/ddpm", samples_file=None, training_args={"label_column": "label"}, guidance_scale=2.5)
    assert guided.content.count("generator=generator, guidance_scale=2.5).images") == 3
    assert "classifier-free guidance" in guided.content
    with pytest.raises(ValueError, match="guidance_scale must be a number in 0..50"):
        hub.model_card("alice/ddpm", guidance_scale=-1)
    limited = hub.model_card("alice/ddpm", samples_file=None, training_args={"label_column": "label"},
                             guidance_scale=2, guidance_interval=(200, 700))
    assert limited.content.count("guidance_scale=2, guidance_interval=(200, 700)).images") == 3
    assert "Kynkäänniemi" in limited.content and "Kynkäänniemi" not in guided.content
    for bad in [dict(guidance_scale=2, guidance_interval=(700, 200)), dict(guidance_scale=2, guidance_interval=(1,)),
                dict(guidance_interval=(200, 700))]:
        with pytest.raises(ValueError, match="guidance_interval"):
            hub.model_card("alice/ddpm", **bad)


def test_card_keeps_its_guidance_when_rendered_again_from_its_metadata(tmp_path):
    """A push re-renders the card from the inputs stored in its metadata: the guidance stays in the snippets."""
    hub.write_model_card(tmp_path, training_args={"label_column": "label"}, guidance_scale=2, guidance_interval=(200, 700))
    inputs = hub._card_inputs(tmp_path)
    assert inputs["guidance_scale"] == 2 and inputs["guidance_interval"] == [200, 700]
    again = hub.model_card("alice/ddpm", **inputs)
    assert again.content.count("guidance_scale=2, guidance_interval=(200, 700)).images") == 3


def test_card_refuses_bad_inputs_and_a_missing_template(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="license"):
        hub.model_card("alice/ddpm", license="")
    with pytest.raises(ValueError, match="training_args must be a dict"):
        hub.model_card("alice/ddpm", training_args=["--lr", "1"])
    with pytest.raises(FileNotFoundError, match="not a directory"):
        hub.write_model_card(tmp_path / "nowhere")
    monkeypatch.setattr(hub.card, "TEMPLATE_PATH", tmp_path / "model_card" / "template.md")
    with pytest.raises(FileNotFoundError, match="template is missing.*model_card/template.md"):
        hub.model_card("alice/ddpm")


def test_template_ships_inside_the_package_and_the_clone_links_to_it():
    root = Path(__file__).resolve().parents[3]
    assert hub.TEMPLATE_PATH == root / "annotated_pipeline" / "templates" / "model_card.md" and hub.TEMPLATE_PATH.is_file()
    assert (root / "model_card" / "template.md").resolve() == hub.TEMPLATE_PATH  # one copy, not two
    assert (root / "data" / "fashion-mnist-sample").resolve() == root / "annotated_pipeline" / "data" / "fashion-mnist-sample"


# ------------------------------------------------------------------------------------------------
# The push
# ------------------------------------------------------------------------------------------------


def test_push_uploads_the_pipeline_only_and_pushing_again_is_a_new_commit(local_hub, tmp_path):
    out_dir = tmp_path / "ddpm-out"
    pipeline = make_output_dir(out_dir)
    hub.write_model_card(out_dir, training_args=TRAINING_ARGS, dataset_name="fashion_mnist")

    # No HF_TOKEN in the environment: the first push must use the token argument; the second sets
    # HF_TOKEN and passes token=None, so huggingface_hub's own lookup has to find it.
    out = client(f"""
        import json, os
        from pathlib import Path
        from annotated_pipeline.hub import push_folder_to_hub
        folder = Path({str(out_dir)!r})
        first = push_folder_to_hub(folder, "alice/ddpm", token={SECRET!r}, private=True)
        (folder / "samples.png").write_bytes(b"new samples")
        os.environ["HF_TOKEN"] = "hf_from_the_environment"
        second = push_folder_to_hub(folder, "alice/ddpm", commit_message="Second round")
        third = push_folder_to_hub(folder, "alice/ddpm")  # nothing changed: no new commit
        print(json.dumps({{"oids": [first.oid, second.oid, third.oid], "url": str(first)}}))
    """, hub_env(local_hub.endpoint, tmp_path / "home", token=None))

    first, second, third = out["oids"]
    assert out["url"] == f"{local_hub.endpoint}/alice/ddpm/commit/{first}"
    commits = local_hub.commits("alice/ddpm")
    assert [c["oid"] for c in commits] == [second, first, commits[-1]["oid"]] and third == second
    assert [c["title"] for c in commits] == ["Second round", "Upload DDPM pipeline with annotated-pipeline",
                                             "initial commit"]
    assert local_hub.store.meta("model", "alice/ddpm")["private"] is True

    # Exactly the pipeline + card went up: no checkpoint, logs, pickles or caches.
    repo = local_hub.files("alice/ddpm")
    assert sorted(repo) == sorted([*pipeline, "README.md", hub.CARD_INPUTS_FILE, ".gitattributes"])
    assert repo["samples.png"] == b"new samples"
    assert local_hub.files("alice/ddpm", revision=first)["samples.png"] == pipeline["samples.png"]
    assert {k: v for k, v in repo.items() if k not in ("README.md", hub.CARD_INPUTS_FILE, "samples.png", ".gitattributes")} == \
        {k: v for k, v in pipeline.items() if k != "samples.png"}

    # The card was re-rendered for the repo, kept the training configuration, and holds no token.
    readme = repo["README.md"].decode()
    (tmp_path / "pushed.md").write_text(readme)
    card = ModelCard.load(tmp_path / "pushed.md")
    assert card.data.library_name == "diffusers" and card.data.datasets == ["fashion_mnist"]
    assert 'DiffusionPipeline.from_pretrained("alice/ddpm", trust_remote_code=True)' in readme
    assert "| `resolution` | `28` |" in readme
    assert all(SECRET.encode() not in data for data in repo.values())
    assert readme == (out_dir / "README.md").read_text()

    # The token argument, then the environment's token, reached the server as bearer tokens.
    auths = [r.authorization for r in local_hub.requests if r.method == "POST"]
    assert auths[0] == f"Bearer {SECRET}"
    assert auths[-1] == "Bearer hf_from_the_environment"
    assert set(auths) == {f"Bearer {SECRET}", "Bearer hf_from_the_environment"}


def test_pushing_again_deletes_the_pipeline_files_the_folder_no_longer_has(local_hub, tmp_path):
    """A retrained pipeline whose files changed name: the repo must not keep the old weights or code
    (they would load, or be imported, beside the new ones); a file added on the Hub by hand stays."""
    out_dir = tmp_path / "ddpm-out"
    pipeline = make_output_dir(out_dir)
    hub.write_model_card(out_dir, training_args=TRAINING_ARGS, dataset_name="fashion_mnist")
    out = client(f"""
        import json
        from pathlib import Path
        from huggingface_hub import upload_file
        from annotated_pipeline.hub import push_folder_to_hub
        folder = Path({str(out_dir)!r})
        (folder / "old_component").mkdir()
        (folder / "old_component" / "config.json").write_text("{{}}")
        first = push_folder_to_hub(folder, "alice/ddpm")
        upload_file(path_or_fileobj=b"hand-written notes", path_in_repo="docs/notes.md", repo_id="alice/ddpm")
        upload_file(path_or_fileobj=b'{{"fd": 1}}', path_in_repo="docs/metrics.json", repo_id="alice/ddpm")
        upload_file(path_or_fileobj=b'{{"n": 1000}}', path_in_repo="docs/eval_config.json", repo_id="alice/ddpm")
        (folder / "old_component" / "config.json").unlink()
        (folder / "old_component").rmdir()
        weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
        weights.rename(folder / "unet" / "diffusion_pytorch_model.fp16.safetensors")
        (folder / "unet" / "unet_2d.py").rename(folder / "unet" / "model.py")
        second = push_folder_to_hub(folder, "alice/ddpm", commit_message="Renamed files")
        print(json.dumps({{"oids": [first.oid, second.oid]}}))
    """, hub_env(local_hub.endpoint, tmp_path / "home"))

    repo = local_hub.files("alice/ddpm")
    assert "unet/diffusion_pytorch_model.safetensors" not in repo and "unet/unet_2d.py" not in repo
    assert repo["unet/diffusion_pytorch_model.fp16.safetensors"] == pipeline["unet/diffusion_pytorch_model.safetensors"]
    assert repo["unet/model.py"] == pipeline["unet/unet_2d.py"]
    assert "old_component/config.json" in local_hub.files("alice/ddpm", revision=out["oids"][0])
    assert "old_component/config.json" not in repo and repo["model_index.json"] == pipeline["model_index.json"]
    assert repo["docs/notes.md"] == b"hand-written notes" and ".gitattributes" in repo
    assert repo["docs/metrics.json"] == b'{"fd": 1}'  # JSON that is not a pipeline config stays,
    assert repo["docs/eval_config.json"] == b'{"n": 1000}'  # even when its name ends in config.json
    assert local_hub.commits("alice/ddpm")[0]["oid"] == out["oids"][1]  # one commit: uploads and deletions


def test_push_to_a_down_endpoint_raises_a_clear_error_and_keeps_the_folder(tmp_path):
    out_dir = tmp_path / "ddpm-out"
    make_output_dir(out_dir)
    hub.write_model_card(out_dir, training_args=TRAINING_ARGS)
    before = read_tree(out_dir)

    down = LocalHub(tmp_path / "hub").start()
    down.stop()
    out = client(f"""
        import json
        from annotated_pipeline.hub import push_folder_to_hub, HubUnavailableError
        try:
            push_folder_to_hub({str(out_dir)!r}, "alice/ddpm", token={SECRET!r},
                               card_kwargs={{"extra": "Notes: {SECRET}"}})
            print(json.dumps({{"raised": None}}))
        except HubUnavailableError as e:
            print(json.dumps({{"raised": type(e).__name__, "message": str(e),
                              "os_error": isinstance(e, OSError), "conn": isinstance(e, ConnectionError)}}))
    """, hub_env(down.endpoint, tmp_path / "home", token=None), timeout=60)

    assert out["raised"] == "HubUnavailableError" and out["os_error"] and out["conn"]
    message = out["message"]
    assert down.endpoint in message and "'alice/ddpm'" in message and "intact" in message
    assert str(out_dir) in message and SECRET not in message
    after = read_tree(out_dir)
    # Every file is still there, byte for byte; only the card was re-rendered, now for the repo.
    assert sorted(after) == sorted(before)
    card_files = ("README.md", hub.CARD_INPUTS_FILE)
    assert {k: v for k, v in after.items() if k not in card_files} == {k: v for k, v in before.items() if k not in card_files}
    assert 'from_pretrained("alice/ddpm"' in after["README.md"].decode()
    # Even a token pasted into the card's free text does not get written, in the card or in its inputs.
    assert "Notes: ***" in after["README.md"].decode() and SECRET.encode() not in after["README.md"]
    assert "Notes: ***" in after[hub.CARD_INPUTS_FILE].decode() and SECRET.encode() not in after[hub.CARD_INPUTS_FILE]


def test_malformed_repo_id_is_huggingface_hubs_own_error_and_writes_nothing(tmp_path):
    out_dir = tmp_path / "ddpm-out"
    make_output_dir(out_dir)
    before = read_tree(out_dir)
    for bad in ("not a valid id", "a/b/c", "alice/--ddpm"):
        with pytest.raises(HFValidationError):
            hub.push_folder_to_hub(out_dir, bad)
    assert read_tree(out_dir) == before
    with pytest.raises(ValueError, match="model_index.json"):
        hub.push_folder_to_hub(tmp_path, "alice/ddpm")
    with pytest.raises(ValueError, match="repo_id_or_path"):
        hub.push_folder_to_hub(out_dir, "alice/ddpm", card_kwargs={"repo_id_or_path": "elsewhere"})


@pytest.mark.parametrize("label_column", [None, "label"])
def test_the_cards_python_snippets_run_on_the_saved_pipeline(tmp_path, monkeypatch, label_column):
    """Every ```python block of a rendered card, run in order in one namespace against a tiny saved
    pipeline: the remote-code load, the package load, and the samplers it offers (DDPM, DDIM,
    DPM-Solver++), with class labels when the run was class-conditional."""
    torch.manual_seed(0)
    unet = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), resnet_block_groups=2, attention_heads=2,
                                attention_head_dim=8, num_class_embeds=16 if label_column else None)
    scheduler = AnnotatedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine", timestep_spacing="trailing")
    AnnotatedDDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path)
    training_args = {"ddpm_num_steps": 50, "ddpm_num_inference_steps": 10, "label_column": label_column}
    body = ModelCard.load(hub.write_model_card(tmp_path, training_args=training_args)).text
    blocks = re.findall(r"```python\n(.*?)```", body, flags=re.S)
    assert len(blocks) >= 3 and any("DPMSolverMultistepScheduler" in block for block in blocks)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # the grid snippet saves grid.png in the working directory
    namespace = {}
    for block in blocks:
        exec(compile(block, "model card", "exec"), namespace)
    assert type(namespace["pipe"].scheduler).__name__ == "DPMSolverMultistepScheduler"
    images = namespace["images"]
    assert len(images) == 16 and np.asarray(images[0]).shape[:2] == (8, 8)
    assert Image.open("grid.png").size == (4 * 8, 4 * 8)


def test_card_metrics_are_model_index_results_the_hub_shows(tmp_path):
    hub.write_model_card(tmp_path, repo_id_or_path="alice/ddpm", dataset_name="zalando-datasets/fashion_mnist",
                         metrics={"frechet_distance_ddim50_n1000": 9.6, "label_accuracy": 0.93, "guidance_scale": 2.0,
                                  "note": "text"})
    card = ModelCard.load(tmp_path / "README.md")
    results = {r.metric_name: r for r in card.data.eval_results}
    assert set(results) == {"frechet_distance_ddim50_n1000", "label_accuracy"}
    fd = results["frechet_distance_ddim50_n1000"]
    assert fd.metric_value == 9.6 and "not an Inception FID" in fd.metric_type
    assert fd.task_type == "unconditional-image-generation" and fd.dataset_type == "zalando-datasets/fashion_mnist"
    assert "model-index:" in (tmp_path / "README.md").read_text()


def test_inception_metrics_are_typed_fid_and_kid_and_say_how_they_were_computed(tmp_path):
    hub.write_model_card(tmp_path, repo_id_or_path="alice/ddpm", dataset_name="zalando-datasets/fashion_mnist",
                         metrics={"inception_fid_dpmsolver20_n10000": 12.5, "inception_kid_dpmsolver20_n10000": 0.004,
                                  "frechet_distance_ddim50_n1000": 9.6})
    results = {r.metric_value: r for r in ModelCard.load(tmp_path / "README.md").data.eval_results}
    fid, kid, classifier = results[12.5], results[0.004], results[9.6]
    assert (fid.metric_type, kid.metric_type) == ("FID", "KID")
    assert "Inception-v3" in fid.metric_name and "299x299" in fid.metric_name and "test split" in fid.metric_name
    assert "not an Inception FID" in classifier.metric_type
