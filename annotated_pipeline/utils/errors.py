"""How the commands report a failure: one line on stderr and an exit status, never a traceback.

    ValueError, OSError        a bad argument, a missing folder, an unreachable Hub: exit status 2
    FloatingPointError         the work started and produced NaN/inf (NonFiniteSampleError): 1
"""

import sys

from .tokens import redact


def run_reporting(prog, work):
    """Call `work()`; return 0, or print `prog: error: ...` for an expected failure and return its status."""
    try:
        work()
    except (ValueError, OSError) as error:
        print(f"{prog}: error: {redact(error)}", file=sys.stderr)
        return 2
    except FloatingPointError as error:
        print(f"{prog}: error: {redact(error)}", file=sys.stderr)
        return 1
    return 0
