"""kit.live.retrain: the scheduled and the drift-triggered rule, the cooldown and the last retraining as
the reference day, on a trading calendar with hand-counted days; the policy's settings."""

import pandas as pd
import pytest

from kit.analytics.drift import DriftCheck
from kit.base.config import ConfigError
from kit.live.retrain import DEFAULT_TRIGGERS, RetrainPolicy, should_retrain

# January 2024 trading days: the 1st (New Year) and the 15th (MLK day) are holidays
CAL = pd.bdate_range("2023-12-01", "2024-03-29").drop(pd.to_datetime(["2023-12-25", "2024-01-01", "2024-01-15", "2024-02-19"]))
TRAINED = "2024-01-02"


def _day(n: int) -> pd.Timestamp:
    """The n-th trading day after TRAINED."""
    return CAL[CAL.get_loc(pd.Timestamp(TRAINED)) + n]


def test_scheduled_every_n_trading_days_counts_the_calendar_not_weekdays():
    p = RetrainPolicy(every_n_days=10, on_drift=False)
    # 2024-01-16 is the 9th trading day after 01-02 (the 15th is a holiday), 01-17 the 10th
    assert _day(9) == pd.Timestamp("2024-01-16") and _day(10) == pd.Timestamp("2024-01-17")
    due, why = should_retrain(p, TRAINED, "2024-01-16", CAL)
    assert not due and why == "not due: 9 of 10 trading days since training on 2024-01-02; drift not a trigger"
    due, why = should_retrain(p, TRAINED, "2024-01-17", CAL)
    assert due and why == "scheduled: 10 trading days since training on 2024-01-02 (policy: every 10)"
    assert should_retrain(p, TRAINED, TRAINED, CAL)[0] is False  # the training day itself: 0 days


def test_drift_triggers_only_listed_checks_dated_after_training_and_not_after_as_of():
    p = RetrainPolicy(every_n_days=None, on_drift=True)
    as_of = _day(5)
    checks = [
        DriftCheck("feature_drift", "*", 2, 1, 0.001, "drift", _day(3)),
        DriftCheck("direction_accuracy", "dmn@1.0", 0.45, 0.52, 0.01, "drift", as_of),
    ]
    due, why = should_retrain(p, TRAINED, as_of, CAL, checks)
    assert due and why == f"drift: direction_accuracy (dmn@1.0) on {as_of.date()}, feature_drift on {_day(3).date()}"
    ignored = [
        DriftCheck("psi", "ret_1", 0.4, 0.25, None, "drift", as_of),  # not a trigger (rule of thumb)
        DriftCheck("feature_drift", "*", 1, 1, 0.01, "drift", TRAINED),  # about the previous model
        DriftCheck("feature_drift", "*", 1, 1, 0.01, "drift", _day(6)),  # after as_of: look-ahead
        DriftCheck("mape", "dmn@1.0", 0.04, 0.05, 0.9, "ok", as_of),
        DriftCheck("direction_accuracy", "dmn@1.0", None, 0.52, None, "insufficient_data", as_of),
    ]
    due, why = should_retrain(p, TRAINED, as_of, CAL, ignored)
    assert not due and why == "not due: 5 trading days since training on 2024-01-02, no schedule; no drift verdict"
    assert not should_retrain(RetrainPolicy(every_n_days=None, on_drift=False), TRAINED, as_of, CAL, checks)[0]
    assert should_retrain(RetrainPolicy(on_drift=True, triggers=("psi",)), TRAINED, as_of, CAL, ignored)[0]


def test_both_reasons_and_the_other_verdict_forms():
    p = RetrainPolicy(every_n_days=5, on_drift=True)
    frame = pd.DataFrame({"as_of": [_day(5)], "check": ["mape"], "subject": ["m"], "verdict": ["drift"]})
    due, why = should_retrain(p, TRAINED, _day(5), CAL, frame)
    assert due and why.startswith("scheduled: 5 trading days") and why.endswith(f"drift: mape (m) on {_day(5).date()}")
    assert should_retrain(RetrainPolicy(on_drift=True), TRAINED, _day(1), CAL, {"feature_drift": True}) == (True, "drift: feature_drift")
    assert should_retrain(RetrainPolicy(on_drift=True), TRAINED, _day(1), CAL, {"feature_drift": "ok"})[0] is False


