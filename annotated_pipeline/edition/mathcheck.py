"""Every formula of the site parsed by KaTeX at build time, so that a docstring whose math does not
parse fails the build, naming the file and line.

The check runs KaTeX's own parser (the katex.min.js copied into the site) under Node.js when `node` is
on PATH; without it the build says so in one line and the formulas are left to the browser, where
assets/edition.js marks any that fails (the browser test fails on those).
"""

import json
import shutil
import subprocess
from contextlib import contextmanager

_collected = None

NODE_CHECK = r"""
const katex = require(process.argv[1]);
const items = JSON.parse(require("fs").readFileSync(0, "utf8"));
const bad = [];
for (const [where, tex, display] of items) {
  try { katex.renderToString(tex, {throwOnError: true, displayMode: display}); }
  catch (error) { bad.push([where, tex, String(error.message || error)]); }
}
process.stdout.write(JSON.stringify(bad));
"""


class MathError(ValueError):
    pass


@contextmanager
def collecting():
    """Within this block, `record` keeps each formula; yields the list [(where, tex, display)]."""
    global _collected
    previous, _collected = _collected, []
    try:
        yield _collected
    finally:
        _collected = previous


def record(where, tex, display):
    if _collected is not None:
        _collected.append((where, tex, display))


def check_formulas(formulas, katex_js, node=None):
    """Parse each formula with KaTeX under Node.js; raises MathError listing those that fail.
    Returns False (nothing checked) when there is no `node`."""
    node = node or shutil.which("node")
    if node is None:
        return False
    result = subprocess.run([node, "-e", NODE_CHECK, str(katex_js)], input=json.dumps(formulas),
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"the KaTeX check under node failed: {result.stderr.strip()[-500:]}")
    bad = json.loads(result.stdout)
    if bad:
        raise MathError("math KaTeX cannot parse:\n" + "\n".join(f"  {where}: ${tex}$: {message}"
                                                                   for where, tex, message in bad))
    return True
