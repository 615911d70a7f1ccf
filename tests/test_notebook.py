"""The notebooks run top to bottom (slow: they train on the bundled data and on outcome data)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
COST_QUALITY = NOTEBOOK.parent / "cost_quality.ipynb"


def test_quickstart_notebook_executes(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = {
        i: "".join(o.get("text", "") or str(o.get("data", {}).get("text/plain", "")) for o in cell.get("outputs", []))
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
    }
    text = "\n".join(outputs.values())
    assert "macro-F1" in text and "expected calibration error" in text
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # confusion matrix and reliability diagram rendered inline
    assert "Decision(label='code'" in text
    assert "array(['billing', 'technical']" in text


def test_cost_quality_notebook_executes(tmp_path):
    notebook = nbformat.read(COST_QUALITY, as_version=4)
    NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors
    text = "\n".join(o.get("text", "") or str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "knn" in text and "oracle" in text and "router − knn" in text  # the report table and the lead
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # the curves, then with the chosen point

    point = re.search(r"operating point: lambda=(\S+) quality=(\S+) price=(\S+) target=(\S+)", text)
    assert point, text
    lam, quality, price, target = map(float, point.groups())
    assert lam >= 0 and 0 <= quality <= 1 and 0 < price <= target
    assert re.search(r"held-out: quality=[\d.]+ price=[\d.]+", text)

    table = tomllib.loads((tmp_path / "routes.toml").read_text())
    assert table["strategy"] == "quality" and table["lambda"] == pytest.approx(lam, rel=1e-3)
    assert (tmp_path / "success-router" / "manifest.json").exists()
    decisions = re.findall(r"strategy=(\w+) model=(\S+) success=([\d.]+)", text)
    assert len(decisions) >= 2 and {strategy for strategy, _, _ in decisions} == {"quality"}
    assert {model for _, model, _ in decisions} <= set(table["models"])
