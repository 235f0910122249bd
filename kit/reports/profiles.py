"""Run profiles (``params/<name>.yaml``) and the notebooks' parameter contracts.

A profile holds ``notebooks`` (stems run in order), ``shared`` (parameters given to every notebook)
and one optional section per notebook stem (overrides for it); other top-level keys (YAML anchors
such as ``model:``, the paper step's ``paper:``) are allowed. :func:`check_profile` compares every
parameter a profile would pass with the notebook's own ``parameters`` cell (read with
``papermill.inspect_notebook``): a misspelt or unknown key is an error naming the profile, section,
key and the nearest valid key, before anything runs."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..base.config import nearest
from ..paths import NOTEBOOK_DIR, PARAMS_DIR

__all__ = ["ProfileError", "load_profile", "notebook_parameters", "notebook_parameter_names", "check_profile", "RUN_KEYS"]



class ProfileError(ValueError):
    """A profile file is missing or malformed (the message names the file and key)."""



def load_profile(name_or_path) -> dict:
    """Read ``params/<name>.yaml`` (or a path).

    Expected keys: ``notebooks`` (list of notebook stems, run in order), ``shared`` (parameters
    given to every notebook) and one optional section per notebook stem (overrides for it).

    Raises
    ------
    ProfileError
        Missing file, YAML error, or a missing/ill-typed key.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PARAMS_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise ProfileError(f"profile {str(name_or_path)!r} not found (known: {known})")
    try:
        profile = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: invalid YAML: {exc}") from exc
    notebooks = profile.get("notebooks")
    if not isinstance(notebooks, list) or not notebooks:
        raise ProfileError(f"{path}: key 'notebooks' must be a non-empty list, got {notebooks!r}")
    for nb in notebooks:
        if not (NOTEBOOK_DIR / f"{nb}.ipynb").exists():
            raise ProfileError(f"{path}: notebooks entry {nb!r} has no notebooks/{nb}.ipynb")
    if not isinstance(profile.get("shared", {}), dict):
        raise ProfileError(f"{path}: key 'shared' must be a mapping")
    profile.setdefault("shared", {})
    profile["name"] = path.stem
    profile["path"] = str(path)
    return profile



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

_TOP_KEYS = ("notebooks", "shared", "description", "paper")


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
    settings), the notebook stems it runs, and templates whose names start with ``_`` (YAML anchors
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
