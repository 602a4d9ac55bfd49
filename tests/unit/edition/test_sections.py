"""The edition's parser: a source file into (notes, code) sections, checked on a file written here and
on every module of the edition against the file's own lines."""

import ast
import inspect

import pytest

from annotated_pipeline.edition.contents import PAGES
from annotated_pipeline.edition.sections import definitions, load_source, select, split_sections

SOURCE = '''"""The module: $x_t$."""

import math

# A comment block
# of two lines.
SCALE = 2  # a trailing comment stays in the code


@staticmethod
def f(x):
    """f's docstring.

    Second paragraph."""
    text = "# not a comment"
    # inside f
    return x * SCALE


class C:
    """C's docstring."""

    def g(self):
        return "g"
'''


def test_sections_of_a_known_file():
    sections = split_sections(SOURCE)
    notes = [s.notes for s in sections]
    assert notes == [["The module: $x_t$."], ["A comment block\nof two lines."], ["f's docstring.\n\nSecond paragraph."],
                     ["inside f"], ["C's docstring."], []]
    assert [s.anchors for s in sections] == [[], [], ["f"], [], ["C"], ["C.g"]]
    assert [[n for n, _ in s.lines] for s in sections] == [[3], [7], [10, 11, 15], [17], [20], [23, 24]]
    assert sections[1].lines[0][1] == "SCALE = 2  # a trailing comment stays in the code"
    assert sections[2].lines[-1][1] == '    text = "# not a comment"'  # a '#' inside a string is no note


def test_select_keeps_one_definition():
    tree = ast.parse(SOURCE)
    chosen = select(split_sections(SOURCE, tree), tree, "f")
    assert [s.anchors for s in chosen] == [["f"], []]
    assert [n for s in chosen for n, _ in s.lines] == [10, 11, 15, 17]
    assert select(split_sections(SOURCE, tree), tree, "C.g")[0].lines == [(23, "    def g(self):"), (24, '        return "g"')]
    with pytest.raises(LookupError, match="no function or class 'h'"):
        select(split_sections(SOURCE, tree), tree, "h")


def edition_modules():
    return sorted({entry.partition(":")[0] for _, _, sources in PAGES for entry in sources})


@pytest.mark.parametrize("module_name", edition_modules())
def test_every_line_is_code_note_or_blank_exactly_once(module_name):
    """The file's lines, each accounted for: code lines once, in order; the others are docstrings or
    comments (their text in the notes) or blank."""
    source = load_source(module_name)
    sections = split_sections(source.text, source.tree)
    code = [n for s in sections for n, _ in s.lines]
    assert code == sorted(set(code))
    lines = source.text.splitlines()
    docstring_lines = set()
    for node in [source.tree] + [node for _, node in definitions(source.tree)]:
        if ast.get_docstring(node, clean=False) is not None:
            docstring_lines.update(range(node.body[0].lineno, node.body[0].end_lineno + 1))
    for number, line in enumerate(lines, start=1):
        if number in code:
            assert number not in docstring_lines
            continue
        assert number in docstring_lines or not line.strip() or line.strip().startswith("#"), (module_name, number, line)
    notes = "\n".join(n for s in sections for n in s.notes)
    for number, line in enumerate(lines, start=1):
        if line.strip().startswith("#") and number not in code:
            assert line.strip().lstrip("#").strip() in notes


def test_the_file_is_the_imported_modules_file():
    import annotated_pipeline.losses as losses

    source = load_source("annotated_pipeline.losses")
    assert source.path == __import__("pathlib").Path(inspect.getsourcefile(losses))
    assert source.text == source.path.read_text(encoding="utf-8")
