# Generated at save time from pipeline_loading.py, pipeline_inputs.py, pipeline_predictions.py, pipeline_saving.py, pipeline.py (annotated-pipeline); edit those modules, not this file.

# ---- pipeline_loading.py -----------------------------------------------------
"""Loading a saved pipeline with this package installed (route 1): no code from the folder runs.

A saved folder names its components' classes in `model_index.json`. diffusers' loader imports the
code files the folder carries (with `trust_remote_code=True`); this one instead builds every component
from the installed package's classes, or from diffusers' own models and schedulers (a swapped-in
`DDIMScheduler`), and refuses anything else by name. Weights load from safetensors only; a Hub repo id
is downloaded without its code files, pickles or checkpoints.

When the pipeline code runs as remote code (copied into a saved folder, beside no package),
`installed_module` returns None and the pipeline falls back to diffusers' loader.
"""

import importlib
import inspect
import os

from diffusers.models.modeling_utils import ModelMixin
from diffusers.schedulers.scheduling_utils import SchedulerMixin


def load_with_installed_classes(cls, path_or_repo_id, installed, kwargs):
    """`cls(**components)` for the folder or repo `path_or_repo_id`, each component built from
    `installed` ({class name: class}, see `installed_component_classes`) or diffusers; the keywords
    diffusers' `from_pretrained` takes by habit are honoured (torch_dtype / dtype, variant) or refused
    by name (use_safetensors=False, device_map, custom_pipeline)."""
    if kwargs.get("custom_pipeline"):
        raise ValueError("custom_pipeline runs code that is not part of this package: pass trust_remote_code=True "
                         "as well (diffusers' loader) once you have read that code.")

    hub_kwargs = {k: kwargs.pop(k) for k in ("cache_dir", "revision", "token", "local_files_only", "force_download") if k in kwargs}
    torch_dtype = kwargs.pop("torch_dtype", None)
    dtype = kwargs.pop("dtype", None)  # diffusers' newer name for torch_dtype
    if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
        raise ValueError(f"Got torch_dtype={torch_dtype} and dtype={dtype}; give one of them.")
    torch_dtype = torch_dtype if torch_dtype is not None else dtype
    variant = kwargs.pop("variant", None)
    if kwargs.pop("use_safetensors", True) is False:
        raise ValueError("use_safetensors=False: weights are loaded from safetensors only (a pickle can run code).")
    if kwargs.pop("device_map", None) is not None:
        raise ValueError("device_map is not supported by this pipeline (it is small): load it, then pipe.to(device).")
    folder = _local_folder(path_or_repo_id, hub_kwargs)
    config = cls.load_config(folder)

    components = {}
    for name, base in (("unet", ModelMixin), ("scheduler", SchedulerMixin)):
        if name in kwargs:
            components[name] = kwargs.pop(name)
            continue
        library, class_name = config[name]
        component_cls = installed.get(class_name)
        if component_cls is None and library == "diffusers":
            component_cls = getattr(importlib.import_module("diffusers"), class_name, None)
        if not (isinstance(component_cls, type) and issubclass(component_cls, base)):
            raise ValueError(
                f"{name} is saved as [{library!r}, {class_name!r}]. With the package installed, a pipeline is "
                f"built only from its own classes ({', '.join(sorted(installed))}) and diffusers' "
                f"{base.__name__} classes, and no code from the folder runs; to load anything else, read the "
                "folder's code and use DiffusionPipeline.from_pretrained(path, trust_remote_code=True)."
            )
        saved_as = component_cls.load_config(folder, subfolder=name).get("_class_name") if base is ModelMixin else None
        if saved_as is not None and saved_as != class_name:  # e.g. a hand-edited model_index.json (a scheduler
            # config may be read by another scheduler class, a model's weights only by their own)
            raise ValueError(f"{name} is saved as [{library!r}, {class_name!r}] in model_index.json, but {name}/ holds "
                             f"a {saved_as} config: the folder contradicts itself; name {saved_as!r} in model_index.json")
        load_kwargs = {"subfolder": name}
        if issubclass(component_cls, ModelMixin):
            load_kwargs.update(use_safetensors=True, torch_dtype=torch_dtype, variant=variant)
        components[name] = component_cls.from_pretrained(folder, **load_kwargs)
    # The pipeline's own config (model_index.json keys its __init__ takes, e.g. the sampling defaults);
    # a keyword argument of the same name overrides the folder's value, as in diffusers.
    settings = [name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "unet", "scheduler")]
    settings = {name: kwargs.pop(name) if name in kwargs else config.get(name) for name in settings
                if name in kwargs or name in config}
    if kwargs:
        raise ValueError(f"Unexpected keyword arguments for from_pretrained: {sorted(kwargs)}.")
    pipeline = cls(**components, **settings)
    pipeline.register_to_config(_name_or_path=str(path_or_repo_id))
    return pipeline


