"""The Colab notebook runs top to bottom on CPU (JWINS_NOTEBOOK_SMOKE=1)."""

from __future__ import annotations

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "jwins_colab.ipynb"


def test_notebook_is_valid_and_has_its_parts():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "install" in code[0].metadata.get("tags", [])
    text = "\n".join(c.source for c in nb.cells)
    for needle in (
        "JWINS_NOTEBOOK_SMOKE",
        "jax.devices()",
        "run_config",
        "parse_spec",
        "run_sweep",
        "accuracy_vs_bytes",
        "data_dir",
        "drive.mount",
    ):
        assert needle in text, needle
    assert all(not c.get("outputs") for c in code), "commit it without outputs"


def test_notebook_runs_in_smoke_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("JWINS_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The install cell skips itself in smoke mode; leave it out all the same.
    nb.cells = [c for c in nb.cells if "install" not in c.metadata.get("tags", [])]
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on any error
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the inline plot and the sweep's plot
    text = "".join(o.get("text", "") for o in outputs)
    assert "backend 'cpu'" in text and "No accelerator" in text
    assert (tmp_path / "runs" / "sweep-notebook-budgets" / "sweep.csv").is_file()
    assert (tmp_path / "runs" / "notebook-jwins" / "summary.json").is_file()
