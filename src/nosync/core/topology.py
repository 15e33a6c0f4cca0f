"""Who compares with whom: neighbourhoods of a swarm, as pure functions of indices.

With ``all`` every particle sees the whole swarm (one global leader).  With ``ring`` or
``random-k`` a particle compares fitness with, and pulls toward the best of, itself and its
*in-neighbours* only, so a round costs each worker the same traffic however large the swarm.
Every rank evaluates these functions for every particle and gets the same answer, so no
communication is needed to agree on the neighbourhoods.  (Who leads inside a neighbourhood is
``planner.py``'s business.)
"""

from __future__ import annotations

import torch

from nosync.core import seeds

TOPOLOGIES = ("all", "ring", "random-k")


def in_neighbours(
    topology: str, particle: int, particles: int, round_: int = 0, k: int = 2, seed: int = 0
) -> list[int]:
    """The particles whose fitness (and, if best, weights) ``particle`` takes into account.

    ``ring``: the two adjacent particles.  ``random-k``: ``k`` other particles drawn afresh every
    round from a generator seeded by (seed, round, particle).  ``all``: everybody else.
    """
    others = [j for j in range(particles) if j != particle]
    if topology == "all":
        return others
    if topology == "ring":
        return sorted({(particle - 1) % particles, (particle + 1) % particles} - {particle})
    if topology == "random-k":
        g = seeds.generator(seeds.neighbours(seed, round_, particle))
        pick = torch.randperm(len(others), generator=g)[: min(k, len(others))]
        return sorted(others[i] for i in pick.tolist())
    raise ValueError(f"topology must be one of {', '.join(TOPOLOGIES)}, got {topology!r}")


def out_neighbours(
    topology: str, particle: int, particles: int, round_: int = 0, k: int = 2, seed: int = 0
) -> list[int]:
    """The particles that have ``particle`` among their in-neighbours this round."""
    return [
        j
        for j in range(particles)
        if j != particle and particle in in_neighbours(topology, j, particles, round_, k, seed)
    ]
