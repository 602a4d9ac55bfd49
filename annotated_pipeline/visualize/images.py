"""Small PIL pieces the figures share: tensors to images, a heat colormap, labelled grids.

Images are x in [-1, 1] (the data range of a DDPM, Ho et al. 2020, sec. 3.3) and are shown as

    pixel = round(255 * clip((x + 1) / 2, 0, 1))

so a noisy x_t, whose values leave [-1, 1], is clipped for display only (nothing is clipped in the model).
"""

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

# Anchors of a dark-to-bright heat scale (black, purple, red, orange, pale yellow), interpolated linearly.
HEAT_ANCHORS = np.array([(0, 0, 4), (81, 18, 124), (183, 55, 121), (252, 137, 97), (252, 253, 191)], dtype=np.float64)
BACKGROUND = 255  # white margins and headers
TEXT = (0, 0, 0)


def font(size=11):
    """Pillow's built-in scalable font (no font file needed)."""
    return ImageFont.load_default(size=size)


def to_pil(x, scale=1):
    """x in [-1, 1], (C, H, W) or (H, W), to an "L" (one channel) or "RGB" image, enlarged `scale` times (nearest)."""
    x = torch.as_tensor(x).detach().float().cpu()
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    image = Image.fromarray(pixels if pixels.ndim == 2 else pixels.transpose(1, 2, 0))
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST) if scale != 1 else image


def heat(values):
    """values in [0, 1], (H, W), to an RGB uint8 array (H, W, 3) on the heat scale."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0, 1) * (len(HEAT_ANCHORS) - 1)
    low = np.floor(v).astype(int).clip(max=len(HEAT_ANCHORS) - 2)
    frac = (v - low)[..., None]
    return (HEAT_ANCHORS[low] * (1 - frac) + HEAT_ANCHORS[low + 1] * frac).round().astype(np.uint8)


def overlay(background, values, alpha=0.6):
    """An RGB image: the grayscale `background` (PIL) under the heat map of `values` in [0, 1] (same size)."""
    base = np.asarray(background.convert("RGB"), dtype=np.float64)
    return Image.fromarray((base * (1 - alpha) + heat(values) * alpha).round().astype(np.uint8))


def labelled_grid(cells, column_labels=(), row_labels=(), pad=4, font_size=11):
    """Paste a rows x columns list of equal-size PIL images onto a white canvas, with a header line above each
    column and a label left of each row (either may be empty)."""
    rows, cols = len(cells), len(cells[0])
    w, h = cells[0][0].size
    f = font(font_size)
    left = max((int(f.getlength(label)) for label in row_labels), default=0) + (pad * 2 if row_labels else 0)
    top = (font_size + 2 * pad) if column_labels else 0
    mode = "RGB" if any(cell.mode != "L" for row in cells for cell in row) else "L"
    white = BACKGROUND if mode == "L" else (BACKGROUND,) * 3
    canvas = Image.new(mode, (left + cols * (w + pad) + pad, top + rows * (h + pad) + pad), white)
    draw = ImageDraw.Draw(canvas)
    ink = TEXT if mode == "RGB" else 0
    for j, label in enumerate(column_labels):
        x = left + pad + j * (w + pad) + (w - f.getlength(label)) / 2
        draw.text((x, pad), label, fill=ink, font=f)
    for i, row in enumerate(cells):
        y = top + pad + i * (h + pad)
        if i < len(row_labels):
            draw.text((pad, y + (h - font_size) / 2), row_labels[i], fill=ink, font=f)
        for j, cell in enumerate(row):
            canvas.paste(cell.convert(mode), (left + pad + j * (w + pad), y))
    return canvas
