"""What every benchmark does first: pin its threads, print a header saying under which conditions it
ran, and give each case a time budget.

Import it before torch, numpy or numba (it sets the thread environment variables, which some
libraries read only when they load)::

    import _common  # noqa: F401  (first import of a bench_*.py)
    ...
    _common.header("what is measured")
    with _common.case("simulate"):
        ...

Settings (environment variables):

``BENCH_THREADS`` (default 1)
    torch, numba and BLAS/OpenMP threads. 1 gives latency figures that do not depend on what else
    runs on the machine (measured under load here, unpinned latency benchmarks were 5-10x slower
    than with one thread); set it to the core count for throughput figures.
``BENCH_BUDGET`` (seconds, default 300)
    the time budget of each case: a case still running then is stopped and reported as over budget,
    and the script goes on with the next case.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import sys
from pathlib import Path

BENCH_THREADS = int(os.environ.get("BENCH_THREADS", "1") or 1)
BENCH_BUDGET = float(os.environ.get("BENCH_BUDGET", "300") or 300)
if BENCH_THREADS < 1:
    raise SystemExit(f"BENCH_THREADS must be an integer >= 1, got {BENCH_THREADS}")
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = str(BENCH_THREADS)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's kit, run from anywhere


def pin() -> dict:
    """Pin torch, numba and the BLAS/OpenMP pools to ``BENCH_THREADS``; returns the counts in force."""
    import numba
    import threadpoolctl
    import torch

    torch.set_num_threads(BENCH_THREADS)
    numba.set_num_threads(min(BENCH_THREADS, numba.config.NUMBA_NUM_THREADS))
    threadpoolctl.threadpool_limits(limits=BENCH_THREADS)
    return {"torch": torch.get_num_threads(), "numba": numba.get_num_threads()}


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, e.g. ``"0.52 0.61 0.70"``."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def header(what: str) -> None:
    """Pin the threads and print one line: what is measured, when, the load average, the core
    count, the thread counts and the per-case budget. A load average above the core count means
    other work competed for the cores: the figures are upper bounds."""
    counts = pin()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load1 = os.getloadavg()[0]
    note = " (busy machine: times are upper bounds)" if load1 > (cores or 1) else ""
    print(f"# {what}")
    print(f"# {dt.datetime.now().isoformat(timespec='seconds')}; load average {load_average()} on {cores} cores{note}; "
          f"BENCH_THREADS={BENCH_THREADS} (torch {counts['torch']}, numba {counts['numba']}); budget {BENCH_BUDGET:.0f} s per case")
    sys.stdout.flush()


class OverBudget(Exception):
    """A case ran past its time budget."""


@contextlib.contextmanager
def case(name: str, budget: float | None = None):
    """Run one case with a time budget (``BENCH_BUDGET`` seconds by default; SIGALRM, main thread
    only). Over budget: prints ``<name>: over its budget of N s, stopped`` and continues after the
    ``with`` block. Yields a dict whose ``ok`` is False after the block when the case was stopped."""
    limit = BENCH_BUDGET if budget is None else budget
    state = {"ok": True}

    def _alarm(signum, frame):
        raise OverBudget(name)

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield state
    except OverBudget:
        state["ok"] = False
        print(f"{name}: over its budget of {limit:.0f} s, stopped (load average {load_average()})")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
