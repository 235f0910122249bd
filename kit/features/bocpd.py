"""Bayesian online changepoint detection (Adams & MacKay, 2007, "Bayesian Online Changepoint
Detection", arXiv:0710.3742, Algorithm 1): numba kernels on ``(T, N)`` arrays, and the ``bocpd``
feature set of :data:`kit.features.sets.FEATURE_SETS` (batch and streaming from one step function).

Each symbol's returns are Gaussian segments of unknown mean and variance (Normal-Gamma prior,
Student-t predictive) separated by changepoints with a constant hazard; the run-length distribution
is truncated at ``R`` run lengths, so the state per symbol has a fixed width (:func:`bocpd_width`)
and each bar costs O(R).

State layout, as the other engines of :mod:`kit.features.kernels`: one column ``S[:, j]`` of a
``(width, capacity)`` float64 array per symbol: row 0 the number of valid returns seen, row 1 the
previous close (the close engine computes ``close_t / close_{t-1} - 1`` itself), then ``R``
run-length probabilities, ``R`` posterior means and ``R`` posterior ``beta`` (``kappa`` and ``alpha``
follow from the run length). The batch functions allocate the state Fortran-ordered (each symbol's
column contiguous, as its loop over run lengths reads it); :class:`kit.features.StreamingFeatures`
allocates it C-ordered. The arithmetic is the same, so the values are bit-identical (tested).

The ``bocpd`` feature set (``fields = ("close",)``): ``bocpd_cp_prob_5`` and ``bocpd_cp_prob_21``,
the posterior probability that the current run began within the last 5 or 21 bars, and
``bocpd_run_length_norm``, the expected run length divided by ``R`` (in [0, 1]; the online analogue
of the GP changepoint location of :mod:`kit.features.changepoint`), with the default parameters
:data:`BOCPD_DEFAULTS`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = [
    "BOCPD_DEFAULTS",
    "BOCPD_K",
    "BOCPD_NAMES",
    "BOCPD_WIDTH",
    "bocpd",
    "bocpd_width",
    "bocpd_init_rows",
    "bocpd_run",
    "bocpd_run_close",
    "bocpd_batch",
    "bocpd_init_all",
    "bocpd_stream_run",
    "check_bocpd_params",
]

_B_HEAD = 2  # valid returns seen, previous close

BOCPD_DEFAULTS = {"hazard": 1.0 / 250.0, "mu0": 0.0, "kappa0": 1.0, "alpha0": 1.0, "beta0": 1e-4, "max_run_length": 500}
"""Default model: one changepoint a year expected (hazard 1/250), prior mean 0, ``kappa0 = alpha0 =
1``, ``beta0 = 1e-4`` (a fresh run's predictive scale ``sqrt(beta0 (kappa0 + 1) / (alpha0 kappa0))``
is 1.4% a day), run lengths truncated at R = 500 bars."""
BOCPD_K = (5, 21)
"""The feature set's k values: a change within the last week or month."""
BOCPD_NAMES = tuple(f"bocpd_cp_prob_{k}" for k in BOCPD_K) + ("bocpd_run_length_norm",)


def bocpd_width(max_run_length: int) -> int:
    """State slots per symbol for run lengths ``0..max_run_length - 1``: the header (valid returns
    seen, previous close), the run-length posterior and the per-run-length posterior mean and
    ``beta`` of the Normal-Gamma model."""
    return _B_HEAD + 3 * int(max_run_length)


BOCPD_WIDTH = bocpd_width(BOCPD_DEFAULTS["max_run_length"])


@njit(cache=True)
def _bocpd_tables(R, kappa0, alpha0):
    """Per run length r: ``alpha_r = alpha0 + r/2``, ``kappa_r = kappa0 + r``, the Student-t
    log-normaliser ``lgamma(alpha_r + 1/2) - lgamma(alpha_r) - log(2 pi alpha_r) / 2`` and the scale
    ratio ``(kappa_r + 1) / (alpha_r kappa_r)`` (scale^2 = beta_r * ratio)."""
    a = np.empty(R)
    k = np.empty(R)
    const = np.empty(R)
    ratio = np.empty(R)
    for r in range(R):
        a[r] = alpha0 + 0.5 * r
        k[r] = kappa0 + r
        const[r] = math.lgamma(a[r] + 0.5) - math.lgamma(a[r]) - 0.5 * math.log(2.0 * math.pi * a[r])
        ratio[r] = (k[r] + 1.0) / (a[r] * k[r])
    return a, k, const, ratio


