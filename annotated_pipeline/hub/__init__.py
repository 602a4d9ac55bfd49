"""The model card, and pushing a saved pipeline folder to the Hugging Face Hub.

A trained pipeline leaves a folder behind (`save_pretrained` + `samples.png`); this module adds
its card and uploads it:

    model_card(repo_id_or_path, ...)      -> huggingface_hub.ModelCard, rendered from templates/model_card.md
    write_model_card(folder, ...)         -> folder/README.md
    push_folder_to_hub(folder, repo_id)   -> rewrite folder/README.md for `repo_id`, then
                                             create_repo(exist_ok=True) + upload_folder: one commit

The card is data first: its YAML metadata (`library_name: diffusers`, `pipeline_tag`, `tags`,
`license`, `datasets`, `model-index` with the evaluation numbers) is what the Hub indexes. The inputs
the card was rendered from (training configuration, metrics, ...) are kept beside it, in
`card_inputs.json`, so that a push can re-render the card for the repo it goes to without losing
them. How the card says to sample comes from the saved pipeline itself: its scheduler and the
sampling defaults in `model_index.json` (`AnnotatedDDPMPipeline.sampling_defaults`). Secrets never reach the card: any key that
contains "token" (or "password", "secret", "api_key") is dropped, at any depth.

The push uploads exactly the saved pipeline: checkpoints (`checkpoint-*/`), logs (`logs/`, `runs/`,
`wandb/`), pickles (`*.pt`, `*.pth`, `*.bin`, `*.ckpt`, `*.pkl`) and caches stay local. The token is
the `token` argument, else huggingface_hub's own lookup (HF_TOKEN, the login cache); it is passed
through and never logged or written, and errors are redacted (tokens.py). If the Hub cannot be reached the push raises
`HubUnavailableError` (a `ConnectionError`, hence an `OSError`); everything in the folder is
still there. A malformed repo id raises huggingface_hub's own `HFValidationError` before anything is
written.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from ..resources import model_card_template
from ..utils.tokens import redact, redact_error

TEMPLATE_PATH = model_card_template()
CARD_FILE = "README.md"
CARD_INPUTS_FILE = "card_inputs.json"  # beside README.md: the inputs the card was rendered from
LEGACY_CARD_INPUTS_KEY = "annotated_pipeline"  # where older cards kept them, in their YAML metadata
TAGS = ["pytorch", "diffusers", "unconditional-image-generation", "ddpm", "annotated-pipeline"]
PIPELINE_TAG = "unconditional-image-generation"
SECRET_KEY_PARTS = ("token", "password", "secret", "api_key", "apikey")

# What a training run leaves in its output folder that is not part of the pipeline.
IGNORE_PATTERNS = [
    "checkpoint-*", "*/checkpoint-*",
    "logs/*", "runs/*", "wandb/*",
    "*.pt", "*.pth", "*.bin", "*.ckpt", "*.pkl", "*.pickle",
    "__pycache__/*", "*/__pycache__/*", "*.pyc",
    ".cache/*", ".ipynb_checkpoints/*",
    ".train.lock",  # the running train's lock (training/ownership.py)
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


def _is_secret(key) -> bool:
    return any(part in str(key).lower() for part in SECRET_KEY_PARTS)


def _plain(value):
    """A YAML/JSON-safe copy of `value` with secret keys dropped (tuples -> lists, paths -> str)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if not _is_secret(k)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def _cell(value) -> str:
    """One table cell: lists as JSON, the rest as text; no pipes, backticks or newlines to break the table."""
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text.replace("|", "\\|").replace("`", "'").replace("\n", " ")


