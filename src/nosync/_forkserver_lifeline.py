"""Imported by the fork server the ranks start from (``launch.PRELOAD``), for its side effect:
the fork server dies with the launcher that started it (see ``lifeline``).  Forked ranks do not
inherit the thread; they start their own in ``launch.worker``."""

from __future__ import annotations

import os

from .lifeline import die_with, launcher_pid

_pid = launcher_pid()
if _pid is not None and _pid != os.getpid() and os.getppid() == _pid:
    die_with(_pid)
