"""Drift statistics for the daily loop: feature drift (PSI and a two-sample Kolmogorov-Smirnov test per
feature, recent window against the model's training window) and performance drift (the ledger's
rolling direction accuracy and error against the promotion gate's thresholds, each with a one-sided
significance test), as :class:`DriftCheck` records. Storing them is :mod:`kit.store.monitoring`'s
job; running them every day is :mod:`kit.live.loop`'s.

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
    when at least one feature drifts (with ``require_psi``: a feature whose KS test rejects *and*
    whose PSI exceeds the threshold). This is the check a retraining policy listens to.
``direction_accuracy`` (subject: a model label)
    Rolling direction accuracy (correct calls / calls) against ``min_direction_accuracy``: one-sided
    test of ``H0: p >= threshold`` against ``H1: p < threshold`` (below).
``mape`` (subject: a model label)
    Rolling mean absolute percentage error of the predicted price against ``max_mape``: one-sided
    test of ``H0: E|e| <= threshold`` against ``H1: E|e| > threshold`` (below).

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
The KS test assumes independent observations. Rolling features of a time series (a 252-day return,
an EWM volatility) are strongly autocorrelated, so a recent window of 60 rows holds far fewer
independent observations than 60, and the test then rejects far more often than ``alpha`` on
undrifted data (``benchmarks/bench_drift.py`` measures this on AR(1) data and on simulated price
panels). :func:`window_samples` therefore takes one cross-section every ``stride`` trading days, and
the daily loop's default recent sample is the day's cross-section alone. Stocks also move together:
on one day every stock's momentum features share the market's move, so the day's cross-section is
not a sample of the pooled training distribution even when nothing has changed, and the test
rejects on most undrifted days of a one-factor panel. With ``demean`` the samples are the features
minus their cross-sectional mean of the day: the check then compares how the stocks spread, which a
common factor does not move (measured: about nominal or below), and it no longer sees a move of the
whole market (a crash, a long rally), which the loop's performance checks and drawdown limit watch
instead. Direction calls of one model on many symbols on the same day are correlated through the
market too: :func:`performance_drift` treats the trading day as the unit of independence (a
cluster-robust test), not the call.

Performance tests
-----------------
Per model over its last ``window`` run dates, with ``k_d`` correct of ``n_d`` calls on day ``d``:
the value is the pooled accuracy ``p = sum k_d / sum n_d`` (what the gate measures). With at most one
call a day the test is the exact binomial test (``scipy.stats.binomtest``, one-sided). With several
calls a day it is a one-sided t-test of the ratio estimator with a cluster-robust (by day) standard
error: ``se^2 = D / (D - 1) * sum_d (k_d - p n_d)^2 / (sum_d n_d)^2`` over the ``D`` days, ``t = (p -
threshold) / se`` against Student's t with ``D - 1`` degrees of freedom (the linearised variance of
a ratio estimator with clusters, e.g. Cameron & Miller, "A Practitioner's Guide to Cluster-Robust
Inference", J. Human Resources 2015, section II; with equal calls a day it is the t-test of the daily
accuracies). MAPE is tested the same way with the absolute percentage errors' daily sums.

Measured calibration (``benchmarks/bench_drift.py``, 1,000 seeded draws per figure)
-------------------------------------------------------------------------------------
See ``benchmarks/README.md`` and ``docs/monitoring.md`` for the figures: the KS + Holm check on
undrifted independent rows flags 5.1-5.4% of draws at a nominal 5%; on the loop's own samples of
simulated undrifted price panels the figures are given there per setting.

Imports from the kit: :mod:`kit.features` (the :class:`~kit.features.FeatureArray` that
:func:`window_samples` reads) only.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "VERDICTS",
    "PSI_EPSILON",
    "CHECK_COLUMNS",
    "DriftCheck",
    "KSResult",
    "population_stability_index",
    "psi_null_p_value",
    "ks_test",
    "holm_adjust",
    "window_samples",
    "feature_drift",
    "feature_drift_checks",
    "performance_drift",
    "checks_from_frame",
    "as_checks",
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
# the samples the daily loop compares
# ------------------------------------------------------------------------------------------------


def window_samples(features, train_period, as_of, *, recent_days: int = 21, stride: int = 21, names=None,
                   demean: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two samples of a feature-drift check from a feature panel: the model's training window and
    the recent window, each thinned to one cross-section every ``stride`` trading days.

    Recent sample: the cross-sections at positions ``p, p - stride, p - 2 stride, ...`` within the
    last ``recent_days`` trading days up to ``as_of`` (``p``: the last date ``<= as_of``). Training
    sample: the cross-sections at ``q, q - stride, ...`` with ``q`` the last date ``<= train_end``,
    down to ``train_start``. Rows are ``(date, symbol)`` pairs; a row whose features are all NaN
    (a symbol not yet listed, a feature's warm-up) is dropped. Nothing after ``as_of`` is read.

    Thinning matters: consecutive rows of rolling features share most of their window, and the KS
    test assumes independent rows (module docstring). One cross-section a month of DMN features
    (returns over up to 252 days) still overlaps; the false-positive rate this leaves is measured in
    ``benchmarks/bench_drift.py`` on simulated panels.

    Parameters
    ----------
    features : :class:`kit.features.FeatureArray`
        ``values`` ``(T, N, F)`` float, ``names`` (F), ``index`` (T dates), ``columns`` (N symbols).
    train_period : (date-like, date-like)
        First and last date of the model's training data (its checkpoint's ``train_period``).
    as_of : date-like
        The day of the check.
    recent_days : int >= 1
        Trading days in the recent window.
    stride : int >= 1
        Trading days between two sampled cross-sections.
    names : list of str, optional
        The features to keep (default: all; e.g. a model's ``feature_names``).
    demean : bool
        Subtract from each row the cross-sectional mean of its date (per feature, over the symbols
        with a value): the samples then describe the spread of the features across stocks, not
        their common level, so a move of the whole market is not drift (module docstring).

    Returns
    -------
    (train, recent) : DataFrames with a ``(date, symbol)`` MultiIndex and one float column per
        feature.

    Raises
    ------
    ValueError
        ``recent_days`` or ``stride`` not a positive integer, an unknown feature name, ``as_of``
        before the first date, a training period that is not two dates in order or holds no date of
        the panel, or a training window that ends after ``as_of`` (that would be look-ahead).
    """
    for key, v in (("recent_days", recent_days), ("stride", stride)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{key} must be a positive integer, got {v!r}")
    index = pd.DatetimeIndex(features.index)
    all_names = list(features.names)
    names = all_names if names is None else [str(n) for n in names]
    unknown = [n for n in names if n not in all_names]
    if unknown:
        raise ValueError(f"feature(s) {unknown} not in the panel's features {all_names}")
    try:
        start, end = (pd.Timestamp(x) for x in train_period)
        day = pd.Timestamp(as_of)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"train_period must be two dates and as_of a date, got {train_period!r} and {as_of!r}") from exc
    if start > end:
        raise ValueError(f"train_period {start.date()} .. {end.date()} is not in order")
    if end > day:
        raise ValueError(f"training window ends {end.date()}, after as_of {day.date()}")
    p = int(index.searchsorted(day, side="right")) - 1
    if p < 0:
        raise ValueError(f"as_of {day.date()} is before the panel's first date {index[0].date()}")
    q = int(index.searchsorted(end, side="right")) - 1
    q0 = int(index.searchsorted(start, side="left"))
    if q < q0:
        raise ValueError(f"train_period {start.date()} .. {end.date()} holds no date of the panel ({index[0].date()} .. {index[-1].date()})")
    recent_pos = np.arange(p, max(p - int(recent_days), -1), -int(stride))[::-1]
    train_pos = np.arange(q, q0 - 1, -int(stride))[::-1]
    cols = [all_names.index(n) for n in names]

    def frame(pos):
        vals = np.asarray(features.values)[pos][:, :, cols].astype("float64")  # (len(pos), N, F')
        if demean:
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a date without any value stays NaN
                vals = vals - np.nanmean(vals, axis=1, keepdims=True)
        idx = pd.MultiIndex.from_product([index[pos], pd.Index(features.columns, name="symbol")], names=["date", "symbol"])
        out = pd.DataFrame(vals.reshape(-1, len(cols)).astype("float64"), index=idx, columns=names)
        return out[out.notna().any(axis=1)]

    return frame(train_pos), frame(recent_pos)


