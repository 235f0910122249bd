"""Backends that run lists of :class:`kit.training.tasks.Task`: in this process, in a local pool of
processes, or on Ray (a local instance or a cluster).

Every backend has the interface of :class:`kit.training.tasks.TaskRunner`: ``map(tasks, shared,
progress)`` returns one :class:`~kit.training.tasks.TaskOutcome` per task, in the order given, and
``describe()`` says what ran them. Each task runs through :func:`kit.training.tasks.run_task` with
the same pinned thread count whatever the backend, so results do not depend on the backend, the
number of workers or the order in which tasks finish. The large read-only ``shared`` arrays go to
the workers once per batch (a file in shared memory for the process pool, Ray's object store for
Ray), not once per task. Workers return results; only the driver writes checkpoints, the registry
and the ledger, so a task that is retried (its worker died) cannot write anything twice.

Backends
--------
``serial``  :class:`kit.training.tasks.SerialRunner`: one task after the other in this process.
``process`` :class:`ProcessBackend`: a pool of ``workers`` spawned processes (default: the cores
            available divided by the thread count), each pinned to ``threads`` threads; a pool
            broken by a dead worker is rebuilt and the unfinished tasks resubmitted (``max_retries``).
``ray``     :class:`RayBackend`: Ray tasks of ``threads`` CPUs each, on the cluster at ``address``
            (or ``$RAY_ADDRESS``), else on a local Ray instance started here; Ray retries a task
            whose worker died (``max_retries``). Where each task ran (the Ray node id) is recorded.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import weakref
from pathlib import Path

from ..base.config import nearest
from ..training.tasks import SerialRunner, Task, TaskOutcome, default_threads, pin_threads, run_task

__all__ = ["BACKENDS", "ProcessBackend", "RayBackend", "make_backend", "available_cores", "study_storage"]

BACKENDS = ("serial", "process", "ray")
"""Names accepted by :func:`make_backend`."""


def available_cores() -> int:
    """CPU cores this process may run on (``os.sched_getaffinity``; ``os.cpu_count`` elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _by_cost(tasks) -> list[int]:
    """Task indices, most expensive first (stable): longest processing time first."""
    return sorted(range(len(tasks)), key=lambda i: -float(tasks[i].cost))


def _progress(desc: str | None, total: int):
    if not desc:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc)


# ------------------------------------------------------------------------------------------------
# Local process pool
# ------------------------------------------------------------------------------------------------

_WORKER_SHARED: dict = {}


def _init_worker(threads: int) -> None:
    """Pool initializer: pin the worker process's threads (:func:`kit.training.tasks.pin_threads`)."""
    pin_threads(threads)


def _load_shared(path: str | None):
    if path is None:
        return None
    if path not in _WORKER_SHARED:
        _WORKER_SHARED.clear()  # one batch's arrays at a time
        with open(path, "rb") as fh:
            _WORKER_SHARED[path] = pickle.load(fh)
    return _WORKER_SHARED[path]


def _remove_orphans(base: str) -> None:
    """Delete the shared-array folders of drivers that died without cleaning up (killed: no
    finalizer ran); their names carry the driver's process id."""
    for d in Path(base).glob("kit-exec-*-*"):
        try:
            pid = int(d.name.split("-")[2])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


def _process_call(task: Task, shared_path: str | None, threads: int, attempt: int) -> TaskOutcome:
    return run_task(task, _load_shared(shared_path), threads, attempt=attempt)


