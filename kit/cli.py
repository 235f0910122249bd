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
    # where the training tasks run (issue 18): passed to the notebooks' backend/address/workers/threads parameters
    p_run.add_argument("--backend", choices=["serial", "process", "ray"], default=None,
                       help="run the walk-forward tasks in this kernel (serial), a local process pool, or on Ray (default: the profile's, else serial)")
    p_run.add_argument("--address", default=None, help="ray: the cluster's address (default: $RAY_ADDRESS, else a local Ray instance)")
    p_run.add_argument("--workers", type=int, default=None, help="process: pool size (default: cores available / threads)")
    p_run.add_argument("--threads", type=int, default=None, help="threads per task (default: $KIT_TASK_THREADS or 1; results depend on it)")
    p_render = sub.add_parser("render", help="render an executed notebook to HTML")
    p_render.add_argument("notebook")
    p_render.add_argument("--renderer", default="auto", choices=["auto", "quarto", "nbconvert"])
    p_paper = sub.add_parser("paper", help="the daily paper-trading step (or a replay over history)")
    p_paper.add_argument("--as-of", default=None, help="trading day YYYY-MM-DD (decisions at its close); default: the data's last day")
    p_paper.add_argument("--profile", default="paper", help="profile with a 'paper' section (default: paper)")
    p_paper.add_argument("--account", default=None, help="override the account name")
    p_paper.add_argument("--db", default=None, help="database URL (default: $KIT_DB_URL or data/state/kit.db)")
    p_paper.add_argument("--replay", nargs=2, metavar=("START", "END"), default=None, help="step day by day through [START, END] instead")
    p_paper.add_argument("--prepare-model", metavar="UNTIL", default=None, help="train, register and gate a model on data up to UNTIL first")
    p_paper.add_argument("--reset", action="store_true", help="delete the account's state (orders, fills, positions, runs) and stop")
    p_paper.add_argument("--broker", choices=["sim", "alpaca"], default="sim", help="sim: the simulated broker (default); alpaca: Alpaca's paper API (keys from APCA_API_KEY_ID / APCA_API_SECRET_KEY)")
    p_paper.add_argument("--bars", choices=["parquet", "alpaca"], default="parquet", help="daily bars from the Parquet store (default) or Alpaca market data")
    p_index = sub.add_parser("index", help="rebuild reports/index.html")
    p_index.add_argument("--reports-dir", default=None)
    args = parser.parse_args(argv)

    from . import reports

    if args.command == "run":
        from .paths import REPORTS_DIR

        reports_dir = Path(args.reports_dir) if args.reports_dir else REPORTS_DIR
        try:
            run_dir = reports.run_profile(
                args.profile, reports_dir=reports_dir, renderer=args.renderer, notebooks=args.notebooks, reuse_artifacts=args.reuse_artifacts,
                exec_options={"backend": args.backend, "address": args.address, "workers": args.workers, "threads": args.threads},
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
    if args.command == "paper":
        return _paper(args)
    if args.command == "render":
        print(reports.render_notebook(args.notebook, args.renderer))
        return 0
    if args.command == "index":
        from .paths import REPORTS_DIR

        print(reports.build_index(Path(args.reports_dir) if args.reports_dir else REPORTS_DIR))
        return 0
    return 2  # pragma: no cover


def _paper(args) -> int:
    """``python -m kit paper``: exit 0 done (or already done), 75 locked, 2 refused, 69 broker or
    market data unavailable or misconfigured (message on stderr)."""
    from . import live as paper
    from . import reports

    try:
        profile = reports.load_profile(args.profile)
    except reports.ProfileError as exc:
        print(f"kit paper: {exc}", file=sys.stderr)
        return 2
    cfg = dict(profile.get("paper") or {})
    if args.account:
        cfg["account"] = args.account
    try:
        config = paper.PaperConfig.from_dict(cfg)
        if args.reset:
            paper.SimBroker(args.db, config.account).reset()
            print(f"account {config.account!r}: state deleted")
            return 0
        if args.prepare_model:
            row = paper.prepare_model(config, args.prepare_model, db=args.db)
            print(f"registered {row['label']}: {row['status']}" + (f" (gate: {'; '.join(row['gate_reasons'])})" if row["gate_reasons"] else ""))
        if args.replay:
            r = paper.replay(args.replay[0], args.replay[1], config, db=args.db, progress=True)
            print(f"replayed {len(r.days)} days with {r.model} ({r.model_status}); equity {r.days['equity'].iloc[-1]:.2f}; "
                  f"max |paper / backtest - 1| = {r.max_rel_diff:.2e}")
            return 0
        if args.prepare_model and not args.as_of:
            return 0
        as_of = args.as_of
        if as_of is None:
            as_of = paper.load_history(config, "2100-01-01")["date"].max()
        broker = source = None
        if args.broker == "alpaca":
            from .live.alpaca import AlpacaBroker

            broker = AlpacaBroker(paper=True)
        if args.bars == "alpaca":
            from .data.sources import AlpacaBarSource

            source = AlpacaBarSource()
        day = paper.run_day(as_of, config, broker=broker, source=source, db=args.db)
    except paper.PaperLockedError as exc:
        print(f"kit paper: {exc}", file=sys.stderr)
        return 75
    except (paper.PaperError, ValueError) as exc:
        print(f"kit paper: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - broker and data-source errors: message only (never keys)
        from .live.brokers import BrokerError

        if isinstance(exc, BrokerError):
            print(f"kit paper: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 69
        raise
    print(f"{day.as_of.date()}: {day.status}; model {day.model}; equity {day.equity:.2f}; cash {day.cash:.2f}; "
          f"orders {0 if day.orders is None else len(day.orders)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
