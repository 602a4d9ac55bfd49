"""LocalHub (tests/hub_server.py) driven by the real huggingface_hub client, in subprocesses.

Each test runs client code in a fresh interpreter with HF_ENDPOINT pointing at the LocalHub and an
empty HF_HOME, and checks what the client got against independent truth: the bytes on this side,
git's own blob hashing, the client's own exception classes.
"""

import json
import subprocess
import textwrap
from pathlib import Path

from hub_server import LocalHub, git_blob_oid, hub_env, local_hub, run_python  # noqa: F401 (fixture)

README = """---
library_name: diffusers
license: mit
tags:
- ddpm
- annotated-pipeline
---
# A test repo
"""


def make_folder(root: Path) -> dict[str, bytes]:
    """A small folder with nested files, a binary file and a README with YAML metadata."""
    files = {
        "README.md": README.encode(),
        "model_index.json": b'{"_class_name": "X"}\n',
        "unet/config.json": b'{"sample_size": 8}\n',
        "unet/deep/weights.bin": bytes(range(256)) * 40,
        "scheduler/scheduler_config.json": b"{}\n",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def client(code: str, env: dict, timeout: float = 120) -> dict:
    """Run client code that prints one JSON object as its last stdout line; return that object."""
    proc = run_python(textwrap.dedent(code), env, timeout=timeout)
    assert proc.returncode == 0, f"client failed:\nSTDOUT:\n{proc.stdout}\nSTDERR:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_upload_list_info_download_round_trip(local_hub, tmp_path):
    src = tmp_path / "src"
    files = make_folder(src)
    env = hub_env(local_hub.endpoint, tmp_path / "hf_home")
    out = client(f"""
        import json
        from huggingface_hub import (create_repo, upload_folder, list_repo_files, model_info,
                                     hf_hub_download, snapshot_download)
        url1 = create_repo("alice/tiny", exist_ok=True)
        url2 = create_repo("alice/tiny", exist_ok=True)  # 409 from the server, accepted by exist_ok
        info = upload_folder(repo_id="alice/tiny", folder_path={str(src)!r}, commit_message="first")
        mi = model_info("alice/tiny", files_metadata=True)
        print(json.dumps({{
            "urls": [url1, url2], "repo_id": url1.repo_id, "commit": info.oid,
            "files": list_repo_files("alice/tiny"),
            "sha": mi.sha, "library_name": mi.library_name,
            "card_tags": mi.card_data.tags,
            "siblings": {{s.rfilename: [s.size, s.blob_id] for s in mi.siblings}},
            "one": hf_hub_download("alice/tiny", "unet/deep/weights.bin"),
            "snapshot": snapshot_download("alice/tiny"),
        }}))
    """, env)

    assert out["urls"] == [f"{local_hub.endpoint}/alice/tiny"] * 2 and out["repo_id"] == "alice/tiny"
    assert len(out["commit"]) == 40 and out["sha"] == out["commit"]
    # A new repo holds .gitattributes from its initial commit, as on the Hub.
    assert sorted(out["files"]) == sorted([*files, ".gitattributes"])
    assert out["library_name"] == "diffusers" and out["card_tags"] == ["ddpm", "annotated-pipeline"]
    for rel, data in files.items():
        assert out["siblings"][rel] == [len(data), git_blob_oid(data)]

    # Byte-identical downloads, from a cache that started empty.
    assert Path(out["one"]).read_bytes() == files["unet/deep/weights.bin"]
    snapshot = read_tree(Path(out["snapshot"]))
    assert {k: v for k, v in snapshot.items() if k != ".gitattributes"} == files
    assert Path(out["snapshot"]).name == out["sha"]
    # The server side agrees with what the client uploaded.
    assert {k: v for k, v in local_hub.files("alice/tiny").items() if k != ".gitattributes"} == files
    assert [c["title"] for c in local_hub.commits("alice/tiny")] == ["first", "initial commit"]
    # The token from HF_TOKEN reached the server on the write calls.
    writes = [r for r in local_hub.requests if r.method == "POST"]
    assert writes and all(r.authorization == "Bearer hf_local_hub_fake_token" for r in writes)


def test_blob_oid_matches_git(tmp_path):
    data = b"some bytes\n\x00\xff" * 7
    (tmp_path / "f").write_bytes(data)
    git = subprocess.run(["git", "hash-object", str(tmp_path / "f")], capture_output=True, text=True, check=True)
    assert git_blob_oid(data) == git.stdout.strip()


def test_second_upload_is_a_second_commit_and_fresh_download_sees_it(local_hub, tmp_path):
    src = tmp_path / "src"
    make_folder(src)
    local_hub.create_repo("alice/tiny")
    code = f"""
        import json, sys
        from huggingface_hub import upload_folder, hf_hub_download, HfApi
        info = upload_folder(repo_id="alice/tiny", folder_path={str(src)!r}, commit_message=sys.argv[-1])
        print(json.dumps({{"oid": info.oid,
                          "config": open(hf_hub_download("alice/tiny", "unet/config.json")).read(),
                          "n_commits": len(HfApi().list_repo_commits("alice/tiny"))}}))
    """
    first = client(code.replace("sys.argv[-1]", "'one'"), hub_env(local_hub.endpoint, tmp_path / "home1"))
    (src / "unet" / "config.json").write_text('{"sample_size": 16}\n')
    second = client(code.replace("sys.argv[-1]", "'two'"), hub_env(local_hub.endpoint, tmp_path / "home2"))
    # Nothing changed: the client sees the server's oids in preupload and skips the commit.
    third = client(code.replace("sys.argv[-1]", "'three'"), hub_env(local_hub.endpoint, tmp_path / "home3"))

    assert first["config"] == '{"sample_size": 8}\n' and second["config"] == '{"sample_size": 16}\n'
    assert (first["n_commits"], second["n_commits"], third["n_commits"]) == (2, 3, 3)
    assert first["oid"] != second["oid"] == third["oid"]
    commits = local_hub.commits("alice/tiny")
    assert [c["title"] for c in commits] == ["two", "one", "initial commit"]
    assert commits[0]["parents"] == [commits[1]["oid"]]
    # Only the changed file got a new blob; the old revision is still readable by sha.
    assert local_hub.files("alice/tiny", revision=first["oid"])["unet/config.json"] == b'{"sample_size": 8}\n'


def test_missing_repo_file_and_revision_raise_the_clients_own_errors(local_hub, tmp_path):
    local_hub.create_repo("alice/tiny")
    out = client("""
        import json
        from huggingface_hub import model_info, hf_hub_download, list_repo_files
        from huggingface_hub.errors import (RepositoryNotFoundError, EntryNotFoundError,
                                            RevisionNotFoundError)
        def kind(fn, *args, **kwargs):
            try:
                fn(*args, **kwargs)
            except Exception as e:
                for cls in (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError):
                    if isinstance(e, cls):
                        return cls.__name__
                return "other: " + repr(e)
            return "no error"
        print(json.dumps({
            "info": kind(model_info, "alice/does-not-exist"),
            "list": kind(list_repo_files, "nobody/nothing"),
            "download_repo": kind(hf_hub_download, "alice/does-not-exist", "config.json"),
            "download_file": kind(hf_hub_download, "alice/tiny", "no/such/file.json"),
            "revision": kind(hf_hub_download, "alice/tiny", ".gitattributes", revision="no-such-branch"),
            "info_revision": kind(model_info, "alice/tiny", revision="no-such-branch"),
        }))
    """, hub_env(local_hub.endpoint, tmp_path / "home"))
    assert out == {"info": "RepositoryNotFoundError", "list": "RepositoryNotFoundError",
                   "download_repo": "RepositoryNotFoundError", "download_file": "EntryNotFoundError",
                   "revision": "RevisionNotFoundError", "info_revision": "RevisionNotFoundError"}


def test_writes_without_a_token_are_refused(local_hub, tmp_path):
    out = client("""
        import json
        from huggingface_hub import create_repo
        from huggingface_hub.errors import HfHubHTTPError
        try:
            create_repo("alice/tiny")
            print(json.dumps({"status": None}))
        except HfHubHTTPError as e:
            print(json.dumps({"status": e.response.status_code}))
    """, hub_env(local_hub.endpoint, tmp_path / "home", token=None))
    assert out == {"status": 401}
    assert not local_hub.repo_exists("alice/tiny")


def test_down_endpoint_is_a_connection_error(tmp_path):
    hub = LocalHub(tmp_path / "hub").start()
    hub.create_repo("alice/tiny")
    hub.stop()  # the endpoint goes down; its URL stays known
    out = client("""
        import json
        from huggingface_hub import create_repo, model_info
        def kind(fn, *args, **kwargs):
            try:
                fn(*args, **kwargs)
            except Exception as e:
                return [type(e).__name__, [c.__name__ for c in type(e).__mro__]]
            return ["no error", []]
        print(json.dumps({"create": kind(create_repo, "alice/tiny", exist_ok=True),
                          "info": kind(model_info, "alice/tiny")}))
    """, hub_env(hub.endpoint, tmp_path / "home"), timeout=60)
    for name, mro in out.values():
        assert name == "ConnectError" and "NetworkError" in mro, out
    # Started again on the same directory, it serves the same repo.
    with LocalHub(tmp_path / "hub") as again:
        assert again.endpoint != "" and again.repo_exists("alice/tiny")
        assert list(again.files("alice/tiny")) == [".gitattributes"]


def test_diffusers_pipeline_round_trip(local_hub, tmp_path):
    """diffusers' own save/upload/download path: model_info siblings, config via resolve, snapshot."""
    folder, home = tmp_path / "pipe", tmp_path / "home"
    out = client(f"""
        import json, torch
        from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel, DiffusionPipeline
        torch.manual_seed(0)
        unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                           block_out_channels=(8, 8), norm_num_groups=4,
                           down_block_types=("DownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "UpBlock2D"))
        pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=10))
        pipe.save_pretrained({str(folder)!r})
        pipe.push_to_hub("alice/ddpm-tiny")
        loaded = DiffusionPipeline.from_pretrained("alice/ddpm-tiny")
        same = all(torch.equal(a, b) for a, b in zip(unet.state_dict().values(),
                                                      loaded.unet.state_dict().values()))
        print(json.dumps({{"cls": type(loaded).__name__, "same_weights": same,
                          "T": loaded.scheduler.config.num_train_timesteps}}))
    """, hub_env(local_hub.endpoint, home), timeout=180)
    assert out == {"cls": "DDPMPipeline", "same_weights": True, "T": 10}
    repo = local_hub.files("alice/ddpm-tiny")
    for rel in ("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                "scheduler/scheduler_config.json"):
        assert repo[rel] == (folder / rel).read_bytes()


def test_hub_env_can_hide_the_installed_package(tmp_path):
    code = """
        import json
        import huggingface_hub
        try:
            import annotated_pipeline
            print(json.dumps({"hidden": False}))
        except ModuleNotFoundError as e:
            print(json.dumps({"hidden": True, "name": e.name}))
    """
    hidden = client(code, hub_env("http://127.0.0.1:9", tmp_path / "a", hide_modules=("annotated_pipeline",)))
    visible = client(code, hub_env("http://127.0.0.1:9", tmp_path / "b"))
    assert hidden == {"hidden": True, "name": "annotated_pipeline"} and visible == {"hidden": False}
