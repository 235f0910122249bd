"""A makespan model: the wall time of a run's tasks on N nodes of C cores, from measured task times.

A run is a serial part (loading data, features, the driver's assembly and checkpoint writes, the
backtest and audit notebooks) plus stages of independent tasks (the walk-forward fits, then the
ensembles' combinations, then each tree or ranker model's fold fits), each stage starting when the
previous one has finished. The backends start the longest tasks first, so a stage on
``m = N * C // threads`` slots is modelled by Graham's LPT list schedule (longest processing time
first onto the least-loaded slot; within 4/3 - 1/(3m) of the optimal makespan, Graham 1969, "Bounds
on multiprocessing timing anomalies"). Task times are
what one task takes on an otherwise idle core (the CPU seconds of a one-thread task measure that
even on a busy machine); the model ignores the object-store transfer and worker start-up, which
it takes as a per-run constant ``startup``.
"""

from __future__ import annotations

import heapq

import numpy as np
import pandas as pd

__all__ = ["lpt_makespan", "predict_wall", "stage_times"]


def lpt_makespan(seconds, slots: int) -> float:
    """Makespan of the LPT list schedule of tasks of ``seconds`` on ``slots`` identical slots.

    Parameters
    ----------
    seconds : 1-d sequence of non-negative task times (seconds).
    slots : parallel slots (workers), >= 1.

    Returns
    -------
    float seconds (0.0 for no tasks).

    Raises
    ------
    ValueError
        ``slots < 1`` or a negative or non-finite task time.
    """
    if isinstance(slots, bool) or int(slots) != slots or slots < 1:
        raise ValueError(f"slots must be an integer >= 1, got {slots!r}")
    t = np.asarray(seconds, dtype=float).ravel()
    if len(t) and (not np.isfinite(t).all() or (t < 0).any()):
        raise ValueError("task seconds must be finite and >= 0")
    loads = [0.0] * int(slots)
    for x in sorted(t, reverse=True):
        heapq.heapreplace(loads, loads[0] + float(x))
    return max(loads)


def predict_wall(stages, *, nodes: int = 1, cores: int = 2, threads: int = 1, serial: float = 0.0, startup: float = 0.0) -> float:
    """Predicted wall time of a run: ``serial + startup + sum over stages of lpt_makespan(stage,
    nodes * cores // threads)``.

    Parameters
    ----------
    stages : sequence of 1-d sequences of task seconds (one per stage, in order).
    nodes, cores : the cluster (nodes of ``cores`` cores each); threads : threads per task.
    serial : seconds of the run outside the task stages; startup : backend start-up seconds.

    Raises
    ------
    ValueError
        Fewer cores than threads, or as :func:`lpt_makespan`.
    """
    slots = int(nodes) * int(cores) // int(threads)
    if slots < 1:
        raise ValueError(f"{nodes} node(s) of {cores} cores cannot run a task of {threads} threads")
    return float(serial) + float(startup) + sum(lpt_makespan(s, slots) for s in stages)


def stage_times(tasks: pd.DataFrame, column: str = "cpu_seconds") -> list[np.ndarray]:
    """Task times by stage from a run's ``tasks`` table (one row per task run,
    :func:`kit.reports.load_table` ``"tasks"``): ``fit``, then ``combine``, then each tree or
    ranker model's fold fits (``tree:<model>``, one batch per model, in the table's order), as the
    run executes them; duplicate task keys count once. ``column``: ``cpu_seconds`` (default: what a
    task costs on an idle core) or ``seconds`` (wall time as run).

    Raises
    ------
    ValueError
        A missing column.
    """
    for c in ("task", "stage", column):
        if c not in tasks:
            raise ValueError(f"tasks table has no column {c!r}; columns: {list(tasks.columns)}")
    t = tasks.drop_duplicates("task")
    order = [s for s in ("fit", "combine") if (t["stage"] == s).any()] + [s for s in dict.fromkeys(t["stage"]) if s not in ("fit", "combine")]
    return [t.loc[t["stage"] == s, column].to_numpy(dtype=float) for s in order]
