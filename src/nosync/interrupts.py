"""Ctrl+C while a command starts: remembered, then acted on at the next safe point.

Starting means importing torch, numpy and scikit-learn and checking the input.  A
KeyboardInterrupt raised inside an import leaves that module half-initialised (seen here: numpy
then recursed until RecursionError, a 900-line traceback), so until the command's own work
begins a Ctrl+C only sets a flag; :func:`resume` restores Python's handler and raises the
KeyboardInterrupt there, where the command line turns it into one line and exit status 130.
"""

from __future__ import annotations

import signal
from typing import Any

_pressed = False
_previous: Any = None


def _remember(*_: object) -> None:
    global _pressed
    _pressed = True


def defer() -> None:
    """From now until :func:`resume` (or :func:`restore`), Ctrl+C only sets a flag."""
    global _pressed, _previous
    _pressed = False
    try:
        _previous = signal.signal(signal.SIGINT, _remember)
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        _previous = None


def resume() -> None:
    """The command's own work begins: Ctrl+C raises again; a remembered one is raised now."""
    restore()
    if _pressed:
        raise KeyboardInterrupt


def restore() -> None:
    """Put back the handler :func:`defer` replaced (idempotent)."""
    global _previous
    if _previous is not None:
        signal.signal(signal.SIGINT, _previous)
        _previous = None
