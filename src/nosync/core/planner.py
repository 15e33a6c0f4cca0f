"""The decisions of a round that need no tensors: who leads, who is reset, who talks to whom.

Pure functions of fitness values and indices, shared by real runs (``swarm.py``) and ``nosync
simulate`` (which runs the same ``Swarm`` on a :class:`~nosync.core.transport.LocalWorld`), so the
two cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from nosync.core import rules, topology


@dataclass(frozen=True)
class Neighbourhood:
    """Whose fitness (and weights) a particle takes in (``ins``), and who takes in its own."""

    ins: list[int]
    outs: list[int]


def neighbourhood(
    kind: str, particle: int, particles: int, round_: int, k: int, seed: int
) -> Neighbourhood:
    """The neighbourhood of ``particle`` in round ``round_`` (the same answer on every rank)."""
    args = (kind, particle, particles, round_, k, seed)
    return Neighbourhood(topology.in_neighbours(*args), topology.out_neighbours(*args))


@dataclass(frozen=True)
class Plan:
    """What one particle knows after the fitness exchange of a round, and what follows."""

    particle: int
    particles: int
    known: dict[int, float] = field(default_factory=dict)  # fitness by particle (+inf: diverged)
    leader: int | None = None  # the best finite fitness known; ties to the lowest index
    diverged: list[int] = field(default_factory=list)  # known particles with non-finite fitness
    everyone: bool = True  # the whole swarm is known (topology "all")
    aux: dict[int, float] = field(default_factory=dict)  # a second signal (mean training loss)

    @property
    def me_diverged(self) -> bool:
        return self.particle in self.diverged

    @property
    def resets(self) -> list[int]:
        """The particles this round replaces whole, as this particle logs them."""
        return self.diverged if self.everyone else [i for i in self.diverged if i == self.particle]

    def fitness_list(self) -> list[float | None]:
        """Per particle; ``None`` where unknown here or non-finite (the log's form)."""
        return [finite_or_none(self.known.get(i)) for i in range(self.particles)]

    def aux_list(self) -> list[float | None] | None:
        """The second signal per particle, as logged (``None`` when nobody reported one)."""
        if not any(math.isfinite(v) for v in self.aux.values()):
            return None
        return [finite_or_none(self.aux.get(i)) for i in range(self.particles)]


def plan(
    particle: int,
    particles: int,
    known: dict[int, float],
    everyone: bool,
    aux: dict[int, float] | None = None,
) -> Plan:
    """Elect the leader among the ``known`` fitness values and list the diverged particles."""
    ids = sorted(known)
    best = rules.elect_leader(torch.tensor([known[i] for i in ids], dtype=torch.float64))
    return Plan(
        particle=particle,
        particles=particles,
        known=dict(known),
        leader=None if best is None else ids[best],
        diverged=[i for i in ids if not math.isfinite(known[i])],
        everyone=everyone,
        aux=dict(aux or {}),
    )


def finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
