"""On-disk cache of changepoint-detection features: computed once, extended incrementally, resumable.

CPD features are expensive (a GP fit per symbol per date per lookback), so :func:`build_cpd_features`
keeps them in Parquet files, one per cache key::

    <cache_dir>/<method>/<params_hash>/w<window>/<symbol>.parquet     (method "gp": one file per lookback)
    <cache_dir>/<method>/<params_hash>/<symbol>.parquet               (method "bocpd": every k in one file)

``params_hash`` is the sha256 (16 hex digits) of the method, its parameters and the cache format
version. Each file holds the symbol's rows for a prefix of the input's dates (every date from the
first, NaN before the first full window): the input close itself, the features and, for GP, the fit
status; its Parquet metadata holds the sha256 of those inputs (dates and closes), the data checksum
given by the caller (``data_sha256``, e.g. the store file's checksum: provenance) and, for BOCPD, the
streaming state after its last row. The data part of the key is thus checked per symbol and per date:
on a new build each file is compared with the new input row by row (dates and closes, exactly). A
value at date t uses returns up to t only, so with GP the rows before the first difference stay valid
and only the rest is recomputed; BOCPD keeps only its final state, so it continues from the file's end
when the whole file matches and restarts from the first date otherwise. New dates are computed alone
(incremental); a shorter input is served from a longer file without rewriting it.

Builds run in chunks of (symbol, date block) units of about ``chunk_windows`` windows; after each chunk
every touched file is rewritten atomically (temporary file, fsync, ``os.replace``), so a build that is
killed resumes from the last finished chunk. A tqdm bar counts windows (GP) or cells (BOCPD).
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# imports from the flat kit modules (to be re-pointed when they move)
from . import changepoint as cpd
from ._atomic import atomic_path

__all__ = ["CACHE_VERSION", "build_cpd_features", "params_hash", "input_sha256", "cache_entries"]

CACHE_VERSION = 1
_META_KEY = b"kit_cpd_cache"
_GP_COLUMNS = ("severity", "location", "status", "nlml_matern", "nlml_changepoint", "iterations")


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


def _ns(dates) -> np.ndarray:
    """Dates as int64 nanoseconds whatever the index's resolution (pandas 3 defaults to microseconds)."""
    return pd.DatetimeIndex(dates).as_unit("ns").asi8


def _symbol_file(folder: Path, symbol: str) -> Path:
    return folder / (urllib.parse.quote(str(symbol), safe="") + ".parquet")


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


def cache_entries(cache_dir) -> pd.DataFrame:
    """One row per cache file under ``cache_dir``: method, params hash, window, symbol, rows, last
    date, data checksum and path (for inspection and cleaning)."""
    rows = []
    for p in sorted(Path(cache_dir).rglob("*.parquet")):
        if p.name.startswith("."):
            continue
        m = _read_meta(p)
        if m is None:
            continue
        rows.append(
            {
                "method": m["method"], "params_hash": m["params_hash"], "window": m.get("window"), "symbol": m["symbol"],
                "rows": m["n_rows"], "last_date": m["last_date"], "data_sha256": m.get("data_sha256"), "path": str(p),
            }
        )
    return pd.DataFrame(rows)


