"""Imported by the fork server the ranks start from (``launch.PRELOAD``), for its side effects:
the fork server dies with the launcher that started it (see ``lifeline``), and ignores Ctrl+C
while it loads torch, so a Ctrl+C in the first seconds prints no traceback.  Ranks forked from
it start with Ctrl+C ignored until ``launch.worker`` installs the handler that stops at the next
vote; they do not inherit the watchdog thread and start their own.

A rank forked while the launcher stops (Ctrl+C or SIGTERM in the first seconds) finds the
launcher's semaphores already gone and fails while unpickling its start data; the fork server
would print that as a 15-line traceback after the launcher's own line.  :func:`_quiet_start`
keeps that one race quiet (the launcher reports the stop) and leaves every other error as is."""

from __future__ import annotations

import os
import signal
import sys
from types import TracebackType

from nosync.launch.lifeline import die_with, launcher_pid

# what a rank's start raises when the launcher tore its start data down meanwhile
TEARDOWN = (FileNotFoundError, EOFError, ConnectionError)


def _quiet_start(kind: type[BaseException], err: BaseException, tb: TracebackType | None) -> None:
    """The fork server's children report a failed start through ``sys.excepthook``."""
    frames, at = [], tb
    while at is not None:
        frames.append(at.tb_frame.f_code.co_filename)
        at = at.tb_next
    unpickling = any(f.endswith(("spawn.py", "synchronize.py", "reduction.py")) for f in frames)
    if isinstance(err, TEARDOWN) and unpickling and os.environ.get("NOSYNC_VERBOSE") != "1":
        return
    sys.__excepthook__(kind, err, tb)


_pid = launcher_pid()
if _pid is not None and _pid != os.getpid() and os.getppid() == _pid:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.excepthook = _quiet_start
    die_with(_pid)
