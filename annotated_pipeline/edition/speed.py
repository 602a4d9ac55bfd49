"""The speed variants page: each fast path the library runs, the readable form it equals, and the test
that proves it (contents.SPEED_VARIANTS). The pages for the core modules show the paper's path; this
page is where the rewrites are accounted for.
"""

import html
import importlib

from .contents import SPEED_VARIANTS
from .markup import markdown

INTRO = """The pages before this one read the paper's path. A few functions compute the same thing
faster, by algebra that the docstrings spell out (a transposed convolution for nearest-neighbour
upsampling then a 3x3 convolution, one GroupNorm for norm then scale-shift, fused attention kernels),
or in another precision. Each is tested against the readable form; the test names below are in the
project's `tests/` folder (run `python -m pytest -k NAME`)."""


def resolve(target):
    """The object a "module:Qualified.name" names (import, then attribute by attribute)."""
    module_name, _, qualname = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _page_of(target):
    from .contents import PAGES

    module_name = target.partition(":")[0]
    for slug, _, sources in PAGES:
        if any(s.partition(":")[0] == module_name for s in sources):
            return slug
    return None


def speed_body():
    rows = []
    for fast, readable, test in SPEED_VARIANTS:
        resolve(fast)  # a variant that moved or vanished fails the build here
        module_name, _, qualname = fast.partition(":")
        slug = _page_of(fast)
        where = f'<a href="{slug}.html#{html.escape(qualname)}">{html.escape(qualname)}</a>' if slug else html.escape(qualname)
        if ":" in readable:
            resolve(readable)
            readable_html = f"<code>{html.escape(readable.partition(':')[2])}</code>"
        else:
            readable_html = html.escape(readable)
        rows.append(f"<tr><td>{where}<br><small>{html.escape(module_name)}</small></td><td>{readable_html}</td>"
                    f"<td><code>{html.escape(test)}</code></td></tr>")
    table = ("<table><tr><th>runs</th><th>equals</th><th>the test that proves it</th></tr>"
             + "".join(rows) + "</table>")
    return f'<div class="prose">{markdown(INTRO)}{table}</div>'
