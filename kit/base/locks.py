"""One file lock for the whole kit: an exclusive, non-blocking ``fcntl.flock`` on a file.

The lock belongs to the open file description, so the kernel releases it when the process dies,
however it dies (a SIGKILL included): a stale lock file never blocks the next run. The holder's pid
is written into the file for people (``cat reports/.lock``); the kit never trusts that pid.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["LockHeldError", "file_lock", "lock_is_held"]


class LockHeldError(RuntimeError):
    """Another process holds the lock (the message names the lock file)."""


@contextlib.contextmanager
def file_lock(path, what: str = "another process", error=LockHeldError):
    """Hold an exclusive lock on ``path`` (created with its folder) for the ``with`` block.

    Parameters
    ----------
    path : the lock file.
    what : who else would hold it, for the message (e.g. ``"another run"``).
    error : the exception class raised when the lock is held (a subclass of
        :class:`LockHeldError`, so callers can catch either).

    Raises
    ------
    LockHeldError (or ``error``)
        The lock is held by another open file (another process, or another ``file_lock`` in this
        one).
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise error(f"{what} holds {path}; nothing done") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield path
    finally:
        fh.close()  # closing the file releases the lock


def lock_is_held(path) -> bool:
    """True when another open file holds the lock on ``path`` now (False when the file is absent)."""
    import fcntl

    path = Path(path)
    if not path.exists():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False
