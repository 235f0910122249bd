"""Execution backends: run the kit's independent tasks (walk-forward fits, per-ticker chunks,
search trials) in this process, in a local process pool, or on a Ray cluster.

The tasks themselves are pure functions in :mod:`kit.training` (inputs in, results out, seeded from
the task); this package only runs lists of them (:func:`make_backend`). The driver that calls
``map`` writes checkpoints, the registry and the ledger after the results come back.
"""

from .backends import BACKENDS, ProcessBackend, RayBackend, available_cores, make_backend, study_storage

__all__ = ["BACKENDS", "ProcessBackend", "RayBackend", "available_cores", "make_backend", "study_storage"]
