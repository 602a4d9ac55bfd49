"""The edition's pages: every function and class of the core modules is on its page, beside a link to
its file and line (checked against inspect, not against the parser); figures and speed variants point at
code that exists; math is handed to KaTeX untouched; the command's options fail early."""

import html
import importlib
import inspect
import re
from pathlib import Path

import pytest

from annotated_pipeline.commands.cli import SUBCOMMANDS
from annotated_pipeline.edition.build import main, reading_order
from annotated_pipeline.edition.contents import FIGURE_PLACES, PAGES, SPEED_VARIANTS
from annotated_pipeline.edition.html import module_page_body
from annotated_pipeline.edition.markup import markdown
from annotated_pipeline.edition.speed import locate

TESTS = Path(__file__).resolve().parents[2]


def defined_here(module):
    """(qualified name, object) of each function and class the module defines, and of each method its
    classes define, as Python sees them (imported names and inherited methods excluded)."""
    found = []
    for name, obj in vars(module).items():
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__ \
                and obj.__qualname__ == name:
            found.append((name, obj))
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    function = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
                    function = inspect.unwrap(function) if callable(function) else function
                    if inspect.isfunction(function) and function.__qualname__ == f"{name}.{attr}" \
                            and function.__code__.co_filename == module.__file__:  # not generated (dataclass)
                        found.append((f"{name}.{attr}", function))
    return found


def expected_objects(entry):
    module_name, _, qualname = entry.partition(":")
    module = importlib.import_module(module_name)
    if not qualname:
        return defined_here(module)
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return [(qualname, inspect.unwrap(obj))]


@pytest.mark.parametrize("slug,entries", [(slug, sources) for slug, _, sources in PAGES], ids=[p[0] for p in PAGES])
def test_every_function_and_class_is_on_its_page_beside_its_line(slug, entries):
    body, _ = module_page_body(entries)
    sections = body.split('<div class="section">')
    for entry in entries:
        objects = expected_objects(entry)
        assert objects, entry
        module_name = entry.partition(":")[0]
        for qualname, obj in objects:
            anchor = f'<span id="{html.escape(qualname)}"></span>'
            holding = [s for s in sections if anchor in s]
            assert holding, f"{module_name}.{qualname} is not on page {slug}"
            line = inspect.getsourcelines(obj)[1]
            assert f'href="source/{module_name}.html#L-{line}"' in holding[0], (qualname, line)


def test_the_pages_name_modules_only_in_the_table():
    edition = Path(importlib.import_module("annotated_pipeline.edition").__file__).parent
    named = {entry.partition(":")[0] for _, _, sources in PAGES for entry in sources}
    for path in edition.glob("*.py"):
        if path.name != "contents.py":
            text = path.read_text(encoding="utf-8")
            assert not [m for m in named if f'"{m}' in text], path.name
            assert ".py\"" not in text and "/pipelines/" not in text, path.name  # no file paths to modules


def test_reading_order_is_the_blogs():
    assert [slug for slug, _, _ in PAGES] == ["schedules", "forward", "unet", "loss", "training-step", "reverse-step",
                                              "sampling", "guidance", "editing", "speed", "posthoc-ema"]
    assert reading_order().count("\n- [") == len(PAGES)  # and the notebook


def test_figures_stand_beside_code_on_their_page():
    for key, (slug, qualname, _) in FIGURE_PLACES.items():
        entries = next(sources for s, _, sources in PAGES if s == slug)
        body, _ = module_page_body(entries, [("x.png", "caption", "pixels", qualname)])
        section = next(s for s in body.split('<div class="section">') if f'id="{qualname}"' in s)
        assert 'src="images/x.png"' in section, key


def all_test_names():
    return {m for path in TESTS.rglob("test_*.py") for m in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}


def test_speed_variants_exist_and_each_names_a_real_test():
    names = all_test_names()
    for fast, _, test in SPEED_VARIANTS:
        slug, module_name = locate(fast)
        assert slug in ("unet", "speed") and module_name.startswith("annotated_pipeline.unet")
        assert test in names, test


def test_math_reaches_katex_as_written():
    rendered = markdown(r"The mean $\sqrt{\bar\alpha_t}\, x_0$ and" "\n\n" r"$$\frac{1}{\sqrt{\alpha_t}}$$" "\n\n    x_t = a * b\n")
    assert r'<span class="math inline">\sqrt{\bar\alpha_t}\, x_0</span>' in rendered
    assert '<div class="math block">\n\\frac{1}{\\sqrt{\\alpha_t}}\n</div>' in rendered
    assert "<pre><code>x_t = a * b" in rendered  # an indented formula stays code


def test_docs_is_a_subcommand():
    assert SUBCOMMANDS["docs"][0] == "annotated_pipeline.edition.build"


@pytest.mark.parametrize("argv,message", [
    (["--output", "{tmp}/site", "--katex", "{tmp}"], "lacks katex.min.js, katex.min.css, fonts"),
    (["--output", "{tmp}/site", "--figure-steps", "0"], "--figure-steps must be at least 1"),
    (["--output", "{tmp}/site", "--notebook", "{tmp}/none.ipynb"], "is not a file"),
    (["--output", "{tmp}/file"], "exists and is not a folder"),
])
def test_bad_options_are_one_line_and_status_2_before_any_work(tmp_path, capsys, argv, message):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_:
        main([a.format(tmp=tmp_path) for a in argv], prog="annotated-pipeline docs")
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "site").exists()


def test_missing_katex_names_the_debian_package(tmp_path, capsys, monkeypatch):
    from annotated_pipeline.edition import katex

    monkeypatch.setattr(katex, "DEBIAN_KATEX", tmp_path / "nowhere")
    with pytest.raises(SystemExit):
        main(["--output", str(tmp_path / "site"), "--no-figures"], prog="annotated-pipeline docs")
    assert "apt-get install libjs-katex" in capsys.readouterr().err


def test_google_style_sections_become_a_list():
    from annotated_pipeline.edition.markup import google_sections

    doc = "Do it.\n\nArgs:\n    x: the input,\n        on two lines.\n    y (int): a count.\n\nReturns:\n    the output.\n\nAfter."
    assert google_sections(doc) == ("Do it.\n\n**Args**\n\n- `x`: the input,\n  on two lines.\n- `y (int)`: a count.\n\n"
                                    "**Returns**\n\nthe output.\n\nAfter.")
    html_ = markdown(doc)
    assert "<li><code>x</code>: the input,\non two lines.</li>" in html_ and "<strong>Args</strong>" in html_
