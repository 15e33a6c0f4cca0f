"""One round of the swarm, top to bottom: plan, exchange, rule.

1. **plan**: evaluate this particle's fitness (only for rules that use it), exchange it
   (``Exchange.fitness``), elect the leader and list the diverged particles (``planner.py``);
2. **exchange**: fetch what the rule needs - the leader's weights, or a sum over the live
   particles - and nothing for rules that need nothing;
3. **rule**: the rule's anchor (the point it pulls toward), then its pull; a diverged particle
   restarts instead, with its optimizer and rule state cleared.

Data-parallel particles: only the first rank runs these; the result is then handed to the
particle's other ranks (``Transport.share_in_particle``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .evaluate import fitness_value
from .exchange import Exchange
from .planner import Neighbourhood, Plan
from .records import RoundRecord, round_record
from .rules import Exchanged, Rule
from .weights import flatten_weights, float_tensors, load_weights


class SwarmDivergedError(RuntimeError):
    """Every particle has a non-finite fitness: there is no leader to recover from."""


class Round:
    """The round of one particle: its model and optimizer, its rule, its exchange."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        fitness: Callable[[nn.Module], float],
        rule: Rule,
        exchange: Exchange,
    ) -> None:
        self.model, self.optimizer, self.fitness = model, optimizer, fitness
        self.rule, self.exchange, self.transport = rule, exchange, exchange.transport
        self._checked = False

    def run(self, number: int, step: int, pressure: float) -> RoundRecord:
        """Round ``number``, after optimizer step ``step``; on the other ranks of a hybrid
        particle, only receive its outcome."""
        record = self._head(number, step, pressure) if self.transport.is_head else None
        return self._share_in_particle(record)

    def _head(self, number: int, step: int, pressure: float) -> RoundRecord:
        own = flatten_weights(self.model)
        self.check_shapes()
        hood = None if self.exchange.everyone else self.exchange.neighbourhood(number)
        plan = self._plan(own, hood, step)  # 1. who leads, who diverged
        got = Exchanged(pressure, plan.known.get(self.transport.particle, math.inf))
        ints = None
        if self.rule.exchange == "leader":  # 2. what the rule needs
            got.leader, ints = self.exchange.leader_weights(self.model, own, plan, hood)
        elif self.rule.exchange == "sum":
            plan = self._sum(own, plan, got)
        new, distance, target = own, math.nan, None
        if got.leader is not None or got.total is not None:  # 3. the rule moves the particle
            anchor, target = self.rule.anchor(own, got), self.rule.target
            if plan.me_diverged:
                new = self.rule.restart(anchor, got)
            else:
                distance = float(torch.linalg.vector_norm(own - anchor))
                new = self.rule.pull(own, anchor, got)
        if new is not own:
            load_weights(self.model, new)
        if plan.me_diverged and new is not own:
            self._reset(ints)
        fitness = self.rule.needs_fitness
        return round_record(
            number,
            step,
            fitness=plan.fitness_list() if fitness else None,
            leader=plan.leader if fitness else None,
            distance=None if target is None else self.exchange.distances(distance),
            target=target,
            pressure=got.pressure,
            reset=plan.resets,
        )

    def _plan(self, own: Tensor, hood: Neighbourhood | None, step: int) -> Plan:
        t = self.transport
        if not self.rule.needs_fitness:
            return Plan(t.particle, t.particles, everyone=hood is None)
        plan = self.exchange.fitness(fitness_value(self.fitness, self.model, own), hood)
        if plan.leader is None and plan.everyone:
            raise SwarmDivergedError(
                f"every particle diverged at step {step} (fitness {list(plan.known.values())})"
            )
        return plan

    def _sum(self, own: Tensor, plan: Plan, got: Exchanged) -> Plan:
        """Exchange ``sum``: the rule's contributions summed over the live particles."""

        def mean(t: Tensor) -> Tensor:
            nonlocal plan
            total, plan = self.exchange.live_sum(t, own, plan)
            return total / (self.transport.particles - len(plan.diverged))

        self.rule.prepare(own, mean)
        got.total, plan = self.exchange.live_sum(self.rule.contribution(own), own, plan)
        got.alive = self.transport.particles - len(plan.diverged)
        return plan

    def _reset(self, ints: Tensor | None) -> None:
        """A diverged particle: the leader's integer buffers (when the rule fetches a leader),
        optimizer and rule state cleared."""
        if ints is not None:
            load_weights(self.model, ints, integer=True)
        self.optimizer.state.clear()
        self.rule.reset()

    def _share_in_particle(self, record: RoundRecord | None) -> RoundRecord:
        """Hybrid particles: the head's new weights and round record go to the other ranks."""
        if not self.transport.hybrid:
            assert record is not None
            return record
        flat = flatten_weights(self.model)
        record = self.transport.share_in_particle([flat], record)
        if not self.transport.is_head:
            load_weights(self.model, flat)
            if self.transport.particle in record["reset"]:
                self.optimizer.state.clear()
        return dict(record)  # type: ignore[return-value]

    def check_shapes(self) -> None:
        """Once: fail clearly when the particles' models differ (see ``Exchange``)."""
        if not self._checked:
            self.exchange.check_same_shapes(float_tensors(self.model))
            self._checked = True
