import numpy as np
import pandas as pd
import pytest

from kit.training.search import SEARCH_SPACE, search_hyperparameters


def _close(seed=0, T=700):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2005-01-03", periods=T)
    return pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (T, 3)), 0)), index=dates, columns=list("ABC"))


def test_search_stores_every_trial_and_ignores_test_period(tmp_path):
    close = _close()
    until = close.index[600]
    kw = dict(model="mlp", search_until=until, n_trials=4, lookback=21, epochs=2, patience=2, seed=1)
    a = search_hyperparameters(close, storage=f"sqlite:///{tmp_path / 'a.db'}", **kw)
    assert a.n_trials == 4 and len(a.trials) == 4 and (tmp_path / "a.db").exists()
    assert set(a.best_params) == set(SEARCH_SPACE)
    assert a.best_params["hidden_size"] in SEARCH_SPACE["hidden_size"]
    assert 0.1 <= a.best_params["dropout"] <= 0.5 and 1e-4 <= a.best_params["lr"] <= 1e-1
    changed = close.copy()
    changed.iloc[600:] *= 1.5  # the test period: must not influence the search
    b = search_hyperparameters(changed, storage=None, **kw)
    assert b.best_params == a.best_params and b.best_val_sharpe == pytest.approx(a.best_val_sharpe)
    # resuming the same study adds trials to the same database
    c = search_hyperparameters(close, storage=f"sqlite:///{tmp_path / 'a.db'}", **{**kw, "n_trials": 2})
    assert c.n_trials == 6


def test_search_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_trials"):
        search_hyperparameters(_close(), search_until="2007-01-01", n_trials=0)
