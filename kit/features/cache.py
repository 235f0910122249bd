"""On-disk cache of changepoint-detection features: computed once, extended incrementally, resumable.

CPD features are expensive (a GP fit per symbol, date and lookback), so :func:`build_cpd_features`
keeps them in Parquet files, one per (method, parameters, lookback, symbol, first date)::

    <cache_dir>/gp/<params_hash>/w<lookback>/<symbol>/from-<first date>.parquet
    <cache_dir>/bocpd/<params_hash>/<symbol>/from-<first date>.parquet      (every k in one file)

``cache_dir`` defaults to :func:`kit.paths.feature_cache_dir` (``<state dir>/features``). The
``params_hash`` is the sha256 (16 hex digits) of the method, its parameters and the cache format
version. A symbol's series starts at its first finite close in the input (leading NaN rows carry no
information for either method, so a universe loaded from an earlier date shares the file); the first
date is part of the file name, so two profiles that load a symbol from different dates keep two
files instead of overwriting each other's.

Validity. The data part of the key is checked per symbol and per date, not through one checksum of
the whole store (a new day or a restated symbol would otherwise invalidate every file): each file
holds the symbol's input rows (dates and closes, NaN kept) next to the features, and a new build
compares them with its input row by row, exactly. A GP value at date t depends on the closes of its
window only, so the rows before the first difference stay valid and only the rest is recomputed;
BOCPD keeps its state after the file's last row (in the file's metadata), so it continues from the
file's end when every row matches and restarts the symbol otherwise. New dates are computed alone
(incremental); a shorter input is served from a longer file without rewriting it. The checksum of
the data source given by the caller (``data_sha256``) is recorded in each file as provenance.

Resumption. A build runs in chunks of (symbol, row block) units of about ``chunk_windows`` rows;
after each chunk every touched file is rewritten atomically (:func:`kit.base.atomic.atomic_path`), so
a build that is killed resumes from its last finished chunk. Two builds of the same files at once do
not corrupt them (each replacement is atomic and both compute the same values) but do the work
twice. A tqdm bar counts rows.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..base.atomic import atomic_path
from ..paths import feature_cache_dir
from . import bocpd as bo
from . import changepoint as cpd

__all__ = ["CACHE_VERSION", "CPDBuild", "build_cpd_features", "params_hash", "input_sha256", "cache_entries", "resolve_bocpd_params"]

CACHE_VERSION = 2
_META_KEY = b"kit_cpd_cache"
_GP_COLUMNS = ("severity", "location", "status", "nlml_matern", "nlml_changepoint", "iterations")


@dataclass
class CPDBuild:
    """What :func:`build_cpd_features` returns.

    Attributes
    ----------
    frames : dict of wide ``(T, N)`` DataFrames aligned with the input (names in
        :func:`build_cpd_features`).
    rows_computed : (symbol, date) rows computed by this build (GP: per lookback, summed).
    rows_reused : rows read from the cache instead.
    windows_fitted : GP windows fitted (rows with a full window among the computed ones); BOCPD:
        cells stepped.
    seconds : wall time of the build.
    status_counts : GP only: ``{lookback: {status name: count}}`` over every row of the output.
    cache_dir : the cache folder (None when not caching).
    """

    frames: dict
    rows_computed: int = 0
    rows_reused: int = 0
    windows_fitted: int = 0
    seconds: float = 0.0
    status_counts: dict = field(default_factory=dict)
    cache_dir: Path | None = None


def params_hash(method: str, params: dict) -> str:
    """16 hex digits of the sha256 of ``{"method", "params", "version"}`` as canonical JSON."""
    blob = json.dumps({"method": method, "params": params, "version": CACHE_VERSION}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def input_sha256(dates: pd.DatetimeIndex, close: np.ndarray) -> str:
    """sha256 of a symbol's input: its dates (int64 nanoseconds) and closes (float64, NaN kept)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(_ns(dates), dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(close, dtype=np.float64).tobytes())
    return h.hexdigest()


