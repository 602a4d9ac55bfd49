"""The annotated edition: the library rendered as a static site, notes beside the code that runs.

Read in this order: contents.py (which modules make which page), sections.py (a source file into
notes and code), markup.py (Markdown, math, highlighting), html.py (the pages), figures.py, notebook.py,
speed.py, katex.py (math offline), build.py (the `docs` command, `main(argv, prog)`).
"""

from .build import build_site, main  # noqa: F401
