"""notebooks/annotated_ddpm.ipynb runs from top to bottom (tiny settings), and the stored copy carries its pictures."""

import json
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "annotated_ddpm.ipynb"


def test_stored_notebook_has_its_pictures_and_stays_small():
    assert NOTEBOOK.stat().st_size < 1.5e6
    nb = nbformat.read(NOTEBOOK, as_version=4)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 8  # every figure section was rendered
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert "FAST=False" in json.dumps(nb.cells[1].outputs)  # rendered with the real settings, not CI's


def test_notebook_executes_with_tiny_settings(monkeypatch):
    monkeypatch.setenv("ANNOTATED_DDPM_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    assert "FAST=True" in json.dumps(nb.cells[1].outputs)
    assert "samples unchanged by recording: True" in json.dumps([c.outputs for c in nb.cells if c.cell_type == "code"])
    print(f"notebook executed in {time.perf_counter() - start:.0f} s")
