"""Rendering an executed notebook to one self-contained HTML page: Quarto when a Quarto >= 1.4 is on
PATH, else nbconvert (the banner under the page's title says which). Also the two things a run needs
from the notebook executor: the kernel on IPC transport and a progress line per stage.

Quarto renders in a temporary project folder outside the repository (the repository's
``_quarto.yml`` and ``theme.scss`` copied into it, the notebook as ``<stem>.ipynb``), so its
``.quarto/`` cache and any ``.gitignore`` it writes never touch the working tree, and the project's
settings (table of contents, folded code, theme) apply to the page.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from ..base.atomic import atomic_path, atomic_write_text
from ..paths import REPO_ROOT

__all__ = [
    "QUARTO_MIN_VERSION",
    "QUARTO_CONFIG",
    "QUARTO_THEME",
    "quarto_path",
    "quarto_version",
    "renderer_name",
    "renderer_label",
    "callout",
    "front_matter",
    "render_notebook",
    "quarto_project",
    "run_quarto",
    "execute_options",
    "stage_line",
]

QUARTO_MIN_VERSION = (1, 4)
"""The oldest Quarto the kit renders with (an older one on PATH is ignored: nbconvert renders)."""
QUARTO_CONFIG = REPO_ROOT / "_quarto.yml"
"""The project's Quarto settings, copied into every temporary render project."""
QUARTO_THEME = REPO_ROOT / "theme.scss"
"""The theme layer over cosmo (offline fonts, the kit's colours), copied beside ``_quarto.yml``."""

_RENDERERS = ("auto", "quarto", "nbconvert")


@functools.lru_cache(maxsize=8)
def _quarto_version_at(path: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(g) for g in m.groups() if g is not None) if m else None


def quarto_path() -> str | None:
    """The ``quarto`` binary the kit uses: the first on PATH, else one beside the running Python
    (where ``pip install 'kit[quarto]'`` puts it, e.g. ``.venv/bin/quarto`` when the virtualenv is
    not activated); None when there is neither."""
    return shutil.which("quarto") or shutil.which("quarto", path=str(Path(sys.executable).parent))


def quarto_version() -> tuple[int, ...] | None:
    """Version of the ``quarto`` binary (:func:`quarto_path`) as a tuple of ints, e.g. ``(1, 7, 34)``;
    None when there is none or it does not answer ``quarto --version`` (cached per binary path)."""
    path = quarto_path()
    return _quarto_version_at(path) if path else None


def _version_text(v: tuple[int, ...] | None) -> str:
    return ".".join(map(str, v)) if v else "unknown"


def renderer_name(choice: str = "auto") -> str:
    """The renderer a run uses: ``"quarto"`` when asked, or (``"auto"``) when a Quarto >= 1.4 is on
    PATH; else ``"nbconvert"``.

    Parameters
    ----------
    choice : ``"auto"``, ``"quarto"`` or ``"nbconvert"``.

    Raises
    ------
    ValueError
        Unknown choice.
    RuntimeError
        ``"quarto"`` asked for without the binary on PATH, or with a Quarto older than 1.4.
    """
    if choice not in _RENDERERS:
        raise ValueError(f"renderer must be 'auto', 'quarto' or 'nbconvert', got {choice!r}")
    if choice == "nbconvert":
        return choice
    version = quarto_version()
    if choice == "auto":
        return "quarto" if version and version >= QUARTO_MIN_VERSION else "nbconvert"
    if not quarto_path():
        raise RuntimeError("renderer='quarto' but the quarto binary is not on PATH")
    if not version or version < QUARTO_MIN_VERSION:
        raise RuntimeError(
            f"renderer='quarto' but the quarto on PATH is version {_version_text(version)}; the kit needs "
            f"{_version_text(QUARTO_MIN_VERSION)} or later"
        )
    return choice


def renderer_label(which: str) -> str:
    """What the banner says made the page, e.g. ``"Quarto 1.7.34"`` or ``"nbconvert 7.17.2 (HTML
    exporter; Quarto not on PATH)"``."""
    if which == "quarto":
        return f"Quarto {_version_text(quarto_version())}"
    import nbconvert

    version = quarto_version()
    why = "Quarto not on PATH" if version is None and not quarto_path() else (
        f"Quarto {_version_text(version)} on PATH is older than {_version_text(QUARTO_MIN_VERSION)}"
        if version and version < QUARTO_MIN_VERSION else "Quarto not used"
    )
    return f"nbconvert {nbconvert.__version__} (HTML exporter; {why})"


def callout(kind: str, title: str, body: str, renderer: str) -> str:
    """A callout box in Markdown: Quarto's ``::: {.callout-<kind>}`` block, or (nbconvert) a
    blockquote with the title in bold.

    Parameters
    ----------
    kind : ``"note"``, ``"tip"``, ``"important"``, ``"warning"`` or ``"caution"`` (Quarto's kinds).
    title, body : Markdown text.
    renderer : ``"quarto"`` or ``"nbconvert"``.

    Raises
    ------
    ValueError
        Unknown kind.
    """
    if kind not in ("note", "tip", "important", "warning", "caution"):
        raise ValueError(f"callout kind must be note, tip, important, warning or caution, got {kind!r}")
    if renderer == "quarto":
        return f'::: {{.callout-{kind} title="{title.replace(chr(34), chr(39))}"}}\n{body}\n:::'
    quoted = "\n".join(f"> {line}" if line else ">" for line in body.splitlines())
    return f"> **{title}**\n>\n{quoted}"


