"""Rendering an executed notebook to one self-contained HTML page: Quarto when on PATH, else nbconvert
(the page's banner says which)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

from ..base.atomic import atomic_write_text

__all__ = ["render_notebook", "renderer_name"]



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



def render_notebook(ipynb, renderer: str = "auto", run_info: dict | None = None) -> Path:
    """Render an executed notebook to a self-contained HTML page beside it.

    ``quarto render`` (configured by ``_quarto.yml``) when ``quarto`` is on PATH, else nbconvert's
    HTML exporter with images embedded. A banner at the top of the page says which renderer made it
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
    nb.cells.insert(0, banner)
    out = ipynb.with_suffix(".html")
    if which == "quarto":
        tmp = ipynb.with_name(f".{ipynb.stem}.render.ipynb")
        nbformat.write(nb, tmp)
        try:
            proc = subprocess.run(
                ["quarto", "render", str(tmp), "--to", "html", "--output", out.name, "-M", "embed-resources:true", "--no-execute"],
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

