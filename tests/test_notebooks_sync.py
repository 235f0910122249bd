"""The notebooks' .ipynb files are generated from their jupytext .py sources (scripts/notebooks.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_every_notebook_is_in_sync_with_its_py_source():
    out = subprocess.run([sys.executable, "scripts/notebooks.py", "check"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_every_notebook_has_a_source_one_parameters_cell_and_no_outputs():
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks
    for nb_path in notebooks:
        assert nb_path.with_suffix(".py").exists(), nb_path
        cells = json.loads(nb_path.read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, nb_path
        assert not any(c.get("outputs") for c in cells if c["cell_type"] == "code"), nb_path
