"""The edition's optional dependencies (the `docs` extra), imported with a one-line message when missing."""

import importlib

DOCS_EXTRA = 'pip install "annotated-pipeline[docs]"'


class MissingDependency(ImportError):
    pass


def require(module_name):
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise MissingDependency(f"the annotated edition needs {module_name.split('.')[0]}: {DOCS_EXTRA}") from error