def _banner_cell(which: str, run_info: dict | None):
    import nbformat

    lines = [f"Rendered by {renderer_label(which)} on {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}."]
    if run_info:
        commit = str(run_info.get("git_commit", ""))[:12]
        lines.append(
            f"Run `{run_info.get('run_id')}`, profile `{run_info.get('profile')}`, git commit `{commit}`"
            f"{' (uncommitted changes)' if run_info.get('git_dirty') else ''}, "
            f"data sha256 `{str(run_info.get('data_sha256', ''))[:16]}...`."
        )
    cell = nbformat.v4.new_markdown_cell(callout("note", "Provenance", "  \n".join(lines), which))
    cell.metadata["tags"] = ["kit-banner"]
    return cell


def _insert_banner(nb, banner) -> None:
    """Put the banner right under the notebook's ``# Title``: a first Markdown cell starting with a
    level-1 heading is split into the heading and the rest, the banner going between (so Quarto
    takes the page title from the heading and shows the banner under it); otherwise the banner goes
    first."""
    import nbformat

    first = nb.cells[0] if nb.cells else None
    if first is not None and first.cell_type == "markdown":
        text = first.source if isinstance(first.source, str) else "".join(first.source)
        m = re.match(r"\s*(# [^\n]+)\n?(.*)\Z", text, flags=re.S)
        if m:
            first.source = m.group(1)
            rest = m.group(2).strip("\n")
            nb.cells.insert(1, banner)
            if rest.strip():
                nb.cells.insert(2, nbformat.v4.new_markdown_cell(rest))
            return
    nb.cells.insert(0, banner)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _caveats_as_callouts(nb, which: str) -> None:
    """Under Quarto, a Markdown cell ``## Caveats`` followed by its list becomes the heading and a
    warning callout holding the list (nbconvert shows the cell as written)."""
    if which != "quarto":
        return
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        m = re.match(r"\s*(## Caveats[^\n]*)\n(.*\S.*)\Z", cell.source, flags=re.S)
        if m and ":::" not in m.group(2):
            cell.source = f"{m.group(1)}\n\n" + callout("warning", "What to distrust in this stage", m.group(2).strip("\n"), which)


