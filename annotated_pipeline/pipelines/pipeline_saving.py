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

