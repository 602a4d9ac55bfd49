"""The argparse types of the training options: command-line text -> a checked value, or an
`argparse.ArgumentTypeError` that argparse reports as `prog: error: argument --NAME: ...` (exit status 2).

settings.py names them in a field's metadata ("parse") where the field's type alone does not say how to
read it; options.py maps the plain types (float -> finite_float, float | None -> float_or_none).
"""

import argparse
import math

from ..unet import LINEAR_ATTENTION_NAMES


def parse_dim_mults(text):
    """Parse `--dim_mults` like "1,2,4" into a tuple of positive ints, one per U-Net resolution level."""
    try:
        mults = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--dim_mults must be comma-separated positive integers such as 1,2,4; got {text!r}"
        ) from None
    if not mults or any(m < 1 for m in mults):
        raise argparse.ArgumentTypeError(
            f"--dim_mults must be comma-separated positive integers such as 1,2,4; got {text!r}"
        )
    return mults


def parse_linear_attention_levels(text):
    """Parse `--linear_attention_levels`: "middle", "below_full_resolution", "all", or level indices like "1,2"."""
    if text in LINEAR_ATTENTION_NAMES:
        return text
    try:
        levels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--linear_attention_levels must be {', '.join(LINEAR_ATTENTION_NAMES)}, or comma-separated level indices "
            f"such as 1,2 (0 = full resolution); got {text!r}"
        ) from None
    return levels


def parse_sigma_rels(text):
    """Parse `--posthoc_ema_sigma_rels` like "0.05,0.10": widths in (0, 12^-1/2] (training/posthoc_ema.py)."""
    from .posthoc_ema import MAX_SIGMA_REL

    try:
        widths = tuple(float(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if not widths or not all(0 < w <= MAX_SIGMA_REL for w in widths):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated widths in (0, {MAX_SIGMA_REL:.4f}] such as 0.05,0.10; got {text!r}")
    return widths


def finite_float(text):
    """A finite float: argparse's `float` also takes 'nan' and 'inf', which no numeric flag here can use."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def float_or_none(text):
    """A finite float, or None for 'none' / 'off' (any case): for flags whose default is 'not used'."""
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        return finite_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a finite number or 'none', got {text!r}") from None
