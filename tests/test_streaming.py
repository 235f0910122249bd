import numpy as np
import pandas as pd
import pytest

from kit import features
from kit.features import StreamingFeatures, StreamingStateError


def universe(T=500, N=50, seed=0):
    """Random OHLCV for N symbols; some list mid-way, some delist mid-way, some have gaps."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-01", periods=T)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    listing = rng.integers(0, T // 2, N) * (rng.random(N) < 0.3)
    delisting = np.where(rng.random(N) < 0.2, rng.integers(T // 2, T, N), T)
    for j in range(N):
        close[: listing[j], j] = np.nan
        close[delisting[j] :, j] = np.nan
    close[100:103, min(5, N - 1)] = np.nan  # a gap
    cols = [f"S{j:02d}" for j in range(N)]
    c = pd.DataFrame(close, index=dates, columns=cols)
    noise = np.abs(rng.normal(0, 0.01, (T, N)))
    frames = {
        "open": c * (1 + rng.normal(0, 0.005, (T, N))),
        "high": c * (1 + noise),
        "low": c * (1 - noise),
        "close": c,
        "volume": pd.DataFrame(rng.integers(1_000, 100_000, (T, N)).astype(float), index=dates, columns=cols).where(c.notna()),
    }
    return frames, listing, delisting


def test_streaming_equals_batch_with_listings_and_delistings(tmp_path):
    frames, listing, delisting = universe()
    batch = np.concatenate([features.feature_set("dmn", frames).values, features.feature_set("ldtm", frames).values], axis=2)
    cols = list(frames["close"].columns)
    sf = StreamingFeatures(("dmn", "ldtm"))
    T = len(frames["close"])
    compared = 0
    for t, date in enumerate(frames["close"].index):
        listed = [c for j, c in enumerate(cols) if listing[j] == t]
        if listed:
            sf.add_symbols(listed)
        gone = [c for j, c in enumerate(cols) if delisting[j] == t]
        if gone:
            sf.remove_symbols(gone)
        if t == 250:  # a cron job stops and resumes from disk
            sf.save(tmp_path / "state.npz")
            sf = StreamingFeatures.load(tmp_path / "state.npz")
        bar = pd.DataFrame({f: frames[f].loc[date] for f in sf.fields}).loc[sf.symbols].dropna()
        out = sf.update(bar, date=date)
        idx = [cols.index(s) for s in out.index]
        want = batch[t, idx]
        got = out.to_numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        m = ~np.isnan(want)
        if m.any():
            rel = np.abs(got[m] - want[m]) / np.maximum(np.abs(want[m]), 1e-300)
            assert rel.max() < 1e-9
            compared += int(m.sum())
    assert sf.bars == T and compared > 100_000


def test_warm_up_then_stream_equals_batch():
    frames, _, _ = universe(T=400, N=8, seed=2)
    full = features.feature_set("dmn", frames).values
    sf = StreamingFeatures(("dmn",))
    head = {f: v.iloc[:300] for f, v in frames.items()}
    last = sf.warm_up(head)
    np.testing.assert_array_equal(last.to_numpy(), full[299])
    for t in range(300, 400):
        out = sf.update_arrays(date=frames["close"].index[t], close=frames["close"].iloc[t].to_numpy())
        np.testing.assert_array_equal(out, full[t])


def test_same_date_twice_is_refused_and_state_unchanged(tmp_path):
    frames, _, _ = universe(T=60, N=3, seed=3)
    sf = StreamingFeatures(("dmn",), list(frames["close"].columns))
    d = frames["close"].index[0]
    sf.update_arrays(date=d, close=frames["close"].iloc[0].to_numpy())
    before = sf.save(tmp_path / "a.npz").read_bytes()
    with pytest.raises(StreamingStateError, match="not after"):
        sf.update_arrays(date=d, close=frames["close"].iloc[0].to_numpy())
    assert sf.save(tmp_path / "b.npz").read_bytes() == before


def test_bad_bars_are_clear_errors():
    sf = StreamingFeatures(("ldtm",), ["A", "B"])
    with pytest.raises(ValueError, match="lacks field 'open'"):
        sf.update_arrays(close=np.ones(2))
    with pytest.raises(ValueError, match="shape"):
        sf.update_arrays(open=np.ones(3), high=np.ones(3), low=np.ones(3), close=np.ones(3), volume=np.ones(3))
    with pytest.raises(KeyError, match="not active"):
        sf.update(pd.DataFrame({"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [1.0]}, index=["Z"]))
    with pytest.raises(ValueError, match="already active"):
        sf.add_symbols(["A"])
    with pytest.raises(KeyError, match="not active"):
        sf.remove_symbols(["Q"])
    with pytest.raises(ValueError, match="feature_sets"):
        StreamingFeatures(("nope",))


def test_slots_are_reused_and_state_is_fresh():
    sf = StreamingFeatures(("dmn",), ["A", "B"])
    for i in range(30):
        sf.update_arrays(close=np.array([10.0 + i, 20.0 + i]))
    sf.remove_symbols(["A"])
    sf.add_symbols(["C"])  # takes A's old slot, must not inherit its history
    out = sf.update_arrays(close=np.array([21.0, 5.0]))
    assert sf.symbols == ["B", "C"] and np.isnan(out[1]).all()
