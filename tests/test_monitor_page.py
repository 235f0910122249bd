"""The monitoring page (notebooks/60_monitor): its Quarto front matter asks for a dashboard, which the
Quarto path renders with ``--to dashboard`` (checked with a fake ``quarto`` that records its
arguments) and the nbconvert fallback shows as a plain page titled from the front matter (no YAML
printed). The page's own run is the notebook test (nbmake) and the 60-day replay of docs/monitoring.md."""

import os
import re
import stat
from pathlib import Path

import nbformat

from kit.reports import render, render_notebook

ROOT = Path(__file__).resolve().parent.parent


def test_the_monitor_notebook_declares_a_dashboard():
    nb = nbformat.read(ROOT / "notebooks" / "60_monitor.ipynb", as_version=4)
    i, meta = render.front_matter(nb)
    assert i == 0 and meta["format"] == "dashboard" and meta["title"].startswith("60 · Monitoring")
    assert render._quarto_format(meta) == "dashboard"
    assert render._quarto_format({"format": {"dashboard": {"orientation": "rows"}}}) == "dashboard"
    explore = nbformat.read(ROOT / "notebooks" / "10_explore.ipynb", as_version=4)
    assert render.front_matter(explore) == (None, {}) and render._quarto_format({}) == "html"


def test_nbconvert_shows_the_title_not_the_yaml(tmp_path):
    src = tmp_path / "60_monitor.ipynb"
    src.write_bytes((ROOT / "notebooks" / "60_monitor.ipynb").read_bytes())
    html = render_notebook(src, "nbconvert").read_text()
    assert "format: dashboard" not in html
    assert re.search(r"<h1[^>]*>60 · Monitoring: the daily loop", html)


def test_quarto_is_asked_for_a_dashboard_only_by_a_notebook_that_declares_one(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv.log"
    fake = bin_dir / "quarto"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo 1.7.34; exit 0; fi\n'
        f'echo "$@" >> {log}\n'
        'out="${2%.ipynb}.html"\n'  # quarto render NAME.ipynb ... writes NAME.html in the project folder
        'echo "<html>fake</html>" > "$out"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for stem in ("60_monitor", "10_explore"):
        src = tmp_path / f"{stem}.ipynb"
        src.write_bytes((ROOT / "notebooks" / f"{stem}.ipynb").read_bytes())
        assert render_notebook(src, "quarto").read_text().strip() == "<html>fake</html>"
    calls = log.read_text().splitlines()
    assert "--to dashboard" in calls[0] and "--to html" in calls[1]
