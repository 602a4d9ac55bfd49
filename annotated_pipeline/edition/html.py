"""The edition's pages as HTML: the page template, the navigation, and the side-by-side sections.

Every page is a file at the site's root (source listings one folder down, in source/), with relative
links only, so the site works opened from disk and served from any path.
"""

import html
from importlib.resources import files
from string import Template

from .contents import PAGES
from .markup import highlighted_lines, markdown, source_page_html
from .sections import load_source, select, split_sections

EXTRA_PAGES = (("notebook", "The notebook, executed"),)


def template():
    return Template(files(__package__).joinpath("templates", "page.html").read_text(encoding="utf-8"))


def navigation(here, root=""):
    links = []
    for slug, title in [(slug, title) for slug, title, _ in PAGES] + list(EXTRA_PAGES):
        number = title.split(".")[0] if title[0].isdigit() else title
        mark = ' class="here"' if slug == here else ""
        links.append(f'<a{mark} href="{root}{slug}.html" title="{html.escape(title)}">{html.escape(number)}</a>')
    return "\n".join(links)


def turn_links(here):
    """Previous and next page, in the reading order."""
    order = [("index", "Contents")] + [(slug, title) for slug, title, _ in PAGES] + list(EXTRA_PAGES)
    slugs = [slug for slug, _ in order]
    i = slugs.index(here)
    before = f'<a href="{order[i - 1][0]}.html">&larr; {html.escape(order[i - 1][1])}</a>' if i > 0 else "<span></span>"
    after = f'<a href="{order[i + 1][0]}.html">{html.escape(order[i + 1][1])} &rarr;</a>' if i + 1 < len(order) else "<span></span>"
    return before + after


def page(title, body, here, root=""):
    return template().substitute(title=html.escape(title), nav=navigation(here, root), body=body, root=root,
                                 turn=turn_links(here) if root == "" else "")


def relative_path(source):
    """The file's path from the package's parent folder (annotated_pipeline/...), as it is installed."""
    parts = source.path.parts
    top = source.module.split(".")[0]
    return "/".join(parts[len(parts) - 1 - parts[::-1].index(top):]) if top in parts else source.path.name


def figure_html(figure):
    """figure: (file name in images/, caption Markdown, css class)."""
    name, caption, css = figure
    return (f'<figure><img class="{css}" src="images/{name}" alt="{html.escape(caption)}">'
            f"<figcaption>{markdown(caption, 'contents.FIGURE_PLACES')}</figcaption></figure>")


def section_html(section, source, highlighted, figures=()):
    where = f"{relative_path(source)}:{section.lines[0][0] if section.lines else '?'}"
    notes = "".join(markdown(note, where) for note in section.notes)
    notes += "".join(figure_html(f[:3]) for f in figures if f[3] in section.anchors)
    anchors = "".join(f'<span id="{html.escape(name)}"></span>' for name in section.anchors)
    if not section.lines:
        return f'<div class="section"><div class="notes">{anchors}{notes}</div><div class="code"></div></div>'
    first = section.lines[0][0]
    link = (f'<a class="source-link" href="source/{source.module}.html#L-{first}" '
            f'title="this block in its file">{relative_path(source)}:{first}</a>')
    code = "\n".join(highlighted[number - 1] for number, _ in section.lines)
    return (f'<div class="section"><div class="notes">{anchors}{notes}</div>'
            f'<div class="code">{link}<pre class="highlight"><code>{code}</code></pre></div></div>')


def module_page_body(sources, figures=()):
    """The sections of each source ("module" or "module:Qualified.name") of a page, in order.

    figures: (file name, caption, css class, qualified name of the section it stands beside)."""
    parts, modules = [], {}
    for entry in sources:
        module_name, _, qualname = entry.partition(":")
        source = load_source(module_name)
        modules[module_name] = source
        sections = split_sections(source.text, source.tree)
        if qualname:
            sections = select(sections, source.tree, qualname)
        highlighted = highlighted_lines(source.text)
        label = f"{module_name}.{qualname}" if qualname else module_name
        parts.append(f'<h2 class="module-head"><code>{html.escape(label)}</code> '
                     f'<a href="source/{module_name}.html">{relative_path(source)}</a></h2>')
        parts.extend(section_html(s, source, highlighted, figures) for s in sections)
    return "\n".join(parts), modules


def source_page(source):
    """The whole file, numbered, each line an anchor the sections link to."""
    title = relative_path(source)
    body = f'<div class="prose">{source_page_html(source.text)}</div>'
    return page(title, body, here=None, root="../")
