"""Run profiles (``params/<name>.yaml``) and the notebooks' parameter contracts.

A profile holds ``notebooks`` (stems run in order), ``shared`` (parameters given to every notebook)
and one optional section per notebook stem (overrides for it); other top-level keys (YAML anchors
such as ``model:``, the paper step's ``paper:``, the daily loop's ``monitor:``) are allowed. :func:`check_profile` compares every
parameter a profile would pass with the notebook's own ``parameters`` cell (read with
``papermill.inspect_notebook``): a misspelt or unknown key is an error naming the profile, section,
key and the nearest valid key, before anything runs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from ..base.config import nearest
from ..paths import NOTEBOOK_DIR, PARAMS_DIR

__all__ = ["ProfileError", "load_profile", "notebook_parameters", "notebook_parameter_names", "notebook_defaults", "check_profile", "check_values",
           "check_notebook_names", "RUN_KEYS"]



class ProfileError(ValueError):
    """A profile file is missing or malformed (the message names the file and key)."""



PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
NOTEBOOK_NAME = re.compile(r"[0-9]{2}_[a-z0-9_]{1,60}")


def check_notebook_names(names) -> list[str]:
    """The notebook stems, each checked to be a plain name (``NN_name``) of a notebook in
    ``notebooks/`` (never a path).

    Raises
    ------
    ProfileError
        A name that is not a plain stem, or no such notebook (lists the known ones).
    """
    known = sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    out = []
    for nb in names:
        if not isinstance(nb, str) or not NOTEBOOK_NAME.fullmatch(nb):
            raise ProfileError(f"notebook {nb!r} is not a notebook name like '20_train' (a stem in notebooks/, not a path); known: {known}")
        if nb not in known:
            raise ProfileError(f"notebook {nb!r} not found in notebooks/; known: {known}")
        out.append(nb)
    return out


def load_profile(name=None, *, path=None) -> dict:
    """Read the profile ``params/<name>.yaml``, or the YAML file ``path`` given explicitly.

    ``name`` must be a plain name (letters, digits, ``_``, ``-``): it can never reach outside
    ``params/``. Expected keys: ``notebooks`` (list of notebook stems, run in order), ``shared``
    (parameters given to every notebook) and one optional section per notebook stem.

    Raises
    ------
    ProfileError
        A name that is not plain, a missing file, YAML error, or a missing/ill-typed key.
    """
    known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
    if path is None:
        if not isinstance(name, str) or not PROFILE_NAME.fullmatch(name):
            raise ProfileError(
                f"profile {name!r} is not a profile name (letters, digits, '_', '-'; known: {known}); give a YAML file with --profile-file"
            )
        path = PARAMS_DIR / f"{name}.yaml"
        if not path.exists():
            raise ProfileError(f"profile {name!r} not found (known: {known})")
    path = Path(path)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        raise ProfileError(f"profile file {str(path)!r} is not an existing .yaml file")
    try:
        profile = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: invalid YAML: {exc}") from exc
    notebooks = profile.get("notebooks")
    if not isinstance(notebooks, list) or not notebooks:
        raise ProfileError(f"{path}: key 'notebooks' must be a non-empty list, got {notebooks!r}")
    try:
        check_notebook_names(notebooks)
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None
    if not isinstance(profile.get("shared", {}), dict):
        raise ProfileError(f"{path}: key 'shared' must be a mapping")
    profile.setdefault("shared", {})
    profile = _dates_as_text(profile)  # an unquoted YAML date (2016-01-01) reaches the notebooks as the text it looks like
    profile["name"] = path.stem
    profile["path"] = str(path)
    return profile



def _dates_as_text(obj):
    import datetime as dt

    if isinstance(obj, dict):
        return {k: _dates_as_text(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_dates_as_text(v) for v in obj]
    if isinstance(obj, dt.date):
        return obj.isoformat()
    return obj


def notebook_parameters(profile: dict, notebook: str, run_dir, accepted=None) -> dict:
    """Parameters for one notebook: ``shared`` (only the keys in ``accepted``, the notebook's own
    parameters, when given) overlaid by the notebook's own section, plus ``run_dir`` and
    ``profile``."""
    params = {k: v for k, v in profile.get("shared", {}).items() if accepted is None or k in accepted}
    params.update(profile.get(notebook, {}) or {})
    params["run_dir"] = str(run_dir)
    params["profile"] = profile["name"]
    return params



RUN_KEYS = ("run_dir", "profile")
"""Parameters every notebook has and :func:`kit.reports.runs.run_profile` sets itself."""

_TOP_KEYS = ("notebooks", "shared", "description", "paper", "monitor")


def notebook_parameter_names(notebook: str) -> list[str]:
    """The names assigned in a notebook's cell tagged ``parameters`` (``papermill.inspect_notebook``).

    Raises
    ------
    ProfileError
        The notebook does not exist or has no ``parameters`` cell.
    """
    import papermill as pm

    path = NOTEBOOK_DIR / f"{notebook}.ipynb"
    if not path.exists():
        raise ProfileError(f"notebook {notebook!r} not found in {NOTEBOOK_DIR}")
    params = pm.inspect_notebook(str(path))
    if not params:
        raise ProfileError(f"notebook {notebook!r} has no cell tagged 'parameters'")
    return list(params)


def check_profile(profile: dict, notebooks=None) -> None:
    """Refuse a profile whose keys the notebooks would not read, before anything runs.

    Rules: top-level keys are ``notebooks``, ``shared``, ``description``, ``paper`` (the paper step's
    settings), ``monitor`` (the daily loop's, checked by :class:`kit.live.loop.MonitorConfig`), the notebook stems it runs, and templates whose names start with ``_`` (YAML anchors
    merged into sections); a notebook section's keys must be parameters of that notebook; a
    ``shared`` key must be a parameter of at least one notebook run. ``run_dir`` and ``profile`` are
    set by the run and may not be given.

    Raises
    ------
    ProfileError
        The first offending key, named with the profile, the section and the nearest valid key.
    """
    names = list(notebooks or profile["notebooks"])
    where = f"profile {profile.get('name', '?')!r}"
    params = {nb: notebook_parameter_names(nb) for nb in names}
    valid_top = [*_TOP_KEYS, *profile["notebooks"]]
    for key in profile:
        if key in ("name", "path") or str(key).startswith("_") or key in valid_top:
            continue
        near = nearest(key, valid_top)
        raise ProfileError(f"{where}: unknown top-level key {key!r}" + (f" (did you mean {near!r}?)" if near else "")
                           + f"; valid: {', '.join(valid_top)} (templates start with '_')")

    def bad(section, key, valid):
        near = nearest(key, valid)
        hint = f" (did you mean {near!r}?)" if near else ""
        return ProfileError(f"{where}, section {section!r}: unknown key {key!r}{hint}; valid keys: {', '.join(sorted(valid))}")

    every = sorted({p for ps in params.values() for p in ps} - set(RUN_KEYS))
    for key in profile.get("shared") or {}:
        if key not in every:
            raise bad("shared", key, every)
    for nb in names:
        section = profile.get(nb) or {}
        if not isinstance(section, dict):
            raise ProfileError(f"{where}: section {nb!r} must be a mapping, got {type(section).__name__}")
        valid = [p for p in params[nb] if p not in RUN_KEYS]
        for key in section:
            if key not in valid:
                raise bad(nb, key, valid)


def notebook_defaults(notebook: str) -> dict:
    """Each parameter of a notebook's ``parameters`` cell with its default value (literal defaults
    are evaluated; others are None)."""
    import papermill as pm

    out = {}
    for name, info in pm.inspect_notebook(str(NOTEBOOK_DIR / f"{notebook}.ipynb")).items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            out[name] = None
    return out


_ALSO_ALLOWED = {"symbols": (str,)}  # a list of tickers, or "all"
_DATE_KEYS = ("start", "end", "universe_as_of", "test_start", "replay_start", "replay_end", "train_until", "history_start",
              "as_of", "demo_test_start")


def _type_ok(value, default) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, type(default))


def _type_name(default) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping"}.get(
        type(default), type(default).__name__)


def check_values(profile: dict, notebooks=None) -> None:
    """Check the values a profile gives each notebook before anything runs: every value has the type
    of the notebook's default; dates parse and ``start`` is before ``end`` (and ``test_start``
    between them); walk-forward settings are in range (:class:`kit.training.WalkForwardSettings`:
    also the feature specifications and the variants); model names are in the catalogue or the
    profile's variants (foundation models only in ``foundation_models``, checked by
    :class:`kit.training.FoundationSettings`; their weights are not required: a model without them
    is skipped at run time); listed symbols exist in the data source.

    Raises
    ------
    ProfileError
        The first offending value, named with the profile, the notebook and the key.
    """
    import pandas as pd

    from ..models import CATALOGUE
    from ..training import FoundationSettings, WalkForwardSettings

    where = f"profile {profile.get('name', '?')!r}"
    names = list(notebooks or profile["notebooks"])
    checked_symbols = set()
    for nb in names:
        defaults = notebook_defaults(nb)
        params = notebook_parameters(profile, nb, run_dir="", accepted=list(defaults))
        at = f"{where}, notebook {nb}"
        for key, value in params.items():
            if key in RUN_KEYS or key not in defaults:
                continue
            ok = _type_ok(value, defaults[key]) or isinstance(value, _ALSO_ALLOWED.get(key, ()))
            if not ok:
                raise ProfileError(f"{at}: {key} must be {_type_name(defaults[key])}, got {value!r}")
        dates = {}
        for key in _DATE_KEYS:
            v = params.get(key)
            if v in (None, ""):
                continue
            try:
                dates[key] = pd.Timestamp(v)
            except (ValueError, TypeError):
                raise ProfileError(f"{at}: {key} must be a date (YYYY-MM-DD), got {v!r}") from None
        if "start" in dates and "end" in dates and dates["start"] >= dates["end"]:
            raise ProfileError(f"{at}: start {params['start']} is not before end {params['end']}")
        if "test_start" in dates and "end" in dates and not dates.get("start", dates["test_start"]) <= dates["test_start"] < dates["end"]:
            raise ProfileError(f"{at}: test_start {params['test_start']} must lie in [start, end) = [{params.get('start')}, {params['end']})")
        if any(k in params for k in ("epochs", "test_size", "lookback", "members", "features", "variants")):
            try:
                WalkForwardSettings.from_params(params, where=at)
            except ValueError as exc:
                raise ProfileError(str(exc)) from None
        variants = params.get("variants") if isinstance(params.get("variants"), dict) else {}
        for key in ("models", "demo_models"):
            for m in params.get(key) or []:
                if m not in CATALOGUE and m not in variants:
                    known = list(CATALOGUE) + [f"variants: {sorted(variants)}"] * bool(variants)
                    raise ProfileError(f"{at}: {key} names {m!r}, not a model of the catalogue or a variant {known}")
                if m in CATALOGUE and CATALOGUE[m].kind == "foundation":
                    raise ProfileError(f"{at}: {key} names {m!r}, a foundation model read from local weights: list it in foundation_models")
        if any(k.startswith("foundation_") or k == "model_dir" for k in params):
            try:
                FoundationSettings.from_params(params, where=at)
            except ValueError as exc:
                raise ProfileError(str(exc)) from None
        symbols = params.get("symbols")
        if isinstance(symbols, list) and symbols:
            key = (params.get("data_path") or "", tuple(symbols))
            if key not in checked_symbols:
                _check_symbols(symbols, params.get("data_path") or None, at)
                checked_symbols.add(key)
        elif isinstance(symbols, str) and symbols != "all":
            raise ProfileError(f"{at}: symbols must be a list of tickers or 'all', got {symbols!r}")


def _check_symbols(symbols, data_path, at: str) -> None:
    """Every listed symbol exists in the data source (one column of the store read)."""
    from ..data.load import _resolve

    try:
        path = _resolve(data_path)
    except Exception as exc:  # noqa: BLE001 - a bad source is reported as the profile's error
        raise ProfileError(f"{at}: data_path: {exc}") from None
    if path.suffix.lower() not in (".parquet", ".pq"):
        return  # CSV sources are checked when loaded
    import pyarrow.parquet as pq

    present = set(pq.read_table(path, columns=["symbol"]).column("symbol").unique().to_pylist())
    missing = [s for s in symbols if s not in present]
    if missing:
        raise ProfileError(f"{at}: symbols not in the data source {path.name}: {missing[:10]}")
