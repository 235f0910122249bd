"""Command line: ``python -m kit <command>`` (also installed as ``kit``).

Commands
--------
run     execute a profile's notebooks into a new run folder and render them (``--profile NAME``)
render  render an executed notebook to HTML (Quarto if on PATH, else nbconvert)
index   rebuild ``reports/index.html``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    """Entry point; returns the process exit code (75 when another run holds the lock)."""
    parser = argparse.ArgumentParser(prog="python -m kit", description="Deep momentum research kit")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run a profile of notebooks (params/<profile>.yaml)")
    p_run.add_argument("--profile", default="smoke", help="profile name in params/ or a YAML path (default: smoke)")
    p_run.add_argument("--renderer", default="auto", choices=["auto", "quarto", "nbconvert"])
    p_run.add_argument("--reports-dir", default=None, help="reports folder (default: reports/ in the repository)")
    p_run.add_argument("--notebooks", nargs="*", default=None, help="run only these notebook stems")
    p_run.add_argument(
        "--reuse-artifacts", default=None, metavar="RUN",
        help="copy an earlier run's artifacts and metrics first (run id or folder), e.g. to re-run 30_backtest without retraining",
    )
    p_render = sub.add_parser("render", help="render an executed notebook to HTML")
    p_render.add_argument("notebook")
    p_render.add_argument("--renderer", default="auto", choices=["auto", "quarto", "nbconvert"])
    p_index = sub.add_parser("index", help="rebuild reports/index.html")
    p_index.add_argument("--reports-dir", default=None)
    args = parser.parse_args(argv)

    from . import reports

    if args.command == "run":
        reports_dir = Path(args.reports_dir) if args.reports_dir else reports.REPORTS_DIR
        try:
            run_dir = reports.run_profile(
                args.profile, reports_dir=reports_dir, renderer=args.renderer, notebooks=args.notebooks, reuse_artifacts=args.reuse_artifacts
            )
        except reports.RunLockedError as exc:
            print(f"kit run: {exc}", file=sys.stderr)
            return 75
        except reports.ProfileError as exc:
            print(f"kit run: {exc}", file=sys.stderr)
            return 2
        print(f"run folder: {run_dir}")
        print(f"index:      {reports_dir / 'index.html'}")
        return 0
    if args.command == "render":
        print(reports.render_notebook(args.notebook, args.renderer))
        return 0
    if args.command == "index":
        print(reports.build_index(Path(args.reports_dir) if args.reports_dir else reports.REPORTS_DIR))
        return 0
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
