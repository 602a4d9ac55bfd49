"""Markdown with math, and highlighted Python, as HTML: markdown-it-py (CommonMark, tables) with
mdit-py-plugins' dollarmath, and Pygments.

Math is written `$...$` (inline) and `$$...$$` (display) in docstrings and comments. It is not parsed
here: dollarmath marks it as `<span class="math inline">` / `<div class="math block">` (or, for $$...$$
inside a paragraph, `<span class="math display">`) holding the TeX, escaped, and the page renders it with KaTeX (assets/edition.js), which marks a formula it cannot parse
with class `math-error` (the browser test fails on any).
"""

import re
from functools import lru_cache
from html import escape as escape_html

from .mathcheck import record
from .requirements import require

MATH_CLASS = "math"


@lru_cache(maxsize=1)
def _markdown():
    markdown_it = require("markdown_it")
    dollarmath = require("mdit_py_plugins.dollarmath")
    md = markdown_it.MarkdownIt("commonmark", {"highlight": _highlight_fence}).enable("table")
    md.use(dollarmath.dollarmath_plugin, double_inline=True)
    md.add_render_rule("math_inline_double", _display_in_text)
    return md


def _display_in_text(renderer, tokens, index, options, env):
    """$$...$$ inside a paragraph: display math, in a span (a div may not stand inside a <p>)."""
    return f'<span class="math display">{escape_html(tokens[index].content)}</span>'


SECTION_HEADS = ("Args", "Arguments", "Parameters", "Returns", "Raises", "Yields", "Attributes")
_HEAD = re.compile(rf"^({'|'.join(SECTION_HEADS)}):\s*$")
_ENTRY = re.compile(r"^([\w*][\w*., ()\[\]|-]*?):\s+(.*)$")


def google_sections(text):
    """A docstring's Google-style sections ("Args:" and its indented `name: text` lines) as Markdown: a bold
    head and a list, each entry's name in code, its continuation lines folded into it. The rest is unchanged."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        head = _HEAD.match(lines[i])
        if not head or i + 1 >= len(lines) or not lines[i + 1].startswith((" ", "\t")):
            out.append(lines[i])
            i += 1
            continue
        out += [f"**{head.group(1)}**", ""]
        i += 1
        indent = len(lines[i]) - len(lines[i].lstrip())
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) >= indent):
            line = lines[i][indent:]
            entry = _ENTRY.match(line) if line[:1] not in (" ", "") else None
            if entry:
                out.append(f"- `{entry.group(1)}`: {entry.group(2)}")
            elif line.strip():
                out.append(("  " + line.strip()) if out and out[-1].startswith(("- ", "  ")) else line.strip())
            i += 1
        out.append("")
    return "\n".join(out)


def markdown(text, where="?"):
    """Markdown (with $ math) as HTML; each formula is recorded for the build's check (mathcheck.py),
    with `where` it was written (file:line)."""
    md = _markdown()
    tokens = md.parse(google_sections(text))
    for token in tokens:
        for child in [token] + list(token.children or []):
            if child.type.startswith("math_"):
                record(where, child.content, child.type != "math_inline")
    return md.renderer.render(tokens, md.options, {})


def _highlight_fence(code, language, attrs):
    if language not in ("python", "py", "pycon", "bash", "sh", "console", "text", ""):
        return ""
    return highlight(code, language or "text", wrap=False)


def highlight(code, language="python", wrap=True):
    """Code as highlighted HTML (a <pre> block when `wrap`)."""
    pygments = require("pygments")
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name

    html = pygments.highlight(code, get_lexer_by_name(language), HtmlFormatter(nowrap=True))
    return f'<pre class="highlight"><code>{html}</code></pre>' if wrap else html


def highlighted_lines(text):
    """The highlighted HTML of each line of a Python source file (a string spanning lines is closed and
    reopened at each line end by Pygments, so every line stands alone)."""
    require("pygments")
    from pygments import highlight as pyg_highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    html = pyg_highlight(text, PythonLexer(stripnl=False, ensurenl=True), HtmlFormatter(nowrap=True))
    lines = html.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != len(text.splitlines()):
        raise RuntimeError(f"highlighting gave {len(lines)} lines for {len(text.splitlines())}")
    return lines


def source_page_html(text):
    """A whole file, highlighted, each line numbered with an anchor `L-<n>`."""
    require("pygments")
    from pygments import highlight as pyg_highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    formatter = HtmlFormatter(linenos="inline", lineanchors="L", anchorlinenos=True, cssclass="highlight source")
    return pyg_highlight(text, PythonLexer(stripnl=False), formatter)


def pygments_css():
    require("pygments")
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(style="friendly").get_style_defs(".highlight")
