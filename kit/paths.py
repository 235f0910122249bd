"""Repository paths and their environment overrides: the one place where a folder of the kit is named.

========================  =====================================  ==========================
what                      default                                override
========================  =====================================  ==========================
price store               ``data/sp500_daily_1999_2021.parquet``  ``$KIT_DATA``
run-time state            ``data/state/``                         ``$KIT_STATE_DIR``
CPD feature cache         ``<state>/features/``                   (with the state)
database                  ``sqlite:///data/state/kit.db``         ``$KIT_DB_URL``
registered checkpoints    ``data/state/models/``                  ``$KIT_MODEL_DIR``
foundation-model weights  ``<state dir>/models/<name>/``           a profile's ``model_dir``,
                                                                  else ``$KIT_MODEL_DIR``
notebooks, params,        ``notebooks/``, ``params/``,            (none)
reports                   ``reports/``
========================  =====================================  ==========================

Every function reads the environment when called, so a test or a cron line can point the kit
elsewhere without reloading modules. :func:`ensure_under` is the check every writer of a path built
from a user-supplied name uses: the result must stay inside its root.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "REPO_ROOT",
    "NOTEBOOK_DIR",
    "PARAMS_DIR",
    "REPORTS_DIR",
    "DATA_DIR",
    "default_store",
    "sample_store",
    "state_dir",
    "feature_cache_dir",
    "default_db_url",
    "default_db_path",
    "model_dir",
    "weights_dir",
    "ensure_under",
    "PathEscapeError",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PARAMS_DIR = REPO_ROOT / "params"
REPORTS_DIR = REPO_ROOT / "reports"
DATA_DIR = REPO_ROOT / "data"


class PathEscapeError(ValueError):
    """A path built from a user-supplied name would leave the folder it must stay in."""


def default_store() -> Path:
    """The full committed store, or ``$KIT_DATA`` when that variable is set."""
    env = os.environ.get("KIT_DATA")
    return Path(env) if env else DATA_DIR / "sp500_daily_1999_2021.parquet"


def sample_store() -> Path:
    """The committed 10-symbol sample (2010-01-04 to 2021-04-21)."""
    return DATA_DIR / "sp500_daily_sample.parquet"


def state_dir() -> Path:
    """Run-time state (database, locks, streaming state): ``$KIT_STATE_DIR`` or ``data/state``."""
    env = os.environ.get("KIT_STATE_DIR")
    return Path(env) if env else DATA_DIR / "state"


def feature_cache_dir() -> Path:
    """The changepoint feature cache (:mod:`kit.features.cache`): ``<state_dir>/features``."""
    return state_dir() / "features"


def default_db_path() -> Path:
    """The default SQLite file, ``<state_dir>/kit.db``."""
    return state_dir() / "kit.db"


def default_db_url() -> str:
    """``$KIT_DB_URL``, else the SQLite file :func:`default_db_path`."""
    env = os.environ.get("KIT_DB_URL", "").strip()
    return env or f"sqlite:///{default_db_path()}"


def model_dir() -> Path | None:
    """``$KIT_MODEL_DIR`` when set (registered checkpoints and foundation-model weights), else None
    (the registry then keeps checkpoints beside its database)."""
    env = os.environ.get("KIT_MODEL_DIR")
    return Path(env) if env else None


def weights_dir(override=None) -> Path:
    """The folder holding one sub-folder of pretrained weights per checkpoint (foundation models,
    :mod:`kit.models.foundation`): ``override`` when given and not blank (a profile's
    ``model_dir``), else ``$KIT_MODEL_DIR``, else ``<state_dir>/models``. Nothing is created."""
    if override is not None and str(override).strip():
        return Path(str(override).strip()).expanduser()
    return (model_dir() or state_dir() / "models").expanduser()


def ensure_under(root, path) -> Path:
    """``path`` resolved, after checking that it lies inside ``root`` (both resolved, symlinks
    followed).

    Raises
    ------
    PathEscapeError
        The resolved path is outside ``root`` (names both).
    """
    root_r = Path(root).resolve()
    p = Path(path)
    p_r = (p if p.is_absolute() else root_r / p).resolve()
    if p_r != root_r and root_r not in p_r.parents:
        raise PathEscapeError(f"path {str(path)!r} resolves to {str(p_r)!r}, outside {str(root_r)!r}")
    return p_r
