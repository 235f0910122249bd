"""The notebooks' source of truth is ``notebooks/<stem>.py`` (jupytext percent format, reviewable in
diffs); ``notebooks/<stem>.ipynb`` is generated from it with outputs stripped and deterministic cell
ids (``<two-digit prefix>-<index>``), so papermill, nbmake and JupyterLab read the same cells.

    .venv/bin/python scripts/notebooks.py sync     # write every .ipynb from its .py
    .venv/bin/python scripts/notebooks.py check    # exit 1 if an .ipynb differs from its .py

Edit the ``.py`` file (or the notebook in JupyterLab, then ``jupytext --to py:percent`` it back),
run ``sync``, and commit both. ``tests/test_notebooks_sync.py`` runs ``check``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def build(py: Path) -> str:
    """The ``.ipynb`` text generated from ``py``."""
    nb = jupytext.read(py, fmt="py:percent")
    prefix = py.stem.split("_", 1)[0]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{prefix}-{i:02d}"
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        meta = {k: v for k, v in cell.get("metadata", {}).items() if k == "tags"}
        cell["metadata"] = meta
    nb.metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    nb.nbformat, nb.nbformat_minor = 4, 5
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("sync", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    stale = []
    for py in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py")):
        target = py.with_suffix(".ipynb")
        text = build(py)
        if not target.exists() or target.read_text() != text:
            stale.append(target.name)
            if argv[0] == "sync":
                target.write_text(text)
    if argv[0] == "check" and stale:
        print(f"out of date with their .py sources: {', '.join(stale)} (run scripts/notebooks.py sync)", file=sys.stderr)
        return 1
    print(("wrote " if argv[0] == "sync" else "in sync: ") + (", ".join(stale) if argv[0] == "sync" else "all notebooks"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