def resolve_bocpd_params(overrides: dict | None = None) -> dict:
    """The BOCPD model parameters (:data:`kit.features.bocpd.BOCPD_DEFAULTS`) with ``overrides``.

    Raises
    ------
    ValueError
        An unknown parameter name or a value out of range (named).
    """
    bp = dict(bo.BOCPD_DEFAULTS)
    unknown = set(overrides or {}) - set(bp)
    if unknown:
        raise ValueError(f"unknown bocpd_params {sorted(unknown)} (known: {sorted(bp)})")
    bp.update(overrides or {})
    h, m0, k0, a0, b0, R, _ = bo.check_bocpd_params(bp["hazard"], bp["mu0"], bp["kappa0"], bp["alpha0"], bp["beta0"], bp["max_run_length"], 1)
    return {"hazard": h, "mu0": m0, "kappa0": k0, "alpha0": a0, "beta0": b0, "max_run_length": R}


def _ns(dates) -> np.ndarray:
    """Dates as int64 nanoseconds whatever the index's resolution (pandas 3 defaults to microseconds)."""
    return pd.DatetimeIndex(dates).as_unit("ns").asi8


def _symbol_file(folder: Path, symbol: str, first_date) -> Path:
    return folder / urllib.parse.quote(str(symbol), safe="") / f"from-{pd.Timestamp(first_date).date().isoformat()}.parquet"


def _read_meta(path: Path) -> dict | None:
    try:
        md = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    raw = md.get(_META_KEY)
    return None if raw is None else json.loads(raw)


