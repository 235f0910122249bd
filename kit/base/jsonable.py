"""One conversion of kit values to JSON-able Python values (for ``run.json``, ``metrics.json`` and
the database's JSON columns)."""

from __future__ import annotations

import datetime as dt
import math

__all__ = ["jsonable"]


def jsonable(obj):
    """Recursively convert numpy scalars and arrays, pandas timestamps, dates, paths, sets and tuples
    to plain JSON types; non-finite floats become ``None`` (JSON has no NaN).

    Mappings keep their keys as strings; anything else unknown is returned as ``str(obj)``.
    """
    import numpy as np

    if obj is None or isinstance(obj, bool | str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return jsonable(float(obj))
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    try:
        import pandas as pd

        if isinstance(obj, pd.Timestamp):
            return None if pd.isna(obj) else obj.isoformat()
        if obj is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    return str(obj)