@njit(cache=True)
def _bocpd_init(S, j, R, mu0, beta0):
    """Reset symbol j's state (column j of ``S``): no return seen, no previous close, run length 0
    with probability 1 and the prior's statistics."""
    S[0, j] = 0.0
    S[1, j] = np.nan
    for r in range(3 * R):
        S[_B_HEAD + r, j] = 0.0
    S[_B_HEAD, j] = 1.0
    S[_B_HEAD + R, j] = mu0
    S[_B_HEAD + 2 * R, j] = beta0


@njit(cache=True)
def _bocpd_step(S, j, x, hazard, mu0, beta0, R, a_r, k_r, const, ratio, ks, lp, out, t, col):
    """Feed one return ``x`` of symbol j (Algorithm 1, steps 3-9); write ``P(r_t < ks[i])`` to
    ``out[t, col, i]`` and the expected run length to ``out[t, col, len(ks)]``. A non-finite return
    leaves the state unchanged and writes NaN. ``lp`` is scratch of length R."""
    n_k = ks.shape[0]
    if not np.isfinite(x):
        for i in range(n_k + 1):
            out[t, col, i] = np.nan
        return
    o_p = _B_HEAD
    o_m = _B_HEAD + R
    o_b = _B_HEAD + 2 * R
    n_obs = S[0, j]
    na = R if n_obs + 1.0 >= R else int(n_obs) + 1
    # 3. predictive log density of x under each run length (Student-t, Normal-Gamma posterior)
    mx = -np.inf
    for r in range(na):
        mu = S[o_m + r, j]
        s2 = S[o_b + r, j] * ratio[r]
        z2 = (x - mu) * (x - mu) / s2
        v = const[r] - 0.5 * math.log(s2) - (a_r[r] + 0.5) * math.log1p(z2 / (2.0 * a_r[r]))
        lp[r] = v
        if S[o_p + r, j] > 0.0 and v > mx:
            mx = v
    # 4-5. growth and changepoint masses (scaled by exp(-mx) against underflow); run length R is dropped
    total = 0.0
    for r in range(na):
        w = S[o_p + r, j] * math.exp(lp[r] - mx)
        lp[r] = w
        total += w
    cp = hazard * total
    z = cp
    top = na if na < R else R - 1
    for r in range(top):
        z += (1.0 - hazard) * lp[r]
    # 6-8. normalise; shift the run lengths up by one, updating the statistics with x
    for r in range(top - 1, -1, -1):
        kap = k_r[r]
        mu = S[o_m + r, j]
        d = x - mu
        S[o_m + r + 1, j] = (kap * mu + x) / (kap + 1.0)
        S[o_b + r + 1, j] = S[o_b + r, j] + kap * d * d / (2.0 * (kap + 1.0))
        S[o_p + r + 1, j] = (1.0 - hazard) * lp[r] / z
    S[o_p, j] = cp / z
    S[o_m, j] = mu0
    S[o_b, j] = beta0
    S[0, j] = n_obs + 1.0
    # 9. outputs
    acc = 0.0
    i = 0
    el = 0.0
    for r in range(top + 1):
        pr = S[o_p + r, j]
        el += r * pr
        while i < n_k and ks[i] <= r:
            out[t, col, i] = acc
            i += 1
        acc += pr
    while i < n_k:
        out[t, col, i] = min(acc, 1.0)
        i += 1
    out[t, col, n_k] = el


@njit(cache=True, parallel=True)
def bocpd_run(S, slots, x, hazard, mu0, kappa0, alpha0, beta0, R, ks):
    """Step BOCPD over returns ``x`` ``(T, n)`` for the symbols in state columns ``slots`` ``(n,)``
    int64 of ``S`` ``(width, capacity)``; returns ``(T, n, len(ks) + 1)`` float64: ``P(r_t < k)`` for
    each k, then ``E[r_t]`` in bars. Parallel over symbols."""
    T, n = x.shape
    a_r, k_r, const, ratio = _bocpd_tables(R, kappa0, alpha0)
    out = np.empty((T, n, ks.shape[0] + 1))
    for c in prange(n):
        lp = np.empty(R)
        j = slots[c]
        for t in range(T):
            _bocpd_step(S, j, x[t, c], hazard, mu0, beta0, R, a_r, k_r, const, ratio, ks, lp, out, t, c)
    return out


@njit(cache=True, parallel=True)
def bocpd_run_close(S, slots, close, hazard, mu0, kappa0, alpha0, beta0, R, ks):
    """As :func:`bocpd_run` on closes ``(T, n)``: each bar's return ``close_t / close_{t-1} - 1`` is
    computed from the previous close kept in the state (NaN when either is NaN, as
    :func:`kit.features.kernels.simple_returns`)."""
    T, n = close.shape
    a_r, k_r, const, ratio = _bocpd_tables(R, kappa0, alpha0)
    out = np.empty((T, n, ks.shape[0] + 1))
    for c in prange(n):
        lp = np.empty(R)
        j = slots[c]
        for t in range(T):
            cl = close[t, c]
            x = cl / S[1, j] - 1.0 if S[1, j] != 0.0 else np.nan
            S[1, j] = cl
            _bocpd_step(S, j, x, hazard, mu0, beta0, R, a_r, k_r, const, ratio, ks, lp, out, t, c)
    return out


