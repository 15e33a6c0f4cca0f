"""One round of the swarm, top to bottom: plan, exchange, rule; then applying it.

:meth:`Round.compute` works on a snapshot of the particle's position and never touches the
model, so it can run on the training thread (``--round blocking``) or in the background while
training goes on (``--round async``):

1. **plan**: evaluate this particle's fitness (only for rules that use it), exchange it
   (``Exchange.fitness``), elect the leader and list the diverged particles (``planner.py``);
2. **exchange**: fetch what the rule needs - the leader's weights, or a sum over the live
   particles - and nothing for rules that need nothing;
3. **rule**: the rule's anchor (the point it pulls toward), then its pull; a diverged particle
   restarts instead, with its optimizer and rule state cleared.

The particle's distance to the anchor goes into the log, but with ``all`` particles it travels
with the *next* round's message (:class:`~nosync.core.distances.Distances` owns that): a round's
record leaves with its distances unknown (``Outcome.awaits``) and the next round's outcome
brings them (``Outcome.previous``).

:meth:`Round.apply` then moves the live model: onto the new position when no step was taken
since the snapshot (a blocking round, or a reset), else by the correction ``new - snapshot``,
so that the steps taken meanwhile are kept.  Data-parallel particles: only the first rank
computes; :meth:`Round.apply` hands the result to the particle's other ranks.

The first round also checks, in one small all-gather, that the particles' models have the same
shapes, and warns once when every particle is at the same position: its ranks saw the same
batches, the trap of a loop that shuffles alike on every rank.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nosync.core.distances import Distances
from nosync.core.exchange import Exchange
from nosync.core.planner import Neighbourhood, Plan
from nosync.core.records import RoundRecord, round_record
from nosync.core.rules import Exchanged, Rule
from nosync.core.weights import flatten_weights, float_tensors, load_weights
from nosync.errors import Diverged

# the trap of a loop whose ranks all see the same batches (each rank needs its own data order)
IDENTICAL = (
    "Swarm: all {n} particles are identical at the first round (same weights on every rank), "
    "so the swarm trains one model {n} times; give each rank its own data order, e.g. a "
    "DistributedSampler, or a shuffle seeded with the rank "
    "(DataLoader(..., shuffle=True, generator=torch.Generator().manual_seed(rank)))"
)


class SwarmDivergedError(Diverged):
    """Every particle has a non-finite fitness: there is no leader to recover from."""


@dataclass
class Outcome:
    """What a computed round decided for this particle."""

    record: RoundRecord
    own: Tensor  # the position the round started from (the snapshot)
    new: Tensor  # where the rule puts it (``own`` itself: no move)
    reset: bool = False  # diverged: restart at ``new``, optimizer state cleared
    ints: Tensor | None = None  # the integer buffers a reset takes along
    awaits: bool = False  # the record's distances come with the next round (or the end)
    previous: list[float | None] | None = None  # every particle's distance at the round before

    @property
    def moved(self) -> bool:
        return self.new is not self.own

    def state_dict(self) -> dict:
        return {
            "record": self.record,
            "own": self.own,
            "new": self.new if self.moved else None,
            "reset": self.reset,
            "ints": self.ints,
            "awaits": self.awaits,
            "previous": self.previous,
        }

    @classmethod
    def from_state(cls, state: dict) -> Outcome:
        own = state["own"]
        new = own if state["new"] is None else state["new"]
        awaits, previous = state.get("awaits", False), state.get("previous")
        return cls(state["record"], own, new, state["reset"], state["ints"], awaits, previous)


class Round:
    """The round of one particle: its model and optimizer, its rule, its exchange."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        rule: Rule,
        exchange: Exchange,
        distances: Distances,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.rule, self.exchange, self.transport = rule, exchange, exchange.transport
        self.distances = distances  # the log's distances, which ride with the next message
        self._checked = False

    def compute(
        self,
        number: int,
        step: int,
        pressure: float,
        own: Tensor,
        fitness: Callable[[], float],
        train_loss: float = math.nan,
    ) -> Outcome:
        """Round ``number``, started after optimizer step ``step`` at position ``own``;
        ``fitness()`` gives this particle's fitness there (only asked if the rule uses it)."""
        self.check_shapes(own if number == 1 else None)
        hood = None if self.exchange.everyone else self.exchange.neighbourhood(number)
        plan, previous = self._plan(own, hood, step, fitness, train_loss)  # 1. who leads
        me = self.transport.particle
        got = Exchanged(pressure, plan.known.get(me, math.inf), particle=me, known=plan.known)
        ints = None
        if self.rule.needs == "leader":  # 2. what the rule needs
            got.leader, ints = self.exchange.leader_weights(self.model, own, plan, hood)
        elif self.rule.needs == "sum":
            plan, carried = self._sum(own, plan, got, hood is None and previous is None)
            previous = carried if carried is not None else previous
        new, distance, target = own, math.nan, None
        if got.leader is not None or got.total is not None:  # 3. the rule moves the particle
            anchor, target = self.rule.anchor(own, got), self.rule.target
            if plan.me_diverged:
                new = self.rule.restart(anchor, got)
                self.rule.reset()
            else:
                distance = float(torch.linalg.vector_norm(own - anchor))
                new = self.rule.pull(own, anchor, got)
        uses_fitness = self.rule.needs_fitness
        awaits = target is not None and hood is None  # the distances come with the next round
        record = round_record(
            number,
            step,
            fitness=plan.fitness_list() if uses_fitness else None,
            leader=plan.leader if uses_fitness else None,
            distance=None if target is None or hood is None else self.distances.own_only(distance),
            target=target,
            pressure=got.pressure,
            reset=plan.resets,
            train_loss=plan.aux_list() if uses_fitness else None,
        )
        self.distances.hold(distance, awaits)
        reset = plan.me_diverged and new is not own
        return Outcome(record, own, new, reset, ints, awaits=awaits, previous=previous)

    def apply(self, outcome: Outcome | None, steps_since: int) -> RoundRecord:
        """Move the live model (see the module docstring); every rank of a particle calls this,
        the first one with the outcome it computed, the others with ``None``."""
        overwrite = outcome is None or outcome.reset or steps_since == 0
        if outcome is not None and outcome.moved:
            if overwrite:
                load_weights(self.model, outcome.new)
            else:
                load_weights(self.model, flatten_weights(self.model) + (outcome.new - outcome.own))
            if outcome.reset:
                self._reset(outcome.ints)
        if self.transport.hybrid:
            return self._share_in_particle(outcome, overwrite)
        assert outcome is not None
        return outcome.record

    def _plan(
        self,
        own: Tensor,
        hood: Neighbourhood | None,
        step: int,
        fitness: Callable[[], float],
        train_loss: float,
    ) -> tuple[Plan, list[float | None] | None]:
        """The plan, and every particle's distance at the previous round when it rode along."""
        t = self.transport
        if not self.rule.needs_fitness:
            return Plan(t.particle, t.particles, everyone=hood is None), None
        plan, previous = self.exchange.fitness(fitness(), hood, train_loss, self.distances.carry)
        if plan.leader is None and plan.everyone:
            raise SwarmDivergedError(
                f"every particle diverged at step {step} (fitness {list(plan.known.values())})",
                step,
            )
        return plan, previous

    def _sum(
        self, own: Tensor, plan: Plan, got: Exchanged, carry: bool
    ) -> tuple[Plan, list[float | None] | None]:
        """Needs ``sum``: the rule's contributions summed over the live particles (and,
        when ``carry``, the previous round's distances with them)."""

        def mean(t: Tensor) -> Tensor:
            nonlocal plan
            total, plan, _ = self.exchange.live_sum(t, own, plan)
            return total / (self.transport.particles - len(plan.diverged))

        self.rule.prepare(own, mean)
        slots = self.distances.slots() if carry else None
        contribution = self.rule.contribution(own, got)
        got.total, plan, summed = self.exchange.live_sum(contribution, own, plan, slots)
        got.alive = self.transport.particles - len(plan.diverged)
        return plan, None if summed is None else Distances.unslot(summed)

    def _reset(self, ints: Tensor | None) -> None:
        """A diverged particle: the leader's integer buffers (when the rule fetches a leader),
        optimizer state cleared (the rule forgot its own when it computed the restart)."""
        if ints is not None:
            load_weights(self.model, ints, integer=True)
        self.optimizer.state.clear()

    def _share_in_particle(self, outcome: Outcome | None, overwrite: bool) -> RoundRecord:
        """Hybrid particles: the first rank's position (or, for a correction, the correction)
        and the round record go to the other ranks of the particle."""
        if overwrite or outcome is None or not outcome.moved:
            payload = flatten_weights(self.model)  # (on the other ranks: a buffer to fill)
        else:
            payload = outcome.new - outcome.own
        meta = None if outcome is None else (outcome.record, overwrite or not outcome.moved)
        record, absolute = self.transport.share_in_particle([payload], meta)
        if not self.transport.is_head:
            load_weights(self.model, payload if absolute else flatten_weights(self.model) + payload)
            if self.transport.particle in record["reset"]:
                self.optimizer.state.clear()
        return dict(record)  # type: ignore[return-value]

    def check_shapes(self, own: Tensor | None = None) -> None:
        """Once: fail clearly when the particles' models differ (see ``Exchange``); given the
        first round's position ``own``, warn when every particle is at the same one."""
        if not self._checked:
            identical = self.exchange.check_same_shapes(float_tensors(self.model), own)
            self._checked = True
            if identical and self.transport.particle == 0:
                warnings.warn(IDENTICAL.format(n=self.transport.particles), UserWarning, 2)
