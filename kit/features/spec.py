"""Feature specifications: the string a profile gives a model (``features: dmn+cpd21+bocpd``) and the
one function that turns it into the model's input array for a universe.

Tokens, joined by ``+`` in the order the model sees them:

======================  =================================================================  =========
token                   features                                                           computed
======================  =================================================================  =========
``dmn``                 the 8 Deep Momentum Network inputs (:data:`FEATURE_SETS` ``dmn``)   numba, each call
``bocpd``               ``bocpd_cp_prob_5``, ``bocpd_cp_prob_21``, ``bocpd_run_length_norm``  numba, cached
                        (:mod:`kit.features.bocpd`, the ``bocpd`` feature set)
``cpd<l>``, l in 10,    ``cp_severity_<l>``, ``cp_location_<l>``: the GP changepoint severity  torch, cached
21, 63, 126, 252        and location over a lookback of l days (Wood et al., 2021/2022;
                        :mod:`kit.features.changepoint`)
======================  =================================================================  =========

The changepoint tokens read :mod:`kit.features.cache` (building what is missing), so a spec costs a
GP fit per symbol and date once, then only the new dates. The GP features use the reference
implementation's fallback for a window whose fit failed (the last valid value carried forward,
:func:`kit.features.changepoint.apply_fallback` ``"ffill"``; past values only), so a failed fit does
not remove a day from training or trading; the ``bocpd`` values equal the ``bocpd`` feature set (and
so the streaming state) bit for bit.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..conventions import CPD_LOOKBACKS
from .sets import FEATURE_SETS, FeatureArray, feature_set

__all__ = ["parse_feature_spec", "feature_spec_names", "feature_array", "DEFAULT_FEATURES"]

DEFAULT_FEATURES = "dmn"
_CPD = re.compile(r"cpd(\d+)")


def parse_feature_spec(spec: str) -> tuple[str, ...]:
    """The tokens of a feature specification, checked.

    Parameters
    ----------
    spec : tokens joined by ``+`` (module docstring), e.g. ``"dmn+cpd21+bocpd"``; spaces around the
        tokens are ignored.

    Returns
    -------
    tuple of tokens in order.

    Raises
    ------
    ValueError
        Not a string, empty, an unknown token (the known ones listed) or a repeated token.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"features must be a non-empty string such as 'dmn' or 'dmn+cpd21+bocpd', got {spec!r}")
    tokens = tuple(t.strip() for t in spec.split("+"))
    for t in tokens:
        m = _CPD.fullmatch(t)
        if t in ("dmn", "bocpd") or (m and int(m.group(1)) in CPD_LOOKBACKS):
            continue
        known = ["dmn", "bocpd"] + [f"cpd{lb}" for lb in CPD_LOOKBACKS]
        raise ValueError(f"features {spec!r}: unknown token {t!r}; known: {known}")
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"features {spec!r}: a token is repeated")
    return tokens


def feature_spec_names(spec: str) -> list[str]:
    """The feature names of ``spec`` in order (the model's F inputs), without computing anything.

    Raises
    ------
    ValueError
        As :func:`parse_feature_spec`.
    """
    names = []
    for t in parse_feature_spec(spec):
        if t in FEATURE_SETS:
            names.extend(FEATURE_SETS[t].names)
        else:
            lb = int(_CPD.fullmatch(t).group(1))
            names.extend([f"cp_severity_{lb}", f"cp_location_{lb}"])
    return names


def feature_array(spec: str, close: pd.DataFrame, *, cache_dir=None, data_sha256: str | None = None, progress: bool = False) -> FeatureArray:
    """The input array of a feature specification for a universe.

    Parameters
    ----------
    spec : e.g. ``"dmn"``, ``"dmn+cpd21"``, ``"dmn+cpd21+cpd126+bocpd"`` (module docstring).
    close : (T, N) DataFrame of adjusted closes (dates increasing, symbols as columns), NaN where a
        symbol has no bar.
    cache_dir : the changepoint cache (:func:`kit.features.cache.build_cpd_features`): None for
        :func:`kit.paths.feature_cache_dir` (``$KIT_STATE_DIR/features`` or ``data/state/features``),
        a path, or False to compute without caching.
    data_sha256 : checksum of the data source, recorded in the cache files (provenance).
    progress : show the cache's progress bars while changepoint features are computed.

    Returns
    -------
    :class:`FeatureArray` with ``values`` ``(T, N, F)`` float64 and ``names``
    (:func:`feature_spec_names`). ``"dmn"`` alone is exactly ``feature_set("dmn", close)``.

    Raises
    ------
    ValueError
        A bad specification (:func:`parse_feature_spec`) or ``close`` (see
        :func:`kit.features.feature_set` and :func:`kit.features.cache.build_cpd_features`).
    """
    tokens = parse_feature_spec(spec)
    if tokens == ("dmn",):
        return feature_set("dmn", close)
    parts, names = [], []
    lookbacks = [int(_CPD.fullmatch(t).group(1)) for t in tokens if _CPD.fullmatch(t)]
    gp = None
    if lookbacks:
        from .cache import build_cpd_features

        gp = build_cpd_features(close, windows=tuple(lookbacks), method="gp", cache_dir=cache_dir, data_sha256=data_sha256,
                                fallback="ffill", progress=progress).frames
    for t in tokens:
        if t == "dmn":
            fa = feature_set("dmn", close)
            parts.append(fa.values)
            names.extend(fa.names)
        elif t == "bocpd":
            from . import bocpd as bo
            from .cache import build_cpd_features

            frames = build_cpd_features(close, windows=bo.BOCPD_K, method="bocpd", cache_dir=cache_dir, data_sha256=data_sha256,
                                        progress=progress).frames
            raw = np.stack([frames[f"bocpd_cp_prob_{k}"].to_numpy(dtype=np.float64) for k in bo.BOCPD_K]
                           + [frames["bocpd_run_length"].to_numpy(dtype=np.float64)], axis=-1)
            parts.append(bo.feature_values(raw, bo.BOCPD_DEFAULTS["max_run_length"]))
            names.extend(bo.BOCPD_NAMES)
        else:
            lb = int(_CPD.fullmatch(t).group(1))
            parts.append(np.stack([gp[f"cp_severity_{lb}"].to_numpy(dtype=np.float64), gp[f"cp_location_{lb}"].to_numpy(dtype=np.float64)], -1))
            names.extend([f"cp_severity_{lb}", f"cp_location_{lb}"])
    return FeatureArray(np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0], names, close.index, close.columns)
