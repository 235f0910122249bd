"""Drift detection for the daily loop: feature drift (PSI and a two-sample Kolmogorov-Smirnov test per
feature, recent window against the model's training window) and performance drift (the ledger's
rolling direction accuracy and error against the promotion gate's thresholds, each with a one-sided
significance test), as :class:`DriftCheck` records stored in the database with their date.

Checks and verdicts
-------------------
Every check gives a value, a threshold, a p-value where there is a test, and a verdict: ``"drift"``,
``"ok"`` or ``"insufficient_data"``. The check names written by this module:

``psi`` (subject: a feature)
    Population stability index of the recent sample against the training sample, verdict ``drift``
    when ``psi > psi_threshold`` (0.25: the usual rule of thumb, Siddiqi 2006). The stored p-value
    is the approximate one of the PSI's null distribution (see :func:`population_stability_index`);
    it is informational: PSI's own verdict is the rule of thumb, whose false-positive rate depends on
    the sample sizes (measured in ``benchmarks/bench_drift.py``).
``ks`` (subject: a feature)
    Two-sample Kolmogorov-Smirnov statistic D; p-value adjusted across the features by Holm's
    step-down method; verdict ``drift`` when the adjusted p-value is below ``ks_alpha``.
``feature_drift`` (subject ``"*"``)
    The summary of one :func:`feature_drift` call: value = number of drifting features, threshold 1,
    p-value = the smallest Holm-adjusted KS p-value (Bonferroni's global test), verdict ``drift``
    when at least one feature drifts. This is the check a retraining policy listens to.
``direction_accuracy`` (subject: a model label)
    Rolling direction accuracy (correct calls / calls) against ``min_direction_accuracy``: one-sided
    exact binomial test of ``H0: p >= threshold`` against ``H1: p < threshold``.
``mape`` (subject: a model label)
    Rolling mean absolute percentage error of the predicted price against ``max_mape``: one-sided
    one-sample t-test of ``H0: E|e| <= threshold`` against ``H1: E|e| > threshold``.

Multiple testing
----------------
A feature-drift check tests every feature at once, so without a correction the chance of at least
one false alarm grows with the number of features (about ``1 - (1 - alpha)^k``). The KS p-values are
adjusted with Holm's step-down method (Holm 1979), which controls the family-wise error rate (the
probability of any false drift verdict in one check) at ``ks_alpha`` under any dependence between
the features, and rejects everything Bonferroni rejects and sometimes more. The family-wise rate is
the right error here because the check's verdict ("some feature drifted") is what triggers a
retraining. Benjamini-Hochberg was not used: it controls the false discovery rate, which equals the
family-wise rate only when no feature drifts, and its guarantee needs positive dependence (PRDS)
between the tests; features computed from the same prices (returns over overlapping windows) are
strongly dependent in ways not checked here.

Assumptions (read before trusting a p-value)
--------------------------------------------
The KS and binomial tests assume independent observations. Rolling features of a time series
(a 252-day return, an EWM volatility) are strongly autocorrelated, so a recent window of 60 rows
holds far fewer independent observations than 60, and the tests then reject far more often than
``alpha`` on undrifted data (``benchmarks/bench_drift.py`` measures this on AR(1) data). Pass
thinned samples (e.g. every k-th date for a feature with a k-day lookback) or long windows.
Direction calls of one model on many symbols on the same day are correlated through the market,
which inflates the binomial test's false-positive rate in the same way.

Measured calibration (``benchmarks/bench_drift.py``, 1,000 seeded draws per figure)
-------------------------------------------------------------------------------------
Undrifted iid data, 5 correlated features, 1,000 training rows: the ``feature_drift`` check (KS +
Holm at 5%) flags 5.4%, 5.1% and 5.4% of draws with 20, 60 and 250 recent rows (95% intervals all
contain 5%). The PSI rule of thumb (any feature > 0.25) flags 100%, 63% and 0% of the same draws:
with few recent rows PSI is mostly sampling noise and empty-bin epsilons, which is why it is reported
but does not trigger anything. Power for a 0.5 sd mean shift in one feature: 22%, 73% and 100% with
20, 60 and 250 recent rows. AR(1) rows (phi 0.9) with 60 recent rows: the KS check flags 99% of
undrifted draws; thinned to every 20th row, 7.6%. ``performance_drift`` at exactly the gate flags
2.6-4.3% (accuracy, 30 to 3,000 calls) and 3.0-4.6% (MAPE, exponential errors) of draws.

Storage
-------
:func:`define_drift_table` defines the ``drift_checks`` table (primary key ``(as_of, check,
subject)``); :func:`record_checks` writes checks in one transaction, replacing the rows of the same
keys (re-running a day's checks leaves one row per key).

Imports from the kit: :mod:`kit.db` (``write_tx``, ``read_tx``, ``utc_now``) only.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy import stats

from . import db as kdb

__all__ = [
    "VERDICTS",
    "PSI_EPSILON",
    "DriftCheck",
    "KSResult",
    "population_stability_index",
    "psi_null_p_value",
    "ks_test",
    "holm_adjust",
    "feature_drift",
    "feature_drift_checks",
    "performance_drift",
    "checks_from_frame",
    "define_drift_table",
    "drift_checks_table",
    "record_checks",
    "load_checks",
]

VERDICTS = ("drift", "ok", "insufficient_data")
PSI_EPSILON = 1e-4
"""Proportion used in place of 0 for an empty bin in :func:`population_stability_index`."""


@dataclass(frozen=True)
class DriftCheck:
    """One drift check's result, as stored in ``drift_checks``.

    Attributes
    ----------
    check : str
        ``psi``, ``ks``, ``feature_drift``, ``direction_accuracy`` or ``mape`` (module docstring).
    subject : str
        What was checked: a feature name, a model label, or ``"*"`` for a summary.
    value : float or None
        The statistic (PSI; KS D; number of drifting features; accuracy; MAPE as a fraction).
        None when there was no data.
    threshold : float or None
        The threshold it is held against (``psi_threshold``; ``ks_alpha`` for the adjusted p-value;
        1 feature; ``min_direction_accuracy``; ``max_mape``).
    p_value : float or None
        The test's p-value (Holm-adjusted for ``ks``), None for a check without a test.
    verdict : str
        ``drift``, ``ok`` or ``insufficient_data``.
    as_of : datetime.date
        The date of the data the check saw last (no look-ahead: nothing after it was used).
    n : int or None
        Observations behind the check (recent rows; calls; forecasts).

    Raises
    ------
    ValueError
        An unknown verdict, an empty check or subject, a p-value outside [0, 1], or an ``as_of``
        that is not a date.
    """

    check: str
    subject: str
    value: float | None
    threshold: float | None
    p_value: float | None
    verdict: str
    as_of: dt.date
    n: int | None = None

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if not self.check or not isinstance(self.check, str):
            raise ValueError(f"check must be a non-empty string, got {self.check!r}")
        if not self.subject or not isinstance(self.subject, str):
            raise ValueError(f"subject must be a non-empty string, got {self.subject!r}")
        if self.p_value is not None and not (0.0 <= float(self.p_value) <= 1.0):
            raise ValueError(f"p_value must be in [0, 1] or None, got {self.p_value!r} ({self.check}/{self.subject})")
        try:
            as_of = pd.Timestamp(self.as_of)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"as_of must be a date, got {self.as_of!r} ({self.check}/{self.subject})") from exc
        if as_of is pd.NaT:
            raise ValueError(f"as_of must be a date, got {self.as_of!r} ({self.check}/{self.subject})")
        object.__setattr__(self, "as_of", as_of.date())
        for name in ("value", "threshold", "p_value"):
            v = getattr(self, name)
            if v is not None:
                v = float(v)
                object.__setattr__(self, name, v if math.isfinite(v) else None)
        if self.n is not None:
            object.__setattr__(self, "n", int(self.n))

    def to_dict(self) -> dict:
        """The fields as a plain dict (``as_of`` a ``datetime.date``)."""
        return asdict(self)


# ------------------------------------------------------------------------------------------------
# the two-sample statistics
# ------------------------------------------------------------------------------------------------


def _sample(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype="float64").ravel()
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} has {int(bad.sum())} non-finite value(s), the first {a[i]} at position {i}; drop them first")
    return a


def population_stability_index(expected, actual, bins: int = 10, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of ``actual`` against the reference sample ``expected``.

    ``PSI = sum_i (a_i - e_i) ln(a_i / e_i)`` over ``bins`` bins whose edges are the quantiles
    ``1/bins, ..., (bins-1)/bins`` of ``expected`` (so each bin holds about ``1/bins`` of the
    reference), with ``e_i`` and ``a_i`` the proportions of ``expected`` and ``actual`` in bin i, and
    ``epsilon`` used in place of a proportion of 0. Values outside the reference's range fall in the
    first or last bin. Tied quantiles (a discrete feature) are merged, so fewer bins may be used.
    The usual reading (Siddiqi 2006): < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a major one.

    Parameters
    ----------
    expected : array-like, shape (n,), float
        Reference sample (the model's training window). Finite values only.
    actual : array-like, shape (m,), float
        Recent sample. Finite values only.
    bins : int
        Number of quantile bins (>= 2).
    epsilon : float
        Proportion substituted for an empty bin (> 0).

    Returns
    -------
    float
        PSI >= 0 (a symmetrised Kullback-Leibler divergence of the binned distributions).

    Notes
    -----
    Source: Siddiqi, *Credit Risk Scorecards* (Wiley 2006), ch. 8; Yurdakul, *Statistical Properties
    of Population Stability Index* (PhD thesis, Western Michigan University, 2018), whose result for
    fixed bins, ``PSI ~ (1/n + 1/m) chi2(B - 1)`` approximately when both samples come from one
    distribution, gives :func:`psi_null_p_value`. A PSI of 0.25 is thus well within the noise when
    ``m`` is small: with ``B = 10``, ``n = 1000`` and ``m = 60`` the null mean is ``0.16``.

    Raises
    ------
    ValueError
        An empty sample, a non-finite value (named by position), ``bins < 2`` or ``epsilon <= 0``.
    """
    if int(bins) != bins or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    if not (epsilon > 0):
        raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
    e = _sample(expected, "expected")
    a = _sample(actual, "actual")
    edges = np.unique(np.quantile(e, np.arange(1, int(bins)) / int(bins)))
    k = len(edges) + 1
    e_p = np.bincount(np.searchsorted(edges, e, side="right"), minlength=k) / e.size
    a_p = np.bincount(np.searchsorted(edges, a, side="right"), minlength=k) / a.size
    e_p = np.where(e_p > 0, e_p, epsilon)
    a_p = np.where(a_p > 0, a_p, epsilon)
    return float(np.sum((a_p - e_p) * np.log(a_p / e_p)))