def _simple_returns(close: np.ndarray) -> np.ndarray:
    r = np.full(close.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        r[1:] = close[1:] / close[:-1] - 1.0
    return r


def _valid_prefix(path: Path, dates: pd.DatetimeIndex, close_col: np.ndarray, method: str, phash: str) -> tuple[int, dict | None, int]:
    """Compare a cache file with the current input of its symbol.

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


def _compute_bocpd_chunk(returns: np.ndarray, units, params: dict, states: dict) -> dict:
    """BOCPD features of the rows of each unit, continuing from ``states[column]`` (the state row
    after the unit's first row - 1, or None to start from the prior): dict unit -> (columns, state)."""
    R = params["max_run_length"]
    ks = np.asarray(params["k"], dtype=np.int64)
    row0 = np.zeros(1, dtype=np.int64)
    out = {}
    for j, a, b in units:
        S = np.empty((1, cpd.bocpd_width(R)))
        if states.get(j) is None:
            cpd.bocpd_init_rows(S, row0, R, params["mu0"], params["beta0"])
        else:
            S[0] = states[j]
        x = np.ascontiguousarray(returns[a:b, j : j + 1])
        p, rl = cpd.bocpd_run(S, row0, x, params["hazard"], params["mu0"], params["kappa0"], params["alpha0"], params["beta0"], R, ks)
        cols = {f"cp_prob_{k}": p[:, 0, q] for q, k in enumerate(params["k"])}
        cols["run_length"] = rl[:, 0]
        out[(j, a, b)] = (cols, S[0].copy())
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
) -> dict[str, pd.DataFrame]:
    """Changepoint features of every symbol of ``close``, computed once and cached on disk.

    Parameters
    ----------
    close : (T, N) DataFrame of adjusted closes, dates (increasing, unique) in the index, symbols as
        columns; NaN where a symbol has no bar. Simple returns ``close_t / close_{t-1} - 1`` feed the
        detectors (no filling).
    windows : GP lookbacks (``method="gp"``; default (21, 126), the papers') or the BOCPD ``k`` values
        (``method="bocpd"``: probability of a changepoint within the last k bars).
    method : ``"gp"`` (:func:`kit.changepoint.gp_changepoint_features`) or ``"bocpd"``
        (:func:`kit.changepoint.bocpd`).
    cache_dir : folder of the cache (created); None computes without caching.
    data_sha256 : checksum of the data source (e.g. :func:`kit.data.data_sha256`), recorded with each
        cache file as provenance; validity is checked per symbol (module docstring).
    gp_config, device, chunk_size : GP fit settings (:func:`kit.changepoint.fit_gp_changepoint_windows`).
    bocpd_params : BOCPD parameters (``hazard``, ``mu0``, ``kappa0``, ``alpha0``, ``beta0``,
        ``max_run_length``; defaults of :func:`kit.changepoint.bocpd`).
    chunk_windows : rows per chunk (the unit of work and of resumption).
    fallback : GP fallback for degenerate or failed windows, applied when reading
        (:func:`kit.changepoint.apply_fallback`); the cache stores the raw values and status.
    progress : show a tqdm bar.

    Returns
    -------
    dict of wide (T, N) DataFrames aligned with ``close``: for ``"gp"``, ``cp_severity_<l>``,
    ``cp_location_<l>`` (float64) and ``cp_status_<l>`` (int8, ``kit.changepoint.STATUS_*``) per
    lookback; for ``"bocpd"``, ``bocpd_cp_prob_<k>`` per k and ``bocpd_run_length``. The value at date
    t uses returns up to t only; the first dates (no full window) are NaN.

    Raises
    ------
    ValueError
        ``close`` not a frame with increasing unique dates, unknown ``method`` or ``fallback``, bad
        windows or parameters (named).
    """
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
    returns = _simple_returns(values)
    T, N = values.shape
    cache = None if cache_dir is None else Path(cache_dir)

    if method == "gp":
        for w in windows:
            cpd._check_lookback(w)
        cfg = gp_config or cpd.GPFitConfig()
        jobs = []
        for w in windows:
            params = {"lookback": w, **cfg.as_dict(), "dtype": "float64"}
            jobs.append((w, params, params_hash("gp", params)))
        total = 0
        plans = []
        for w, params, ph in jobs:
            folder = None if cache is None else cache / "gp" / ph / f"w{w}"
            pending, have = [], {}
            for j, s in enumerate(symbols):
                # GP rows before the first changed input stay valid (a value at t uses closes up to t)
                n_ok, _, _ = (0, None, 0) if folder is None else _valid_prefix(_symbol_file(folder, s), dates, values[:, j], "gp", ph)
                have[j] = n_ok
                if n_ok < T:
                    pending.append((j, n_ok, T))
            plans.append((w, params, ph, folder, pending, have))
            total += sum(b - a for _, a, b in pending)
        bar = _bar(progress, total, "GP-CPD rows")
        fit_kwargs = {"config": cfg, "device": device, "chunk_size": chunk_size}
        frames = {}
        for w, params, ph, folder, pending, have in plans:
            store = {j: None for j in range(N)}
            for units in _plan_units(pending, chunk_windows):
                res = _compute_gp_chunk(returns, units, w, fit_kwargs)
                for (j, a, b), cols in res.items():
                    store[j] = _extend(store[j], folder, symbols[j], j, a, b, dates, values, cols, have, "gp", ph, params, w, data_sha256, None)
                    have[j] = b
                if bar is not None:
                    bar.update(sum(b - a for _, a, b in units))
            sev = np.full((T, N), np.nan)
            loc = np.full((T, N), np.nan)
            st = np.full((T, N), cpd.STATUS_NO_WINDOW, dtype=np.int8)
            for j, s in enumerate(symbols):
                df = store[j] if store[j] is not None else _read(_symbol_file(folder, s))
                sev[:, j] = df["severity"].to_numpy()[:T]
                loc[:, j] = df["location"].to_numpy()[:T]
                st[:, j] = df["status"].to_numpy()[:T]
            sev, loc = cpd.apply_fallback(sev, loc, st, w, fallback)
            frames[f"cp_severity_{w}"] = pd.DataFrame(sev, index=close.index, columns=close.columns)
            frames[f"cp_location_{w}"] = pd.DataFrame(loc, index=close.index, columns=close.columns)
            frames[f"cp_status_{w}"] = pd.DataFrame(st, index=close.index, columns=close.columns)
        if bar is not None:
            bar.close()
        return frames

    # BOCPD
    bp = {"hazard": 1.0 / 250.0, "mu0": 0.0, "kappa0": 1.0, "alpha0": 1.0, "beta0": 1e-4, "max_run_length": 500}
    unknown = set(bocpd_params or {}) - set(bp)
    if unknown:
        raise ValueError(f"unknown bocpd_params {sorted(unknown)} (known: {sorted(bp)})")
    bp.update(bocpd_params or {})
    h, m0, k0, a0, b0, R, ks = cpd._check_bocpd_params(bp["hazard"], bp["mu0"], bp["kappa0"], bp["alpha0"], bp["beta0"], bp["max_run_length"], windows)
    params = {"hazard": h, "mu0": m0, "kappa0": k0, "alpha0": a0, "beta0": b0, "max_run_length": R, "k": [int(k) for k in ks]}
    ph = params_hash("bocpd", params)
    folder = None if cache is None else cache / "bocpd" / ph
    pending, have, states = [], {}, {}
    for j, s in enumerate(symbols):
        n_ok, meta, n_file = (0, None, 0) if folder is None else _valid_prefix(_symbol_file(folder, s), dates, values[:, j], "bocpd", ph)
        if n_ok < min(n_file, T):  # a changed input inside the file: the state there is unknown, restart
            n_ok, meta = 0, None
        have[j] = n_ok
        states[j] = None if meta is None or n_ok == 0 else np.frombuffer(base64.b64decode(meta["state"]), dtype=np.float64).copy()
        if n_ok < T:
            pending.append((j, n_ok, T))
    bar = _bar(progress, sum(b - a for _, a, b in pending), "BOCPD rows")
    store = {j: None for j in range(N)}
    for units in _plan_units(pending, chunk_windows):
        res = _compute_bocpd_chunk(returns, units, params, states)
        for (j, a, b), (cols, state) in res.items():
            store[j] = _extend(store[j], folder, symbols[j], j, a, b, dates, values, cols, have, "bocpd", ph, params, None, data_sha256, state)
            states[j] = state
            have[j] = b
        if bar is not None:
            bar.update(sum(b - a for _, a, b in units))
    if bar is not None:
        bar.close()
    names = [f"cp_prob_{k}" for k in params["k"]] + ["run_length"]
    arrays = {c: np.full((T, N), np.nan) for c in names}
    for j, s in enumerate(symbols):
        df = store[j] if store[j] is not None else _read(_symbol_file(folder, s))
        for c in names:
            arrays[c][:, j] = df[c].to_numpy()[:T]
    return {f"bocpd_{c}": pd.DataFrame(a, index=close.index, columns=close.columns) for c, a in arrays.items()}


def _bar(progress: bool, total: int, desc: str):
    if not progress or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="row", desc=desc)


