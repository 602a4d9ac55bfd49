"""Shared by every test module: tests/ on sys.path (for hub_server.py and training_runs.py), and the tiers.

    tests/unit/<package>/   one module's behaviour, in this process
    tests/integration/      real processes: accelerate launch, the console script, the wheel, a browser, the notebook

Every test under integration/ is marked `slow`, as is any unit test marked by hand, so that
`pytest -m "not slow" tests` is the fast tier. CI runs everything.
"""

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


def pytest_collection_modifyitems(config, items):
    integration = TESTS / "integration"
    for item in items:
        if integration in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.slow)
