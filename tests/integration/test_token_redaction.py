"""No Hub token reaches stdout or stderr, whatever its source (annotated_pipeline/utils/tokens.py).

The local Hub server runs with `echo_authorization=True`: every write fails with an error that quotes
the bearer token it received, as a badly behaved endpoint or proxy might. The token is not shaped like
a Hub token (no `hf_` prefix), so only knowing where tokens come from can hide it. Each source:

    HF_TOKEN           `train --push_to_hub` (a real one-step run, as a subprocess)
    the login file     the same, with the token only in HF_HOME/token, as `hf auth login` writes it
    a token argument   `push_folder_to_hub(..., token=...)` from Python, the error left uncaught
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: hub_server, training_runs

from hub_server import LocalHub, hub_env, run_python  # noqa: E402
from training_runs import REPO, TINY, small_parquet  # noqa: E402

pytestmark = pytest.mark.slow
SECRET = "s3cret-not-shaped-like-a-hub-token-0123456789"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return small_parquet(tmp_path_factory.mktemp("data"), n=4)


@pytest.fixture
def echoing_hub(tmp_path):
    with LocalHub(tmp_path / "hub", echo_authorization=True) as hub:
        yield hub


def train_and_push(hub, hf_home, data_dir, out, token_in_env):
    env = hub_env(hub.endpoint, hf_home, token=SECRET if token_in_env else None)
    env["PYTHONPATH"] = str(REPO)
    if not token_in_env:
        (Path(hf_home) / "token").write_text(SECRET)  # what `hf auth login` stores
    code = f"""
import sys
from annotated_pipeline.train import main
sys.exit(main({["--train_data_dir", str(data_dir), "--output_dir", str(out), *TINY, "--train_batch_size", "4",
                "--max_train_steps", "1", "--eval_batch_size", "1", "--ddpm_num_inference_steps", "2",
                "--logger", "none", "--push_to_hub", "--hub_model_id", "test-user/tiny"]!r}, prog="train"))
"""
    return run_python(code, env, timeout=300, cwd=str(REPO))


@pytest.mark.parametrize("token_in_env", [True, False], ids=["HF_TOKEN", "login-file"])
def test_a_train_push_never_prints_the_token(echoing_hub, tmp_path, data_dir, token_in_env):
    result = train_and_push(echoing_hub, tmp_path / "home", data_dir, tmp_path / "out", token_in_env)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "train: error: push to the Hub repo test-user/tiny failed" in result.stderr
    assert "unexpected credentials '***'" in result.stderr  # the echo arrived, redacted
    assert SECRET not in result.stdout + result.stderr
    writes = [r for r in echoing_hub.requests if r.method == "POST"]
    assert writes and all(r.authorization == f"Bearer {SECRET}" for r in writes)  # the token was really sent


def test_a_token_argument_never_reaches_the_traceback(echoing_hub, tmp_path):
    from annotated_pipeline import AnnotatedDDPMPipeline, AnnotatedDDPMScheduler, AnnotatedUNet2DModel

    folder = tmp_path / "pipe"
    unet = AnnotatedUNet2DModel(sample_size=16, in_channels=1, dim=8, dim_mults=(1, 2))
    AnnotatedDDPMPipeline(unet=unet, scheduler=AnnotatedDDPMScheduler(num_train_timesteps=20,
                                                                     beta_schedule="squaredcos_cap_v2")).save_pretrained(folder)
    env = hub_env(echoing_hub.endpoint, tmp_path / "home", token=None)
    env.update(PYTHONPATH=str(REPO), ARGUMENT_TOKEN=SECRET)
    result = run_python(f"""
import os
from annotated_pipeline.hub import push_folder_to_hub
push_folder_to_hub({str(folder)!r}, "test-user/tiny", token=os.environ["ARGUMENT_TOKEN"])
""", env, cwd=str(REPO))
    assert result.returncode == 1
    assert "BadRequestError" in result.stderr and "unexpected credentials '***'" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert any(r.authorization == f"Bearer {SECRET}" for r in echoing_hub.requests)
