"""Reports: run profiles and the notebooks' parameter contracts (:mod:`.profiles`), what stages hand
each other (:mod:`.artifacts`), papermill runs into versioned folders (:mod:`.runs`), rendering
(:mod:`.render`: Quarto, or nbconvert as the fallback), the review summary of a run (:mod:`.summary`)
and the site of runs (:mod:`.site`)."""

from .artifacts import (
    artifacts_dir,
    checkpoint_dir,
    load_forecasts,
    load_metrics,
    load_positions,
    load_returns,
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
from .profiles import (
    ProfileError,
    check_profile,
    check_values,
    load_profile,
    notebook_parameter_names,
    notebook_parameters,
)
from .render import render_notebook, renderer_name
from .runs import (
    RUN_STATES,
    NotWritableError,
    RunLockedError,
    StageFailed,
    check_writable,
    create_run_dir,
    git_commit,
    mark_interrupted,
    new_run_id,
    run_lock,
    run_profile,
)
from .site import build_index, build_site, compare_runs
from .summary import build_summary

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
    "load_returns",
    "save_table",
    "save_search_trials",
    "search_storage",
    "ProfileError",
    "check_profile",
    "check_values",
    "load_profile",
    "notebook_parameter_names",
    "notebook_parameters",
    "render_notebook",
    "renderer_name",
    "RunLockedError",
    "RUN_STATES",
    "NotWritableError",
    "StageFailed",
    "check_writable",
    "mark_interrupted",
    "create_run_dir",
    "git_commit",
    "new_run_id",
    "run_lock",
    "run_profile",
    "build_index",
    "build_site",
    "compare_runs",
    "build_summary",
]
