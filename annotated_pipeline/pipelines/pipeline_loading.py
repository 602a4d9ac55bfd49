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