def psi_null_p_value(psi: float, n_expected: int, n_actual: int, bins: int = 10) -> float:
    """Approximate p-value of a PSI under "no shift": ``P(chi2(bins - 1) > psi / (1/n + 1/m))``.

    Yurdakul (2018), for fixed bins and large samples; with quantile bins from the reference sample
    it is an approximation, good only when every bin expects several recent values: measured in
    ``benchmarks/bench_drift.py`` (10 bins, Holm across 5 features at 5%), it flags 6.0% of
    undrifted draws with 250 recent rows but 18% with 60 and 93% with 20, where empty bins (each
    replaced by ``epsilon``) dominate the PSI.

    Parameters
    ----------
    psi : float, >= 0
    n_expected, n_actual : int, sizes of the reference and recent samples (>= 1)
    bins : int, the number of bins used (>= 2)

    Raises
    ------
    ValueError
        A negative or non-finite PSI, or sizes < 1, or bins < 2.
    """
    if not (np.isfinite(psi) and psi >= 0):
        raise ValueError(f"psi must be a finite number >= 0, got {psi!r}")
    if n_expected < 1 or n_actual < 1:
        raise ValueError(f"sample sizes must be >= 1, got n_expected={n_expected}, n_actual={n_actual}")
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    scale = 1.0 / n_expected + 1.0 / n_actual
    return float(stats.chi2.sf(psi / scale, int(bins) - 1))


