"""Command line: ``python -m kit <command>`` (also installed as ``kit``).

Commands
--------
run     execute a profile's notebooks into a new run folder and render them (``--profile NAME``)
paper   the daily paper-trading step (or a replay over history)
daily   the day's loop: validated data, the paper step, the ledger, drift checks, retraining when the
        policy says so, metrics to Prometheus, the webhook alert (``--profile NAME``, ``monitor`` section)
render  render an executed notebook to HTML (Quarto if on PATH, else nbconvert)
index   rebuild the site of runs (``reports/index.html``; ``--compare OLD NEW`` for ``compare.html``) and
        mark runs whose process died as interrupted
data    ``data check PATH [--json] [--strict]`` (validation findings; exit 1 with ``--strict`` when any
        finding is an error) and ``data clean PATH --out FILE`` (the cleaned store and its report)
features ``features build --set cpd [--method gp|bocpd] [--windows 21 126] [--profile NAME | --symbols ...]``
        (changepoint features into the on-disk cache, resumable; ``features list`` shows the cache)

Every error is one line on stderr (``kit <command>: <what>``) and a distinct exit status; an
unexpected error's traceback goes to a log file named in that line. Exit statuses:

==  =======================================================================================
0   done (``paper``, ``daily``: also a day already done)
1   a notebook of the run failed (the run is recorded ``failed``; details in its error.log);
    ``data check --strict``: the file has findings of severity error
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
    p_index = sub.add_parser("index", help="rebuild the site of runs (reports/index.html, run pages, compare.html)")
    p_index.add_argument("--reports-dir", default=None)
    p_index.add_argument("--renderer", default="auto", choices=["auto", "quarto", "nbconvert"], help="nbconvert: plain HTML")
    p_index.add_argument("--compare", nargs=2, metavar=("OLD_RUN", "NEW_RUN"), default=None, help="the two runs of compare.html")
    p_index.add_argument("--summaries", action="store_true", help="also write summary.html for runs that have none")
    p_index.add_argument("--full", action="store_true", help="re-render every run page")
    _data_parser(sub)
    _features_parser(sub)
    return parser


def main(argv=None) -> int:
    """Entry point; returns the process exit status (module docstring)."""
    args = _parser().parse_args(argv)
    handler = {"run": _run, "paper": _paper, "daily": _daily, "render": _render, "index": _index, "data": _data, "features": _features}[args.command]
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
        exec_options={"backend": args.backend, "address": args.address, "workers": args.workers, "threads": args.threads},
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

    def build():
        if args.summaries:
            for run in sorted((reports_dir / "runs").glob("*/run.json")):
                if not (run.parent / "summary.html").exists():
                    reports.summary.summary_page(run.parent, reports.renderer_name(args.renderer), None)
        return reports.build_site(reports_dir, args.renderer, tuple(args.compare) if args.compare else None, args.full)

    try:
        with reports.run_lock(reports_dir):
            gone = reports.mark_interrupted(reports_dir, lock_held=True)
            path = build()
    except LockHeldError:  # a run is going: mark only runs whose process is gone
        gone = reports.mark_interrupted(reports_dir, lock_held=False)
        path = build()
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


def _data_parser(sub) -> None:
    """The ``data`` subcommands' arguments."""
    p_data = sub.add_parser("data", help="check or clean a price file (validation findings, cleaning policy)")
    data_sub = p_data.add_subparsers(dest="data_command", required=True)
    p_check = data_sub.add_parser("check", help="print every validation finding (exit 1 on errors with --strict)")
    p_check.add_argument("path", help="Parquet file, CSV file or folder of CSV files")
    p_check.add_argument("--json", action="store_true", help="one JSON object per finding and line")
    p_check.add_argument("--strict", action="store_true", help="exit 1 when any finding has severity error")
    p_check.add_argument("--date-format", default=None, help="strptime format of the date column (e.g. %%d/%%m/%%Y)")
    p_clean = data_sub.add_parser("clean", help="apply a cleaning policy and write the cleaned store with its report")
    p_clean.add_argument("path")
    p_clean.add_argument("--out", required=True, help="cleaned Parquet file to write (its report goes to OUT.report.json)")
    p_clean.add_argument("--policy", default="default", help="default, none, or a JSON mapping, e.g. '{\"error\": \"exclude\"}'")
    p_clean.add_argument("--date-format", default=None)


