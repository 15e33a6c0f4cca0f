"""Atomic file writes: every output nosync leaves on disk goes through :func:`atomic_write`.

A temporary file in the same folder, fsync, then ``os.replace``: a kill at any moment leaves
either the old file or the new one, never half of one.  A failed write (a full disk, a
read-only folder) removes the temporary file and raises :class:`WriteFailed` naming the file, so
the previous one stays usable.  No torch here: the data cache and the tools use it too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from nosync.errors import UserError


class WriteFailed(UserError):
    """An output could not be written (a full disk, a read-only folder): the message names the
    file; what was on disk before stays as it was."""


def write_failed(path: str | os.PathLike[str], err: OSError) -> WriteFailed:
    why = err.strerror or errno.errorcode.get(err.errno or 0, str(err))
    return WriteFailed(f"cannot write {path}: {why}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary handle whose contents replace ``path`` when the block ends without an error.

    On any error (an ``OSError`` becomes :class:`WriteFailed`; anything else, a Ctrl+C
    included, is re-raised as it is) ``path`` keeps its old contents and no temporary file is
    left behind.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise write_failed(path, err) from None
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)  # the rename itself survives a power cut
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_write(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _umask() -> int:
    """The process umask (mkstemp creates files 0600; outputs should be as readable as any)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
