"""Fault injection for the kit's crash tests, in one place.

Production code marks the points where a crash must leave consistent state with
``fault_point("name")``. Nothing happens there in normal runs. Tests use two mechanisms:

* ``KIT_FAULT_AT=<name>`` in a child process's environment: the process dies at that point at once
  with ``os._exit(137)``, as a SIGKILL would (no cleanup, no rollback handlers); with
  ``KIT_FAULT_ONCE=<path>`` as well, only the first process to get there dies (it creates ``path``
  exclusively; later ones find it and go on), e.g. one worker of a pool whose task is then retried;
* :func:`set_hook` in-process: a callable run at the point (e.g. to pause inside a transaction while
  another process tries to write).

Points in the kit: ``registry.register_before_commit``, ``registry.gate_before_commit``,
``ledger.snapshot_before_commit``, ``ledger.fillback_before_commit``, the paper step's
``paper.after_fills``, ``paper.after_journal``, ``paper.after_first_submit``, ``paper.after_submit``,
``paper.before_done``, ``exec.task`` (every task a backend runs, :func:`kit.training.tasks.run_task`),
and the daily loop's ``daily.after_paper``, ``daily.after_retrain``, ``daily.before_done``.
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["fault_point", "set_hook", "FAULT_ENV", "FAULT_ONCE_ENV"]

FAULT_ENV = "KIT_FAULT_AT"
FAULT_ONCE_ENV = "KIT_FAULT_ONCE"
_HOOKS: dict = {}


def fault_point(name: str) -> None:
    """Die here if ``$KIT_FAULT_AT == name`` (only once across processes when ``$KIT_FAULT_ONCE``
    names a marker file); run the hook set for ``name``, if any."""
    if os.environ.get(FAULT_ENV) == name:
        once = os.environ.get(FAULT_ONCE_ENV)
        if not once:
            os._exit(137)
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            os._exit(137)
    fn = _HOOKS.get(name)
    if fn is not None:
        fn()


@contextlib.contextmanager
def set_hook(name: str, fn):
    """Run ``fn()`` at ``fault_point(name)`` inside the ``with`` block (tests only)."""
    _HOOKS[name] = fn
    try:
        yield
    finally:
        _HOOKS.pop(name, None)
