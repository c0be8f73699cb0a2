"""The notebooks run top to bottom at a tiny budget (SB3_DST_NOTEBOOK_STEPS)."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "topology.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.setenv("SB3_DST_NOTEBOOK_STEPS", "400")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "gradient steps" in text
    assert "ipywidgets" not in text  # no progress-bar warning at every refresh
    left = [p.name for p in tmp_path.iterdir() if p.name != "MUJOCO_LOG.TXT"]  # MuJoCo's own warnings log
    assert not left, f"the notebook left files in its working directory: {left}"
    if path.stem == "quickstart":
        assert "masks and weights identical after load: True" in text
