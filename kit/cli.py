"""Command line: ``python -m kit <command>`` (also installed as ``kit``).

Commands
--------
run     execute a profile's notebooks into a new run folder and render them (``--profile NAME``)
paper   the daily paper-trading step (or a replay over history)
daily   the day's loop: validated data, the paper step, the ledger, drift checks, retraining when the
        policy says so, metrics to Prometheus, the webhook alert (``--profile NAME``, ``monitor`` section)
render  render an executed notebook to HTML (Quarto if on PATH, else nbconvert)
index   rebuild ``reports/index.html`` (and mark runs whose process died as interrupted)

Every error is one line on stderr (``kit <command>: <what>``) and a distinct exit status; an
unexpected error's traceback goes to a log file named in that line. Exit statuses:

==  =======================================================================================
0   done (``paper``, ``daily``: also a day already done)
1   a notebook of the run failed (the run is recorded ``failed``; details in its error.log)
2   invalid arguments, profile or parameters; a refused day (nothing ran)
3   ``daily``: done, and something needs a person: an alert was raised (data findings of severity
    error, feature drift, accuracy or error significantly beyond the gate, drawdown beyond the limit)
    or a retrained model failed its gate (or its training failed); the alerts are in the output,
    the database (``monitor_runs``), the metrics and the webhook
65  data or integrity error: unreadable data, a tampered ledger, a checkpoint that fails its
    checks
69  a broker or market-data service unavailable or misconfigured (nothing sent)
70  unexpected error (a bug): traceback in the named log
73  cannot write: the reports folder, the database or the disk (found before anything ran)
75  locked: another run or paper step holds the lock (nothing done)
130 interrupted (Ctrl-C)
==  =======================================================================================
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DATA, EXIT_UNAVAILABLE, EXIT_SOFTWARE, EXIT_CANTCREAT, EXIT_LOCKED, EXIT_INTERRUPTED = (
    0, 1, 2, 65, 69, 70, 73, 75, 130,
)
EXIT_NEEDS_PERSON = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kit", description="Deep momentum research kit")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run a profile of notebooks (params/<profile>.yaml)")
    which = p_run.add_mutually_exclusive_group()
    which.add_argument("--profile", default=None, help="profile name in params/ (default: smoke)")
    which.add_argument("--profile-file", default=None, help="a profile YAML file anywhere")
    p_run.add_argument("--renderer", default="auto", choices=["auto", "quarto", "nbconvert"])
    p_run.add_argument("--reports-dir", default=None, help="reports folder (default: reports/ in the repository)")
    p_run.add_argument("--notebooks", nargs="*", default=None, help="run only these notebook stems (e.g. 30_backtest)")
    p_run.add_argument(
        "--reuse-artifacts", default=None, metavar="RUN",
        help="copy an earlier run's artifacts and metrics first (run id or folder), e.g. to re-run 30_backtest without retraining",
    )
    p_render = sub.add_parser("render", help="render an executed notebook to HTML")
    p_render.add_argument("notebook")
    p_render.add_argument("--renderer", default="auto", choices=["auto", "quarto", "nbconvert"])
    p_paper = sub.add_parser("paper", help="the daily paper-trading step (or a replay over history)")
    p_paper.add_argument("--as-of", default=None, help="trading day YYYY-MM-DD (decisions at its close); default: the data's last day")
    p_paper.add_argument("--profile", default="paper", help="profile with a 'paper' section (default: paper)")
    p_paper.add_argument("--profile-file", default=None, help="a profile YAML file anywhere, instead of --profile")
    p_paper.add_argument("--account", default=None, help="override the account name")
    p_paper.add_argument("--db", default=None, help="database URL (default: $KIT_DB_URL or data/state/kit.db)")
    p_paper.add_argument("--replay", nargs=2, metavar=("START", "END"), default=None, help="step day by day through [START, END] instead")
    p_paper.add_argument("--prepare-model", metavar="UNTIL", default=None, help="train, register and gate a model on data up to UNTIL first")
    p_paper.add_argument("--reset", action="store_true", help="delete the account's state (orders, fills, positions, runs) and stop")
    p_paper.add_argument("--broker", choices=["sim", "alpaca"], default="sim", help="sim: the simulated broker (default); alpaca: Alpaca's paper API (keys from APCA_API_KEY_ID / APCA_API_SECRET_KEY)")
    p_paper.add_argument("--bars", choices=["parquet", "alpaca"], default="parquet", help="daily bars from the Parquet store (default) or Alpaca market data")
    p_daily = sub.add_parser("daily", help="the day's loop: data, paper step, ledger, drift checks, retraining, metrics, alerts")
    p_daily.add_argument("--as-of", default=None, help="trading day YYYY-MM-DD (default: the data's last day)")
    p_daily.add_argument("--profile", default="paper", help="profile with 'paper' and 'monitor' sections (default: paper)")
    p_daily.add_argument("--profile-file", default=None, help="a profile YAML file anywhere, instead of --profile")
    p_daily.add_argument("--account", default=None, help="override the account name")
    p_daily.add_argument("--db", default=None, help="database URL (default: $KIT_DB_URL or data/state/kit.db)")
    p_daily.add_argument("--replay", nargs=2, metavar=("START", "END"), default=None,
                         help="run the loop for every trading day in [START, END] (simulated broker, one process)")
    p_daily.add_argument("--prepare-model", metavar="UNTIL", default=None,
                         help="first train, register and gate (the profile's monitor.gate) a model on data up to UNTIL")
    p_daily.add_argument("--broker", choices=["sim", "alpaca"], default="sim", help="as for paper")
    p_daily.add_argument("--bars", choices=["parquet", "alpaca"], default="parquet", help="as for paper")
    p_index = sub.add_parser("index", help="rebuild reports/index.html")
    p_index.add_argument("--reports-dir", default=None)
    return parser


def main(argv=None) -> int:
    """Entry point; returns the process exit status (module docstring)."""
    args = _parser().parse_args(argv)
    handler = {"run": _run, "paper": _paper, "daily": _daily, "render": _render, "index": _index}[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        print(f"kit {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - every error becomes one line and an exit status
        return _report(args.command, exc)


def _classify(exc: BaseException) -> int:
    """The exit status of an error (module docstring)."""
    import errno

    from .base.config import ConfigError
    from .base.locks import LockHeldError
    from .paths import PathEscapeError

    if isinstance(exc, LockHeldError):
        return EXIT_LOCKED
    names = {c.__name__ for c in type(exc).__mro__}
    if names & {"StageFailed"}:
        return EXIT_FAILED
    if names & {"NotWritableError"} or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT)):
        return EXIT_CANTCREAT
    if names & {"BrokerError"}:
        return EXIT_UNAVAILABLE
    if names & {"DataFormatError", "DataValidationError", "TamperedLedgerError", "LedgerError", "CheckpointError", "CheckpointMismatchError",
                "RegistryError", "SchemaVersionError"}:
        return EXIT_DATA
    if isinstance(exc, ConfigError | PathEscapeError) or names & {"ProfileError", "PaperError"} or isinstance(exc, ValueError):
        return EXIT_USAGE
    return EXIT_SOFTWARE


def _report(command: str, exc: BaseException) -> int:
    """Print the error as one line (its traceback, when unexpected, to a log file) and return its
    exit status."""
    code = _classify(exc)
    lines = str(exc).strip().splitlines()
    message = lines[0] if lines else ""
    if type(exc).__name__ == "StageFailed":
        print(f"kit {command}: {message} (run {exc.run_dir.name} recorded failed; details in {exc.run_dir / 'error.log'})", file=sys.stderr)
        return code
    where = ""
    if code == EXIT_SOFTWARE:
        where = f" (details in {_log_traceback(command, exc)})"
    print(f"kit {command}: {type(exc).__name__}: {message}{where}", file=sys.stderr)
    return code


def _log_traceback(command: str, exc: BaseException) -> str:
    import datetime as dt
    import traceback

    from .paths import state_dir

    try:
        path = state_dir() / "logs" / f"kit-{command}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S')}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(exc)))
        return str(path)
    except OSError:
        import tempfile

        fd, name = tempfile.mkstemp(prefix=f"kit-{command}-", suffix=".log")
        with open(fd, "w") as fh:
            fh.write("".join(traceback.format_exception(exc)))
        return name


def _run(args) -> int:
    # the lock is checked before anything heavy is imported, so a second run exits at once
    from .base.locks import lock_is_held
    from .paths import REPORTS_DIR

    reports_dir = Path(args.reports_dir) if args.reports_dir else REPORTS_DIR
    if lock_is_held(reports_dir / ".lock"):
        print(f"kit run: another run holds {reports_dir / '.lock'}; not starting", file=sys.stderr)
        return EXIT_LOCKED
    from . import reports

    profile = args.profile if args.profile or args.profile_file else "smoke"
    run_dir = reports.run_profile(
        profile if not args.profile_file else None, reports_dir=reports_dir, renderer=args.renderer, notebooks=args.notebooks,
        reuse_artifacts=args.reuse_artifacts, profile_file=args.profile_file,
    )
    print(f"run folder: {run_dir}")
    print(f"index:      {reports_dir / 'index.html'}")
    return EXIT_OK


def _render(args) -> int:
    from . import reports

    print(reports.render_notebook(args.notebook, args.renderer))
    return EXIT_OK


def _index(args) -> int:
    from . import reports
    from .base.locks import LockHeldError
    from .paths import REPORTS_DIR

    reports_dir = Path(args.reports_dir) if args.reports_dir else REPORTS_DIR
    try:
        with reports.run_lock(reports_dir):
            gone = reports.mark_interrupted(reports_dir, lock_held=True)
            path = reports.build_index(reports_dir)
    except LockHeldError:  # a run is going: mark only runs whose process is gone
        gone = reports.mark_interrupted(reports_dir, lock_held=False)
        path = reports.build_index(reports_dir)
    if gone:
        print(f"marked interrupted: {', '.join(gone)}")
    print(path)
    return EXIT_OK


def _paper(args) -> int:
    """``python -m kit paper``: the daily step, a replay, model preparation or a reset."""
    from . import live, reports

    profile = reports.load_profile(None if args.profile_file else args.profile, path=args.profile_file)
    cfg = dict(profile.get("paper") or {})
    if args.account:
        cfg["account"] = args.account
    config = live.PaperConfig.from_dict(cfg)
    if args.reset:
        live.SimBroker(args.db, config.account).reset()
        print(f"account {config.account!r}: state deleted")
        return EXIT_OK
    reports.check_writable(config.state_path(), [args.db or ""], min_free_mb=50)
    if args.prepare_model:
        row = live.prepare_model(config, args.prepare_model, db=args.db)
        print(f"registered {row['label']}: {row['status']}" + (f" (gate: {'; '.join(row['gate_reasons'])})" if row["gate_reasons"] else ""))
    if args.replay:
        r = live.replay(args.replay[0], args.replay[1], config, db=args.db, progress=True)
        print(f"replayed {len(r.days)} days with {r.model} ({r.model_status}); equity {r.days['equity'].iloc[-1]:.2f}; "
              f"max |paper / backtest - 1| = {r.max_rel_diff:.2e}")
        return EXIT_OK
    if args.prepare_model and not args.as_of:
        return EXIT_OK
    as_of = args.as_of
    if as_of is None:
        as_of = live.load_history(config, "2100-01-01")["date"].max()
    broker = source = None
    if args.broker == "alpaca":
        from .live.alpaca import AlpacaBroker

        broker = AlpacaBroker(paper=True)
    if args.bars == "alpaca":
        from .data.sources import AlpacaBarSource

        source = AlpacaBarSource()
    day = live.run_day(as_of, config, broker=broker, source=source, db=args.db)
    print(f"{day.as_of.date()}: {day.status}; model {day.model}; equity {day.equity:.2f}; cash {day.cash:.2f}; "
          f"orders {0 if day.orders is None else len(day.orders)}")
    return EXIT_OK


def _daily(args) -> int:
    """``python -m kit daily``: the day's loop (:func:`kit.live.loop.run_daily`), or a replay of it."""
    from . import live, reports
    from .live import loop

    profile = reports.load_profile(None if args.profile_file else args.profile, path=args.profile_file)
    cfg = dict(profile.get("paper") or {})
    if args.account:
        cfg["account"] = args.account
    config = live.PaperConfig.from_dict(cfg)
    monitor = loop.MonitorConfig.from_dict(profile.get("monitor"))
    if args.replay and args.broker != "sim":
        raise ValueError("--replay runs the simulated broker; leave out --broker")
    reports.check_writable(config.state_path(), [args.db or ""], min_free_mb=50)
    broker = source = None
    if args.bars == "alpaca":
        from .data.sources import AlpacaBarSource

        source = AlpacaBarSource()
    if args.prepare_model:
        row = live.prepare_model(config, args.prepare_model, db=args.db, source=source, gate=monitor.gate.to_dict())
        print(f"registered {row['label']}: {row['status']}" + (f" (gate: {'; '.join(row['gate_reasons'])})" if row["gate_reasons"] else ""))
        if not args.as_of and not args.replay:
            return EXIT_OK
    if args.replay:
        results = loop.replay_daily(args.replay[0], args.replay[1], config, monitor, profile=profile["name"], db=args.db, source=source,
                                    on_day=lambda r: print(r.summary(), flush=True))
        flagged = [r for r in results if r.needs_person and r.status == "done"]
        print(f"replayed {len(results)} days: {len(flagged)} needed a person")
        return EXIT_NEEDS_PERSON if flagged else EXIT_OK
    if args.broker == "alpaca":
        from .live.alpaca import AlpacaBroker

        broker = AlpacaBroker(paper=True)
    as_of = args.as_of
    if as_of is None:
        as_of = live.load_history(config, "2100-01-01", source)["date"].max()
    r = loop.run_daily(as_of, config, monitor, profile=profile["name"], db=args.db, broker=broker, source=source)
    print(r.summary())
    for a in r.alerts:
        print(f"  alert {a['kind']}: {a['message']}")
    return EXIT_NEEDS_PERSON if r.needs_person and r.status == "done" else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