def _data(args) -> int:
    """``python -m kit data check|clean``: exit 0 done, 1 findings of severity error with ``--strict``,
    65 the file cannot be read (the message names the file, row, column and value), 2 an invalid
    cleaning policy."""
    import json

    import pandas as pd

    from . import data
    from .base import atomic_path, atomic_write_text, jsonable

    try:
        raw = data.read_prices(args.path, date_format=args.date_format)
        freq = data.infer_frequency(raw, str(args.path))
        market = data.source_market_moves(args.path) if not freq.intraday else None
        report = data.validate_prices(raw, market=market, frequency=freq.name, bars_per_year=freq.bars_per_year)
        if args.data_command == "clean":
            policy = data.CleaningPolicy.from_param(json.loads(args.policy) if args.policy.strip().startswith("{") else args.policy)
    except data.DataFormatError as exc:
        print(f"kit data {args.data_command}: {exc}", file=sys.stderr)
        return EXIT_DATA
    except ValueError as exc:
        print(f"kit data {args.data_command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    issues = report.issues
    if args.data_command == "check":
        if args.json:
            for row in issues.itertuples(index=False):
                print(json.dumps(jsonable({"check": row.check, "severity": row.severity, "symbol": row.symbol,
                                           "date": pd.Timestamp(row.date).isoformat() if freq.intraday else pd.Timestamp(row.date).date().isoformat(),
                                           "field": row.field, "value": row.value, "reason": row.reason})))
        else:
            print(f"{args.path}: {report.n_rows} rows, {report.n_symbols} symbols, {freq.name} bars; "
                  f"{len(issues)} findings ({report.n_errors} errors)")
            if len(issues):
                with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 80):
                    print(report.counts().to_string(index=False))
                    print()
                    print(issues.assign(date=pd.to_datetime(issues["date"]).dt.date if not freq.intraday else issues["date"]).to_string(index=False))
        return EXIT_FAILED if args.strict and report.n_errors else EXIT_OK
    cleaned, cleaning = data.clean_prices(raw, report, policy)
    out = Path(args.out)
    with atomic_path(out) as tmp:
        cleaned.to_parquet(tmp, index=False)
    rep_path = out.with_name(out.name + ".report.json")
    atomic_write_text(rep_path, json.dumps(jsonable(cleaning.to_dict()), indent=2))
    print(f"{out}: {cleaning.rows_after} rows ({cleaning.rows_before - cleaning.rows_after} removed by "
          f"{len(cleaning.actions)} findings); report {rep_path}")
    return EXIT_OK


def _features_parser(sub) -> None:
    """The ``features`` subcommands' arguments."""
    p_feat = sub.add_parser("features", help="build or list the cached changepoint features")
    feat_sub = p_feat.add_subparsers(dest="features_command", required=True)
    p_build = feat_sub.add_parser("build", help="compute changepoint features into the cache (resumable: a second build continues)")
    p_build.add_argument("--set", dest="feature_set", required=True, choices=["cpd"], help="the feature set to build (cpd: changepoint features)")
    p_build.add_argument("--method", choices=["gp", "bocpd"], default="gp",
                         help="gp: the GP changepoint severity and location (default); bocpd: Bayesian online changepoint detection")
    p_build.add_argument("--windows", type=int, nargs="+", default=None,
                         help="GP lookbacks (default: those the profile's feature specifications use, else 21 126); bocpd: the k values (default 5 21)")
    which = p_build.add_mutually_exclusive_group()
    which.add_argument("--profile", default=None, help="the universe of a profile's shared section (params/<NAME>.yaml)")
    which.add_argument("--profile-file", default=None, help="a profile YAML file anywhere")
    which.add_argument("--symbols", nargs="+", default=None, help="these symbols instead of a profile's universe")
    p_build.add_argument("--data-path", default=None, help="price store (default: the profile's, else $KIT_DATA or the committed store)")
    p_build.add_argument("--start", default=None, help="first date loaded (default: the profile's, else the store's first)")
    p_build.add_argument("--end", default=None, help="last date loaded (default: the profile's, else the store's last)")
    p_build.add_argument("--cleaning", default=None, help="cleaning policy (default: the profile's, else default)")
    p_build.add_argument("--cache-dir", default=None, help="cache folder (default: $KIT_STATE_DIR/features or data/state/features)")
    p_build.add_argument("--chunk-windows", type=int, default=20_000, help="rows per chunk, the unit of resumption (default 20000)")
    p_build.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_list = feat_sub.add_parser("list", help="the cache's files summarised by method, parameters and window")
    p_list.add_argument("--cache-dir", default=None)


