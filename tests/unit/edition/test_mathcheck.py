"""A docstring whose math KaTeX cannot parse fails the build, naming its file and line (KaTeX's own parser,
Debian's katex.min.js, under Node.js); good math passes."""

import shutil
import sys

import pytest

from annotated_pipeline.edition.html import module_page_body
from annotated_pipeline.edition.katex import DEBIAN_KATEX
from annotated_pipeline.edition.mathcheck import MathError, check_formulas, collecting

pytestmark = pytest.mark.skipif(shutil.which("node") is None or not (DEBIAN_KATEX / "katex.min.js").exists(),
                                reason="needs node and Debian's libjs-katex (the browser test checks the math without node)")

MODULE = r'''r"""A module with math: $\bar\alpha_t = \prod_{s \le t} \alpha_s$."""


def good():
    r"""Fine: $$x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$$"""


def bad():
    r"""Broken: $\frac{1}{\sqrt{\alpha_t}$ has an unclosed brace."""
'''


@pytest.fixture
def fake_module(tmp_path, monkeypatch):
    (tmp_path / "edition_math_probe.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "edition_math_probe"
    sys.modules.pop("edition_math_probe", None)


def test_good_math_parses(fake_module):
    with collecting() as formulas:
        module_page_body([f"{fake_module}:good"])
    assert [tex for _, tex, _ in formulas] == [r"x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon"]
    assert check_formulas(formulas, DEBIAN_KATEX / "katex.min.js") is True


def test_bad_math_fails_naming_the_file_and_line(fake_module):
    with collecting() as formulas:
        module_page_body([fake_module])
    assert len(formulas) == 3
    with pytest.raises(MathError) as error:
        check_formulas(formulas, DEBIAN_KATEX / "katex.min.js")
    lines = str(error.value).splitlines()
    assert len(lines) == 2 and lines[1].startswith(r"  edition_math_probe.py:8: $\frac{1}{\sqrt{\alpha_t}$: KaTeX parse error")
