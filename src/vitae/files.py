"""Files replaced atomically: written under a unique temporary name beside the target, flushed to
disk, then renamed over it, so a reader (or a process killed mid-write, or a full disk) never sees
half a file and the previous version stays until the new one is whole. Every file of a run folder
is written this way, never rewritten in place.

A write that fails (no space left, permission denied, a read-only file system, a folder where the
file should be) removes its temporary file, leaves the old file as it was, and raises a
``VitaeError`` that names the path and what to do.

A write is also whole under signals: the command line's SIGINT and SIGTERM handlers go through
``interrupt``, which inside a write (``whole()``) only records the signal, and the write raises it
when it is done; an interrupt in the middle of ``torch.save`` would otherwise leave torch's zip
writer half-closed and end in its error instead of the interrupt.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable

from vitae.errors import VitaeError


def os_error(path: Path, exc: OSError) -> VitaeError:
    """A one-line error for a failed write of ``path``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return VitaeError(f"no space left on the device to write {path}; free some space and run the command "
                          "again (what was saved before is kept)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return VitaeError(f"cannot write {path} (permission denied or a read-only file system); make the folder "
                          "writable or choose another one")
    if exc.errno in (errno.EISDIR, errno.ENOTDIR):
        return VitaeError(f"cannot write {path}: a folder and a file are in each other's place; move it away")
    return VitaeError(f"cannot write {path}: {exc.strerror or exc}")


_depth = 0
_pending: list[BaseException] = []


def interrupt(exc: BaseException) -> None:
    """Raise ``exc`` now, or, inside a ``whole()`` block, when the block ends."""
    if _depth:
        _pending.append(exc)
    else:
        raise exc


@contextmanager
def whole():
    """A block that an ``interrupt`` does not cut short (it is raised at the block's end)."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending:
            exc = _pending[0]
            _pending.clear()
            raise exc


def replace(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Replace ``path`` with what ``write(file)`` writes into a binary file (see the module)."""

    def write_flushed(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())

    with whole():
        replace_by_path(path, write_flushed)


def replace_by_path(path: Path, write: Callable[[Path], None]) -> None:
    """Replace ``path`` with the file that ``write(tmp)`` writes at the temporary path ``tmp``,
    for writers that need a path rather than a file object (a numpy memmap, a compiler's ``-o``).
    Atomic and cleaned up on failure like ``replace`` (which writes through it), but interrupts
    are not held back: such a write can be long (decoding a folder of images), and an interrupt
    leaves no temporary file."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise os_error(path, exc) from None
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        cause = _os_cause(exc)
        if cause is not None:
            raise os_error(path, cause) from None
        raise


def _os_cause(exc: BaseException | None) -> OSError | None:
    """The ``OSError`` behind ``exc``, if any: torch's zip writer turns a full disk into a
    ``RuntimeError`` (``inline_container``) raised while handling the ``OSError``."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8)."""
    replace(path, lambda f: f.write(text.encode("utf-8")))
