"""Async rounds: one background thread per swarm, and the round in flight.

A daemon thread (not a ``ThreadPoolExecutor``, whose workers are joined at interpreter exit: a
round stuck in a collective after a failure must not keep the process alive) runs one job at a
time.  :class:`Pending` is what the training thread keeps of a started round: when it started,
when it must land, and the result once there.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from nosync.core.round import Outcome


class Background:
    """Runs submitted callables one after another on a daemon thread."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple]] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._work, name="nosync-round", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        self._jobs.put((future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            future, fn, args = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as err:  # noqa: BLE001 - handed to the training thread
                future.set_exception(err)


@dataclass
class Pending:
    """A started round: number, start step, the step it lands at, and its result."""

    number: int
    step: int
    apply_at: int
    started: float  # perf_counter() at the start (for the round's wall time)
    blocked: float = 0.0  # seconds the training thread spent starting it
    future: Future | None = None
    outcome: Outcome | None = None  # None on the other ranks of a data-parallel particle
    comm: tuple[float, int] = field(default=(0.0, 0))
    aux: float = math.nan  # the training loss taken at the start (``--explore``'s fitness)

    def wait(self, timeout: float | None) -> None:
        """A background round's result, waited for no longer than ``timeout`` seconds (the
        transport's: a rank that stopped answering must not hold this one for torch's
        30-minute default)."""
        if self.future is None:
            return
        try:
            self.outcome, self.comm = self.future.result(timeout=timeout)
        except FutureTimeout:
            raise TimeoutError(
                f"round {self.number} timed out: no answer from another rank within {timeout:g} s"
            ) from None
        self.future = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "step": self.step,
            "apply_at": self.apply_at,
            "outcome": None if self.outcome is None else self.outcome.state_dict(),
            "comm": list(self.comm),
            "aux": self.aux,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Pending:
        outcome = None if state["outcome"] is None else Outcome.from_state(state["outcome"])
        return cls(
            state["number"], state["step"], state["apply_at"], 0.0, outcome=outcome,
            comm=(float(state["comm"][0]), int(state["comm"][1])),
            aux=float(state.get("aux", math.nan)),
        )  # fmt: skip