@dataclass(frozen=True)
class KSResult:
    """Two-sample KS test: ``statistic`` (D, the largest distance between the two empirical CDFs, in
    [0, 1]) and ``p_value`` (two-sided)."""

    statistic: float
    p_value: float


def ks_test(expected, actual) -> KSResult:
    """Two-sample Kolmogorov-Smirnov test (two-sided) of ``actual`` against ``expected``.

    ``scipy.stats.ks_2samp`` with ``method="auto"`` (exact p-value for small samples, the asymptotic
    Kolmogorov distribution otherwise). Assumes independent observations (module docstring).

    Parameters
    ----------
    expected, actual : array-like, shapes (n,) and (m,), float, finite values only.

    Raises
    ------
    ValueError
        An empty sample or a non-finite value.
    """
    e = _sample(expected, "expected")
    a = _sample(actual, "actual")
    r = stats.ks_2samp(e, a, alternative="two-sided", method="auto")
    return KSResult(float(r.statistic), float(r.pvalue))


def holm_adjust(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979, "A simple sequentially rejective multiple test
    procedure"): reject hypothesis i at family-wise level alpha when ``adjusted[i] < alpha``.

    With the p-values sorted ascending, ``p_(1) <= ... <= p_(k)``, the adjusted value of the i-th is
    ``min(1, max_{j <= i} (k - j + 1) p_(j))``. Cross-checked in the tests against
    ``statsmodels.stats.multitest.multipletests(method="holm")`` (not called here: it takes about
    0.2 s per call, which a 1,000-draw calibration cannot afford).

    Parameters
    ----------
    p_values : array-like, shape (k,), float in [0, 1]

    Returns
    -------
    ndarray, shape (k,), float64: adjusted p-values in [0, 1], same order as the input.

    Raises
    ------
    ValueError
        A p-value outside [0, 1] or NaN.
    """
    p = np.asarray(p_values, dtype="float64").ravel()
    if p.size == 0:
        return p
    ok = (p >= 0) & (p <= 1)
    if not ok.all():
        raise ValueError(f"p-values must be in [0, 1], got {p[~ok][:5]}")
    k = p.size
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate((k - np.arange(k)) * p[order]))
    out = np.empty(k)
    out[order] = adj
    return out


# ------------------------------------------------------------------------------------------------
# feature drift
# ------------------------------------------------------------------------------------------------

FEATURE_COLUMNS = ["n_train", "n_recent", "psi", "psi_threshold", "psi_p_value", "psi_drift", "ks_statistic",
                   "ks_p_value", "ks_p_adjusted", "ks_alpha", "ks_drift", "verdict"]


def _numeric_frame(df, name: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{name} must be a (rows, features) DataFrame, got {type(df).__name__}")
    out = df.copy()
    out.columns = [str(c) for c in out.columns]
    for c in out.columns:
        try:
            out[c] = pd.to_numeric(out[c], errors="raise").astype("float64")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}[{c!r}] must be numeric: {exc}") from exc
        inf = np.isinf(out[c].to_numpy())
        if inf.any():
            raise ValueError(f"{name}[{c!r}] has {int(inf.sum())} infinite value(s), the first at row {out.index[np.flatnonzero(inf)[0]]!r}")
    return out


def feature_drift(train_features: pd.DataFrame, recent: pd.DataFrame, *, psi_threshold: float = 0.25, ks_alpha: float = 0.05,
                  bins: int = 10, min_obs: int = 20, require_psi: bool = False) -> pd.DataFrame:
    """Feature drift of a recent window against the model's training window, one row per feature.

    For each feature (column present in both frames; NaN rows dropped per feature, as a feature's
    warm-up leaves NaN): the PSI against ``psi_threshold`` and the two-sample KS test, whose
    p-values are Holm-adjusted across the features tested so that the probability of any false drift
    verdict in the whole check is at most ``ks_alpha`` (module docstring). A feature's verdict is
    ``drift`` when its adjusted KS p-value is below ``ks_alpha`` (and, with ``require_psi``, its PSI
    also exceeds ``psi_threshold``: a shift both significant and large); ``insufficient_data`` when
    either sample has fewer than ``min_obs`` values (such a feature is not tested and not counted in
    the correction).

    Parameters
    ----------
    train_features : DataFrame, shape (n_rows, n_features), float
        Feature values over the model's training window (rows: observations, e.g. (date, symbol)
        pairs; columns: feature names).
    recent : DataFrame, shape (m_rows, n_features'), float
        Feature values over the recent window (e.g. the last 60 trading days), same column names.
    psi_threshold : float, > 0
        PSI above which the PSI check says drift (0.25, the usual "major shift").
    ks_alpha : float in (0, 1)
        Family-wise significance level of the KS check across features.
    bins : int
        PSI bins (quantiles of the training sample).
    min_obs : int, >= 2
        Fewest non-NaN values per sample for a feature to be tested.
    require_psi : bool
        Require PSI > psi_threshold too for a drift verdict.

    Returns
    -------
    DataFrame indexed by feature (sorted as in ``train_features``) with columns ``n_train,
    n_recent`` (int), ``psi, psi_threshold, psi_p_value`` (float; approximate, informational),
    ``psi_drift`` (bool), ``ks_statistic, ks_p_value, ks_p_adjusted, ks_alpha`` (float),
    ``ks_drift`` (bool) and ``verdict`` (str). ``attrs["checked"]`` holds the number of features
    tested.

    Raises
    ------
    TypeError
        Inputs are not DataFrames.
    ValueError
        No common feature column, a recent column missing from the training frame (named), a
        non-numeric or infinite value (named), or a parameter out of range.
    """
    if not (psi_threshold > 0 and np.isfinite(psi_threshold)):
        raise ValueError(f"psi_threshold must be a finite number > 0, got {psi_threshold!r}")
    if not (0 < ks_alpha < 1):
        raise ValueError(f"ks_alpha must be in (0, 1), got {ks_alpha!r}")
    if int(min_obs) != min_obs or min_obs < 2:
        raise ValueError(f"min_obs must be an integer >= 2, got {min_obs!r}")
    train = _numeric_frame(train_features, "train_features")
    rec = _numeric_frame(recent, "recent")
    missing = [c for c in rec.columns if c not in train.columns]
    if missing:
        raise ValueError(f"recent has feature column(s) {missing} that train_features lacks")
    features = [c for c in train.columns if c in rec.columns]
    if not features:
        raise ValueError("train_features and recent have no feature column in common")
    rows = []
    for f in features:
        e = train[f].dropna().to_numpy()
        a = rec[f].dropna().to_numpy()
        row = {"feature": f, "n_train": e.size, "n_recent": a.size, "psi": np.nan, "psi_threshold": float(psi_threshold), "psi_p_value": np.nan,
               "psi_drift": False, "ks_statistic": np.nan, "ks_p_value": np.nan, "ks_alpha": float(ks_alpha)}
        if e.size >= min_obs and a.size >= min_obs:
            psi = population_stability_index(e, a, bins=bins)
            ks = ks_test(e, a)
            row.update(psi=psi, psi_p_value=psi_null_p_value(psi, e.size, a.size, bins), psi_drift=bool(psi > psi_threshold),
                       ks_statistic=ks.statistic, ks_p_value=ks.p_value)
        rows.append(row)
    out = pd.DataFrame(rows).set_index("feature")
    tested = out["ks_p_value"].notna()
    out["ks_p_adjusted"] = np.nan
    out.loc[tested, "ks_p_adjusted"] = holm_adjust(out.loc[tested, "ks_p_value"].to_numpy())
    out["ks_drift"] = tested & (out["ks_p_adjusted"] < ks_alpha)
    drift = out["ks_drift"] & (out["psi_drift"] if require_psi else True)
    out["verdict"] = np.where(~tested, "insufficient_data", np.where(drift, "drift", "ok"))
    out["n_train"] = out["n_train"].astype(int)
    out["n_recent"] = out["n_recent"].astype(int)
    out["psi_drift"] = out["psi_drift"].astype(bool)
    out["ks_drift"] = out["ks_drift"].astype(bool)
    out = out[FEATURE_COLUMNS]
    out.attrs["checked"] = int(tested.sum())
    out.attrs["require_psi"] = bool(require_psi)
    return out


def feature_drift_checks(result: pd.DataFrame, as_of) -> list[DriftCheck]:
    """The :class:`DriftCheck` records of a :func:`feature_drift` result: per feature one ``psi`` and
    one ``ks`` check, then the summary ``feature_drift`` check (subject ``"*"``).

    The summary: value = number of features with verdict ``drift``, threshold = 1, p-value = the
    smallest Holm-adjusted KS p-value, ``n`` = features tested; verdict ``drift`` when at least one
    feature drifts, ``insufficient_data`` when no feature could be tested.

    Parameters
    ----------
    result : DataFrame returned by :func:`feature_drift`.
    as_of : date-like, the last date of the recent window.

    Raises
    ------
    ValueError
        ``result`` lacks a column of :func:`feature_drift`'s output (named).
    """
    missing = [c for c in FEATURE_COLUMNS if c not in result.columns]
    if missing:
        raise ValueError(f"result lacks column(s) {missing}; pass the output of feature_drift")
    as_of = pd.Timestamp(as_of).date()
    out = []
    for f, r in result.iterrows():
        tested = r["verdict"] != "insufficient_data"
        psi_verdict = ("drift" if r["psi_drift"] else "ok") if tested else "insufficient_data"
        ks_verdict = ("drift" if r["ks_drift"] else "ok") if tested else "insufficient_data"
        out.append(DriftCheck("psi", str(f), r["psi"] if tested else None, r["psi_threshold"], r["psi_p_value"] if tested else None,
                              psi_verdict, as_of, int(r["n_recent"])))
        out.append(DriftCheck("ks", str(f), r["ks_statistic"] if tested else None, r["ks_alpha"], r["ks_p_adjusted"] if tested else None,
                              ks_verdict, as_of, int(r["n_recent"])))
    tested = result["verdict"] != "insufficient_data"
    n_drift = int((result["verdict"] == "drift").sum())
    if tested.any():
        summary = DriftCheck("feature_drift", "*", float(n_drift), 1.0, float(result.loc[tested, "ks_p_adjusted"].min()),
                             "drift" if n_drift else "ok", as_of, int(tested.sum()))
    else:
        summary = DriftCheck("feature_drift", "*", None, 1.0, None, "insufficient_data", as_of, 0)
    out.append(summary)
    return out


# ------------------------------------------------------------------------------------------------
# performance drift
# ------------------------------------------------------------------------------------------------

CHECK_COLUMNS = ["check", "subject", "value", "threshold", "p_value", "verdict", "as_of", "n"]


def performance_drift(outcomes: pd.DataFrame, *, min_direction_accuracy: float = 0.52, max_mape: float = 0.05, alpha: float = 0.05,
                      window: int = 30, as_of=None) -> pd.DataFrame:
    """Performance drift of each model over the last ``window`` trading days of its ledger outcomes.

    Per model (subject: its ``label``, else ``model_id``), over the outcomes known at ``as_of`` (rows
    with ``target_date <= as_of`` when the frame has ``target_date``, else ``run_date <= as_of``) whose
    run date is one of the last ``window`` distinct run dates among them:

    * ``direction_accuracy``: k correct of n calls (rows with a non-null ``direction_correct``);
      p-value of the one-sided exact binomial test ``H0: p >= min_direction_accuracy`` vs ``H1: p <
      min_direction_accuracy`` (``scipy.stats.binomtest(k, n, p, alternative="less")``); verdict
      ``drift`` when p-value < ``alpha``, ``insufficient_data`` without calls.
    * ``mape`` (only for a model with forecasts, i.e. some non-null ``pct_error``): the mean of
      ``|pct_error|``; p-value of the one-sided one-sample t-test ``H0: E|e| <= max_mape`` vs ``H1:
      E|e| > max_mape`` (``scipy.stats.ttest_1samp(..., alternative="greater")``); verdict ``drift``
      when p-value < ``alpha``; ``insufficient_data`` with fewer than 2 errors. With zero spread the
      p-value is 0 if the mean exceeds the threshold, else 1.

    A model whose accuracy is exactly at the gate is flagged with probability at most ``alpha``
    (the binomial test is exact and, being discrete, conservative). Both tests assume independent
    outcomes (module docstring: same-day calls on many symbols are not).

    Parameters
    ----------
    outcomes : DataFrame
        Rows of :func:`kit.ledger.outcomes`: needs ``model_id``, ``run_date``, ``direction_correct``
        (bool or NA) and ``pct_error`` (float or NaN); uses ``label`` and ``target_date`` when present.
    min_direction_accuracy : float in (0, 1)
        The promotion gate's threshold (``GateThresholds.min_direction_accuracy``, 0.52).
    max_mape : float > 0
        The gate's MAPE threshold as a fraction (``GateThresholds.max_mape``, 0.05).
    alpha : float in (0, 1)
        Significance level of each test.
    window : int >= 1
        Trading days (distinct run dates) in the rolling window (30, as the ledger's leaderboard).
    as_of : date-like, optional
        The date the check is made (default: the latest ``target_date``, else ``run_date``).

    Returns
    -------
    DataFrame with columns ``check, subject, value, threshold, p_value, verdict, as_of, n`` (the
    fields of :class:`DriftCheck`; see :func:`checks_from_frame`), one row per model and check.

    Raises
    ------
    TypeError
        ``outcomes`` is not a DataFrame.
    ValueError
        A required column missing (named), or a parameter out of range.
    """
    if not isinstance(outcomes, pd.DataFrame):
        raise TypeError(f"outcomes must be a DataFrame (kit.ledger.outcomes()), got {type(outcomes).__name__}")
    need = ["model_id", "run_date", "direction_correct", "pct_error"]
    missing = [c for c in need if c not in outcomes.columns]
    if missing:
        raise ValueError(f"outcomes lacks column(s) {missing}; pass kit.ledger.outcomes()")
    if not 0 < min_direction_accuracy < 1:
        raise ValueError(f"min_direction_accuracy must be in (0, 1), got {min_direction_accuracy!r}")
    if not (max_mape > 0 and np.isfinite(max_mape)):
        raise ValueError(f"max_mape must be a finite number > 0, got {max_mape!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if int(window) != window or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    o = outcomes.copy()
    o["run_date"] = pd.to_datetime(o["run_date"]).dt.normalize()
    known = "target_date" if "target_date" in o.columns else "run_date"
    o[known] = pd.to_datetime(o[known]).dt.normalize()
    if as_of is None:
        if o.empty:
            raise ValueError("outcomes is empty and no as_of was given")
        as_of = o[known].max()
    as_of = pd.Timestamp(as_of).normalize()
    o = o[o[known] <= as_of]
    rows = []
    subject_of = (o.groupby("model_id")["label"].first() if "label" in o.columns else pd.Series(dtype=object))
    for model_id, g in o.groupby("model_id", sort=True):
        subject = str(subject_of.get(model_id, model_id)) if "label" in o.columns else str(model_id)
        dates = np.sort(g["run_date"].unique())[-int(window):]
        w = g[g["run_date"].isin(dates)]
        calls = w["direction_correct"].dropna().astype(bool)
        n, k = int(calls.size), int(calls.sum())
        if n:
            p = float(stats.binomtest(k, n, p=min_direction_accuracy, alternative="less").pvalue)
            rows.append(("direction_accuracy", subject, k / n, min_direction_accuracy, p, "drift" if p < alpha else "ok", as_of.date(), n))
        else:
            rows.append(("direction_accuracy", subject, None, min_direction_accuracy, None, "insufficient_data", as_of.date(), 0))
        if pd.to_numeric(g["pct_error"], errors="coerce").notna().any():
            ape = pd.to_numeric(w["pct_error"], errors="coerce").abs().dropna().to_numpy(dtype="float64")
            if ape.size >= 2:
                mean = float(ape.mean())
                if np.ptp(ape) == 0:
                    p = 0.0 if mean > max_mape else 1.0
                else:
                    p = float(stats.ttest_1samp(ape, max_mape, alternative="greater").pvalue)
                rows.append(("mape", subject, mean, max_mape, p, "drift" if p < alpha else "ok", as_of.date(), int(ape.size)))
            else:
                rows.append(("mape", subject, float(ape.mean()) if ape.size else None, max_mape, None, "insufficient_data", as_of.date(),
                             int(ape.size)))
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def checks_from_frame(frame: pd.DataFrame) -> list[DriftCheck]:
    """:class:`DriftCheck` records from a frame with their columns (``check, subject, value,
    threshold, p_value, verdict, as_of`` and optionally ``n``), e.g. :func:`performance_drift`'s.

    Raises
    ------
    ValueError
        A column missing (named) or a row with an invalid verdict or p-value.
    """
    missing = [c for c in CHECK_COLUMNS[:-1] if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks column(s) {missing}")

    def val(v):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA else v

    return [DriftCheck(r["check"], str(r["subject"]), val(r["value"]), val(r["threshold"]), val(r["p_value"]), r["verdict"], r["as_of"],
                       val(r.get("n"))) for r in frame.to_dict("records")]


# ------------------------------------------------------------------------------------------------
# storage
# ------------------------------------------------------------------------------------------------


def define_drift_table(md: sa.MetaData) -> sa.Table:
    """The ``drift_checks`` table on ``md``: one row per ``(as_of, check, subject)`` with ``value,
    threshold, p_value`` (float, NULL when absent), ``verdict`` (``drift``/``ok``/
    ``insufficient_data``, checked by the database), ``n`` and ``recorded_at`` (UTC ISO text).

    For the schema's next migration in :mod:`kit.db` (``md.create_all(conn, tables=[...])``).
    """
    return sa.Table(
        "drift_checks", md,
        sa.Column("as_of", sa.Date, primary_key=True),
        sa.Column("check", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(200), primary_key=True),
        sa.Column("value", sa.Double, nullable=True),
        sa.Column("threshold", sa.Double, nullable=True),
        sa.Column("p_value", sa.Double, nullable=True),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("n", sa.Integer, nullable=True),
        sa.Column("recorded_at", sa.String(32), nullable=False),
        sa.CheckConstraint("verdict IN ('drift', 'ok', 'insufficient_data')", name="ck_drift_checks_verdict"),
    )


drift_checks_table = define_drift_table(sa.MetaData())
"""The table :func:`record_checks` and :func:`load_checks` use by default."""


def _as_checks(checks) -> list[DriftCheck]:
    if isinstance(checks, pd.DataFrame):
        return checks_from_frame(checks)
    if isinstance(checks, DriftCheck):
        return [checks]
    out = list(checks)
    bad = [type(c).__name__ for c in out if not isinstance(c, DriftCheck)]
    if bad:
        raise TypeError(f"checks must be DriftCheck records (or a frame of them), got {bad[:3]}")
    return out


def record_checks(engine, checks: Iterable[DriftCheck] | pd.DataFrame, *, table: sa.Table | None = None, lock: str = "paper") -> int:
    """Write drift checks in one transaction; a row already stored for the same ``(as_of, check,
    subject)`` is replaced, so recording a day's checks again leaves one row per key.

    Parameters
    ----------
    engine : sqlalchemy Engine (e.g. :func:`kit.db.get_engine`).
    checks : iterable of DriftCheck, or a frame with their columns.
    table : the ``drift_checks`` table (default :data:`drift_checks_table`; must exist).
    lock : :func:`kit.db.write_tx` lock name serialising the writers (``"paper"``: the daily loop's).

    Returns
    -------
    int: rows written.

    Raises
    ------
    TypeError
        An element that is not a DriftCheck.
    ValueError
        The same key twice in one call (named).
    """
    t = drift_checks_table if table is None else table
    rows = _as_checks(checks)
    if not rows:
        return 0
    keys = [(c.as_of, c.check, c.subject) for c in rows]
    seen = set()
    for k in keys:
        if k in seen:
            raise ValueError(f"check {k[1]!r} for subject {k[2]!r} on {k[0]} appears twice in one call")
        seen.add(k)
    now = kdb.utc_now()
    values = [{**c.to_dict(), "recorded_at": now} for c in rows]
    with kdb.write_tx(engine, lock) as conn:
        for as_of, check, subject in keys:
            conn.execute(t.delete().where(t.c.as_of == as_of, t.c.check == check, t.c.subject == subject))
        conn.execute(t.insert(), values)
    return len(rows)


def load_checks(engine, *, as_of=None, start=None, end=None, check: str | Sequence[str] | None = None,
                table: sa.Table | None = None) -> pd.DataFrame:
    """Stored drift checks, sorted by ``as_of, check, subject``.

    Parameters
    ----------
    engine : sqlalchemy Engine.
    as_of : date-like, only this date; or ``start`` / ``end`` (inclusive) bounds.
    check : a check name or names to keep.
    table : the table (default :data:`drift_checks_table`).

    Returns
    -------
    DataFrame with columns ``as_of`` (datetime64), ``check, subject, value, threshold, p_value,
    verdict, n, recorded_at``.
    """
    t = drift_checks_table if table is None else table
    stmt = sa.select(t)
    if as_of is not None:
        stmt = stmt.where(t.c.as_of == pd.Timestamp(as_of).date())
    if start is not None:
        stmt = stmt.where(t.c.as_of >= pd.Timestamp(start).date())
    if end is not None:
        stmt = stmt.where(t.c.as_of <= pd.Timestamp(end).date())
    if check is not None:
        stmt = stmt.where(t.c.check.in_([check] if isinstance(check, str) else list(check)))
    stmt = stmt.order_by(t.c.as_of, t.c.check, t.c.subject)
    cols = [c.name for c in t.columns]
    with kdb.read_tx(engine) as conn:
        out = pd.DataFrame(conn.execute(stmt).mappings().all(), columns=cols)
    out["as_of"] = pd.to_datetime(out["as_of"])
    for c in ("value", "threshold", "p_value"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    return out