def quarto_project(folder, render: list[str], config: dict | None = None) -> Path:
    """Write a Quarto project into ``folder``: the repository's ``_quarto.yml`` with
    ``project.render`` set to ``render`` (and ``config`` merged over it, nested mappings key by key) and
    the theme layer ``theme.scss`` beside it. Returns the folder.

    Raises
    ------
    FileNotFoundError
        ``_quarto.yml`` or ``theme.scss`` is missing from the repository.
    """
    folder = Path(folder)
    settings = _merge(yaml.safe_load(QUARTO_CONFIG.read_text()) or {}, config or {})
    settings.setdefault("project", {})["render"] = list(render)
    (folder / "_quarto.yml").write_text(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
    shutil.copyfile(QUARTO_THEME, folder / QUARTO_THEME.name)
    return folder


def run_quarto(args: list[str], cwd, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run ``quarto <args>`` in ``cwd`` (a temporary project folder, never the repository).

    Raises
    ------
    RuntimeError
        Quarto exited with an error (the end of its output is in the message) or timed out.
    """
    try:
        proc = subprocess.run([quarto_path() or "quarto", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"quarto {' '.join(args)} timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"quarto {' '.join(args)} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-2000:]}")
    return proc


def front_matter(nb) -> tuple[int | None, dict]:
    """(index, mapping) of a notebook's Quarto front matter: its first raw cell whose text is a YAML
    block between ``---`` lines (e.g. ``format: dashboard``); ``(None, {})`` when there is none or it
    is not a valid YAML mapping."""
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
    """Render an executed notebook to a self-contained HTML page beside it (``<stem>.html``).

    With Quarto: the notebook plus banner is written as ``<stem>.ipynb`` into a temporary project
    folder (:func:`quarto_project`), rendered there with ``quarto render <stem>.ipynb --to html
    --no-execute`` (settings from ``_quarto.yml``: table of contents, folded code, embedded
    resources, the cosmo theme with the offline layer ``theme.scss``), and the page moved beside the
    notebook; the folder is then removed. With nbconvert: its HTML exporter with images embedded.
    Either way a banner under the title says which renderer made the page (with its version) and,
    when ``run_info`` is given, the run id, git commit and data sha256. Cells tagged ``remove-input``
    show only their outputs; under Quarto a ``## Caveats`` cell's list is shown in a warning callout.
    A notebook whose front matter (a raw YAML cell, see :func:`front_matter`) asks for ``format:
    dashboard`` is rendered by Quarto as a dashboard (``--to dashboard``: rows of cards, cell option
    ``#| title:`` naming a card, resources embedded); nbconvert shows the same cells one after the
    other, with the front matter's title as the heading instead of its YAML.

    Parameters
    ----------
    ipynb : path of an executed notebook (absolute or relative to the current directory).
    renderer : ``"auto"``, ``"quarto"`` or ``"nbconvert"`` (see :func:`renderer_name`).
    run_info : the run's ``run.json`` contents (keys ``run_id``, ``profile``, ``git_commit``,
        ``git_dirty``, ``data_sha256``), or None.

    Returns
    -------
    Path of the HTML file (written atomically).

    Raises
    ------
    FileNotFoundError
        The notebook does not exist.
    RuntimeError
        ``renderer='quarto'`` without a usable binary, or the renderer failed.
    """
    import nbformat

    ipynb = Path(ipynb).resolve()
    if not ipynb.is_file():
        raise FileNotFoundError(f"notebook not found: {ipynb}")
    which = renderer_name(renderer)
    nb = nbformat.read(ipynb, as_version=4)
    fm_index, fm = front_matter(nb)
    banner = _banner_cell(which, run_info)
    if fm_index is None:
        _insert_banner(nb, banner)
    else:  # the front matter stays where it is; nbconvert would print its YAML: its title becomes the heading instead
        if which == "nbconvert":
            nb.cells[fm_index] = nbformat.v4.new_markdown_cell(f"# {fm['title']}" if fm.get("title") else "")
        nb.cells.insert(fm_index + 1, banner)
    _caveats_as_callouts(nb, which)
    fmt = _quarto_format(fm)
    out = ipynb.with_suffix(".html")
    if which == "quarto":
        with tempfile.TemporaryDirectory(prefix="kit-quarto-") as tmp:
            name = f"{ipynb.stem}.ipynb"
            quarto_project(tmp, [name])
            nbformat.write(nb, Path(tmp) / name)
            extra = ["-M", "embed-resources:true"] if fmt != "html" else []  # html takes it from the project's settings
            run_quarto(["render", name, "--to", fmt, "--no-execute", *extra], cwd=tmp)
            page = Path(tmp) / f"{ipynb.stem}.html"
            if not page.exists():
                raise RuntimeError(f"quarto render reported success but wrote no {page.name} for {ipynb}")
            with atomic_path(out) as dst:
                shutil.copyfile(page, dst)
    else:
        from nbconvert import HTMLExporter
        from nbconvert.preprocessors import TagRemovePreprocessor

        exporter = HTMLExporter(embed_images=True)
        exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags={"remove-input"}), enabled=True)
        body, _ = exporter.from_notebook_node(nb)
        atomic_write_text(out, body)
    return out


# --- executing: the kernel's transport and a line per stage ------------------------------------


@functools.lru_cache(maxsize=1)
def _ipc_kernel_manager():
    from jupyter_client import AsyncKernelManager
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        """A kernel manager whose kernel talks over Unix-domain sockets (IPC) in the system temp
        folder instead of TCP on localhost: nothing is reachable from the network and ipykernel has
        no reason to warn about unencrypted TCP. The socket files are removed when the kernel stops."""

        @default("transport")
        def _default_transport(self):
            return "ipc"

        @default("ip")
        def _default_ip(self):
            return os.path.join(tempfile.gettempdir(), f"kit-kernel-{uuid.uuid4().hex[:12]}")

    return IPCKernelManager


def execute_options(label: str) -> dict:
    """Keyword arguments for ``papermill.execute_notebook`` that make a stage followable and quiet:
    a progress bar over its cells on stderr, titled ``label`` (papermill's tqdm bar) when stderr is a
    terminal (a cron log gets the per-stage lines only), and the kernel on IPC transport (no
    "running over TCP without encryption" warning)."""
    bar = {"desc": label, "mininterval": 1.0, "file": sys.stderr, "leave": False} if sys.stderr.isatty() else False
    return {
        "progress_bar": bar,
        "log_output": False,
        "kernel_manager_class": _ipc_kernel_manager(),
    }


def stage_line(index: int, total: int, name: str, record: dict, started: float, renderer: str) -> str:
    """Print (to stdout, flushed) and return one line for a finished stage, e.g.
    ``[2/4] 20_train         ok       144.3 s  (run 166.7 s)  page by quarto in 14.9 s``.

    Parameters
    ----------
    index, total : the stage's position (1-based) and the number of stages.
    name : notebook stem.
    record : the stage's entry in ``run.json`` (``status``, ``seconds`` and, when a page was
        rendered, ``render_seconds``).
    started : ``time.perf_counter()`` at the start of the run (for the run's elapsed time).
    renderer : ``"quarto"`` or ``"nbconvert"``.
    """
    page = (f"page by {renderer} in {record['render_seconds']:.1f} s" if "render_seconds" in record else "no page")
    line = (f"[{index}/{total}] {name:<16s} {record.get('status', '?'):<7s} {record.get('seconds', 0):7.1f} s  "
            f"(run {time.perf_counter() - started:.1f} s)  {page}")
    print(line, flush=True)
    return line