@njit(cache=True)
def bocpd_init_rows(S, slots, R, mu0, beta0):
    """Reset the state columns ``slots`` ``(n,)`` int64 of ``S`` ``(bocpd_width(R), capacity)`` to the prior."""
    for c in range(slots.shape[0]):
        _bocpd_init(S, slots[c], R, mu0, beta0)


def check_bocpd_params(hazard, mu0, kappa0, alpha0, beta0, max_run_length, ks) -> tuple:
    """Validated BOCPD parameters as ``(hazard, mu0, kappa0, alpha0, beta0, R, ks int64 array)``.

    Raises
    ------
    ValueError
        A parameter out of range (named with its value): hazard not in (0, 1), non-finite ``mu0``,
        non-positive ``kappa0``/``alpha0``/``beta0``, ``max_run_length < 2``, k values not strictly
        increasing positive integers at most ``max_run_length``.
    """
    if not (0.0 < hazard < 1.0):
        raise ValueError(f"hazard must be in (0, 1), got {hazard!r}")
    if not np.isfinite(mu0):
        raise ValueError(f"mu0 must be finite, got {mu0!r}")
    for name, v in (("kappa0", kappa0), ("alpha0", alpha0), ("beta0", beta0)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be > 0, got {v!r}")
    if int(max_run_length) != max_run_length or max_run_length < 2:
        raise ValueError(f"max_run_length must be an integer >= 2, got {max_run_length!r}")
    ks_t = (ks,) if np.isscalar(ks) else tuple(ks)
    if not ks_t or any(int(k) != k or k < 1 for k in ks_t):
        raise ValueError(f"k must be a positive integer or a sequence of them, got {ks!r}")
    if list(ks_t) != sorted(set(ks_t)):
        raise ValueError(f"k values must be strictly increasing, got {ks!r}")
    if max(ks_t) > max_run_length:
        raise ValueError(f"k={max(ks_t)} exceeds max_run_length={max_run_length}")
    return float(hazard), float(mu0), float(kappa0), float(alpha0), float(beta0), int(max_run_length), np.asarray(ks_t, dtype=np.int64)


def new_state(n: int, max_run_length: int, mu0: float, beta0: float) -> np.ndarray:
    """A ``(bocpd_width(R), n)`` state at the prior, each symbol's column contiguous (Fortran order)."""
    S = np.empty((n, bocpd_width(max_run_length))).T
    bocpd_init_rows(S, np.arange(n, dtype=np.int64), int(max_run_length), float(mu0), float(beta0))
    return S


def bocpd(
    returns,
    hazard: float = BOCPD_DEFAULTS["hazard"],
    mu0: float = BOCPD_DEFAULTS["mu0"],
    kappa0: float = BOCPD_DEFAULTS["kappa0"],
    alpha0: float = BOCPD_DEFAULTS["alpha0"],
    beta0: float = BOCPD_DEFAULTS["beta0"],
    max_run_length: int = BOCPD_DEFAULTS["max_run_length"],
    k=5,
):
    """Bayesian online changepoint detection (Adams & MacKay, 2007, arXiv:0710.3742, Algorithm 1).

    Each symbol's returns are modelled as Gaussian segments of unknown mean and variance separated by
    changepoints with constant hazard ``H`` (prior probability of a changepoint at each bar: expected
    segment length ``1 / H``). With the Normal-Gamma prior ``(mu0, kappa0, alpha0, beta0)`` a run of
    length r has posterior ``kappa_r = kappa0 + r``, ``alpha_r = alpha0 + r / 2``,
    ``mu_r = (kappa_{r-1} mu_{r-1} + x) / kappa_r``, ``beta_r = beta_{r-1} + kappa_{r-1} (x - mu_{r-1})^2
    / (2 kappa_r)`` and the predictive of the next return is Student-t with ``2 alpha_r`` degrees of
    freedom, location ``mu_r`` and scale^2 ``beta_r (kappa_r + 1) / (alpha_r kappa_r)`` (Murphy, 2007,
    "Conjugate Bayesian analysis of the Gaussian distribution", eq. 110). Each bar: the predictive
    density of every run length (step 3), growth ``P(r_t = r + 1) ∝ P(r_{t-1} = r) pi_r (1 - H)`` and
    changepoint ``P(r_t = 0) ∝ H sum_r P(r_{t-1} = r) pi_r`` (steps 4-5), normalisation and update of
    the statistics (steps 6-8). As in the paper's algorithm the changepoint mass uses the previous
    runs' predictives, so ``P(r_t = 0) = H`` exactly (up to truncation) and a change shows in the
    short run lengths from the next bar on: hence the feature sums the last k run lengths.

    Run lengths are truncated at ``R = max_run_length`` (the paper's section 2.4 pruning): the mass
    that would grow past ``R - 1`` is dropped and the rest renormalised.

    Parameters
    ----------
    returns : (T, N) or (T,) array or DataFrame of simple returns (decimal fractions). A non-finite
        bar leaves the symbol's state unchanged and its outputs NaN (the model skips it); the first
        valid return starts the symbol from the prior.
    hazard : H in (0, 1); default 1/250 (one changepoint a year expected).
    mu0, kappa0, alpha0, beta0 : Normal-Gamma prior in return units (defaults :data:`BOCPD_DEFAULTS`).
    max_run_length : R >= 2 (default 500 bars).
    k : int or increasing sequence of ints <= R.

    Returns
    -------
    (cp_prob, expected_run_length) : float64 arrays. ``cp_prob`` is ``P(r_t < k | x_{1:t})``, the
    posterior probability that the current run began within the last k bars, shape (T, N) for an
    int ``k`` or (T, N, len(k)) for a sequence; ``expected_run_length`` is ``E[r_t | x_{1:t}]`` in
    bars, (T, N). (T,) / (T, len(k)) shapes for a 1-D input.

    Raises
    ------
    ValueError
        A parameter out of range (named) or ``returns`` not 1-D or 2-D.
    """
    hazard, mu0, kappa0, alpha0, beta0, R, ks = check_bocpd_params(hazard, mu0, kappa0, alpha0, beta0, max_run_length, k)
    squeeze = np.ndim(returns) == 1
    x = np.asarray(returns.to_numpy() if hasattr(returns, "to_numpy") else returns, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"returns must be (T, N) or (T,), got shape {x.shape}")
    x = np.ascontiguousarray(x)
    N = x.shape[1]
    S = new_state(N, R, mu0, beta0)
    out = bocpd_run(S, np.arange(N, dtype=np.int64), x, hazard, mu0, kappa0, alpha0, beta0, R, ks)
    p, rl = out[:, :, :-1], out[:, :, -1]
    if np.isscalar(k):
        p = p[:, :, 0]
    if squeeze:
        return p[:, 0], rl[:, 0]
    return p, rl


# --------------------------------------------------------------------------------------------
# the ``bocpd`` feature set (kit.features.sets.FEATURE_SETS): default parameters, closes in
# --------------------------------------------------------------------------------------------

_D = BOCPD_DEFAULTS
_KS = np.asarray(BOCPD_K, dtype=np.int64)


def feature_values(raw: np.ndarray, max_run_length: int) -> np.ndarray:
    """The feature set's values from :func:`bocpd_run_close` output ``(T, n, len(k) + 1)``: the
    probabilities as they are, the expected run length divided by ``max_run_length`` (in place;
    returns ``raw``). One function, so the batch, the stream and the feature cache divide alike."""
    raw[..., -1] /= float(max_run_length)
    return raw


def bocpd_init_all(S, slots) -> None:
    """Reset state columns ``slots`` to the default prior (the feature set's ``init_all``)."""
    bocpd_init_rows(S, np.asarray(slots, dtype=np.int64), _D["max_run_length"], _D["mu0"], _D["beta0"])


def bocpd_stream_run(S, slots, close) -> np.ndarray:
    """Step the default model over closes ``(T, n)`` for state columns ``slots``; returns the
    feature set's values ``(T, n, 3)`` (the feature set's ``run``)."""
    raw = bocpd_run_close(S, slots, np.ascontiguousarray(close, dtype=np.float64), _D["hazard"], _D["mu0"], _D["kappa0"],
                          _D["alpha0"], _D["beta0"], _D["max_run_length"], _KS)
    return feature_values(raw, _D["max_run_length"])


def bocpd_batch(close) -> np.ndarray:
    """The ``bocpd`` feature set for a ``(T, N)`` array of adjusted closes, ``(T, N, 3)`` float64 in
    the order of :data:`BOCPD_NAMES` (the feature set's ``batch``).

    Raises
    ------
    ValueError
        ``close`` not 2-D.
    """
    c = np.asarray(close, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"close must be (T, N), got shape {c.shape}")
    S = new_state(c.shape[1], _D["max_run_length"], _D["mu0"], _D["beta0"])
    return bocpd_stream_run(S, np.arange(c.shape[1], dtype=np.int64), c)
