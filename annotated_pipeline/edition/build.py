"""`annotated-pipeline docs --output DIR`: build the annotated edition, a static site, from the installed
package's own source.

    annotated-pipeline docs --output site                 # then open site/index.html, or
    python -m http.server -d site                         # and browse http://localhost:8000

The site is plain files with relative links (works from disk, any web server, GitHub Pages, a static
Space). KaTeX is copied in (katex.py says from where); the figures are drawn from the shipped model
(`--model` for another, `--no-figures` to leave them out).
"""

import argparse
import shutil
import sys
import time
from importlib.resources import files
from pathlib import Path
from string import Template

from .contents import PAGES
from .figures import DEFAULT_STEPS, FIGURE_FILES, draw_figures, placed, shipped_model
from .html import module_page_body, page, source_page
from .katex import KatexNotFound, copy_katex, find_katex
from .markup import markdown, pygments_css
from .mathcheck import MathError, check_formulas, collecting
from .notebook import clone_notebook, notebook_body
from .requirements import MissingDependency, require
from .speed import speed_body


def reading_order():
    lines = []
    for slug, title, sources in PAGES:
        modules = ", ".join(f"`{s.replace(':', '.')}`" for s in sources)
        lines.append(f"- [{title}]({slug}.html): {modules}")
    lines.append("- [The notebook, executed](notebook.html)")
    return "\n".join(lines)


def index_body():
    text = files(__package__).joinpath("templates", "index.md").read_text(encoding="utf-8")
    return f'<div class="prose">{markdown(Template(text).safe_substitute(reading_order=reading_order()), "templates/index.md")}</div>'


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def build_site(output, katex_dir, model=None, steps=DEFAULT_STEPS, notebook=None, log=print):
    """Write the site into `output`: figures drawn from `model` (None: no figures), the notebook
    rendered from `notebook` (None: a page saying where it is). The math is checked first (MathError)."""
    output = Path(output)
    with collecting() as formulas:
        pages = _pages(output, FIGURE_FILES if model is not None else {}, notebook)
    checked = check_formulas(formulas, katex_dir / "katex.min.js")
    if model is not None:
        draw_figures(output / "images", model, steps, log=log)
    copy_katex(katex_dir, output)
    assets = output / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    css = files(__package__).joinpath("assets", "edition.css").read_text(encoding="utf-8")
    write(assets / "edition.css", css + "\n" + pygments_css() + "\n")
    shutil.copyfile(str(files(__package__).joinpath("assets", "edition.js")), assets / "edition.js")

    for path, text in pages.items():
        write(path, text)
    log(f"{len(pages) - len(sources_of(pages))} pages and {len(sources_of(pages))} source listings in {output}; "
        + (f"{len(formulas)} formulas parsed by KaTeX" if checked else "formulas not checked here (no node): the browser checks them"))
    return output


def sources_of(pages):
    return [path for path in pages if path.parent.name == "source"]


def _pages(output, figures, notebook):
    """{path: HTML} of every page."""
    pages = {}
    by_page = placed(figures or {})
    pages[output / "index.html"] = page("The Annotated DDPM", index_body(), here="index")
    sources = {}
    for slug, title, entries in PAGES:
        body, modules = module_page_body(entries, by_page.get(slug, []))
        body = speed_body() + body if slug == "speed" else body
        sources.update(modules)
        pages[output / f"{slug}.html"] = page(title, body, here=slug)
    for module_name, source in sources.items():
        pages[output / "source" / f"{module_name}.html"] = source_page(source)
    if notebook is not None:
        body = notebook_body(notebook, output / "images")
    else:
        body = markdown("The executed notebook is `notebooks/annotated_ddpm.ipynb` in the project's clone; "
                        "this build had none (from a wheel: `annotated-pipeline docs --notebook PATH`).")
    pages[output / "notebook.html"] = page("The notebook, executed", body, here="notebook")
    return pages


def parse_args(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output", required=True, type=Path, help="folder to write the site into (created)")
    parser.add_argument("--model", default=None,
                        help="saved pipeline (folder or Hub repo id) the figures are drawn from "
                             "(default: the clone's pretrained/ddpm-fashion-mnist)")
    parser.add_argument("--no-figures", action="store_true", help="leave the figures out (a faster build)")
    parser.add_argument("--figure-steps", type=int, default=DEFAULT_STEPS, help="sampling steps for the model's figures")
    parser.add_argument("--notebook", type=Path, default=None,
                        help="the executed notebook to render (default: the clone's notebooks/annotated_ddpm.ipynb)")
    parser.add_argument("--katex", type=Path, default=None,
                        help="a KaTeX dist folder (katex.min.js, katex.min.css, fonts/); default: Debian's libjs-katex")
    args = parser.parse_args(argv)
    if args.figure_steps < 1:
        parser.error(f"--figure-steps must be at least 1, got {args.figure_steps}")
    if args.output.exists() and not args.output.is_dir():
        parser.error(f"--output {args.output} exists and is not a folder")
    if args.notebook is not None and not args.notebook.is_file():
        parser.error(f"--notebook {args.notebook} is not a file")
    if args.model is None and not args.no_figures:
        args.model = shipped_model()
        if args.model is None:
            parser.error("no model to draw the figures from (none shipped beside this install): "
                         "pass --model PATH_OR_REPO_ID, or --no-figures")
    try:
        args.katex = find_katex(args.katex)
        for name in ("markdown_it", "mdit_py_plugins", "pygments"):
            require(name)
    except (KatexNotFound, MissingDependency) as error:
        parser.error(str(error))
    return args


def main(argv=None, prog="python -m annotated_pipeline.edition"):
    args = parse_args(sys.argv[1:] if argv is None else list(argv), prog)
    start = time.perf_counter()
    notebook = args.notebook if args.notebook is not None else clone_notebook()
    try:
        build_site(args.output, args.katex, None if args.no_figures else args.model, args.figure_steps, notebook)
    except MathError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    print(f"The annotated edition: {args.output / 'index.html'} "
          f"({time.perf_counter() - start:.1f} s)")
    return 0
