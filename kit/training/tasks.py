"""Tasks: the independent units of a run as pure functions, and how one is executed.

A :class:`Task` is a module-level function ``fn(args, shared) -> result`` with its arguments:
inputs in, result out, no file, registry or ledger written (the driver that collects the results
alone writes those). Its randomness is seeded from the task's own identity (model, fold, symbol),
never from the order in which tasks run, so any backend may run tasks in any order, on any worker,
and get the same results. ``shared`` holds the large read-only arrays every task of a batch reads
(the feature and target arrays); a backend ships it to each worker once.

:func:`run_task` is the one way a task is executed, by every backend: it pins the thread count of
torch, numba and the BLAS/OpenMP pools (``threads``, default 1 or ``$KIT_TASK_THREADS``), turns on
torch's deterministic algorithms, times the call and records where it ran. Results depend on the
thread count (a float32 reduction split over two threads sums in another order: the Momentum
Transformer's positions move by about 1e-6 after three epochs at 2 threads against 1), so the same
count in every backend is what makes serial, process and Ray runs bit-identical.

:class:`SerialRunner` runs a list of tasks in this process, in order (the kit's default). Local
process pools and Ray live in :mod:`kit.exec`, which builds runners with the same ``map``
interface; anything passed as ``backend`` to the walk-forward functions needs only that method.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..base.faults import fault_point

__all__ = [
    "THREAD_ENV",
    "Task",
    "TaskOutcome",
    "TaskRunner",
    "SerialRunner",
    "default_threads",
    "pinned_threads",
    "pin_threads",
    "run_task",
    "resolve_runner",
    "dedupe",
]

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
"""Environment variables that size the thread pools of OpenMP, MKL, OpenBLAS and numba; set to the
task thread count in every worker (before the libraries load, where the backend can)."""


@dataclass(frozen=True)
class Task:
    """One independent unit of work.

    Attributes
    ----------
    fn : a module-level function ``fn(args, shared) -> result`` (importable by a worker process).
    args : its arguments (picklable; small: arrays belong in ``shared``).
    key : a string naming the task uniquely within a batch, e.g. ``"fit/dmn_lstm/fold02/seed2/..."``;
        two tasks with the same key compute the same result (see :func:`dedupe`).
    cost : relative cost estimate; backends start the most expensive tasks first (longest
        processing time first), which shortens the makespan and does not change any result.
    """

    fn: Callable
    args: Any
    key: str
    cost: float = 1.0


@dataclass
class TaskOutcome:
    """A task's result and how it ran: ``seconds`` (wall time of ``fn``), ``node`` (Ray node id, or
    the host name for local backends), ``pid``, ``threads`` (the pinned thread count),
    ``attempt`` (1 unless a backend retried it after its worker died) and ``cpu_seconds`` (CPU time
    of the process during ``fn``: close to ``seconds`` times the threads on an idle machine, less
    when other work competes for the cores; the makespan model uses it)."""

    key: str
    value: Any
    seconds: float
    node: str
    pid: int
    threads: int
    attempt: int = 1
    cpu_seconds: float = float("nan")


@runtime_checkable
class TaskRunner(Protocol):
    """What the walk-forward functions need from a backend: ``map(tasks, shared, progress)``
    returning one :class:`TaskOutcome` per task in the order given, and ``describe()`` (a dict with
    at least ``backend`` and ``threads``, recorded with the results)."""

    def map(self, tasks: Sequence[Task], shared: Any = None, progress: str | None = None) -> list[TaskOutcome]: ...

    def describe(self) -> dict: ...


def default_threads() -> int:
    """The task thread count: ``$KIT_TASK_THREADS`` when set (an integer >= 1), else 1.

    Raises
    ------
    ValueError
        ``KIT_TASK_THREADS`` is not an integer >= 1.
    """
    raw = os.environ.get("KIT_TASK_THREADS", "").strip()
    if not raw:
        return 1
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"KIT_TASK_THREADS must be an integer >= 1, got {raw!r}")
    return n


def _check_threads(threads) -> int:
    if isinstance(threads, bool) or int(threads) != threads or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    return int(threads)


@contextlib.contextmanager
def pinned_threads(threads: int):
    """Run the block with ``threads`` torch threads (``torch.set_num_threads``), numba threads
    (``numba.set_num_threads``, capped at numba's pool size), BLAS/OpenMP pools limited through
    ``threadpoolctl``, and ``torch.use_deterministic_algorithms(True, warn_only=True)`` (without
    filling fresh tensors with NaN, ``torch.utils.deterministic.fill_uninitialized_memory = False``:
    that fill cost the DMN LSTM 16% more CPU time, the deterministic mode itself about 1%, measured
    here on 2 epochs of 80 symbols); everything is restored afterwards.

    Raises
    ------
    ValueError
        ``threads`` is not an integer >= 1.
    """
    import threadpoolctl
    import torch

    threads = _check_threads(threads)
    old_torch = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_fill = torch.utils.deterministic.fill_uninitialized_memory
    nb, old_nb = _numba(), None
    try:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False
        if nb is not None:
            old_nb = nb.get_num_threads()
            nb.set_num_threads(min(threads, nb.config.NUMBA_NUM_THREADS))
        with threadpoolctl.threadpool_limits(limits=threads):
            yield threads
    finally:
        torch.set_num_threads(old_torch)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.utils.deterministic.fill_uninitialized_memory = old_fill
        if nb is not None and old_nb is not None:
            nb.set_num_threads(old_nb)


def _numba():
    import sys

    return sys.modules.get("numba")  # only when already imported: never import it just to pin it


def pin_threads(threads: int) -> int:
    """Pin this whole process (a worker) to ``threads``: the :data:`THREAD_ENV` variables, torch,
    numba and the BLAS/OpenMP pools, and deterministic torch algorithms (as :func:`pinned_threads`);
    not restored. Returns the count."""
    import threadpoolctl
    import torch

    threads = _check_threads(threads)
    for var in THREAD_ENV:
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    nb = _numba()
    if nb is not None:
        nb.set_num_threads(min(threads, nb.config.NUMBA_NUM_THREADS))
    threadpoolctl.threadpool_limits(limits=threads)
    return threads


def run_task(task: Task, shared: Any = None, threads: int = 1, node: str | None = None, attempt: int = 1) -> TaskOutcome:
    """Execute one task with ``threads`` pinned threads (:func:`pinned_threads`); every backend
    calls this. ``node`` names where it runs (default: the host name). The fault point
    ``exec.task`` (:func:`kit.base.fault_point`) lets the crash tests kill the worker here."""
    fault_point("exec.task")
    with pinned_threads(threads) as n:
        t0, c0 = time.perf_counter(), time.process_time()
        value = task.fn(task.args, shared)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return TaskOutcome(task.key, value, round(seconds, 3), node or socket.gethostname(), os.getpid(), n, attempt, round(cpu, 3))


def dedupe(tasks: Sequence[Task]) -> list[Task]:
    """The tasks with duplicate keys dropped (first kept, order preserved): a task's key names
    everything its result depends on, so one run serves all (e.g. the ensemble's DMN member and the
    stand-alone DMN LSTM of the same fold and seed)."""
    seen, out = set(), []
    for t in tasks:
        if t.key not in seen:
            seen.add(t.key)
            out.append(t)
    return out


@dataclass
class SerialRunner:
    """Run tasks one after the other in this process, in the order given (the default backend).

    Parameters
    ----------
    threads : pinned thread count per task (default :func:`default_threads`).
    """

    threads: int = field(default_factory=default_threads)
    name: str = "serial"

    def __post_init__(self):
        self.threads = _check_threads(self.threads)

    def map(self, tasks: Sequence[Task], shared: Any = None, progress: str | None = None) -> list[TaskOutcome]:
        """One :class:`TaskOutcome` per task, in order. A task's exception propagates at once, with
        the task's key added to its message notes."""
        it = tasks
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(tasks, desc=progress)
        out = []
        for t in it:
            try:
                out.append(run_task(t, shared, self.threads))
            except Exception as exc:
                exc.add_note(f"in task {t.key}")
                raise
        return out

    def describe(self) -> dict:
        """``{"backend": "serial", "threads": n, "workers": 1}``."""
        return {"backend": self.name, "threads": self.threads, "workers": 1}

    @property
    def nodes(self) -> int:
        """Machines the runner uses (1)."""
        return 1

    def close(self) -> None:
        """Nothing to release (the interface of :mod:`kit.exec`'s backends)."""


def resolve_runner(backend=None) -> TaskRunner:
    """The runner for a ``backend`` argument: ``None`` or ``"serial"`` -> :class:`SerialRunner`;
    an object with ``map`` and ``describe`` (e.g. from :func:`kit.exec.make_backend`) -> itself.

    Raises
    ------
    ValueError
        Any other value (e.g. the string ``"process"``: build it with
        ``kit.exec.make_backend("process")``, which sits above this layer).
    """
    if backend is None or backend == "serial":
        return SerialRunner()
    if isinstance(backend, TaskRunner):
        return backend
    raise ValueError(
        f"backend must be None, 'serial' or a runner with map() and describe() (kit.exec.make_backend('process' or 'ray')), got {backend!r}"
    )
