"""Processes that die with their launcher: no rank, fork server or resource tracker outlives it.

A kill -9 of ``nosync train`` gives its children no chance to be told.  The ranks are children
of multiprocessing's fork server, not of the launcher, and the fork server does not exit while
they live; so every rank and the fork server watch the launcher's pid themselves (a pidfd, which
cannot be fooled by a reused pid) and kill themselves when it ends.  The resource tracker then
sees its last writer close and exits on its own.  A rank also asks the kernel for SIGKILL when
its direct parent dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import threading
import time

LAUNCHER_ENV = "NOSYNC_LAUNCHER_PID"  # set by the launcher for everything it starts
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """SIGKILL this process when the thread that forked it ends (Linux; elsewhere a no-op)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return


def die_with(pid: int) -> None:
    """Kill this process with SIGKILL as soon as process ``pid`` ends (a daemon thread)."""
    if pid == os.getpid() or pid <= 1:
        return
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGKILL)
        return
    except (OSError, AttributeError):  # no pidfd here: look every half second
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while _exists(pid):
                time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="nosync-lifeline", daemon=True).start()


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def launcher_pid() -> int | None:
    value = os.environ.get(LAUNCHER_ENV, "")
    return int(value) if value.isdigit() else None


def protect_rank() -> None:
    """In a rank: die with the direct parent and with the launcher named in the environment
    (under an external torchrun, the parent is the launcher)."""
    die_with_parent()
    die_with(launcher_pid() or os.getppid())
