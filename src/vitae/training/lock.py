"""One writer per run folder: an exclusive advisory lock (``flock``) on ``RUN/.lock``.

``vitae train``, ``evaluate``, ``plot`` and each run of ``vitae reproduce`` hold it while they
work; a second process on the same folder stops at once with ``BusyError`` instead of
interleaving its files with the first one's. The kernel releases the lock when its process ends,
however it ends (a kill -9, a node failure of a requeued cluster job), so a stale lock never
blocks a resume. Within one process the lock is re-entrant (``vitae reproduce`` holds a run's
lock around the ``train`` and ``evaluate`` calls that take it again).
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from vitae.errors import BusyError, VitaeError

LOCK_NAME = ".lock"
_held: dict[str, int] = {}  # folders this process holds, with how many ``with`` blocks hold each


@contextmanager
def exclusive(folder: Path, *, create: bool = False, wait: bool = False):
    """Hold ``folder``'s lock for the ``with`` block (``create``: make the folder first; ``wait``:
    wait for another holder to finish instead of raising ``BusyError``)."""
    folder = Path(folder)
    key = os.path.realpath(folder)
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except NotADirectoryError:
        raise VitaeError(f"{folder} is a file, not a run folder; choose another --out") from None
    except FileExistsError:
        raise VitaeError(f"{folder} is a file, not a run folder; choose another --out") from None
    except PermissionError:
        raise VitaeError(f"cannot write to {folder} (permission denied); make it writable or choose another folder") from None
    except OSError as exc:
        raise VitaeError(f"cannot use {folder}: {exc.strerror}; check the path and the disk") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise BusyError(f"{folder} is in use by another vitae process (train, evaluate, plot or reproduce); "
                            "wait for it to finish, or stop it first") from None
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
    finally:
        os.close(fd)  # closing the descriptor releases the lock