class ProcessBackend:
    """Run tasks in a local pool of spawned processes, one pinned thread count per worker.

    Parameters
    ----------
    workers : processes (default: :func:`available_cores` // ``threads``, at least 1).
    threads : threads per task (default :func:`kit.training.tasks.default_threads`).
    max_retries : times the pool is rebuilt after a worker died (killed, out of memory) before
        giving up; the tasks that had not finished are resubmitted, finished ones are kept.

    Raises
    ------
    ValueError
        ``workers``, ``threads`` or ``max_retries`` not a positive integer (``max_retries`` >= 0).
    """

    name = "process"

    def __init__(self, workers: int | None = None, threads: int | None = None, max_retries: int = 2):
        self.threads = _positive_int("threads", default_threads() if threads is None else threads)
        self.workers = _positive_int("workers", max(1, available_cores() // self.threads) if workers is None else workers)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        self.max_retries = max_retries
        self.retries = 0
        self._pool = None
        base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        _remove_orphans(base)
        self._dir = Path(tempfile.mkdtemp(prefix=f"kit-exec-{os.getpid()}-", dir=base))
        self._shared_id = None
        self._shared_path = None
        self._finalizer = weakref.finalize(self, ProcessBackend._cleanup, self._dir, [None])

    @staticmethod
    def _cleanup(directory: Path, pool_box: list) -> None:
        if pool_box[0] is not None:
            pool_box[0].shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(directory, ignore_errors=True)

    def _ensure_pool(self):
        if self._pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                             initargs=(self.threads,))
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, ProcessBackend._cleanup, self._dir, [self._pool])
        return self._pool

    def _publish(self, shared) -> str | None:
        if shared is None:
            return None
        if self._shared_id != id(shared) or self._shared_path is None:
            if self._shared_path is not None:
                Path(self._shared_path).unlink(missing_ok=True)
            fd, path = tempfile.mkstemp(suffix=".pkl", dir=self._dir)
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(shared, fh, protocol=pickle.HIGHEST_PROTOCOL)
            self._shared_id, self._shared_path = id(shared), path
        return self._shared_path

    def _reset_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def map(self, tasks, shared=None, progress: str | None = None) -> list[TaskOutcome]:
        """Run ``tasks`` on the pool, most expensive first; one outcome per task in the order given.

        Raises
        ------
        RuntimeError
            Workers kept dying after ``max_retries`` rebuilds of the pool.
        Exception
            A task's own exception (not retried: tasks are deterministic), with its key in a note.
        """
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        tasks = list(tasks)
        path = self._publish(shared)
        results: list = [None] * len(tasks)
        attempts = [1] * len(tasks)
        pending = _by_cost(tasks)
        bar = _progress(progress, len(tasks))
        try:
            while pending:
                pool = self._ensure_pool()
                futures = {pool.submit(_process_call, tasks[i], path, self.threads, attempts[i]): i for i in pending}
                try:
                    for fut in as_completed(futures):
                        i = futures[fut]
                        try:
                            results[i] = fut.result()
                        except BrokenProcessPool:
                            raise
                        except Exception as exc:
                            exc.add_note(f"in task {tasks[i].key}")
                            self._reset_pool()
                            raise
                        if bar is not None:
                            bar.update(1)
                    pending = []
                except BrokenProcessPool as exc:
                    for fut, i in futures.items():
                        if results[i] is None and fut.done() and not fut.cancelled() and fut.exception() is None:
                            results[i] = fut.result()
                    pending = [i for i in pending if results[i] is None]
                    self._reset_pool()
                    self.retries += 1
                    if self.retries > self.max_retries:
                        raise RuntimeError(f"process backend: a worker died {self.retries} times (max_retries={self.max_retries}); "
                                           f"unfinished tasks: {[tasks[i].key for i in pending][:5]}") from exc
                    for i in pending:
                        attempts[i] += 1
        finally:
            if bar is not None:
                bar.close()
        return results

    def describe(self) -> dict:
        """``{"backend": "process", "threads", "workers", "retries"}``."""
        return {"backend": self.name, "threads": self.threads, "workers": self.workers, "retries": self.retries}

    @property
    def nodes(self) -> int:
        """Machines the backend runs on (1)."""
        return 1

    def close(self) -> None:
        """Shut the pool down and delete the shared arrays' file."""
        self._reset_pool()
        self._finalizer()
        self._shared_id = self._shared_path = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ------------------------------------------------------------------------------------------------
# Ray
# ------------------------------------------------------------------------------------------------

_FORWARD_ENV = ("KIT_FAULT_AT", "KIT_FAULT_ONCE", "KIT_TASK_THREADS")


def _ray_call(task: Task, shared, threads: int) -> TaskOutcome:
    import ray

    node = ray.get_runtime_context().get_node_id()
    return run_task(task, shared, threads, node=node)


