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


def _reference_trials(close, kw):
    """The same search run by optuna's own ``study.optimize`` loop (the implementation the kit had
    before trials became tasks)."""
    import optuna

    from kit.features import feature_set, make_sequences, next_day_target
    from kit.models import make_model
    from kit.training import TrainConfig, Trainer, set_seed, walk_forward_splits
    from kit.training.tasks import pinned_threads

    X = feature_set("dmn", close).values.astype(np.float32)
    y = next_day_target(close, target_vol=0.15)[0].to_numpy(dtype="float64")
    split = walk_forward_splits(close.index, kw["search_until"], 1, None, 0.1, horizon=1)[0]
    tr = make_sequences(X, y, *split.train, kw["lookback"])
    va = make_sequences(X, y, *split.val, min(kw["lookback"], split.val[1] - split.val[0]))

    def objective(trial):
        p = {"dropout": trial.suggest_float("dropout", *SEARCH_SPACE["dropout"]),
             "hidden_size": trial.suggest_categorical("hidden_size", list(SEARCH_SPACE["hidden_size"])),
             "batch_size": trial.suggest_categorical("batch_size", list(SEARCH_SPACE["batch_size"])),
             "lr": trial.suggest_float("lr", *SEARCH_SPACE["lr"], log=True),
             "max_grad_norm": trial.suggest_float("max_grad_norm", *SEARCH_SPACE["max_grad_norm"], log=True)}
        set_seed(kw["seed"])
        net = make_model(kw["model"], X.shape[-1], p["hidden_size"], p["dropout"], 1, 4, kind="position")
        cfg = TrainConfig(epochs=kw["epochs"], patience=kw["patience"], batch_size=p["batch_size"], lr=p["lr"],
                          max_grad_norm=p["max_grad_norm"], seed=kw["seed"])

        def report(epoch, val_loss):
            trial.report(-val_loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        with pinned_threads(1):
            return -Trainer(cfg).fit(net, tr, va, on_epoch_end=report).best_val_loss

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=kw["seed"]),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3))
    study.optimize(objective, n_trials=kw["n_trials"])
    return study.trials_dataframe(attrs=("number", "state", "value", "params"))


def test_serial_trial_tasks_reproduce_optunas_own_loop_with_pruning():
    close = _close()
    kw = dict(model="mlp", search_until=close.index[600], n_trials=8, lookback=21, epochs=6, patience=6, seed=1)
    got = search_hyperparameters(close, **kw).trials.drop(columns=["duration"])
    ref = _reference_trials(close, kw)
    pd.testing.assert_frame_equal(got, ref)
    assert (got["state"] == "PRUNED").any() and (got["state"] == "COMPLETE").any()


def test_a_search_on_several_nodes_refuses_sqlite():
    from kit import exec as kexec
    from kit.training.search import check_search_storage

    class TwoNodes:
        nodes = 2

        def map(self, tasks, shared=None, progress=None):
            raise AssertionError("must refuse before running anything")

        def describe(self):
            return {"backend": "fake", "threads": 1, "workers": 2}

    with pytest.raises(ValueError, match="a search on 2 nodes needs a study storage every node can reach; got sqlite:///x.db. Set KIT_DB_URL"):
        search_hyperparameters(_close(), search_until="2007-01-01", storage="sqlite:///x.db", backend=TwoNodes())
    with pytest.raises(ValueError, match="got in memory"):
        check_search_storage(None, 3)
    check_search_storage(None, 1)
    with pytest.raises(ValueError, match="Set KIT_DB_URL to a PostgreSQL URL"):
        kexec.study_storage(TwoNodes(), "sqlite:///run.db", "sqlite:///kit.db")
    assert kexec.study_storage(TwoNodes(), "sqlite:///run.db", "postgresql+psycopg://u@h/kit") == "postgresql+psycopg://u@h/kit"
    assert kexec.study_storage(kexec.make_backend("serial"), "sqlite:///run.db", "postgresql+psycopg://u@h/kit") == "sqlite:///run.db"


@pytest.mark.slow
def test_trials_in_a_process_pool_share_one_study_in_the_kits_database(tmp_path):
    """Trials run two at a time in worker processes, report to one study in the kit's database
    (SQLite here; PostgreSQL under scripts/postgres_test.sh), and are still pruned."""
    from kit import exec as kexec
    from tests._ledger_worker import fresh_db

    close = _close()
    kw = dict(model="mlp", search_until=close.index[600], n_trials=8, lookback=21, epochs=6, patience=6, seed=1)
    with fresh_db(tmp_path) as url, kexec.ProcessBackend(workers=2) as b:
        r = search_hyperparameters(close, storage=url, study_name="shared", backend=b, **kw)
        import optuna

        stored = optuna.load_study(study_name="shared", storage=url)
        assert len(stored.trials) == r.n_trials == 8
        assert {t.state.name for t in stored.trials} <= {"COMPLETE", "PRUNED"}
        assert any(t.state.name == "PRUNED" for t in stored.trials)
        assert all(len(t.intermediate_values) > 0 for t in stored.trials)  # reported from the workers
        assert r.best_val_sharpe == pytest.approx(max(t.value for t in stored.trials if t.state.name == "COMPLETE"))
