"""A swarm's rounds in time: each started on the training thread, computed there (blocking) or
on the background thread (async), landed ``delay`` steps later, and recorded with what it cost.

This module owns the round in flight (:class:`~nosync.core.background.Pending`), the records of
the rounds that landed, and their timing: ``seconds`` (from the start to the landing),
``blocked_seconds`` (the training thread's share of it), ``comm_seconds`` and ``comm_bytes``
(the round's collectives).  ``Swarm`` says *when* a round starts and lands (every ``period``
steps, ``sync``, ``flush``); :class:`~nosync.core.round.Round` says *what* it does.
"""

from __future__ import annotations

import math
import time
from typing import Any

from nosync.core.background import Background, Pending
from nosync.core.evaluate import SnapshotFitness, TrainLoss
from nosync.core.population import Population
from nosync.core.records import RoundRecord
from nosync.core.round import Outcome, Round
from nosync.core.weights import flatten_weights


class RoundCycle:
    """The rounds of one particle, from start to record (see the module docstring)."""

    def __init__(
        self,
        round_: Round,
        fitness_at: SnapshotFitness,
        train_loss: TrainLoss | None,
        delay: int,
        background: Background | None,
        population: Population | None = None,
    ) -> None:
        self.round, self.transport = round_, round_.transport
        self.population = population  # ``explore=``: the exploit step after the pull
        self.fitness_at, self.train_loss = fitness_at, train_loss
        self.delay, self.background = delay, background
        self.pending: Pending | None = None
        self.started = 0  # rounds started so far
        self.blocked_seconds = 0.0  # the training thread's time held up by rounds, so far
        self.history: list[RoundRecord] = []

    def due(self, step: int) -> bool:
        """Whether the round in flight lands at ``step`` (or should have already)."""
        return self.pending is not None and step >= self.pending.apply_at

    def start(self, step: int, pressure: float, background: bool) -> None:
        """Start a round after optimizer step ``step``: in the background (landing ``delay``
        steps later) or now (landing at once)."""
        start = time.perf_counter()
        self.started += 1
        delay = self.delay if background else 0
        pending = Pending(self.started, step, step + delay, start)
        aux = self.train_loss.take() if self.train_loss is not None else math.nan
        pending.aux = aux
        if self.population is not None:
            self.population.remember_layout()  # before a reset can clear it
        if self.transport.is_head:
            own = flatten_weights(self.round.model)  # a snapshot: training may go on
            fitness = self.fitness_at.at(own, aux, background)
            args = (self.started, step, pressure, own, fitness, aux)
            if background and self.background is not None:
                pending.future = self.background.submit(self._compute, *args)
            else:
                pending.outcome, pending.comm = self._compute(*args)
        pending.blocked = time.perf_counter() - start
        self.blocked_seconds += pending.blocked
        self.pending = pending

    def _compute(self, *args: Any) -> tuple[Outcome, tuple[float, int]]:
        """The round's plan, exchange and rule; its collectives' seconds and bytes."""
        seconds, nbytes = self.transport.seconds, self.transport.bytes
        outcome = self.round.compute(*args)
        return outcome, (self.transport.seconds - seconds, self.transport.bytes - nbytes)

    def finish(self, step: int) -> RoundRecord:
        """Land the round in flight at optimizer step ``step`` and record it."""
        start, pending = time.perf_counter(), self.pending
        assert pending is not None
        self.pending = None
        pending.wait(self.transport.timeout)
        seconds, nbytes = self.transport.seconds, self.transport.bytes
        record = self.round.apply(pending.outcome, step - pending.step)
        if self.population is not None:
            aux, model = pending.aux, self.round.model  # fitness now, only if asked for:

            def own() -> float:  # (the round's own fitness usually serves)
                return self.fitness_at.at(flatten_weights(model), aux, False)()

            self.population.land(record, pending.number, step, own)
        outcome = pending.outcome
        if outcome is not None:  # the previous round's distances came with this one
            self.round.distances.land(self.history, outcome.previous)
            self.round.distances.awaiting = outcome.awaits
        if self.train_loss is not None and self.transport.particle in record["reset"]:
            self.train_loss.take()  # losses of the diverged weights do not count against the new
        record["seconds"] = time.perf_counter() - pending.started
        finishing = time.perf_counter() - start
        self.blocked_seconds += finishing
        record["blocked_seconds"] = pending.blocked + finishing
        record["comm_seconds"] = pending.comm[0] + self.transport.seconds - seconds
        record["comm_bytes"] = pending.comm[1] + self.transport.bytes - nbytes
        record["applied_step"] = step
        self.history.append(record)
        return record

    def state_dict(self) -> dict[str, Any]:
        """The rounds' part of the swarm's state (the round in flight waited for first)."""
        pending = self.pending
        if pending is not None:
            pending.wait(self.transport.timeout)
        population = self.population
        return {
            "rounds": self.started,
            "history": self.history,
            "pending": None if pending is None else pending.state_dict(),
            "train_loss": None if self.train_loss is None else self.train_loss.state_dict(),
            "population": None if population is None else population.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.started, self.history = int(state["rounds"]), list(state["history"])
        pending = state.get("pending")
        self.pending = Pending.from_state(pending) if pending else None
        if self.train_loss is not None and state.get("train_loss"):
            self.train_loss.load_state_dict(state["train_loss"])
        if self.population is not None and state.get("population"):
            self.population.load_state_dict(state["population"])