def _features(args) -> int:
    """``python -m kit features build|list``: exit 0 done, 2 bad arguments or profile, 65 unreadable
    data, 130 interrupted (a second build resumes from the last finished chunk)."""
    from .features import cache as fc

    cache_dir = Path(args.cache_dir) if args.cache_dir else None
    if args.features_command == "list":
        entries = fc.cache_entries(cache_dir)
        if entries.empty:
            print(f"{cache_dir or fc.feature_cache_dir()}: no cached changepoint features")
            return EXIT_OK
        summary = entries.groupby(["method", "params_hash", "window"], dropna=False).agg(
            symbols=("symbol", "nunique"), files=("path", "size"), rows=("rows", "sum"), first=("first_date", "min"), last=("last_date", "max"))
        print(summary.reset_index().to_string(index=False))
        return EXIT_OK
    import time

    from . import data
    from .conventions import DEFAULT_CPD_LOOKBACKS
    from .features import bocpd as bo

    params, windows = {}, args.windows
    if args.profile or args.profile_file:
        from . import reports
        from .training.variants import resolve_model

        profile = reports.load_profile(None if args.profile_file else args.profile, path=args.profile_file)
        params = dict(profile.get("shared") or {})
        if windows is None and args.method == "gp":  # the lookbacks of the profile's feature specifications
            specs = set()
            for stem in profile.get("notebooks") or []:
                sp = reports.notebook_parameters(profile, stem, run_dir="")
                variants = sp.get("variants") if isinstance(sp.get("variants"), dict) else {}
                for name in sp.get("models") or []:
                    specs.add(resolve_model(name, variants, sp.get("features", "dmn")).features)
            lbs = sorted({int(t[3:]) for s in specs for t in s.split("+") if t.startswith("cpd")})
            if not lbs:
                raise ValueError(f"profile {profile['name']!r} uses no GP changepoint features (features/variants); give --windows")
            windows = lbs
    if windows is None:
        windows = list(DEFAULT_CPD_LOOKBACKS) if args.method == "gp" else list(bo.BOCPD_K)
    symbols = args.symbols if args.symbols else params.get("symbols") or []
    source = args.data_path or params.get("data_path") or None
    loaded = data.load_universe(
        source, symbols, 0 if args.symbols else int(params.get("n_symbols") or 0), params.get("universe_as_of"),
        args.start or params.get("start"), args.end or params.get("end"), universe=params.get("universe", "survivors"),
        cleaning=args.cleaning or params.get("cleaning", "default"),
    )
    close = data.wide_fields(loaded.prices)["close"]  # as the notebooks load it: the cache compares closes row by row
    t0 = time.perf_counter()
    print(f"{close.shape[1]} symbols, {close.index[0].date()} to {close.index[-1].date()}; method {args.method}, "
          f"{'lookbacks' if args.method == 'gp' else 'k'} {list(windows)}", flush=True)
    build = fc.build_cpd_features(close, tuple(windows), args.method, cache_dir, data.data_sha256(source),
                                  chunk_windows=args.chunk_windows, progress=not args.no_progress)
    print(f"{build.cache_dir}: {build.rows_computed} rows computed ({build.windows_fitted} "
          f"{'windows fitted' if args.method == 'gp' else 'cells'}), {build.rows_reused} read from the cache, {time.perf_counter() - t0:.1f} s")
    for lb, counts in build.status_counts.items():
        print(f"lookback {lb}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
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
