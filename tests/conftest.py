import os

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def make_ohlcv(symbols=("AAA", "BBB"), days=30, seed=0, start="2020-01-01") -> pd.DataFrame:
    """A small, valid raw price frame in the store's schema."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=days)
    rows = []
    for s in symbols:
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, days)))
        open_ = close * (1 + rng.normal(0, 0.003, days))
        high = np.maximum(open_, close) * 1.01
        low = np.minimum(open_, close) * 0.99
        rows.append(
            pd.DataFrame(
                {
                    "symbol": s,
                    "date": dates,
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "adjusted_close": close * 0.9,
                    "volume": rng.integers(1_000, 10_000, days).astype("int64"),
                    "dividend_amount": 0.0,
                    "split_coefficient": 1.0,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


@pytest.fixture
def ohlcv():
    return make_ohlcv()


from hypothesis import settings  # noqa: E402

# CI runs the same examples every time (no flaky failures from a new random draw); local runs draw
# new examples; HYPOTHESIS_PROFILE=thorough runs many more.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))


@pytest.fixture(scope="session", autouse=True)
def _state_dir_outside_the_repository(tmp_path_factory):
    """Run-time state a test does not place itself (ledger anchors and keys of PostgreSQL test
    databases, logs) goes to a temporary folder, never into the repository's data/state."""
    old = os.environ.get("KIT_STATE_DIR")
    os.environ["KIT_STATE_DIR"] = str(tmp_path_factory.mktemp("kit-state"))
    yield
    if old is None:
        os.environ.pop("KIT_STATE_DIR", None)
    else:
        os.environ["KIT_STATE_DIR"] = old