def _local_folder(path_or_repo_id, hub_kwargs):
    """A local folder for `path_or_repo_id`: the folder itself, or a snapshot of the Hub repo (weights
    and configs only: code files, pickles and checkpoints are not downloaded).

    A name that can only be a path (absolute, starting with '.' or '~', or not of the Hub's
    'namespace/name' form) and is not a folder raises ValueError; a Hub download that fails (offline,
    unreachable, no such repo) raises OSError, in one line that names both readings of the name."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import validate_repo_id

    name = str(path_or_repo_id)
    if os.path.isdir(name):
        return name
    if os.path.exists(name):
        raise ValueError(f"{name!r} is a file; a saved pipeline is a folder (with model_index.json) or a Hub repo id.")
    try:
        validate_repo_id(name)
        is_repo_id = not name.startswith((".", "~", os.sep)) and name.count("/") <= 1
    except ValueError:  # HFValidationError
        is_repo_id = False
    if not is_repo_id:
        raise ValueError(f"No folder {name!r} (and it cannot be a Hub repo id, which has the form 'namespace/name').")
    try:
        return snapshot_download(name, ignore_patterns=["*.py", "*.bin", "*.pt", "*.ckpt", "*.pkl", "checkpoint-*/*"],
                                 **hub_kwargs)
    except Exception as error:  # offline, unreachable, unknown repo, refused token
        cause = " ".join(str(error).splitlines()[:1])[:300]
        raise OSError(f"No folder {name!r} here, and downloading it as a Hub repo id failed: "
                      f"{type(error).__name__}: {cause}") from None


def installed_module(submodule):
    """A module of the installed package, or None when this file runs as remote code from a saved
    folder (it then lives in diffusers' module cache, beside no package)."""
    root = (__package__ or "").split(".")[0]  # this file lives in <root>.pipelines when installed
    if not root or root == "diffusers_modules":
        return None
    return importlib.import_module(f"{root}.{submodule}")


def installed_component_classes():
    """{class name: class} for the components of the installed package; {} when running as remote code."""
    if installed_module("unet") is None:
        return {}
    classes = {}
    for subpackage in ("unet", "scheduler"):
        module = installed_module(subpackage)
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, (ModelMixin, SchedulerMixin)):
                classes[name] = obj
    return classes


# ---- pipeline_inputs.py ------------------------------------------------------
"""What a pipeline call may be given: every argument checked before the first step.

The sampling pipeline and the editing pipelines call these through their methods (`_check_inputs`,
`_class_labels_tensor`, `_check_sigma_spacing`), so a bad argument is one ValueError that says what
was wrong and what is allowed, before any work: nothing is rounded or dropped silently. Like
pipeline.py, this file is bundled into saved folders and imports nothing from the package.
"""

import math
import numbers

import torch


OUTPUT_TYPES = ("pil", "np", "pt")
# s of classifier-free guidance (Ho & Salimans 2022, eq. (6)): 1 = none, 0 = the unconditional model; their
# figures go to w = 4 (s = 5), and far beyond ~20 every sample saturates. The one range of the pipeline's check,
# the folder's default and every command's --guidance_scale.
GUIDANCE_SCALE_RANGE = (0.0, 50.0)
DEFAULT_MAX_BATCH_SIZE = 256  # images per U-Net call when a call leaves max_batch_size out


def chunk_size(unet, batch_size, max_batch_size, guided, device):
    """The images per U-Net call of a call for `batch_size` images: `max_batch_size` (a positive int), or
    DEFAULT_MAX_BATCH_SIZE for None. With the package installed, a ValueError when the images and one chunk
    cannot fit in `device`'s memory (utils/memory.py); as remote code there is no estimate, but the chunks
    still bound the U-Net's part of the peak."""
    if max_batch_size is not None and (not is_int(max_batch_size) or max_batch_size < 1):
        raise ValueError(f"max_batch_size must be a positive integer (images per U-Net call), got {max_batch_size!r}.")
    chunk = DEFAULT_MAX_BATCH_SIZE if max_batch_size is None else int(max_batch_size)
    memory = installed_module("utils.memory")
    if memory is not None:
        memory.check_sampling_memory(unet, batch_size, chunk, guided, device, "lower the number of images "
                                     "(batch_size) or max_batch_size")
    return chunk


def check_guidance_interval(guidance_interval, num_train_timesteps=None, guidance_scale=None):
    """Raise a ValueError unless `guidance_interval` is two ints (t_low, t_high), training timesteps with
    0 <= t_low <= t_high (< num_train_timesteps when that is given), and, when `guidance_scale` is given,
    unless it guides (an interval with s = 1 would say where to guide but guide nowhere). The one rule
    for the pipeline, `evaluate` and the model card."""
    if guidance_scale is not None and guidance_scale == 1.0:
        raise ValueError(f"guidance_interval={guidance_interval!r} says where to guide, but guidance_scale is 1 "
                         "(no guidance): give a guidance_scale other than 1 with it, or no interval.")
    ok = (isinstance(guidance_interval, (tuple, list)) and len(guidance_interval) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in guidance_interval)
          and 0 <= guidance_interval[0] <= guidance_interval[1]
          and (num_train_timesteps is None or guidance_interval[1] < num_train_timesteps))
    if not ok:
        bound = "" if num_train_timesteps is None else f" < {num_train_timesteps}"
        raise ValueError(f"guidance_interval must be two ints (t_low, t_high) with 0 <= t_low <= t_high{bound} "
                         f"(training timesteps), got {guidance_interval!r}.")


def check_guidance_scale(guidance_scale, what="guidance_scale"):
    """A ValueError unless `guidance_scale` is a number in GUIDANCE_SCALE_RANGE."""
    low, high = GUIDANCE_SCALE_RANGE
    if not (isinstance(guidance_scale, numbers.Real) and not isinstance(guidance_scale, bool)
            and math.isfinite(guidance_scale) and low <= guidance_scale <= high):
        raise ValueError(f"{what} must be a number in {low:g}..{high:g} (1 = no guidance, 0 = the unconditional "
                         f"model; beyond that range every sample saturates), got {guidance_scale!r}.")


