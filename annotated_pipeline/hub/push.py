"""Pushing a saved pipeline folder to the Hugging Face Hub: its card re-rendered for the repo, then one commit.

The push uploads exactly the saved pipeline: checkpoints (`checkpoint-*/`), logs (`logs/`, `runs/`,
`wandb/`), pickles (`*.pt`, `*.pth`, `*.bin`, `*.ckpt`, `*.pkl`) and caches stay local. The token is the
`token` argument, else huggingface_hub's own lookup (HF_TOKEN, the login file); it is passed through and
never logged or written, and errors are redacted (utils/tokens.py). If the Hub cannot be reached the push
raises `HubUnavailableError` (a `ConnectionError`, hence an `OSError`); everything in the folder is still
there. A malformed repo id raises huggingface_hub's own `HFValidationError` before anything is written.
"""

from __future__ import annotations

from pathlib import Path

from ..utils.tokens import redact, redact_error
from .card import CARD_FILE, CARD_INPUTS_FILE, _card_inputs, write_model_card  # noqa: F401

IGNORE_PATTERNS = [
    "checkpoint-*", "*/checkpoint-*",
    "logs/*", "runs/*", "wandb/*",
    "*.pt", "*.pth", "*.bin", "*.ckpt", "*.pkl", "*.pickle",
    "__pycache__/*", "*/__pycache__/*", "*.pyc",
    ".cache/*", ".ipynb_checkpoints/*",
    ".train.lock",  # the running train's lock (training/ownership.py)
    "posthoc_ema/*",  # post-hoc EMA snapshots (training/posthoc_ema.py): training state, like checkpoints
]

# Remote files of the kinds a saved pipeline is made of (weights, the configs diffusers writes, code).
# A push deletes those the folder no longer has, so the repo loads exactly as the folder does (a stale
# weights file, component config or renamed module would otherwise linger); anything else added on the
# Hub (docs, images, other JSON such as metrics or a hand-written eval_config.json) stays. Patterns
# match the whole path in the repo ("*" also crosses "/"); the JSON ones are exactly the file names
# that save_pretrained writes, at the top (a lone model or scheduler) or in a component folder.
STALE_PATTERNS = [
    "*.safetensors", "*.bin", "*.py",
    "model_index.json", "config.json", "*/config.json", "scheduler_config.json", "*/scheduler_config.json",
]


class HubUnavailableError(ConnectionError):
    """The Hub endpoint could not be reached (or failed with a server error) during a push."""


# ------------------------------------------------------------------------------------------------
# The card
# ------------------------------------------------------------------------------------------------


def _unavailable_error_types() -> tuple[type, ...]:
    """Transport-level failures (no HTTP answer) of whichever HTTP library huggingface_hub uses."""
    types: list[type] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests", "ConnectionError"), ("requests", "Timeout")):
        try:
            types.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(types)


def push_folder_to_hub(
    folder,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload DDPM pipeline with annotated-pipeline",
    card_kwargs: dict | None = None,
    folder_is_temporary: bool = False,
):
    """Upload the saved pipeline in `folder` to the Hub repo `repo_id`, in one commit.

    1. The card (folder/README.md) is re-rendered from the template for `repo_id`, from the inputs
       stored in its metadata updated with `card_kwargs` (the arguments of `model_card`).
    2. `create_repo(repo_id, exist_ok=True, private=private)`, then `upload_folder` of `folder`
       without checkpoints, logs, pickles and caches (IGNORE_PATTERNS). Unchanged files are not
       re-sent; pushing changed files again makes a new commit. In the same commit, the repo's
       weights, configs and code files (STALE_PATTERNS) that `folder` no longer has are deleted.

    Returns huggingface_hub's `CommitInfo` (a str: the commit URL; `.oid` is the commit sha).
    Raises `HubUnavailableError` if the endpoint cannot be reached, after step 1, with every file
    in `folder` intact; huggingface_hub's own errors otherwise (`HFValidationError` for a malformed
    repo id, `HfHubHTTPError` for a refused token, ...). With `folder_is_temporary` (a folder the
    caller is about to delete) the message says so instead of offering the folder for a later push.
    """
    from huggingface_hub import create_repo, upload_folder
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import validate_repo_id

    validate_repo_id(repo_id)  # a malformed id fails here, with the client's own message
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Cannot push {folder}: it is not a directory (save the pipeline there first).")
    if not (folder / "model_index.json").is_file():
        raise ValueError(f"{folder} has no model_index.json: it is not a saved pipeline (call save_pretrained).")
    card_kwargs = dict(card_kwargs or {})
    if "repo_id_or_path" in card_kwargs:
        raise ValueError("card_kwargs cannot set repo_id_or_path: the card of a pushed folder names its repo_id.")

    inputs = {**_card_inputs(folder), **card_kwargs}
    card_path = write_model_card(folder, repo_id_or_path=repo_id, **inputs)
    for path in (card_path, folder / CARD_INPUTS_FILE):  # belt and braces: no token reaches the card or its inputs
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            if redact(text, token) != text:
                path.write_text(redact(text, token), encoding="utf-8")

    try:
        create_repo(repo_id, exist_ok=True, private=private, token=token)
        return upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            commit_message=commit_message,
            ignore_patterns=list(IGNORE_PATTERNS),
            delete_patterns=list(STALE_PATTERNS),
            token=token,
        )
    except HfHubHTTPError as error:  # an endpoint may echo the Authorization header: tokens.py
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status is None or status < 500:
            raise redact_error(error, token) from None
        raise HubUnavailableError(_unavailable_message(folder, repo_id, f"HTTP {status}", folder_is_temporary)) \
            from redact_error(error, token)
    except _unavailable_error_types() as error:
        raise HubUnavailableError(_unavailable_message(folder, repo_id, type(error).__name__, folder_is_temporary)) \
            from redact_error(error, token)


def _unavailable_message(folder: Path, repo_id: str, cause: str, folder_is_temporary: bool = False) -> str:
    from huggingface_hub import constants

    unreachable = f"the endpoint {constants.ENDPOINT} is unreachable or failing ({cause})"
    if folder_is_temporary:
        return (f"Could not push the pipeline to the Hub repo '{repo_id}': {unreachable}. Nothing was uploaded and "
                f"nothing was kept on disk: call push_to_hub({repo_id!r}) again later, or save_pretrained(folder) "
                f"now and push that folder later with push_folder_to_hub(folder, {repo_id!r}).")
    return (
        f"Could not push {folder} to the Hub repo '{repo_id}': {unreachable}. The local folder {folder} is intact; "
        f"push it again later with push_folder_to_hub({str(folder)!r}, {repo_id!r})."
    )
