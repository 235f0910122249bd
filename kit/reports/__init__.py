"""Reports: run profiles and the notebooks' parameter contracts (:mod:`.profiles`), what stages hand
each other (:mod:`.artifacts`), papermill runs into versioned folders (:mod:`.runs`), rendering
(:mod:`.render`: Quarto, or nbconvert as the fallback) and the site of runs (:mod:`.site`)."""

from .artifacts import (
    artifacts_dir,
    checkpoint_dir,
    load_forecasts,
    load_metrics,
    load_positions,
    load_scores,
    load_table,
    model_outputs,
    save_metrics,
    save_model_outputs,
    save_returns,
    save_search_trials,
    save_table,
    search_storage,
)
from .profiles import ProfileError, check_profile, load_profile, notebook_parameter_names, notebook_parameters
from .render import render_notebook, renderer_name
from .runs import RunLockedError, create_run_dir, git_commit, new_run_id, run_lock, run_profile
from .site import build_index

__all__ = [
    "artifacts_dir",
    "checkpoint_dir",
    "load_forecasts",
    "load_metrics",
    "load_positions",
    "load_scores",
    "load_table",
    "model_outputs",
    "save_metrics",
    "save_model_outputs",
    "save_returns",
    "save_table",
    "save_search_trials",
    "search_storage",
    "ProfileError",
    "check_profile",
    "load_profile",
    "notebook_parameter_names",
    "notebook_parameters",
    "render_notebook",
    "renderer_name",
    "RunLockedError",
    "create_run_dir",
    "git_commit",
    "new_run_id",
    "run_lock",
    "run_profile",
    "build_index",
]