def is_int(value):
    """A Python or numpy integer, not a bool (2.5 or True are not a number of steps or a class label)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_sigma_spacing(scheduler, num_inference_steps):
    """Refuse a chain that diffusers' sigma-spaced schedulers cannot walk, before any step is taken.

    With use_karras_sigmas (or exponential / beta sigmas) the chain is spaced in sigma = sqrt((1 -
    alpha_bar_t) / alpha_bar_t) and rounded to integer timesteps. The cosine schedule's sigma at t = T - 1
    is ~20,000 (~640 at T - 2), so the largest sigmas all round to the same timestep, and a solver that counts its steps
    by timestep runs past its table of sigmas (IndexError) part-way through sampling.
    """
    config = scheduler.config
    spacing = [key for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas") if config.get(key)]
    timesteps = scheduler.timesteps
    if spacing and len(torch.unique(timesteps)) < len(timesteps):
        raise ValueError(
            f"{type(scheduler).__name__} with {spacing[0]}=True gives repeated timesteps for "
            f"num_inference_steps={num_inference_steps} with this beta schedule "
            f"({config.beta_schedule!r}): {timesteps[:10].tolist()} ... Its sigma-spaced chain cannot be "
            f"walked one timestep per step. Use the scheduler without {spacing[0]} (the saved "
            f"timestep_spacing, e.g. 'trailing'), or another beta schedule."
        )


def check_call_inputs(unet, scheduler, batch_size, num_inference_steps, output_type, class_labels, guidance_scale,
                  guidance_interval=None, generator=None, eta=0.0):
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    num_train_timesteps = scheduler.config.num_train_timesteps
    if not is_int(num_inference_steps):
        raise ValueError(f"num_inference_steps must be an integer in 1..{num_train_timesteps}, got {num_inference_steps!r}.")
    if num_inference_steps < 1 or num_inference_steps > num_train_timesteps:
        raise ValueError(
            f"num_inference_steps={num_inference_steps} is outside 1..{num_train_timesteps}: the scheduler "
            f"was trained with num_train_timesteps={num_train_timesteps}, and a chain cannot be longer."
        )
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"Unknown output_type {output_type!r}; allowed: {', '.join(OUTPUT_TYPES)}.")
    if unet.config.get("sample_size") is None:
        raise ValueError(
            "unet.config.sample_size is None, so the pipeline does not know what size of image to draw: "
            "build the U-Net with a sample_size, e.g. Unet(dim=28, channels=1, dim_mults=(1, 2, 4), sample_size=28)."
        )
    num_class_embeds = unet.config.get("num_class_embeds")
    if class_labels is not None and num_class_embeds is None:
        raise ValueError(
            "class_labels were given, but the U-Net is unconditional (num_class_embeds=None). "
            "Sample without class_labels, or train a class-conditional model (--label_column)."
        )
    if isinstance(generator, list) and len(generator) != batch_size:
        raise ValueError(f"Got a list of {len(generator)} generators for batch_size={batch_size}; give one "
                         "generator, or one per image.")
    if not (isinstance(eta, numbers.Real) and math.isfinite(eta) and eta >= 0):
        raise ValueError(f"eta must be a finite number >= 0 (0 = deterministic DDIM, 1 = DDPM-like noise), got {eta!r}.")
    check_guidance_scale(guidance_scale)
    if guidance_scale != 1.0 and not unet.config.get("null_class_embed", False):
        raise ValueError(
            f"guidance_scale={guidance_scale}: classifier-free guidance needs a class-conditional U-Net with a "
            "'no class' embedding (null_class_embed=True, trained with --label_column and --class_dropout_prob); "
            "this U-Net has none, so use guidance_scale=1.0."
        )
    if guidance_interval is not None:
        check_guidance_interval(guidance_interval, num_train_timesteps, guidance_scale)


def class_labels_tensor(unet, class_labels, batch_size, device):
    """One label per image; None means the classes in turn, 0, 1, ..., K - 1, 0, 1, ..."""
    if class_labels is None:
        return torch.arange(batch_size, device=device) % unet.config.num_class_embeds
    allowed = ("class_labels must be None (the classes in turn), an int, a list or tuple of ints, or an integer "
               f"tensor or array (class indices); got {class_labels!r} ({type(class_labels).__name__}).")
    if isinstance(class_labels, (str, bytes)) or (isinstance(class_labels, (list, tuple)) and not all(
            is_int(y) or (isinstance(y, torch.Tensor) and y.numel() == 1) for y in class_labels)):
        raise ValueError(allowed)
    try:
        labels = torch.as_tensor(class_labels, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(allowed) from None
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"class_labels must be integers (class indices), got {class_labels!r}.")
    labels = labels.to(torch.long).reshape(-1)
    if labels.numel() == 1:
        labels = labels.expand(batch_size)
    num_classes = unet.config.num_class_embeds
    if labels.numel() != batch_size:
        raise ValueError(f"Got {labels.numel()} class_labels for batch_size={batch_size}; give one or {batch_size}.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"class_labels must lie in 0..{num_classes - 1}, got {labels.tolist()}.")
    return labels

# ---- pipeline_predictions.py -------------------------------------------------
"""What the network's output means at one step: the clean image it predicts, and guidance.

