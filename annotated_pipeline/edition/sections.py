"""A module's source as the edition's sections: the notes (Markdown) beside the code lines they explain.

A section starts at every note: a block of full-line comments, or a `def`/`class` (its decorators first),
whose docstring becomes the notes beside its signature. The module docstring opens the first section.
Docstrings leave the code column (they are the notes); trailing comments stay in the code, where they sit.
The split is read off the source itself: `ast` finds the definitions and docstrings, `tokenize` the
comments (so a `#` inside a string is never taken for one).
"""

import ast
import importlib
import inspect
import io
import textwrap
import tokenize
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Section:
    notes: list = field(default_factory=list)   # Markdown blocks, in order
    lines: list = field(default_factory=list)   # (line number, text) of the code it explains
    anchors: list = field(default_factory=list)  # qualified names defined here ("Class.method")

    def has_code(self):
        return any(text.strip() for _, text in self.lines)

    def trimmed(self):
        """The section without blank code lines at its ends."""
        lines = list(self.lines)
        while lines and not lines[0][1].strip():
            lines.pop(0)
        while lines and not lines[-1][1].strip():
            lines.pop()
        return Section(self.notes, lines, self.anchors)


@dataclass
class SourceFile:
    module: str       # dotted name, as imported
    path: Path        # the file the module was imported from
    text: str
    tree: ast.Module


def load_source(module_name):
    """Import `module_name` and read the file it was imported from (wherever the package is installed)."""
    module = importlib.import_module(module_name)
    path = Path(inspect.getsourcefile(module))
    text = inspect.getsource(module)
    return SourceFile(module_name, path, text, ast.parse(text))


def _docstring_node(node):
    body = getattr(node, "body", None)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[0]
    return None


def definitions(tree):
    """(qualified name, node) of every function and class, depth first; nested functions as 'outer.inner'."""
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                found.append((name, child))
                visit(child, name + ".")
            elif not isinstance(child, (ast.expr, ast.Lambda)):
                visit(child, prefix)

    visit(tree, "")
    return found


def first_line(node):
    """The line a definition starts on, its decorators included."""
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])


def find_definition(tree, qualname):
    for name, node in definitions(tree):
        if name == qualname:
            return node
    raise LookupError(f"no function or class {qualname!r} in the module")


def _comment_lines(text):
    """{line number: comment text} for each comment that is alone on its line."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT and not token.line[:token.start[1]].strip():
            body = token.string[1:]
            comments[token.start[0]] = body[1:] if body.startswith(" ") else body
    return comments


def split_sections(text, tree=None):
    """The sections of a module's source `text` (see the module docstring)."""
    tree = tree if tree is not None else ast.parse(text)
    docstrings = {}  # first line -> (last line, cleaned text)
    for node in [tree] + [n for _, n in definitions(tree)]:
        doc = _docstring_node(node)
        if doc is not None:
            docstrings[doc.lineno] = (doc.end_lineno, inspect.cleandoc(doc.value.value))
    starts = {}
    for name, node in definitions(tree):
        starts.setdefault(first_line(node), []).append(name)
    comments = _comment_lines(text)
    lines = text.splitlines()

    module_doc = _docstring_node(tree)
    sections, current = [], Section()
    number = 1
    while number <= len(lines):
        if number in starts or number in comments:
            opens_module = module_doc is not None and current.notes and not sections and not current.anchors
            if current.has_code() or (number in starts and opens_module):  # the module's docstring stands alone
                sections.append(current)
                current = Section()
        if number in starts:
            current.anchors.extend(starts[number])
        if number in docstrings:
            last, doc = docstrings[number]
            current.notes.append(doc)
            number = last + 1
            continue
        if number in comments:
            block = []
            while number in comments:
                block.append(comments[number])
                number += 1
            current.notes.append(textwrap.dedent("\n".join(block)))
            continue
        current.lines.append((number, lines[number - 1]))
        number += 1
    sections.append(current)
    return [s.trimmed() for s in sections if s.notes or s.has_code() or s.anchors]


def select(sections, tree, qualname):
    """The sections of one definition: only its lines, and the notes that start inside it."""
    node = find_definition(tree, qualname)
    start, end = first_line(node), node.end_lineno
    chosen = []
    for section in sections:
        lines = [(n, t) for n, t in section.lines if start <= n <= end]
        anchors = [a for a in section.anchors if a == qualname or a.startswith(qualname + ".")]
        if lines or anchors:
            starts_inside = not section.lines or start <= section.lines[0][0] <= end
            chosen.append(Section(section.notes if starts_inside or anchors else [], lines, anchors))
    return chosen
