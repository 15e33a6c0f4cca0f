"""A run's clocks: wall time since the launch, training time and evaluation time.

Evaluation (during training and at the end) is not training time (issue 17): it is timed apart
and taken out of ``train_seconds``.  A resumed run continues all three from its checkpoint, so
that its summary reports the whole run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Clocks:
    def __init__(self, wall_start: float) -> None:
        self.wall_start = wall_start
        self.train_start = time.perf_counter()
        self.eval_seconds = 0.0

    def resume(self, saved: dict[str, float]) -> None:
        """Continue the clocks a checkpoint saved (:meth:`state_dict`)."""
        now = time.perf_counter()
        self.eval_seconds = saved["eval_seconds"]
        self.train_start = now - saved["train_seconds"] - saved["eval_seconds"]
        self.wall_start -= saved["wall_seconds"]

    def train_seconds(self) -> float:
        return time.perf_counter() - self.train_start - self.eval_seconds

    def wall_seconds(self) -> float:
        return time.perf_counter() - self.wall_start

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Time the block as evaluation (also when it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.eval_seconds += time.perf_counter() - start

    def state_dict(self) -> dict[str, float]:
        """The clocks, so that a resumed run reports its whole time."""
        return {
            "train_seconds": self.train_seconds(),
            "eval_seconds": self.eval_seconds,
            "wall_seconds": self.wall_seconds(),
        }
