"""The speed variants page: each fast path the library runs, the readable form it equals, and the test
that proves it (contents.SPEED_VARIANTS). The pages for the core modules show the paper's path; this
page is where the rewrites are accounted for.
"""

import html

from .contents import PAGES, SPEED_VARIANTS
from .markup import markdown
from .sections import find_definition, load_source

INTRO = """The pages before this one read the paper's path. What the U-Net runs computes the same thing
with less work, by algebra the docstrings spell out (one GroupNorm for a norm then a scale-shift, one
transposed convolution for nearest-neighbour upsampling then a 3x3 convolution, fused attention
kernels), or in another precision. Each is tested against the readable form: the tests named below are
in the project's `tests/` folder (`python -m pytest tests -k NAME`). The code of the fused forms follows."""


def locate(qualname):
    """(page slug, module name) of the first module of PAGES that defines `qualname`."""
    for slug, _, sources in PAGES:
        for entry in sources:
            module_name = entry.partition(":")[0]
            try:
                find_definition(load_source(module_name).tree, qualname)
            except LookupError:
                continue
            return slug, module_name
    raise LookupError(f"{qualname!r} is defined in none of the edition's modules (contents.PAGES)")


def speed_body():
    rows = []
    for fast, readable, test in SPEED_VARIANTS:
        slug, module_name = locate(fast)  # a variant that moved or vanished fails the build here
        rows.append(f'<tr><td><a href="{slug}.html#{html.escape(fast)}"><code>{html.escape(fast)}</code></a><br>'
                    f"<small>{html.escape(module_name)}</small></td><td>{markdown(readable, 'contents.SPEED_VARIANTS')}</td>"
                    f"<td><code>{html.escape(test)}</code></td></tr>")
    table = ("<table><tr><th>runs</th><th>equals</th><th>the test that proves it</th></tr>"
             + "".join(rows) + "</table>")
    return f'<div class="prose">{markdown(INTRO)}{table}</div>'
