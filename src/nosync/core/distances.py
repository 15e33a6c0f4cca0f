"""The log's distances, which ride with the next round's message: one object owns them.

Each particle's distance to its pull target (before the pull) goes into its round's record.
With ``all`` particles it costs no collective of its own: a round's record leaves with its
distances still to come, and every particle's distance travels with the *next* message the
particles send each other anyway:

- the next round's fitness all-gather (one more float per particle, :meth:`Exchange.fitness`),
- or, for a rule without fitness, the next round's sum (one slot per particle beside the
  weights, :meth:`slots`),
- or ``Swarm.finalize``'s fitness all-gather after the last round;
- a caller that stops without ``finalize`` (``nosync simulate``) settles them in one small
  all-gather of its own (:meth:`Distances.settle`).

In a neighbourhood only the particle's own distance is known, and it is logged at once
(:meth:`own_only`).  A separate all-gather per round would cost 2-13 % of a round on 2-4 local
gloo ranks (``benchmarks/RESULTS.md``), so the distances keep riding.

:class:`Distances` keeps both ends: what this particle sends next (``carry``, written by the
round, possibly on the background thread of an async round) and whether the last record in the
swarm's ``history`` still waits for its distances (``awaiting``, on the training thread).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from nosync.core.planner import finite_or_none
from nosync.core.records import RoundRecord
from nosync.core.transport import Transport


class Distances:
    """The distances in flight of one particle (see the module docstring)."""

    def __init__(self, transport: Transport, device: torch.device) -> None:
        self.transport, self.device = transport, device
        self.carry = math.nan  # this particle's distance at the last round, sent with the next
        self.awaiting = False  # the last record's distances come with the next round's message

    # ---- in a round (``Round.compute``) ---------------------------------------------------------
    def slots(self) -> Tensor:
        """This particle's slots of a summed message that carries one value (>= 0) per particle:
        zeros but its own, which holds ``carry`` (``-1``: none; always finite, so the sum stays
        a test of divergence).  Every particle sends its slots, a diverged one too."""
        t = self.transport
        slots = torch.zeros(t.particles, dtype=torch.float64, device=self.device)
        slots[t.particle] = self.carry if math.isfinite(self.carry) else -1.0
        return slots

    @staticmethod
    def unslot(summed: Tensor) -> list[float | None]:
        """Every particle's value from summed :meth:`slots`."""
        return [v if v >= 0 else None for v in summed.double().tolist()]

    def own_only(self, distance: float) -> list[float | None]:
        """A neighbourhood has no global view: this particle's distance, ``None`` for the rest."""
        t = self.transport
        return [finite_or_none(distance) if i == t.particle else None for i in range(t.particles)]

    def hold(self, distance: float, awaits: bool) -> None:
        """After a round: its distance is sent with the next message when its record awaits it."""
        self.carry = distance if awaits else math.nan

    # ---- when a round lands, and at the end (``Swarm``) -----------------------------------------
    def land(self, history: list[RoundRecord], previous: list[float | None] | None) -> None:
        """``previous`` (every particle's distance at the round before, when it came along)
        completes the last record of ``history``."""
        if self.awaiting and previous is not None and history:
            history[-1]["distance"] = previous
        self.awaiting = False

    def settled(self, history: list[RoundRecord]) -> int:
        """How many records of ``history`` are final: all but the last while it awaits."""
        return len(history) - int(self.awaiting)

    def settle(self, history: list[RoundRecord]) -> None:
        """The last round's distances now, in one small all-gather (every head calls it)."""
        if self.awaiting and self.transport.is_head:
            mine = torch.tensor([self.carry], dtype=torch.float64, device=self.device)
            gathered = self.transport.all_gather(mine).tolist()
            self.land(history, [finite_or_none(d) for d in gathered])

    def state_dict(self) -> dict[str, Any]:
        return {"carry": self.carry, "awaiting": self.awaiting}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.carry = float(state.get("carry", math.nan))
        self.awaiting = bool(state.get("awaiting", False))
