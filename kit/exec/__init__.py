"""Execution backends: run the kit's independent tasks (walk-forward fits, per-ticker chunks,
search trials) in this process, in a local process pool, or on a Ray cluster.

The tasks themselves are pure functions in :mod:`kit.training` (inputs in, results out, seeded from
the task); this package only runs lists of them (:func:`make_backend`). The driver that calls
``map`` writes checkpoints, the registry and the ledger after the results come back.
:mod:`.makespan` predicts a run's wall time on N nodes of C cores from its measured task times.
"""

from .backends import BACKENDS, ProcessBackend, RayBackend, available_cores, make_backend, study_storage
from .makespan import lpt_makespan, predict_wall, stage_times

__all__ = [
    "BACKENDS", "ProcessBackend", "RayBackend", "available_cores", "make_backend", "study_storage", "lpt_makespan", "predict_wall",
    "stage_times",
]
