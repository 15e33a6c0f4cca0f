"""One run per folder: an exclusive lock on ``OUT/.lock`` held for the life of the run.

The process that starts the ranks (``nosync train``'s launcher, or global rank 0 under an
external torchrun) takes the lock before it writes anything and keeps it until it exits; the
ranks it starts write under its lock.  A second run on the same folder is refused with the
holder's pid.  ``flock`` locks go away with the process that holds them, even after a kill -9,
so a crashed run never leaves a stale lock behind; the file itself stays (removing it would let
a third run lock a new file while a second still holds the old one), and marks the folder as one
a run made: :func:`held_run` lets a fresh run reuse it when that run left nothing to keep.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from nosync.errors import UserError
from nosync.files import write_failed
from nosync.run.checkpoint import checkpoint_root

LOCK_NAME = ".lock"


class RunLock:
    """The held lock on ``folder``; :meth:`release` (or the process's exit) lets go."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder = folder
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None


def acquire(folder: str | os.PathLike[str]) -> RunLock:
    """Lock ``folder`` (made if missing) for this process, or raise ``UserError`` naming the
    process that holds it."""
    folder = Path(folder)
    path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as err:
        raise write_failed(path, err) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(
            f"out: {folder} is in use by another nosync run (pid {holder(path)}); wait for it "
            "to end or pick another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return RunLock(folder, fd)


def check_free(folder: str | os.PathLike[str]) -> None:
    """Refuse a folder another run holds, before any other check and without writing anything
    (a resume would otherwise read a checkpoint set the running run is replacing)."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # no lock file (or an unreadable one, which acquire reports)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UserError(
            f"out: {Path(folder)} is in use by another nosync run (pid {holder(path)}); wait "
            "for it to end or pick another --out"
        ) from None
    finally:
        os.close(fd)


def holder(path: Path, tries: int = 20) -> str:
    """The pid written in the lock file (the holder writes it just after locking)."""
    for _ in range(tries):
        try:
            text = path.read_text().strip()
        except OSError:
            text = ""
        if text:
            return text
        time.sleep(0.05)
    return "unknown"


def held_run(folder: str | os.PathLike[str]) -> str | None:
    """Why a fresh run may not write into ``folder``, or None when it may: the folder holds no
    run, or a run's (it has the lock file) that stopped before its first checkpoint, which left
    nothing to resume (its ``config.toml``, ``metrics.jsonl`` and any summary of a divergence are
    replaced)."""
    folder = Path(folder)
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        summary = None
    diverged = summary.get("diverged") if isinstance(summary, dict) else None
    if (checkpoint_root(folder) / "latest.json").exists():
        if isinstance(diverged, dict):  # resuming would only diverge again
            return f"holds a run that diverged at step {diverged.get('step')}; pick another --out"
        return f"already holds a run; continue it with --resume {folder} or pick another --out"
    if (folder / "final.pt").exists() or (summary is not None and diverged is None):
        return "holds a finished run; pick another --out"
    made_by_a_run = (folder / LOCK_NAME).exists()
    run_files = (folder / "config.toml", checkpoint_root(folder))
    if not made_by_a_run and any(p.exists() for p in run_files):
        return "already holds a run (a config.toml, no checkpoint); pick another --out"
    return None
