"""Ctrl+C while a command starts (remembered, then acted on at the next safe point), and the
launcher's Ctrl+C while its ranks run (:class:`LauncherStop`).

Starting means importing torch, numpy and scikit-learn and checking the input.  A
KeyboardInterrupt raised inside an import leaves that module half-initialised (seen here: numpy
then recursed until RecursionError, a 900-line traceback), so until the command's own work
begins a Ctrl+C only sets a flag; :func:`stop_deferring` restores Python's handler and raises the
KeyboardInterrupt there, where the command line turns it into one line and exit status 130.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

_pressed = False
_previous: Any = None


def _remember(*_: object) -> None:
    global _pressed
    _pressed = True


def defer() -> None:
    """From now until :func:`stop_deferring` (or :func:`restore`), Ctrl+C only sets a flag."""
    global _pressed, _previous
    _pressed = False
    try:
        _previous = signal.signal(signal.SIGINT, _remember)
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        _previous = None


def stop_deferring() -> None:
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


def _descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def _ranks(launcher: int) -> list[int]:
    """Every process under the launcher but multiprocessing's resource tracker (which cleans up
    after the others, and would print tracebacks if it died first)."""
    found = []
    for pid in _descendants(launcher):
        try:
            if b"resource_tracker import" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


class LauncherStop:
    """Ctrl+C in the launcher while its ranks run, instead of torch's agent's own handler.

    The first press does what the agent does: it raises its ``SignalException``, and the agent
    sends SIGINT to the ranks and waits (``shutdown_timeout``) while they stop at their next vote
    and save a checkpoint.  Another press kills every process under the launcher at once: a rank
    that is stopped or hung in a collective saves nothing anyway, and the agent would otherwise
    wait its whole grace once more before killing it (it shuts down twice when a second signal
    interrupts its first shutdown).  Used as a context manager around the launch, whose
    ``LaunchConfig(signals_to_handle=SIGNALS)`` tells torch to leave SIGINT alone.
    """

    SIGNALS = "SIGTERM,SIGHUP,SIGQUIT"  # torch's agent handles these, SIGINT is ours

    def __init__(self, raise_stop: Any) -> None:
        self._raise_stop = raise_stop  # raises the agent's SignalException for SIGINT
        self.presses = 0

    def _on_sigint(self, *_: object) -> None:
        self.presses += 1
        if self.presses > 1:
            for pid in _ranks(os.getpid()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._raise_stop()

    def __enter__(self) -> LauncherStop:
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *_: object) -> None:
        signal.signal(signal.SIGINT, self._previous)
