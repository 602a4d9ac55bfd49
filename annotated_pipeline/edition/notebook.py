"""The executed notebook (notebooks/annotated_ddpm.ipynb) as a page, from the outputs stored in it:
Markdown cells through the same Markdown and math path as the notes, code cells highlighted, text
outputs as text and image outputs as files in images/. Nothing is executed here.
"""

import base64
import html
import json
from pathlib import Path

from .markup import highlight, markdown

IMAGE_TYPES = {"image/png": "png", "image/gif": "gif", "image/jpeg": "jpg"}


def clone_notebook():
    """The clone's notebook, if the package runs from a clone; None from a wheel (pass --notebook)."""
    import annotated_pipeline

    candidate = Path(annotated_pipeline.__file__).resolve().parent.parent / "notebooks" / "annotated_ddpm.ipynb"
    return candidate if candidate.exists() else None


def _text(value):
    return "".join(value) if isinstance(value, list) else value


def _output_html(output, images, stem):
    kind = output.get("output_type")
    if kind == "stream":
        return f'<pre class="stream">{html.escape(_text(output["text"]))}</pre>'
    if kind == "error":
        return f'<pre class="error">{html.escape(output.get("ename", ""))}: {html.escape(output.get("evalue", ""))}</pre>'
    data = output.get("data", {})
    for mime, extension in IMAGE_TYPES.items():
        if mime in data:
            name = f"{stem}.{extension}"
            (images / name).write_bytes(base64.b64decode(_text(data[mime])))
            return f'<img src="images/{name}" alt="cell output">'
    if "text/plain" in data:
        return f"<pre>{html.escape(_text(data['text/plain']))}</pre>"
    return ""


def notebook_body(path, images):
    """The notebook's cells as HTML; image outputs written into `images`."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    images = Path(images)
    images.mkdir(parents=True, exist_ok=True)
    parts = ['<div class="prose">']
    for i, cell in enumerate(cells):
        source = _text(cell.get("source", ""))
        if cell["cell_type"] == "markdown":
            parts.append(f'<div class="cell markdown">{markdown(source, f"{Path(path).name}, cell {i}")}</div>')
        elif cell["cell_type"] == "code":
            outputs = "".join(_output_html(o, images, f"notebook-{i}-{j}") for j, o in enumerate(cell.get("outputs", [])))
            parts.append(f'<div class="cell code"><div class="input">{highlight(source)}</div>'
                         f'<div class="output">{outputs}</div></div>')
    parts.append("</div>")
    return "\n".join(parts)
