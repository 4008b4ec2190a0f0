"""notebooks/analysis.ipynb executes top to bottom (nbclient), in a temporary directory.

With no demo model there, the notebook builds its own stand-in (a random-weight
export and synthetic labelled shards), which is the path exercised here; it
then runs every analysis and displays every figure. About 50 s on 2 cores, so
not marked slow.
"""

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = pathlib.Path(__file__).resolve().parents[2] / "notebooks" / "analysis.ipynb"


def test_analysis_notebook_executes(tmp_path, monkeypatch):
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    monkeypatch.setenv("L3_EXPORT_DIR", str(tmp_path / "no_such_export"))
    monkeypatch.setenv("L3_DATA_PATTERN", str(tmp_path / "none" / "test-*.tfrecord"))
    monkeypatch.setenv("L3_ANALYSIS_DIR", str(tmp_path / "analysis_out"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    # The kernel must see this checkout's l3 even where it is not pip-installed.
    root = str(NOTEBOOK.parents[1])
    path = [root, os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 6  # summary, vision units + heatmaps, audio units + heatmaps, t-SNE
    text = "".join(o.get("text", "") for o in outputs)
    assert "building a random-weight export" in text and "Table 4" in text
    assert (tmp_path / "analysis_out" / "analysis.json").exists()
    assert (tmp_path / "analysis_stand_in" / "export" / "export.json").exists()