def test_no_model_yet_means_retrain():
    assert should_retrain(RetrainPolicy(every_n_days=21), None, "2024-01-02", CAL) == (True, "no trained model yet")


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ({"as_of": "2024-01-15"}, ValueError, "as_of 2024-01-15 is not a trading day"),
        ({"as_of": "2024-04-01"}, ValueError, "not a trading day"),
        ({"last_trained_on": "2024-02-01", "as_of": "2024-01-31"}, ValueError, "before last_trained_on"),
        ({"last_trained_on": "2023-06-30"}, ValueError, "calendar starts 2023-12-01"),
        ({"calendar": CAL[::-1]}, ValueError, "strictly increasing"),
        ({"last_trained_on": "not a date"}, ValueError, "last_trained_on must be a date"),
        ({"drift_verdicts": [1, 2]}, TypeError, "DriftCheck-like"),
        ({"policy": {"every_n_days": 5}}, TypeError, "RetrainPolicy"),
    ],
)
def test_bad_input(args, exc, match):
    kw = {"policy": RetrainPolicy(every_n_days=5), "last_trained_on": TRAINED, "as_of": "2024-01-31", "calendar": CAL, "drift_verdicts": None, **args}
    with pytest.raises(exc, match=match):
        should_retrain(**kw)


def test_policy_validation_and_from_dict():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="every_n_days"):
            RetrainPolicy(every_n_days=bad)
    with pytest.raises(ValueError, match="triggers"):
        RetrainPolicy(on_drift=True, triggers=())
    with pytest.raises(ConfigError, match=r"retrain: unknown key 'every' \(did you mean 'every_n_days'\?\)"):
        RetrainPolicy.from_dict({"every": 5})
    with pytest.raises(ConfigError, match="retrain: expected a mapping"):
        RetrainPolicy.from_dict([5])
    for key, bad in (("cooldown_days", -1), ("test_size", 0), ("folds", 0), ("epochs", 1.5), ("triggers", "feature_drift")):
        with pytest.raises(ValueError, match=key):
            RetrainPolicy.from_dict({key: bad})
    p = RetrainPolicy.from_dict({"every_n_days": 21, "on_drift": True, "triggers": ["feature_drift"]})
    assert p == RetrainPolicy(21, True, ("feature_drift",))
    assert RetrainPolicy.from_dict(None).triggers == DEFAULT_TRIGGERS
    assert p.to_dict()["triggers"] == ["feature_drift"]


def test_the_last_retraining_is_the_reference_and_drift_waits_for_the_cooldown():
    p = RetrainPolicy(every_n_days=10, on_drift=True, cooldown_days=5)
    # the model's data ends at TRAINED, but the loop retrained on day 8 (a candidate the gate refused):
    # the schedule counts from day 8, so day 10 is not due again
    due, why = should_retrain(p, TRAINED, _day(10), CAL, last_attempt=_day(8))
    assert not due and why.startswith(f"not due: 2 of 10 trading days since the last retraining on {_day(8).date()}")
    assert should_retrain(p, TRAINED, _day(18), CAL, last_attempt=_day(8))[0]
    # a drift verdict 3 days after that retraining waits for the cooldown (5 days), then triggers
    late = [DriftCheck("feature_drift", "*", 1, 1, 0.01, "drift", _day(11))]
    due, why = should_retrain(p, TRAINED, _day(11), CAL, late, last_attempt=_day(8))
    assert not due and "within the cooldown of 5 trading days after the retraining on" in why
    due, why = should_retrain(p, TRAINED, _day(13), CAL, late, last_attempt=_day(8))
    assert due and why == f"drift: feature_drift on {_day(11).date()}"
    # verdicts dated on or before the last retraining were acted on already
    old = [DriftCheck("feature_drift", "*", 1, 1, 0.01, "drift", _day(8))]
    assert not should_retrain(p, TRAINED, _day(14), CAL, old, last_attempt=_day(8))[0]
    # an earlier attempt than the model's own training end changes nothing
    assert should_retrain(p, _day(8), _day(12), CAL, last_attempt=_day(2)) == should_retrain(p, _day(8), _day(12), CAL)
