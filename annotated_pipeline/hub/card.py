"""The model card of a saved pipeline: rendered from templates/model_card.md, data first.

Its YAML metadata (`library_name: diffusers`, `pipeline_tag`, `tags`, `license`, `datasets`, `model-index`
with the evaluation numbers) is what the Hub indexes. The inputs the card was rendered from (training
configuration, metrics, ...) are kept beside it in `card_inputs.json`, so that a push can re-render the card
for the repo it goes to. How the card says to sample comes from the saved pipeline itself: its scheduler
and the sampling defaults in `model_index.json`. Secrets never reach the card: any key that contains
"token" (or "password", "secret", "api_key") is dropped, at any depth.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from ..resources import model_card_template

TEMPLATE_PATH = model_card_template()
CARD_FILE = "README.md"
CARD_INPUTS_FILE = "card_inputs.json"  # beside README.md: the inputs the card was rendered from
LEGACY_CARD_INPUTS_KEY = "annotated_pipeline"  # where older cards kept them, in their YAML metadata
TAGS = ["pytorch", "diffusers", "unconditional-image-generation", "ddpm", "annotated-pipeline"]
PIPELINE_TAG = "unconditional-image-generation"
SECRET_KEY_PARTS = ("token", "password", "secret", "api_key", "apikey")

# What a training run leaves in its output folder that is not part of the pipeline.
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


def _check_card_inputs(license, guidance_scale, guidance_interval, training_args, metrics):
    """ValueError (FileNotFoundError for a missing template) for what `model_card` cannot render; returns the
    guidance interval as a list of ints."""
    if not TEMPLATE_PATH.is_file():
        raise FileNotFoundError(
            f"The model card template is missing: expected {TEMPLATE_PATH}. It ships inside the package "
            "(annotated_pipeline/templates/model_card.md); reinstall the package to get it back."
        )
    if not isinstance(license, str) or not license.strip():
        raise ValueError(f"license must be a non-empty license identifier such as 'mit', got {license!r}.")
    if guidance_scale is not None:
        from ..pipelines.pipeline_inputs import check_guidance_scale  # the pipeline's own range

        check_guidance_scale(guidance_scale)
    if guidance_interval is not None:
        from ..pipelines.pipeline import check_guidance_interval  # the pipeline's own rule (imported here: it needs torch)

        check_guidance_interval(guidance_interval, guidance_scale=1.0 if guidance_scale is None else guidance_scale)
        guidance_interval = [int(v) for v in guidance_interval]
    for name, value in (("training_args", training_args), ("metrics", metrics)):
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{name} must be a dict or None, got {type(value).__name__}.")

    return guidance_interval


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
    guidance_interval = _check_card_inputs(license, guidance_scale, guidance_interval, training_args, metrics)
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


# How the card's Inception numbers were computed: comparable only to numbers computed the same way.
INCEPTION_METRIC_NOTE = ("TF Inception-v3 pool features; 28x28 grey replicated to RGB and resized to 299x299 "
                         "by TF1 bilinear; against the whole 10,000-image test split")


def _eval_results(metrics, dataset_id, dataset_name):
    """The card's numeric metrics as `model-index` results, which the Hub shows beside the model.

    Names starting `inception_fid` / `inception_kid` are the field's Inception FID and KID (evaluation/
    inception_measure.py) and are typed "FID" / "KID", their name saying how they were computed; the
    other distances are the offline Frechet distance in our classifier's features, and their type says
    that they are not Inception FIDs."""
    from huggingface_hub import EvalResult

    def typed(name):
        if name.startswith(("inception_fid", "inception_kid")):
            kind = "FID" if name.startswith("inception_fid") else "KID"
            return kind, f"{name} ({INCEPTION_METRIC_NOTE})"
        if "frechet" in name:
            return f"{name} (classifier features, not an Inception FID)", name
        return name, name

    return [
        EvalResult(task_type=PIPELINE_TAG, dataset_type=dataset_id or "custom", dataset_name=dataset_name or "training data",
                   metric_type=typed(name)[0], metric_name=typed(name)[1], metric_value=value)
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