# ------------------------------------------------------------------------------------------------
# feature drift
# ------------------------------------------------------------------------------------------------

FEATURE_COLUMNS = ["n_train", "n_recent", "psi", "psi_bins", "psi_threshold", "psi_p_value", "psi_drift", "ks_statistic",
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
                  bins: int = 10, min_obs: int = 20, require_psi: bool = False, min_per_bin: int = 5) -> pd.DataFrame:
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
        PSI bins (quantiles of the training sample), at most; fewer when the recent sample is small
        (below).
    min_per_bin : int >= 1
        Recent values expected per bin: a feature with ``m`` recent values gets ``max(2, min(bins,
        m // min_per_bin))`` bins (10 bins for 50 values and more; 4 for 20). With 10 bins and 20
        values about one bin in eight is empty by chance, and each empty bin adds about 0.7 to the PSI
        through the ``epsilon`` of :func:`population_stability_index`: the index then measures the
        sample size, not a shift.
    min_obs : int, >= 2
        Fewest non-NaN values per sample for a feature to be tested.
    require_psi : bool
        Require PSI > psi_threshold too for a drift verdict.

    Returns
    -------
    DataFrame indexed by feature (sorted as in ``train_features``) with columns ``n_train,
    n_recent`` (int), ``psi`` (float), ``psi_bins`` (int, the bins used; 0 when not tested),
    ``psi_threshold, psi_p_value`` (float; the p-value approximate, informational),
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
    if int(min_per_bin) != min_per_bin or min_per_bin < 1:
        raise ValueError(f"min_per_bin must be an integer >= 1, got {min_per_bin!r}")
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
        row = {"feature": f, "n_train": e.size, "n_recent": a.size, "psi": np.nan, "psi_bins": 0, "psi_threshold": float(psi_threshold), "psi_p_value": np.nan,
               "psi_drift": False, "ks_statistic": np.nan, "ks_p_value": np.nan, "ks_alpha": float(ks_alpha)}
        if e.size >= min_obs and a.size >= min_obs:
            b = int(max(2, min(bins, a.size // min_per_bin)))
            psi = population_stability_index(e, a, bins=b)
            ks = ks_test(e, a)
            row.update(psi=psi, psi_bins=b, psi_p_value=psi_null_p_value(psi, e.size, a.size, b), psi_drift=bool(psi > psi_threshold),
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
    out["psi_bins"] = out["psi_bins"].astype(int)
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


def _cluster_p_value(num: np.ndarray, den: np.ndarray, threshold: float, alternative: str) -> float:
    """One-sided p-value of the ratio ``sum(num) / sum(den)`` against ``threshold`` with a standard
    error clustered by the rows (days): module docstring, "Performance tests". ``alternative``
    ``"less"`` (H1: ratio < threshold) or ``"greater"``. Needs at least 2 rows."""
    d = num.size
    ratio = num.sum() / den.sum()
    resid = num - ratio * den
    se = math.sqrt(d / (d - 1) * float(np.sum(resid**2))) / float(den.sum())
    diff = ratio - threshold
    if se == 0.0 or not math.isfinite(se):
        beyond = diff < 0 if alternative == "less" else diff > 0
        return 0.0 if beyond else 1.0
    t = diff / se
    return float(stats.t.cdf(t, d - 1) if alternative == "less" else stats.t.sf(t, d - 1))


def performance_drift(outcomes: pd.DataFrame, *, min_direction_accuracy: float = 0.52, max_mape: float = 0.05, alpha: float = 0.05,
                      window: int = 30, as_of=None) -> pd.DataFrame:
    """Performance drift of each model over the last ``window`` trading days of its ledger outcomes.

    Per model (subject: its ``label``, else ``model_id``), over the outcomes known at ``as_of`` (rows
    with ``target_date <= as_of`` when the frame has ``target_date``, else ``run_date <= as_of``) whose
    run date is one of the last ``window`` distinct run dates among them:

    * ``direction_accuracy``: ``k`` correct of ``n`` calls (rows with a non-null
      ``direction_correct``), value ``k / n``; one-sided test of ``H0: p >= min_direction_accuracy``:
      the exact binomial test when no day has more than one call, else the day-clustered t-test
      (module docstring, "Performance tests"); verdict ``drift`` when the p-value is below
      ``alpha``; ``insufficient_data`` without calls, or with several calls a day on fewer than 2
      days.
    * ``mape`` (only for a model with forecasts, i.e. some non-null ``pct_error``): the mean of
      ``|pct_error|``; one-sided test of ``H0: E|e| <= max_mape``: a one-sample t-test when no day
      has more than one error, else the day-clustered t-test; ``insufficient_data`` with fewer than
      2 errors (or days). With zero spread the p-value is 0 if the mean is beyond the threshold,
      else 1.

    A model whose accuracy is exactly at the gate is flagged with probability at most about
    ``alpha`` when the days are independent (measured in ``benchmarks/bench_drift.py``, also with
    calls correlated through a market factor within each day).

    Parameters
    ----------
    outcomes : DataFrame
        Rows of :func:`kit.store.ledger.outcomes`: needs ``model_id``, ``run_date``,
        ``direction_correct`` (bool or NA) and ``pct_error`` (float or NaN); uses ``label`` and
        ``target_date`` when present.
    min_direction_accuracy : float in [0, 1]
        The promotion gate's threshold (``GateThresholds.min_direction_accuracy``, 0.52).
    max_mape : float >= 0
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
        raise TypeError(f"outcomes must be a DataFrame (kit.store.ledger.outcomes()), got {type(outcomes).__name__}")
    need = ["model_id", "run_date", "direction_correct", "pct_error"]
    missing = [c for c in need if c not in outcomes.columns]
    if missing:
        raise ValueError(f"outcomes lacks column(s) {missing}; pass kit.store.ledger.outcomes()")
    if not 0 <= min_direction_accuracy <= 1:
        raise ValueError(f"min_direction_accuracy must be in [0, 1], got {min_direction_accuracy!r}")
    if not (max_mape >= 0 and np.isfinite(max_mape)):
        raise ValueError(f"max_mape must be a finite number >= 0, got {max_mape!r}")
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
    day = as_of.date()
    o = o[o[known] <= as_of]
    rows = []
    subject_of = o.groupby("model_id")["label"].first() if "label" in o.columns else pd.Series(dtype=object)
    for model_id, g in o.groupby("model_id", sort=True):
        subject = str(subject_of.get(model_id, model_id)) if "label" in o.columns else str(model_id)
        dates = np.sort(g["run_date"].unique())[-int(window):]
        w = g[g["run_date"].isin(dates)]
        calls = w.loc[w["direction_correct"].notna(), ["run_date", "direction_correct"]]
        per_day = calls.groupby("run_date")["direction_correct"].agg(["sum", "size"])
        n, k = int(per_day["size"].sum()), int(per_day["sum"].sum())
        thr = min_direction_accuracy
        if n == 0 or (per_day["size"].max() > 1 and len(per_day) < 2):
            rows.append(("direction_accuracy", subject, k / n if n else None, thr, None, "insufficient_data", day, n))
        else:
            if per_day["size"].max() == 1:
                p = float(stats.binomtest(k, n, p=thr, alternative="less").pvalue)
            else:
                p = _cluster_p_value(per_day["sum"].to_numpy(dtype=float), per_day["size"].to_numpy(dtype=float), thr, "less")
            rows.append(("direction_accuracy", subject, k / n, thr, p, "drift" if p < alpha else "ok", day, n))
        if pd.to_numeric(g["pct_error"], errors="coerce").notna().any():
            e = w[["run_date"]].assign(ape=pd.to_numeric(w["pct_error"], errors="coerce").abs()).dropna()
            per_day = e.groupby("run_date")["ape"].agg(["sum", "size"])
            m = int(per_day["size"].sum())
            mean = float(per_day["sum"].sum() / m) if m else None
            several = m and per_day["size"].max() > 1
            if m < 2 or (several and len(per_day) < 2):
                rows.append(("mape", subject, mean, max_mape, None, "insufficient_data", day, m))
                continue
            if several:
                p = _cluster_p_value(per_day["sum"].to_numpy(dtype=float), per_day["size"].to_numpy(dtype=float), max_mape, "greater")
            else:
                ape = e["ape"].to_numpy(dtype="float64")
                p = (0.0 if mean > max_mape else 1.0) if np.ptp(ape) == 0 else float(stats.ttest_1samp(ape, max_mape, alternative="greater").pvalue)
            rows.append(("mape", subject, mean, max_mape, p, "drift" if p < alpha else "ok", day, m))
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
        return None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v

    return [DriftCheck(r["check"], str(r["subject"]), val(r["value"]), val(r["threshold"]), val(r["p_value"]), r["verdict"], r["as_of"],
                       val(r.get("n"))) for r in frame.to_dict("records")]


def as_checks(checks) -> list[DriftCheck]:
    """A list of :class:`DriftCheck` from one record, an iterable of records, or a frame of their
    columns (:func:`checks_from_frame`).

    Raises
    ------
    TypeError
        An element that is not a DriftCheck.
    """
    if isinstance(checks, pd.DataFrame):
        return checks_from_frame(checks)
    if isinstance(checks, DriftCheck):
        return [checks]
    out = list(checks)
    bad = [type(c).__name__ for c in out if not isinstance(c, DriftCheck)]
    if bad:
        raise TypeError(f"checks must be DriftCheck records (or a frame of them), got {bad[:3]}")
    return out
