"""Imported by the fork server the ranks start from (``launch.PRELOAD``), for its side effects:
the fork server dies with the launcher that started it (see ``lifeline``), and ignores Ctrl+C
while it loads torch, so a Ctrl+C in the first seconds prints no traceback.  Ranks forked from
it start with Ctrl+C ignored until ``launch.worker`` installs the handler that stops at the next
vote; they do not inherit the watchdog thread and start their own."""

from __future__ import annotations

import os
import signal

from .lifeline import die_with, launcher_pid

_pid = launcher_pid()
if _pid is not None and _pid != os.getpid() and os.getppid() == _pid:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with(_pid)