def _extend(current, folder, symbol, j, a, b, dates, values, cols, have, method, ph, params, window, data_sha256, state):
    """Append rows ``a..b-1`` of one symbol to its cached frame (read from disk when needed) and, with
    a cache, rewrite its file atomically. Returns the frame of rows ``0..b-1``."""
    new = pd.DataFrame({"close": values[a:b, j], **cols}, index=dates[a:b])
    if a == 0:
        frame = new
    else:
        if current is None:
            current = _read(_symbol_file(folder, symbol))
        frame = pd.concat([current.iloc[:a], new])
    if folder is not None:
        meta = {
            "version": CACHE_VERSION, "method": method, "params_hash": ph, "params": params, "window": window, "symbol": symbol,
            "n_rows": int(b), "first_date": str(dates[0].date()) if b else None, "last_date": str(dates[b - 1].date()) if b else None,
            "input_sha256": input_sha256(dates[:b], values[:b, j]), "data_sha256": data_sha256,
        }
        if state is not None:
            meta["state"] = base64.b64encode(np.ascontiguousarray(state, dtype=np.float64).tobytes()).decode()
        _write(_symbol_file(folder, symbol), pd.DatetimeIndex(frame.index), {c: frame[c].to_numpy() for c in frame.columns}, meta)
    return frame