def _hub_dataset_id(dataset_name, training_args) -> str | None:
    """`dataset_name` if it reads as a Hub dataset id (not a description, not a local folder)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not dataset_name or os.path.exists(dataset_name):
        return None
    if training_args and dataset_name == training_args.get("train_data_dir"):
        return None
    try:
        validate_repo_id(dataset_name)
    except HFValidationError:
        return None
    return dataset_name


def model_card(
    repo_id_or_path,
    training_args: dict | None = None,
    dataset_name: str | None = None,
    license: str = "mit",
    samples_file: str | None = "samples.png",
    metrics: dict | None = None,
    extra: str | None = None,
    guidance_scale: float | None = None,
    guidance_interval: tuple[int, int] | None = None,
    sampling_defaults: dict | None = None,
) -> ModelCard:
    """Render the model card of a trained pipeline from `templates/model_card.md`.

    Args:
        repo_id_or_path: what the card's loading examples pass to `from_pretrained`: the Hub repo id
            ("user/name") or the local folder.
        training_args: the training configuration (e.g. `vars(args)`); shown as a table. Keys that
            contain "token" (and other secret-looking keys) are left out.
        dataset_name: the training data. A Hub dataset id also goes into the `datasets` metadata.
        license: the license identifier for the metadata (default "mit").
        samples_file: image shown under "Samples", relative to the card; None for no image.
        metrics: {name: value} shown as an evaluation table.
        extra: Markdown appended before the citations.
        guidance_scale: for a class-conditional model trained with label dropout, the classifier-free
            guidance its sampling examples use (None: the pipeline's default, 1, no guidance).
        guidance_interval: (t_low, t_high), the timesteps those examples guide (None: every step).
        sampling_defaults: what the saved pipeline samples with when called without settings
            (`folder_sampling_defaults`; `write_model_card` reads it from the folder); the first
            sampling snippet then calls `pipe(batch_size=16, generator=generator)` and says so.
    """
    if not TEMPLATE_PATH.is_file():
        raise FileNotFoundError(
            f"The model card template is missing: expected {TEMPLATE_PATH}. It ships inside the package "
            "(annotated_pipeline/templates/model_card.md); reinstall the package to get it back."
        )
    if not isinstance(license, str) or not license.strip():
        raise ValueError(f"license must be a non-empty license identifier such as 'mit', got {license!r}.")
    if guidance_scale is not None and not (isinstance(guidance_scale, (int, float)) and guidance_scale >= 0):
        raise ValueError(f"guidance_scale must be a number >= 0 or None, got {guidance_scale!r}.")
    if guidance_interval is not None:
        from ..pipelines.pipeline import check_guidance_interval  # the pipeline's own rule (imported here: it needs torch)

        check_guidance_interval(guidance_interval, guidance_scale=1.0 if guidance_scale is None else guidance_scale)
        guidance_interval = [int(v) for v in guidance_interval]
    for name, value in (("training_args", training_args), ("metrics", metrics)):
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{name} must be a dict or None, got {type(value).__name__}.")

    training_args = _plain(training_args or {})
    metrics = _plain(metrics or {})
    dataset_id = _hub_dataset_id(dataset_name, training_args)
    inputs = {"training_args": training_args, "dataset_name": dataset_name, "samples_file": samples_file,
              "metrics": metrics, "extra": extra, "guidance_scale": guidance_scale, "guidance_interval": guidance_interval}
    model_name = Path(str(repo_id_or_path)).name or str(repo_id_or_path)
    base_model = training_args.get("pretrained_model_name_or_path")  # a fine-tuned model's starting point
    card_data = ModelCardData(
        base_model=base_model,
        library_name="diffusers",
        license=license,
        tags=list(TAGS),
        datasets=[dataset_id] if dataset_id else None,
        pipeline_tag=PIPELINE_TAG,
        model_name=model_name,
        eval_results=_eval_results(metrics, dataset_id, dataset_name) or None,
    )
    steps = training_args.get("ddpm_num_inference_steps") or training_args.get("ddpm_num_steps") or 1000
    T = int(training_args.get("ddpm_num_steps") or 1000)  # a chain is never longer than T
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        repo_id_or_path=str(repo_id_or_path),
        dataset_name=dataset_name,
        samples_file=samples_file,
        metric_rows=[(_cell(k), _cell(v)) for k, v in metrics.items()],
        config_rows=[(_cell(k), _cell(v)) for k, v in training_args.items()],
        num_inference_steps=int(steps),
        ddim_steps=min(50, T),
        dpm_steps=min(20, T),
        class_conditional=bool(training_args.get("label_column")),
        guidance_scale=None if guidance_scale is None or guidance_scale == 1 else f"{guidance_scale:g}",
        guidance_interval=None if guidance_interval is None else f"({guidance_interval[0]}, {guidance_interval[1]})",
        beta_schedule=training_args.get("ddpm_beta_schedule"),
        base_model=base_model,
        extra=extra,
        folder_defaults=_describe_defaults(sampling_defaults),
    )
    card.inputs = {k: v for k, v in inputs.items() if v not in (None, {}, "")}  # what write_model_card keeps
    return card


def _describe_defaults(sampling_defaults):
    """A short line for the card's first sampling snippet: what `pipe()` uses when called without settings."""
    if not sampling_defaults:
        return None
    words = [sampling_defaults.get("scheduler") or "its scheduler"]
    if sampling_defaults.get("num_inference_steps"):
        words.append(f"{sampling_defaults['num_inference_steps']} steps")
    scale = sampling_defaults.get("guidance_scale")
    if scale not in (None, 1, 1.0):
        interval = sampling_defaults.get("guidance_interval")
        words.append(f"guidance_scale={scale:g}" + (f" at {interval[0]} <= t <= {interval[1]}" if interval else ""))
    return ", ".join(words)


def folder_sampling_defaults(folder) -> dict | None:
    """The sampling a saved folder recommends, read from its files (no weights loaded): {"scheduler": class
    name, "num_inference_steps", "guidance_scale", "guidance_interval"}; None when model_index.json sets none."""
    folder = Path(folder)
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    from ..pipelines.pipeline import SAMPLING_DEFAULT_KEYS  # the pipeline's own names (imported here: it needs torch)

    defaults = {key[len("default_"):]: index.get(key) for key in SAMPLING_DEFAULT_KEYS}
    if all(value is None for value in defaults.values()):
        return None
    scheduler = index.get("scheduler")
    defaults["scheduler"] = scheduler[1] if isinstance(scheduler, list) and len(scheduler) == 2 else None
    return defaults


def _eval_results(metrics, dataset_id, dataset_name):
    """The card's numeric metrics as `model-index` results, which the Hub shows beside the model. The
    distances are the offline Frechet distance of annotated_pipeline.evaluation, not Inception FIDs, and
    their metric type says so."""
    from huggingface_hub import EvalResult

    return [
        EvalResult(task_type=PIPELINE_TAG, dataset_type=dataset_id or "custom", dataset_name=dataset_name or "training data",
                   metric_type=f"{name} (classifier features, not an Inception FID)" if "frechet" in name else name,
                   metric_name=name, metric_value=value)
        for name, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not name.startswith("guidance")
    ]


def write_model_card(folder, repo_id_or_path=None, **kwargs) -> Path:
    """Write the card of the pipeline saved in `folder` to `folder/README.md`; returns that path.

    `repo_id_or_path` defaults to the folder itself; the other keyword arguments are `model_card`'s.
    The samples image is only referenced if it exists in the folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Cannot write a model card into {folder}: it is not a directory.")
    samples_file = kwargs.get("samples_file", "samples.png")
    if samples_file and not (folder / samples_file).is_file():
        kwargs["samples_file"] = None
    if "sampling_defaults" not in kwargs:
        kwargs["sampling_defaults"] = folder_sampling_defaults(folder)
    card = model_card(str(folder) if repo_id_or_path is None else repo_id_or_path, **kwargs)
    path = folder / CARD_FILE
    card.save(path)
    (folder / CARD_INPUTS_FILE).write_text(json.dumps(card.inputs, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _card_inputs(folder: Path) -> dict:
    """The `model_card` inputs a folder's card was rendered from ({} if there are none): card_inputs.json,
    or for a card written before that file existed, the `annotated_pipeline` key of its YAML metadata."""
    folder = Path(folder)
    inputs = None
    if (folder / CARD_INPUTS_FILE).is_file():
        try:
            inputs = json.loads((folder / CARD_INPUTS_FILE).read_text(encoding="utf-8"))
        except ValueError:
            inputs = None
    data = {}
    if (folder / CARD_FILE).is_file():
        try:
            data = ModelCard.load(folder / CARD_FILE).data.to_dict()
        except Exception:  # a hand-written README without (valid) metadata: start from scratch
            data = {}
    if inputs is None:
        inputs = data.get(LEGACY_CARD_INPUTS_KEY)
    if not isinstance(inputs, dict):
        return {}
    if data.get("license"):
        inputs = {**inputs, "license": data["license"]}
    return inputs


# ------------------------------------------------------------------------------------------------
# The push
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