class RayBackend:
    """Run tasks as Ray tasks of ``threads`` CPUs each.

    Connects to the cluster at ``address`` (``"auto"``, ``"ray://host:10001"`` or ``host:port``;
    default ``$RAY_ADDRESS``) or, with neither, starts a local Ray instance with ``num_cpus`` CPUs
    (default: all) and no dashboard. When Ray is already initialised in this process it is used as
    it is. The driver puts ``shared`` into Ray's object store once per batch; each worker process
    pins its threads (:func:`kit.training.tasks.run_task`; ``OMP_NUM_THREADS`` and friends are set
    in the task's environment as well). A task whose worker dies is retried by Ray up to
    ``max_retries`` times; a task's own exception is not retried.

    Every node of a cluster needs the same Python environment (the kit at the same commit and its
    pinned dependencies); data never has to be on the workers (tasks get their arrays from the
    object store).

    Raises
    ------
    ValueError
        Bad ``threads``/``num_cpus``/``max_retries``.
    ConnectionError
        No Ray cluster at ``address`` (Ray's own error).
    """

    name = "ray"

    def __init__(self, address: str | None = None, threads: int | None = None, num_cpus: int | None = None, max_retries: int = 3):
        import ray

        self.threads = _positive_int("threads", default_threads() if threads is None else threads)
        if num_cpus is not None:
            _positive_int("num_cpus", num_cpus)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        self.max_retries = max_retries
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self._owns = False
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            self._owns = True
        self._shared_id = None
        self._shared_ref = None

    def _env(self) -> dict:
        env = {var: str(self.threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        env.update({k: os.environ[k] for k in _FORWARD_ENV if k in os.environ})
        return env

    def map(self, tasks, shared=None, progress: str | None = None) -> list[TaskOutcome]:
        """Submit ``tasks`` (most expensive first) and wait for all; one outcome per task in the
        order given.

        Raises
        ------
        Exception
            A task's own exception (Ray's ``RayTaskError``, an instance of the task's exception
            class), or Ray's error once a task's retries are used up.
        """
        import ray

        tasks = list(tasks)
        if shared is not None and (self._shared_id != id(shared) or self._shared_ref is None):
            self._shared_ref = ray.put(shared)
            self._shared_id = id(shared)
        ref = self._shared_ref if shared is not None else None
        remote = ray.remote(_ray_call).options(
            num_cpus=self.threads, max_retries=self.max_retries, retry_exceptions=False, runtime_env={"env_vars": self._env()},
        )
        order = _by_cost(tasks)
        refs = {remote.remote(tasks[i], ref, self.threads): i for i in order}
        results: list = [None] * len(tasks)
        bar = _progress(progress, len(tasks))
        waiting = list(refs)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                for r in done:
                    i = refs[r]
                    try:
                        results[i] = ray.get(r)
                    except Exception as exc:
                        exc.add_note(f"in task {tasks[i].key}")
                        for other in waiting:
                            ray.cancel(other)
                        raise
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return results

    @property
    def nodes(self) -> int:
        """Alive nodes of the cluster."""
        import ray

        return sum(1 for n in ray.nodes() if n.get("Alive"))

    def describe(self) -> dict:
        """``{"backend": "ray", "threads", "address", "nodes", "cpus"}`` (cluster size now)."""
        import ray

        return {"backend": self.name, "threads": self.threads, "address": self.address, "nodes": self.nodes,
                "cpus": int(ray.cluster_resources().get("CPU", 0))}

    def close(self) -> None:
        """Release the shared arrays; shut Ray down if this backend started it."""
        import ray

        self._shared_ref = self._shared_id = None
        if self._owns and ray.is_initialized():
            ray.shutdown()
            self._owns = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def make_backend(name: str = "serial", *, address: str | None = None, workers: int | None = None, threads: int | None = None):
    """A backend by name: ``"serial"`` (this process), ``"process"`` (a local pool of ``workers``)
    or ``"ray"`` (the cluster at ``address``/``$RAY_ADDRESS``, else a local Ray instance).

    ``threads`` is the thread count of every task (default ``$KIT_TASK_THREADS`` or 1); results
    depend on it, not on the backend.

    Raises
    ------
    ValueError
        Unknown name (the nearest valid one is suggested), ``address`` given for a backend other
        than ``ray``, ``workers`` given for ``serial`` or ``ray``, or a bad number.
    """
    if name not in BACKENDS:
        near = nearest(str(name), BACKENDS)
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}" + (f" (did you mean {near!r}?)" if near else ""))
    if address and name != "ray":
        raise ValueError(f"address={address!r} is for the ray backend, not {name!r}")
    if workers is not None and name != "process":
        raise ValueError(f"workers={workers!r} is for the process backend, not {name!r} (ray uses the cluster's CPUs)")
    if name == "serial":
        return SerialRunner(default_threads() if threads is None else threads)
    if name == "process":
        return ProcessBackend(workers, threads)
    return RayBackend(address, threads)


def study_storage(backend, local: str, db_url: str | None = None) -> str:
    """Where a hyperparameter search keeps its optuna study: ``local`` (e.g. the run's own SQLite
    file, :func:`kit.reports.search_storage`) when ``backend`` runs on one machine; on several, the
    kit's database (``db_url``, else ``$KIT_DB_URL``), which must then be one every node reaches.

    Raises
    ------
    ValueError
        Several nodes and the kit's database is SQLite
        (:func:`kit.training.search.check_search_storage`).
    """
    from ..paths import default_db_url
    from ..training.search import check_search_storage

    nodes = int(getattr(backend, "nodes", 1))
    if nodes <= 1:
        return local
    url = db_url or default_db_url()
    check_search_storage(url, nodes)
    return url