Imported by pipeline.py (and bundled with it into saved folders): torch and the standard library only.
"""

import inspect


def classifier_free_guidance(conditional, unconditional, guidance_scale):
    r"""Classifier-free guidance, Ho & Salimans 2022, eq. (6), written with $s = 1 + w$:

    $$\tilde\epsilon(x_t, t, y) = \epsilon(x_t, t, \varnothing) + s\, \big(\epsilon(x_t, t, y) - \epsilon(x_t, t, \varnothing)\big)$$

    The difference $\epsilon(x_t, t, y) - \epsilon(x_t, t, \varnothing)$ is proportional to $-\nabla \log p(y \mid x_t)$ of an
    implicit classifier, so $s > 1$ samples from $p(x_t)\, p(y \mid x_t)^s$: images more typical of their
    class, less varied. The combination is linear in the network's output, so it applies the same
    way to epsilon, v or x_0 predictions.
    """
    return unconditional + guidance_scale * (conditional - unconditional)


class NonFiniteSampleError(FloatingPointError):
    """Sampling produced NaN or inf: the weights or the scheduler's settings are broken. Raised instead
    of returning images in which NaN has silently become black."""


def predicted_original_sample(scheduler, model_output, timestep, sample):
    """x_0_hat, the clean image the model predicts from x_t (Ho et al. 2020, eq. (15) for eps):

        epsilon:       x_0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_bar_t)
        sample:        x_0_hat = the model output
        v_prediction:  x_0_hat = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v_theta      (Salimans & Ho 2022)

    then bounded as the scheduler itself bounds it (its own `thresholding`, else `clip_sample`; a key merely carried
    over in the config from another scheduler is not applied). For schedulers whose `step` does not return it
    (DPM-Solver++, PNDM): the model's own estimate at the timestep t it was given. That is DPM-Solver++'s data
    prediction (`convert_model_output`) when its chain's timesteps are exact; with log-SNR steps
    (`use_lu_lambdas`) the solver uses its chain's unrounded sigma, slightly off alpha_bar at the rounded t.
    Needs a scheduler whose latents are x_t itself (init_noise_sigma = 1), not Euler's scaled ones.
    """
    config = scheduler.config
    if float(scheduler.init_noise_sigma) != 1.0:
        raise ValueError(f"{type(scheduler).__name__} scales its latents (init_noise_sigma = {float(scheduler.init_noise_sigma):g}), "
                         "so x_0_hat cannot be read from alpha_bar_t; its step output should carry pred_original_sample.")
    alpha_bar_t = scheduler.alphas_cumprod[int(timestep)].to(device=sample.device, dtype=sample.dtype)
    if config.prediction_type == "epsilon":
        x0 = (sample - (1 - alpha_bar_t).sqrt() * model_output) / alpha_bar_t.sqrt()
    elif config.prediction_type == "sample":
        x0 = model_output
    elif config.prediction_type == "v_prediction":
        x0 = alpha_bar_t.sqrt() * sample - (1 - alpha_bar_t).sqrt() * model_output
    else:
        raise ValueError(f"unknown prediction_type {config.prediction_type!r}; allowed: epsilon, sample, v_prediction")
    own = inspect.signature(type(scheduler).__init__).parameters  # a bound the scheduler applies itself, not a carried key
    if "thresholding" in own and config.thresholding:
        return scheduler._threshold_sample(x0)
    if "clip_sample" in own and config.clip_sample:
        return x0.clamp(-config.clip_sample_range, config.clip_sample_range)
    return x0

# ---- pipeline_saving.py ------------------------------------------------------
"""Saving a pipeline as a folder that carries its own code (see pipeline.py's module docstring).

`write_code_files` runs after diffusers' `save_pretrained`: it writes the pipeline's module to the
folder's root as `pipeline.py`, each component's module into its subfolder, and points
`model_index.json` at them. Each file is a bundle (`bundle_module`): the module and the sibling
modules it imports relatively, in one file whose first line says it was generated.
"""

import ast
import inspect
import json
from pathlib import Path

from diffusers.pipelines.pipeline_loading_utils import LOADABLE_CLASSES


def _relative_imports(tree):
    """The sibling modules a module imports as `from .x import y`, in order."""
    return [node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module]


def bundle_module(module_file):
    """One self-contained source file: `module_file` and, before it, every sibling module it
    imports relatively (depth first, each once), with the relative import lines dropped.

    Why one file: for a folder that holds weights, `DiffusionPipeline.download` fetches only the
    code file named in `model_index.json`, not the files it imports, so a component's code must
    travel as a single module. The package keeps one concept per file; the bundle is generated
    from those files at save time and never checked in.
    """
    module_file = Path(module_file)
    order, seen = [], set()

    def visit(path):
        if path in seen:
            return
        seen.add(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name in _relative_imports(tree):
            visit(path.parent / f"{name}.py")
        order.append((path, tree))

    visit(module_file)
    header = (f"# Generated at save time from {', '.join(path.name for path, _ in order)} (annotated-pipeline);"
              f" edit {'that module' if len(order) == 1 else 'those modules'}, not this file.\n")
    if len(order) == 1:  # (a generated file saved again, from a pipeline loaded as remote code, keeps one header)
        source = module_file.read_text(encoding="utf-8")
        if source.startswith("# Generated at save time from "):
            return source
        return header + source

    defined = {}
    parts = [header]
    for path, tree in order:
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name in defined:
                    raise ValueError(f"Cannot bundle {module_file.name}: {node.name!r} is defined in both {defined[node.name]} and {path.name}.")
                defined[node.name] = path.name
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.level >= 1:
                for i in range(node.lineno - 1, node.end_lineno):
                    lines[i] = None
        parts.append(f"\n# ---- {path.name} " + "-" * max(0, 80 - len(path.name) - 8) + "\n")
        parts.append("\n".join(line for line in lines if line is not None) + "\n")
    return "".join(parts)


def write_code_files(pipeline, save_directory):
    """Make a saved folder self-contained: write the code of the pipeline (to `pipeline.py` at the
    root) and of every component whose class is not from diffusers/transformers (to its subfolder,
    one bundled file each), and point `model_index.json` at those files:
    `"unet": ["unet_2d", "AnnotatedUNet2DModel"]`.

    The code is copied from wherever the classes were imported: the installed package, or the
    module cache of a pipeline that was itself loaded as remote code.
    """
    save_directory = Path(save_directory)
    index_path = save_directory / "model_index.json"
    model_index = json.loads(index_path.read_text())

    def write_bundle(cls, folder):
        source = Path(inspect.getfile(cls))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / source.name).write_text(bundle_module(source), encoding="utf-8")
        return [source.stem, cls.__name__]

    model_index["_class_name"] = write_bundle(type(pipeline), save_directory)
    for name in pipeline.components:
        component = getattr(pipeline, name)
        if component is None or type(component).__module__.split(".")[0] in LOADABLE_CLASSES:
            continue
        model_index[name] = write_bundle(type(component), save_directory / name)
    index_path.write_text(json.dumps(model_index, indent=2, sort_keys=True) + "\n")


# ---- pipeline.py -------------------------------------------------------------
r"""Sampling from a trained DDPM, as a diffusers pipeline.

Ho et al. 2020, Algorithm 2 (Sampling):

1. $x_T \sim \mathcal{N}(0, I)$
2. for $t = T, \dots, 1$:
3. $\quad z \sim \mathcal{N}(0, I)$ if $t > 1$, else $z = 0$
4. $\quad x_{t-1} = \frac{1}{\sqrt{\alpha_t}} \Big( x_t - \frac{1 - \alpha_t}{\sqrt{1 - \bar\alpha_t}}\, \epsilon_\theta(x_t, t) \Big) + \sigma_t z$
5. return $x_0$

The pipeline owns the loop; the scheduler owns one step of it (`scheduler.step`), so any diffusers
scheduler can be swapped in (DDIM, DPM-Solver, Euler, PNDM) and walk a shorter chain of timesteps.

This file is also the code that a saved pipeline carries. `save_pretrained` copies it to the root
of the saved folder as `pipeline.py`, and the code files of the U-Net and the scheduler (each
component's module bundled with the modules it imports relatively) into their subfolders, and
names them in `model_index.json`. So the folder loads

1. with this package installed: `AnnotatedDDPMPipeline.from_pretrained(path)`, which builds the
   components from the installed package and never executes code from the folder;
2. without it: `DiffusionPipeline.from_pretrained(path, trust_remote_code=True)`, which runs the
   folder's own code files (diffusers' remote-code loader);

and a pipeline loaded by route 2 saves again into a folder that loads by both routes. Therefore
this module imports nothing from `annotated_pipeline` but its siblings pipeline_inputs.py (the checks
of a call), pipeline_loading.py (route 1) and pipeline_saving.py (the code files), which are bundled
into the saved `pipeline.py` with it;
otherwise only torch, diffusers, huggingface_hub.
"""

import inspect
import tempfile
from pathlib import Path

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.image_processor import VaeImageProcessor
from diffusers.models.modeling_utils import ModelMixin
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor


# The pipeline config keys (model_index.json) that hold a folder's recommended sampling settings.
SAMPLING_DEFAULT_KEYS = ("default_num_inference_steps", "default_guidance_scale", "default_guidance_interval")


class AnnotatedDDPMPipeline(DiffusionPipeline):
    """Unconditional (or class-conditional) image generation with a DDPM.

    Components:
        unet: the noise-prediction network eps_theta(x_t, t) (`AnnotatedUNet2DModel`, or any
            diffusers model with the same call signature, such as `UNet2DModel`).
        scheduler: `AnnotatedDDPMScheduler`, or any diffusers scheduler built from its config,
            e.g. `DDIMScheduler.from_config(pipe.scheduler.config)`.
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents", "pred_original_sample"]

    def __init__(self, unet: ModelMixin, scheduler: SchedulerMixin, default_num_inference_steps: int | None = None,
                 default_guidance_scale: float | None = None, default_guidance_interval: list[int] | None = None):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.image_processor = VaeImageProcessor(do_resize=False, do_normalize=True)
        self.set_sampling_defaults(default_num_inference_steps, default_guidance_scale, default_guidance_interval)

    def set_sampling_defaults(self, num_inference_steps: int | None = None, guidance_scale: float | None = None,
                              guidance_interval: tuple[int, int] | None = None):
        """Record what `pipe()` samples with when a call leaves these out (None: every training timestep,
        unguided, every step); they are config, so `save_pretrained` writes them to model_index.json and
        `from_pretrained` reads them back. The sampler is the scheduler component itself."""
        T = self.scheduler.config.num_train_timesteps
        if num_inference_steps is not None and not (is_int(num_inference_steps) and 1 <= num_inference_steps <= T):
            raise ValueError(f"default num_inference_steps must be an integer in 1..{T}, got {num_inference_steps!r}.")
        if guidance_scale is not None:
            check_guidance_scale(guidance_scale, "default guidance_scale")
        if guidance_interval is not None:
            check_guidance_interval(guidance_interval, T, 1.0 if guidance_scale is None else guidance_scale)
            guidance_interval = [int(t) for t in guidance_interval]
        self.register_to_config(default_num_inference_steps=num_inference_steps,
                                default_guidance_scale=None if guidance_scale is None else float(guidance_scale),
                                default_guidance_interval=guidance_interval)
        return self

    @property
    def sampling_defaults(self) -> dict:
        """What `pipe()` samples with when a call leaves these arguments out: the folder's recommended
        settings (saved in model_index.json) where it has them, else every training timestep, unguided.
        The sampler itself is the folder's scheduler (`pipe.scheduler`)."""
        config = self.config
        steps = config.get("default_num_inference_steps")
        scale = config.get("default_guidance_scale")
        interval = config.get("default_guidance_interval")
        return {
            "num_inference_steps": steps if steps is not None else self.scheduler.config.num_train_timesteps,
            "guidance_scale": scale if scale is not None else 1.0,
            "guidance_interval": tuple(interval) if interval is not None else None,
        }

    def resolve_sampling(self, num_inference_steps=None, guidance_scale=None, guidance_interval=None):
        """(num_inference_steps, guidance_scale, guidance_interval) as a call samples with them: each one
        given, else the folder's (`sampling_defaults`); a guidance_scale left out brings the folder's
        interval with it (the two were chosen together), an explicit one guides every step unless an
        interval is given too."""
        defaults = self.sampling_defaults
        if guidance_scale is None:
            guidance_scale = defaults["guidance_scale"]
            guidance_interval = defaults["guidance_interval"] if guidance_interval is None else guidance_interval
        if num_inference_steps is None:
            num_inference_steps = defaults["num_inference_steps"]
        return num_inference_steps, guidance_scale, guidance_interval

    # ----------------------------------------------------------------------------------------
    # Sampling
    # ----------------------------------------------------------------------------------------

    def _check_sigma_spacing(self, num_inference_steps):
        check_sigma_spacing(self.scheduler, num_inference_steps)

    def _check_inputs(self, batch_size, num_inference_steps, output_type, class_labels, guidance_scale,
                      guidance_interval=None, generator=None, eta=0.0):
        """A ValueError for any argument a call cannot take (pipeline_inputs.check_call_inputs)."""
        check_call_inputs(self.unet, self.scheduler, batch_size, num_inference_steps, output_type, class_labels,
                          guidance_scale, guidance_interval, generator, eta)

    def _class_labels_tensor(self, class_labels, batch_size, device):
        """One label per image; None means the classes in turn, 0, 1, ..., K - 1, 0, 1, ..."""
        return class_labels_tensor(self.unet, class_labels, batch_size, device)

    def _step_kwargs(self, generator, eta, use_clipped_model_output):
        """Only some schedulers' `step` take `generator` (DDPM, DDIM, Euler), `eta` or
        `use_clipped_model_output` (DDIM); PNDM takes none of them.

        use_clipped_model_output=None means: True when the scheduler clips x_0_hat (`clip_sample` or
        `thresholding` in its config). DDIM (Song et al. 2021, eq. (12)) writes x_{t-1} from x_0_hat and
        eps_theta; once x_0_hat is clipped, the eps that goes with it is

            eps = (x_t - sqrt(alphas_cumprod_t) x_0_hat) / sqrt(1 - alphas_cumprod_t),

        and using the unclipped eps_theta instead mixes two different predictions: near t = T - 1 of the
        cosine schedule x_0_hat divides eps_theta's error by sqrt(alphas_cumprod_t) ~ 0.0016, so the mix is
        far off there (benchmarks/RESULTS.md measures what it costs).
        """
        accepted = inspect.signature(self.scheduler.step).parameters
        kwargs = {}
        if "generator" in accepted:
            kwargs["generator"] = generator
        if "eta" in accepted:
            kwargs["eta"] = eta
        if "use_clipped_model_output" in accepted:
            if use_clipped_model_output is None:
                config = self.scheduler.config
                use_clipped_model_output = bool(config.get("clip_sample", False) or config.get("thresholding", False))
            kwargs["use_clipped_model_output"] = use_clipped_model_output
        return kwargs

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator=None,
        num_inference_steps: int | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        class_labels=None,
        guidance_scale: float | None = None,
        guidance_interval: tuple[int, int] | None = None,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs=("latents",),
        eta: float = 0.0,
        latents: torch.Tensor | None = None,
        use_clipped_model_output: bool | None = None,
        timesteps: list[int] | None = None,
        max_batch_size: int | None = None,
    ):
        """Generate images: Ho et al. 2020, Algorithm 2, one `scheduler.step` per timestep.

        Args:
            batch_size: number of images.
            generator: a `torch.Generator`, or a list of one per image, for reproducible samples.
            num_inference_steps: length of the chain (T walks every training timestep with DDPM;
                20-100 are enough with DDIM or DPM-Solver). None: the folder's recommended number
                (`sampling_defaults`), else T. Likewise `guidance_scale` (else 1.0): left out, it
                comes with the folder's `guidance_interval`. Explicit arguments win over the folder's.
            output_type: "pil" (grayscale "L" images for one-channel models), "np" (B, H, W, C)
                floats in [0, 1], or "pt" (B, C, H, W) floats in [0, 1].
            return_dict: return an `ImagePipelineOutput` rather than a tuple.
            class_labels: for class-conditional U-Nets: an int or one int per image in 0..K-1; None
                (default) asks for the classes in turn, 0, 1, ..., K - 1, 0, 1, ...
            guidance_scale: s of classifier-free guidance (Ho & Salimans 2022, eq. (6) with s = 1 + w):
                eps = eps_theta(x_t, t, empty) + s * (eps_theta(x_t, t, y) - eps_theta(x_t, t, empty)).
                1.0 is the conditional model alone (the default where the folder recommends no scale);
                s > 1 pushes the samples towards what the class adds, s = 0 is the unconditional model. Needs a U-Net with a "no class"
                embedding (`null_class_embed`); each guided step runs the U-Net on a doubled batch.
            guidance_interval: (t_low, t_high), training timesteps: guide only the steps with
                t_low <= t <= t_high and take the conditional model alone (s = 1, one U-Net call on the
                plain batch) elsewhere. Kynkäänniemi et al. 2024 find that guidance at high noise levels
                costs variety and at low noise levels does little. None: every step, or the folder's
                interval when `guidance_scale` is left out too.
            callback_on_step_end: `fn(pipe, step_index, timestep, callback_kwargs) -> dict`, called
                after every step with the tensors named in `callback_on_step_end_tensor_inputs`
                ("latents" is x_{t'} after the step; "pred_original_sample" is x_0_hat predicted from the
                step's x_t, see `predicted_original_sample`); a returned "latents" replaces x_{t'}.
            eta: DDIM's eta (only passed to schedulers whose `step` takes it).
            latents: start from this x_T instead of a fresh N(0, I) draw.
            use_clipped_model_output: for schedulers whose `step` takes it (DDIM): recompute eps from
                the clipped x_0_hat. None (default): True when the scheduler clips x_0_hat, which
                diffusers' `DDIMPipeline` leaves off unless asked; see `_step_kwargs`.
            timesteps: an explicit descending chain (e.g. [999, 800, 500, 200, 0]) instead of
                `num_inference_steps` spaced by the scheduler, for schedulers whose `set_timesteps`
                takes one (ours, DDPM, DPM-Solver++, Euler; not DDIM).
            max_batch_size: images per U-Net call (None: DEFAULT_MAX_BATCH_SIZE); more are drawn in chunks, so
                memory grows with the count by the images only (refused before any step where they cannot fit).
                x_T is drawn for the whole batch first, so a deterministic sampler (DDIM with eta = 0, DPM-Solver++)
                or one generator per image gives one batch's images; with one generator a stochastic sampler draws
                its z chunk after chunk. The callback sees each chunk's steps.
        """
        num_inference_steps, guidance_scale, guidance_interval = self.resolve_sampling(
            num_inference_steps, guidance_scale, guidance_interval)
        if timesteps is not None:
            num_inference_steps = len(timesteps)
        self._check_inputs(batch_size, num_inference_steps, output_type, class_labels, guidance_scale, guidance_interval,
                           generator, eta)
        self._check_call_extras(timesteps, callback_on_step_end_tensor_inputs)
        device = self._execution_device
        chunk = chunk_size(self.unet, batch_size, max_batch_size, guidance_scale != 1.0, device)
        labels = self._class_labels_tensor(class_labels, batch_size, device) if self._conditional else None
        latents = self._initial_latents(batch_size, generator, latents, device)  # x_T ~ N(0, I)
        for start in range(0, batch_size, chunk):  # each chunk's x_0 replaces its x_T
            part = slice(start, start + chunk)
            step_kwargs = self._step_kwargs(generator[part] if isinstance(generator, list) else generator, eta,
                                            use_clipped_model_output)
            latents[part] = self._denoise(latents[part], None if labels is None else labels[part], num_inference_steps,
                                          timesteps, guidance_scale, guidance_interval, step_kwargs,
                                          callback_on_step_end, callback_on_step_end_tensor_inputs)
        return self._finish(latents, output_type, return_dict)  # x_0, as images

    def _denoise(self, latents, labels, num_inference_steps, timesteps, guidance_scale, guidance_interval, step_kwargs,
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs=("latents",)):
        """x_T -> x_0 for one chunk: Algorithm 2's loop, the scheduler's state set afresh."""
        self.scheduler.set_timesteps(**({"num_inference_steps": num_inference_steps} if timesteps is None
                                        else {"timesteps": list(timesteps)}), device=latents.device)
        self._check_sigma_spacing(num_inference_steps)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):  # for t = T, ..., 1
            model_output = self._noise_prediction(latents, t, labels, guidance_scale, guidance_interval)  # eps_theta
            step_output = self.scheduler.step(model_output, t, latents, **step_kwargs)  # x_{t-1} = mu_theta(x_t, t) + sigma_t z
            x_t, latents = latents, step_output.prev_sample
            if callback_on_step_end is not None:
                latents = self._run_callback(callback_on_step_end, callback_on_step_end_tensor_inputs, i, t, x_t,
                                             latents, model_output, step_output)
        return latents

    @property
    def _conditional(self):
        return self.unet.config.get("num_class_embeds") is not None

    def _check_call_extras(self, timesteps, callback_on_step_end_tensor_inputs):
        """The arguments `_check_inputs` does not see: an explicit chain, and the tensors a callback asks for."""
        if timesteps is not None and "timesteps" not in inspect.signature(self.scheduler.set_timesteps).parameters:
            raise ValueError(f"{type(self.scheduler).__name__}.set_timesteps takes no explicit timesteps; "
                             "pass num_inference_steps, or swap in a scheduler that does (e.g. DDPMScheduler).")
        unknown = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs {sorted(unknown)} not in {self._callback_tensor_inputs}.")

    def _initial_latents(self, batch_size, generator, latents, device):
        """x_T ~ N(0, I) (or the given one, checked), scaled by the scheduler's initial sigma (1 for DDPM/DDIM,
        larger for Euler)."""
        size = self.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        shape = (batch_size, self.unet.config.in_channels, height, width)
        latents_dtype = self._latents_dtype()
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=latents_dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents have shape {tuple(latents.shape)}, expected {shape}.")
        elif not bool(torch.isfinite(latents).all()):
            raise ValueError("latents hold NaN or inf; x_T must be finite (e.g. drawn from N(0, I)).")
        return latents.to(device=device, dtype=latents_dtype) * self.scheduler.init_noise_sigma

    def _run_callback(self, callback, tensor_inputs, i, t, x_t, latents, model_output, step_output):
        """Call `callback_on_step_end` with the tensors it asked for; return the latents it hands back (or ours)."""
        callback_kwargs = {"latents": latents} if "latents" in tensor_inputs else {}
        if "pred_original_sample" in tensor_inputs:  # x_0_hat from this step's x_t
            x0 = getattr(step_output, "pred_original_sample", None)
            callback_kwargs["pred_original_sample"] = (
                x0 if x0 is not None else predicted_original_sample(self.scheduler, model_output, t, x_t))
        callback_outputs = callback(self, i, t, callback_kwargs) or {}
        return callback_outputs.get("latents", latents)

    def _latents_dtype(self):
        """The chain x_T -> x_0 in float32 (float64 for a float64 U-Net) whatever the U-Net's dtype: the update
        x_{t-1} = coef_x0 x_0_hat + coef_xt x_t + sigma_t z adds up 1000 small steps that bf16 would round away."""
        return torch.float64 if self.unet.dtype == torch.float64 else torch.float32

    def _noise_prediction(self, latents, t, labels, guidance_scale=1.0, guidance_interval=None):
        """The network's output at x_t (eps_theta(x_t, t, y) for an epsilon model), in the latents' dtype.

        With classifier-free guidance (guidance_scale s != 1, a class-conditional U-Net) at a t inside
        guidance_interval (every t when it is None): one U-Net call on the doubled batch [x_t with y; x_t
        with "no class" (label K)], combined by `classifier_free_guidance` (Ho & Salimans 2022, eq. (6)).
        Elsewhere the conditional (or unconditional) model alone, on the plain batch.
        """
        model_input = self.scheduler.scale_model_input(latents, t).to(self.unet.dtype)
        t_low, t_high = guidance_interval if guidance_interval is not None else (0, self.scheduler.config.num_train_timesteps)
        if labels is not None and guidance_scale != 1.0 and t_low <= int(t) <= t_high:
            null = torch.full_like(labels, self.unet.config.num_class_embeds)
            output = self.unet(torch.cat([model_input, model_input]), t, class_labels=torch.cat([labels, null])).sample
            return classifier_free_guidance(*output.to(latents.dtype).chunk(2), guidance_scale)
        unet_kwargs = {} if labels is None else {"class_labels": labels}
        return self.unet(model_input, t, **unet_kwargs).sample.to(latents.dtype)

    def _finish(self, latents, output_type, return_dict):
        """x_0 in [-1, 1] -> [0, 1] -> the requested type ("L" PIL images for one-channel models); a sample that
        holds NaN or inf raises NonFiniteSampleError instead of turning into a black image."""
        broken = (~torch.isfinite(latents)).flatten(1).any(dim=1)
        if bool(broken.any()):
            raise NonFiniteSampleError(
                f"{int(broken.sum())} of {len(latents)} samples hold NaN or inf after the last step "
                f"({type(self.scheduler).__name__}): the U-Net's weights or the scheduler's settings produce "
                "non-finite numbers, so no images are returned."
            )
        images = self.image_processor.postprocess(latents.float(), output_type=output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    # ----------------------------------------------------------------------------------------
    # Saving: a folder that carries its own code
    # ----------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory, safe_serialization: bool = True, variant=None, push_to_hub: bool = False, **kwargs):
        """Save weights (safetensors), configs (JSON) and the code files the folder needs to load
        without this package (see the module docstring). Pushing goes through `push_to_hub`."""
        if not safe_serialization:
            raise ValueError("Weights are saved as safetensors only; safe_serialization=False is not supported.")
        if push_to_hub:
            repo_id = kwargs.pop("repo_id", Path(save_directory).name)
            self.save_pretrained(save_directory, variant=variant)
            if installed_module("hub") is None or kwargs.get("create_pr"):  # the cases push_to_hub leaves to diffusers
                return self.push_to_hub(repo_id, **kwargs)
            return self._push_folder(save_directory, repo_id, **kwargs)  # upload what was just saved
        super().save_pretrained(save_directory, safe_serialization=True, variant=variant, **kwargs)
        write_code_files(self, save_directory)

    def push_to_hub(self, repo_id, commit_message=None, private=None, token=None, create_pr=False, **kwargs):
        """Save the pipeline (code files, configs, safetensors weights) and upload it as one commit.

        With the package installed, the upload goes through `annotated_pipeline.hub`: the model
        card `README.md` is rendered from `templates/model_card.md` (pass `card_kwargs=dict(...)`,
        e.g. `training_args`, `dataset_name`, `samples_file`), the repo is created if needed, and
        an unreachable Hub raises `HubUnavailableError`. As remote code, diffusers' own push is used.
        """
        hub = installed_module("hub")
        if hub is None or create_pr:
            return super().push_to_hub(repo_id, commit_message=commit_message, private=private, token=token, create_pr=create_pr, **kwargs)
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder)
            return self._push_folder(folder, repo_id, commit_message=commit_message, private=private, token=token,
                                     folder_is_temporary=True, **kwargs)

    @staticmethod
    def _push_folder(folder, repo_id, commit_message=None, private=None, token=None, card_kwargs=None,
                     folder_is_temporary=False, **kwargs):
        """Upload a saved folder through `annotated_pipeline.hub` (card from templates/model_card.md)."""
        if kwargs:
            raise ValueError(f"Unexpected keyword arguments for push_to_hub: {sorted(kwargs)}.")
        return installed_module("hub").push_folder_to_hub(
            folder, repo_id, token=token, private=bool(private),
            commit_message=commit_message or "Upload AnnotatedDDPMPipeline", card_kwargs=card_kwargs,
            folder_is_temporary=folder_is_temporary,
        )

    # ----------------------------------------------------------------------------------------
    # Loading with the package installed (route 1)
    # ----------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load a saved pipeline (a local folder or a Hub repo id).

        With this package installed, the U-Net and scheduler are built from the installed classes
        (or diffusers' own models and schedulers, e.g. a swapped-in `DDIMScheduler`), and no code from
        the folder runs whatever its `model_index.json` names, so `trust_remote_code` is not needed
        (pipeline_loading.py). Passing `trust_remote_code=True` (or running this file as remote code)
        uses diffusers' loader, which runs the folder's code files.
        """
        installed = installed_component_classes()
        if not installed or kwargs.get("trust_remote_code"):
            kwargs.setdefault("use_safetensors", True)  # diffusers would fall back to a pickled .bin
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        return load_with_installed_classes(cls, pretrained_model_name_or_path, installed, kwargs)