def _write(path: Path, dates: pd.DatetimeIndex, columns: dict[str, np.ndarray], meta: dict) -> None:
    table = pa.table({"date": pa.array(_ns(dates), type=pa.timestamp("ns")), **{k: pa.array(v) for k, v in columns.items()}})
    table = table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _read(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas().set_index("date")


def cache_entries(cache_dir=None) -> pd.DataFrame:
    """One row per cache file under ``cache_dir`` (default :func:`kit.paths.feature_cache_dir`):
    method, params hash, window, symbol, first and last date, rows, data checksum and path (for
    inspection and cleaning)."""
    rows = []
    root = Path(cache_dir) if cache_dir is not None else feature_cache_dir()
    for p in sorted(root.rglob("*.parquet")):
        if p.name.startswith("."):
            continue
        m = _read_meta(p)
        if m is None:
            continue
        rows.append(
            {
                "method": m["method"], "params_hash": m["params_hash"], "window": m.get("window"), "symbol": m["symbol"],
                "first_date": m["first_date"], "last_date": m["last_date"], "rows": m["n_rows"], "data_sha256": m.get("data_sha256"),
                "path": str(p),
            }
        )
    return pd.DataFrame(rows, columns=["method", "params_hash", "window", "symbol", "first_date", "last_date", "rows", "data_sha256", "path"])


def _simple_returns(close: np.ndarray) -> np.ndarray:
    r = np.full(close.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        r[1:] = close[1:] / close[:-1] - 1.0
    return r


def _valid_prefix(path: Path, dates: pd.DatetimeIndex, close_col: np.ndarray, method: str, phash: str) -> tuple[int, dict | None, int]:
    """Compare a cache file with a symbol's input rows (from its first finite close).

    Returns ``(k, meta, n_file)``: the length of the longest common prefix of the file's (date, close)
    rows and the input's (0 without a usable file), the file's metadata and its number of rows."""
    if not path.exists():
        return 0, None, 0
    m = _read_meta(path)
    if m is None or m.get("version") != CACHE_VERSION or m.get("method") != method or m.get("params_hash") != phash:
        return 0, None, 0
    try:
        tab = pq.read_table(path, columns=["date", "close"])
    except (OSError, pa.ArrowInvalid, KeyError):
        return 0, None, 0
    f_dates = tab.column("date").to_numpy().astype("datetime64[ns]").view(np.int64)
    f_close = tab.column("close").to_numpy()
    n = min(len(f_dates), len(dates))
    same = (f_dates[:n] == _ns(dates)[:n]) & ((f_close[:n] == close_col[:n]) | (np.isnan(f_close[:n]) & np.isnan(close_col[:n])))
    k = n if same.all() else int(np.argmin(same))
    return k, m, len(f_dates)


def _plan_units(pending: list[tuple[int, int, int]], chunk_windows: int) -> list[list[tuple[int, int, int]]]:
    """Pack (symbol column, first row, end row) units into chunks of about ``chunk_windows`` rows; a
    symbol's rows are split into blocks in date order (each block in a later chunk than the last)."""
    blocks = []
    for j, a, b in pending:
        for q, s in enumerate(range(a, b, chunk_windows)):
            blocks.append((q, j, s, min(b, s + chunk_windows)))
    # a symbol's k-th block goes after every (k-1)-th block, so its blocks land in chunks in date order
    blocks = [(j, s, e) for _, j, s, e in sorted(blocks)]
    chunks, cur, size = [], [], 0
    for u in blocks:
        if cur and (size + (u[2] - u[1]) > chunk_windows or any(v[0] == u[0] for v in cur)):
            chunks.append(cur)
            cur, size = [], 0
        cur.append(u)
        size += u[2] - u[1]
    if cur:
        chunks.append(cur)
    return chunks


def _compute_gp_chunk(returns: np.ndarray, units, lookback: int, fit_kwargs: dict) -> dict:
    """GP features of the rows of each unit ``(column, row_start, row_end)``: dict unit -> columns."""
    n = lookback + 1
    valid = cpd.valid_window_ends(returns, lookback)
    gather_t, gather_j, owner = [], [], []
    for k, (j, a, b) in enumerate(units):
        t = np.arange(a, b)
        t = t[valid[a:b, j]]
        gather_t.append(t)
        gather_j.append(np.full(len(t), j))
        owner.append(np.full(len(t), k))
    tt = np.concatenate(gather_t) if gather_t else np.zeros(0, np.int64)
    jj = np.concatenate(gather_j) if gather_j else np.zeros(0, np.int64)
    kk = np.concatenate(owner) if owner else np.zeros(0, np.int64)
    res = None
    if len(tt):
        view = np.lib.stride_tricks.sliding_window_view(returns, n, axis=0)
        res = cpd.fit_gp_changepoint_windows(view[tt - n + 1, jj], **fit_kwargs)
    out = {}
    for k, (j, a, b) in enumerate(units):
        m = b - a
        cols = {
            "severity": np.full(m, np.nan), "location": np.full(m, np.nan), "status": np.full(m, cpd.STATUS_NO_WINDOW, np.int8),
            "nlml_matern": np.full(m, np.nan), "nlml_changepoint": np.full(m, np.nan), "iterations": np.zeros(m, np.int32),
        }
        if res is not None:
            sel = kk == k
            rows = tt[sel] - a
            for c in cols:
                cols[c][rows] = res[c][sel]
        out[(j, a, b)] = cols
    return out


def _compute_bocpd_chunk(close: np.ndarray, units, params: dict, ks: np.ndarray, states: dict) -> dict:
    """BOCPD of the rows of each unit from its closes, continuing from ``states[column]`` (the state
    column after the unit's first row - 1, or None to start from the prior): dict unit -> (columns,
    state). Runs :func:`kit.features.bocpd.bocpd_run_close`, the step of the ``bocpd`` feature set."""
    R = params["max_run_length"]
    slot0 = np.zeros(1, dtype=np.int64)
    out = {}
    for j, a, b in units:
        S = bo.new_state(1, R, params["mu0"], params["beta0"])
        if states.get(j) is not None:
            S[:, 0] = states[j]
        x = np.ascontiguousarray(close[a:b, j : j + 1])
        raw = bo.bocpd_run_close(S, slot0, x, params["hazard"], params["mu0"], params["kappa0"], params["alpha0"], params["beta0"], R, ks)
        cols = {f"cp_prob_{int(k)}": raw[:, 0, q] for q, k in enumerate(ks)}
        cols["run_length"] = raw[:, 0, -1]
        out[(j, a, b)] = (cols, S[:, 0].copy())
    return out


def build_cpd_features(
    close: pd.DataFrame,
    windows=cpd.DEFAULT_CPD_LOOKBACKS,
    method: str = "gp",
    cache_dir=None,
    data_sha256: str | None = None,
    *,
    gp_config: cpd.GPFitConfig | None = None,
    device="cpu",
    chunk_size: int | None = None,
    bocpd_params: dict | None = None,
    chunk_windows: int = 20_000,
    fallback: str = "nan",
    progress: bool = True,
) -> CPDBuild:
    """Changepoint features of every symbol of ``close``, computed once and cached on disk.

    Parameters
    ----------
    close : (T, N) DataFrame of adjusted closes, dates (increasing, unique) in the index, symbols as
        columns; NaN where a symbol has no bar. Simple returns ``close_t / close_{t-1} - 1`` feed the
        detectors (no filling).
    windows : GP lookbacks (``method="gp"``; default (21, 126), the papers') or the BOCPD ``k`` values
        (``method="bocpd"``: probability of a changepoint within the last k bars).
    method : ``"gp"`` (:func:`kit.features.changepoint.fit_gp_changepoint_windows`) or ``"bocpd"``
        (:func:`kit.features.bocpd.bocpd_run_close`).
    cache_dir : folder of the cache (created); ``None``: :func:`kit.paths.feature_cache_dir`;
        ``False``: compute without caching.
    data_sha256 : checksum of the data source (e.g. :func:`kit.data.data_sha256`), recorded with each
        cache file as provenance; validity is checked per symbol and date (module docstring).
    gp_config, device, chunk_size : GP fit settings (:func:`kit.features.changepoint.fit_gp_changepoint_windows`).
    bocpd_params : BOCPD parameters (``hazard``, ``mu0``, ``kappa0``, ``alpha0``, ``beta0``,
        ``max_run_length``; defaults :data:`kit.features.bocpd.BOCPD_DEFAULTS`).
    chunk_windows : rows per chunk (the unit of work and of resumption).
    fallback : GP fallback for degenerate or failed windows, applied when reading
        (:func:`kit.features.changepoint.apply_fallback`); the cache stores the raw values and status.
    progress : show a tqdm bar.

    Returns
    -------
    :class:`CPDBuild` whose ``frames`` are wide (T, N) DataFrames aligned with ``close``: for
    ``"gp"``, ``cp_severity_<l>``, ``cp_location_<l>`` (float64) and ``cp_status_<l>`` (int8,
    ``kit.features.changepoint.STATUS_*``) per lookback; for ``"bocpd"``, ``bocpd_cp_prob_<k>`` per k
    and ``bocpd_run_length`` (expected run length in bars). The value at date t uses returns up to t
    only; the first dates (no full window) are NaN.

    Raises
    ------
    ValueError
        ``close`` not a frame with increasing unique dates and unique symbols, unknown ``method`` or
        ``fallback``, bad windows, parameters or ``chunk_windows`` (named).
    """
    t_start = time.perf_counter()
    if not isinstance(close, pd.DataFrame):
        raise ValueError(f"close must be a (T, N) DataFrame, got {type(close).__name__}")
    dates = pd.DatetimeIndex(close.index)
    if not dates.is_monotonic_increasing or dates.has_duplicates:
        raise ValueError("close must have strictly increasing dates in its index")
    if method not in ("gp", "bocpd"):
        raise ValueError(f"method must be 'gp' or 'bocpd', got {method!r}")
    if fallback not in ("nan", "ffill"):
        raise ValueError(f"fallback must be 'nan' or 'ffill', got {fallback!r}")
    windows = tuple(int(w) for w in ((windows,) if np.isscalar(windows) else windows))
    if not windows:
        raise ValueError("windows must not be empty")
    if int(chunk_windows) < 1:
        raise ValueError(f"chunk_windows must be >= 1, got {chunk_windows!r}")
    symbols = [str(c) for c in close.columns]
    if len(set(symbols)) != len(symbols):
        raise ValueError("close has repeated symbols")
    values = np.ascontiguousarray(close.to_numpy(dtype=np.float64))
    T, N = values.shape
    finite = np.isfinite(values)
    first = np.where(finite.any(axis=0), finite.argmax(axis=0), T)  # first finite close per symbol (T: none)
    cache = None if cache_dir is False else Path(cache_dir) if cache_dir is not None else feature_cache_dir()
    build = CPDBuild({}, cache_dir=cache)

    def file_of(folder, j):
        return _symbol_file(folder, symbols[j], dates[first[j]])

    def plan(folder, mname, ph, continue_state: bool):
        """Pending units ``(column, first row, end row)`` and, for BOCPD, the state to continue from."""
        pending, states = [], {}
        for j in range(N):
            s = int(first[j])
            if s >= T:
                continue
            k, meta, n_file = (0, None, 0) if folder is None else _valid_prefix(file_of(folder, j), dates[s:], values[s:, j], mname, ph)
            if continue_state and k < min(n_file, T - s):  # a changed input inside the file: restart the symbol
                k, meta = 0, None
            if continue_state:
                states[j] = None if meta is None or k == 0 else np.frombuffer(base64.b64decode(meta["state"]), dtype=np.float64).copy()
            build.rows_reused += k
            if s + k < T:
                pending.append((j, s + k, T))
        return pending, states

    def finish(bar):
        if bar is not None:
            bar.close()
        build.seconds = time.perf_counter() - t_start
        return build

    if method == "gp":
        for w in windows:
            cpd._check_lookback(w)
        returns = _simple_returns(values)
        cfg = gp_config or cpd.GPFitConfig()
        plans = []
        for w in windows:
            params = {"lookback": w, **cfg.as_dict(), "dtype": "float64"}
            ph = params_hash("gp", params)
            folder = None if cache is None else cache / "gp" / ph / f"w{w}"
            plans.append((w, params, ph, folder, plan(folder, "gp", ph, False)[0]))
        bar = _bar(progress, sum(b - a for p in plans for _, a, b in p[4]), "GP-CPD rows")
        fit_kwargs = {"config": cfg, "device": device, "chunk_size": chunk_size}
        for w, params, ph, folder, pending in plans:
            store = {j: None for j in range(N)}
            valid = cpd.valid_window_ends(returns, w)
            for units in _plan_units(pending, chunk_windows):
                res = _compute_gp_chunk(returns, units, w, fit_kwargs)
                for (j, a, b), cols in res.items():
                    store[j] = _extend(store[j], folder, symbols[j], int(first[j]), a, b, dates, values[:, j], cols, "gp", ph, params, w,
                                       data_sha256, None)
                    build.windows_fitted += int(valid[a:b, j].sum())
                rows = sum(b - a for _, a, b in units)
                build.rows_computed += rows
                if bar is not None:
                    bar.update(rows)
            sev = np.full((T, N), np.nan)
            loc = np.full((T, N), np.nan)
            st = np.full((T, N), cpd.STATUS_NO_WINDOW, dtype=np.int8)
            for j in range(N):
                s = int(first[j])
                if s >= T:
                    continue
                df = store[j] if store[j] is not None else _read(file_of(folder, j))
                sev[s:, j] = df["severity"].to_numpy()[: T - s]
                loc[s:, j] = df["location"].to_numpy()[: T - s]
                st[s:, j] = df["status"].to_numpy()[: T - s]
            vals, counts = np.unique(st, return_counts=True)
            build.status_counts[w] = {cpd.STATUS_NAMES[int(v)]: int(c) for v, c in zip(vals, counts, strict=True)}
            sev, loc = cpd.apply_fallback(sev, loc, st, w, fallback)
            build.frames[f"cp_severity_{w}"] = pd.DataFrame(sev, index=close.index, columns=close.columns)
            build.frames[f"cp_location_{w}"] = pd.DataFrame(loc, index=close.index, columns=close.columns)
            build.frames[f"cp_status_{w}"] = pd.DataFrame(st, index=close.index, columns=close.columns)
        return finish(bar)

    # BOCPD
    bp = resolve_bocpd_params(bocpd_params)
    ks = bo.check_bocpd_params(bp["hazard"], bp["mu0"], bp["kappa0"], bp["alpha0"], bp["beta0"], bp["max_run_length"], windows)[-1]
    params = {**bp, "k": [int(k) for k in ks]}
    ph = params_hash("bocpd", params)
    folder = None if cache is None else cache / "bocpd" / ph
    pending, states = plan(folder, "bocpd", ph, True)
    bar = _bar(progress, sum(b - a for _, a, b in pending), "BOCPD rows")
    store = {j: None for j in range(N)}
    for units in _plan_units(pending, chunk_windows):
        res = _compute_bocpd_chunk(values, units, params, ks, states)
        for (j, a, b), (cols, state) in res.items():
            store[j] = _extend(store[j], folder, symbols[j], int(first[j]), a, b, dates, values[:, j], cols, "bocpd", ph, params, None,
                               data_sha256, state)
            states[j] = state
        rows = sum(b - a for _, a, b in units)
        build.rows_computed += rows
        build.windows_fitted += rows
        if bar is not None:
            bar.update(rows)
    names = [f"cp_prob_{k}" for k in params["k"]] + ["run_length"]
    arrays = {c: np.full((T, N), np.nan) for c in names}
    for j in range(N):
        s = int(first[j])
        if s >= T:
            continue
        df = store[j] if store[j] is not None else _read(file_of(folder, j))
        for c in names:
            arrays[c][s:, j] = df[c].to_numpy()[: T - s]
    build.frames = {f"bocpd_{c}": pd.DataFrame(a, index=close.index, columns=close.columns) for c, a in arrays.items()}
    return finish(bar)


def _bar(progress: bool, total: int, desc: str):
    if not progress or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="row", desc=desc)


def _extend(current, folder, symbol, s, a, b, dates, close_col, cols, method, ph, params, window, data_sha256, state):
    """Append absolute rows ``a..b-1`` of one symbol (whose series starts at row ``s``) to its cached
    frame (read from disk when needed) and, with a cache, rewrite its file atomically. Returns the
    frame of the symbol's rows ``s..b-1``."""
    new = pd.DataFrame({"close": close_col[a:b], **cols}, index=dates[a:b])
    if a == s:
        frame = new
    else:
        if current is None:
            current = _read(_symbol_file(folder, symbol, dates[s]))
        frame = pd.concat([current.iloc[: a - s], new])
    if folder is not None:
        meta = {
            "version": CACHE_VERSION, "method": method, "params_hash": ph, "params": params, "window": window, "symbol": symbol,
            "n_rows": int(b - s), "first_date": str(dates[s].date()), "last_date": str(dates[b - 1].date()),
            "input_sha256": input_sha256(dates[s:b], close_col[s:b]), "data_sha256": data_sha256,
        }
        if state is not None:
            meta["state"] = base64.b64encode(np.ascontiguousarray(state, dtype=np.float64).tobytes()).decode()
        _write(_symbol_file(folder, symbol, dates[s]), pd.DatetimeIndex(frame.index), {c: frame[c].to_numpy() for c in frame.columns}, meta)
    return frame
