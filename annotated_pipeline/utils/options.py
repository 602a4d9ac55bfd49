"""Numeric options within documented ranges: one argparse type per range, so a value outside it is refused when
the options are parsed (`prog: error: argument --scale: must be in 1..32, got 100000`, exit status 2), before
any model is loaded, and the help text shows the same range.

    parser.add_argument("--scale", type=number_in(int, *SCALE_RANGE), help=f"... ({span(SCALE_RANGE)})")
"""

import argparse
import math

SCALE_RANGE = (1, 32)  # how many times a grid or figure is enlarged (nearest neighbour): 28 px shows at 896 px


def span(bounds):
    """A range as the help texts and the errors write it: "1..32", "0..50"."""
    return f"{bounds[0]:g}..{bounds[1]:g}"


def number_in(kind, low, high):
    """An argparse type: `kind` (int or float) parsed from the text, refused unless finite and in low..high."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{'a whole' if kind is int else 'a'} number in {span((low, high))} "
                                             f"was expected, got {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"must be in {span((low, high))}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse
