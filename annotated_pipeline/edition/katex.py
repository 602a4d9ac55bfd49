"""KaTeX, copied into the site so that math renders offline (no CDN), opened from disk or served.

Where it comes from, in this order:
1. `--katex DIR`: a KaTeX distribution folder (katex.min.js, katex.min.css, fonts/), such as
   `node_modules/katex/dist` after `npm install katex`;
2. Debian's `libjs-katex` (/usr/share/javascript/katex), installed by `apt-get install libjs-katex`.
No PyPI package ships KaTeX's JavaScript, CSS and fonts together (sphinxcontrib-katex has the script
only, pykatex renders server side but without the CSS and fonts), so there is no third place.
"""

import shutil
from pathlib import Path

DEBIAN_KATEX = Path("/usr/share/javascript/katex")
NEEDED = ("katex.min.js", "katex.min.css", "fonts")
INSTALL_HINT = "apt-get install libjs-katex (or pass --katex DIR, a KaTeX dist folder such as node_modules/katex/dist)"


class KatexNotFound(FileNotFoundError):
    pass


def find_katex(folder=None):
    """The KaTeX folder to copy: `folder` if given (it must be whole), else Debian's."""
    candidates = [Path(folder)] if folder is not None else [DEBIAN_KATEX]
    for candidate in candidates:
        missing = [name for name in NEEDED if not (candidate / name).exists()]
        if not missing:
            return candidate
        if folder is not None:
            raise KatexNotFound(f"--katex {folder} lacks {', '.join(missing)}")
    raise KatexNotFound(f"KaTeX not found (the math needs it, offline): {INSTALL_HINT}")


def copy_katex(source, site):
    """Copy the script, the stylesheet and the fonts the stylesheet names into site/katex/."""
    target = Path(site) / "katex"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("katex.min.js", "katex.min.css"):
        shutil.copyfile(source / name, target / name)
    shutil.copytree(source / "fonts", target / "fonts", dirs_exist_ok=True)
    return target
