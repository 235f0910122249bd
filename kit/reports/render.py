"""Rendering an executed notebook to one self-contained HTML page: Quarto when on PATH, else nbconvert
(the page's banner says which)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

from ..base.atomic import atomic_write_text

__all__ = ["render_notebook", "renderer_name", "front_matter"]



def renderer_name(choice: str = "auto") -> str:
    """The renderer a run uses: ``"quarto"`` when asked or (``"auto"``) when the binary is on PATH,
    else ``"nbconvert"``.

    Raises
    ------
    ValueError
        Unknown choice.
    RuntimeError
        ``"quarto"`` asked for without the binary on PATH.
    """
    if choice not in ("auto", "quarto", "nbconvert"):
        raise ValueError(f"renderer must be 'auto', 'quarto' or 'nbconvert', got {choice!r}")
    if choice == "auto":
        return "quarto" if shutil.which("quarto") else "nbconvert"
    if choice == "quarto" and not shutil.which("quarto"):
        raise RuntimeError("renderer='quarto' but the quarto binary is not on PATH")
    return choice



def _version(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"



def front_matter(nb) -> tuple[int | None, dict]:
    """(index, mapping) of a notebook's Quarto front matter: its first raw cell whose text is a YAML
    block between ``---`` lines (e.g. ``format: dashboard``); ``(None, {})`` when there is none or it
    is not valid YAML mapping."""
    import yaml

    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "raw":
            continue
        text = cell.source.strip()
        if text.startswith("---") and text.endswith("---") and len(text) > 6:
            try:
                meta = yaml.safe_load(text[3:-3])
            except yaml.YAMLError:
                return None, {}
            return (i, meta) if isinstance(meta, dict) else (None, {})
    return None, {}


def _quarto_format(meta: dict) -> str:
    """The Quarto output format a notebook asks for: ``dashboard`` when its front matter's ``format``
    is (or has) ``dashboard``, else ``html``."""
    fmt = meta.get("format")
    return "dashboard" if fmt == "dashboard" or (isinstance(fmt, dict) and "dashboard" in fmt) else "html"


def render_notebook(ipynb, renderer: str = "auto", run_info: dict | None = None) -> Path:
    """Render an executed notebook to a self-contained HTML page beside it.

    ``quarto render`` (configured by ``_quarto.yml``) when ``quarto`` is on PATH, else nbconvert's
    HTML exporter with images embedded. A notebook whose front matter (a raw YAML cell, see
    :func:`front_matter`) asks for ``format: dashboard`` is rendered by Quarto as a dashboard (``--to
    dashboard``: rows of cards, cell option ``#| title:`` naming a card); nbconvert shows the same
    cells one after the other, with the front matter's title as the heading instead of its YAML. A banner at the top of the page says which renderer made it
    (with its version) and, when ``run_info`` is given, the run id, git commit and data sha256.

    Returns
    -------
    Path of the HTML file.

    Raises
    ------
    RuntimeError
        ``renderer='quarto'`` without the binary, or the renderer failed.
    """
    import nbformat

    ipynb = Path(ipynb)
    which = renderer_name(renderer)
    nb = nbformat.read(ipynb, as_version=4)
    if which == "quarto":
        label = f"Quarto {_version(['quarto', '--version'])}"
    else:
        import nbconvert

        label = f"nbconvert {nbconvert.__version__} (HTML exporter; Quarto not on PATH)"
    lines = [f"**Rendered by {label}** on {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}."]
    if run_info:
        lines.append(
            f"Run `{run_info.get('run_id')}`, profile `{run_info.get('profile')}`, git commit "
            f"`{run_info.get('git_commit', '')[:12]}`{' (uncommitted changes)' if run_info.get('git_dirty') else ''}, "
            f"data sha256 `{run_info.get('data_sha256', '')[:16]}...`."
        )
    banner = nbformat.v4.new_markdown_cell("> " + "  \n> ".join(lines))
    banner.metadata["tags"] = ["kit-banner"]
    fm_index, fm = front_matter(nb)
    if which == "nbconvert" and fm_index is not None:  # nbconvert would print the YAML: the title becomes the heading instead
        nb.cells[fm_index] = nbformat.v4.new_markdown_cell(f"# {fm['title']}" if fm.get("title") else "")
    nb.cells.insert(0, banner)
    out = ipynb.with_suffix(".html")
    if which == "quarto":
        tmp = ipynb.with_name(f".{ipynb.stem}.render.ipynb")
        nbformat.write(nb, tmp)
        try:
            proc = subprocess.run(
                ["quarto", "render", str(tmp), "--to", _quarto_format(fm), "--output", out.name, "-M", "embed-resources:true", "--no-execute"],
                cwd=ipynb.parent,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"quarto render failed for {ipynb}: {proc.stderr[-2000:]}")
        finally:
            tmp.unlink(missing_ok=True)
    else:
        from nbconvert import HTMLExporter

        exporter = HTMLExporter(embed_images=True)
        body, _ = exporter.from_notebook_node(nb)
        atomic_write_text(out, body)
    return out

