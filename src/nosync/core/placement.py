"""Where a rank sits: which particle it belongs to and the process groups that follow from it.

A *particle* is one model trained by ``k`` ranks (data-parallel inside when ``k > 1``).  The
swarm exchange runs between the first ranks of the particles; the particle group keeps a
particle's ranks identical.  (Neighbourhoods, *whom* a particle compares with, are
``topology.py``'s business, not this module's.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

CPU = torch.device("cpu")


@dataclass
class Placement:
    """Rank ``rank`` of ``world``: particle ``rank // k`` of ``world // k``."""

    rank: int
    world: int
    ranks_per_particle: int
    swarm_group: dist.ProcessGroup | None  # the first rank of every particle; None elsewhere
    particle_group: dist.ProcessGroup | None  # this particle's DDP group; None when k == 1
    device: torch.device = CPU  # where this rank computes (devices.pick)

    @property
    def particle(self) -> int:
        return self.rank // self.ranks_per_particle

    @property
    def particles(self) -> int:
        return self.world // self.ranks_per_particle

    @property
    def rank_in_particle(self) -> int:
        return self.rank % self.ranks_per_particle

    @property
    def is_head(self) -> bool:
        return self.rank_in_particle == 0


def particle_groups(
    ranks_per_particle: int, timeout: timedelta | None = None
) -> tuple[dist.ProcessGroup | None, dist.ProcessGroup | None]:
    """Split the default group into particles of ``ranks_per_particle`` consecutive ranks.

    Returns ``(swarm_group, particle_group)`` for this rank: the swarm group holds the first rank
    of every particle (``None`` on the other ranks) and the particle group is the data-parallel
    group of this rank's particle (``None`` when a particle is a single rank).  Every rank must
    call this, in the same order, as with any ``new_group``.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    if ranks_per_particle < 1 or world % ranks_per_particle:
        raise ValueError(
            f"ranks_per_particle: {ranks_per_particle} does not divide the world size {world}"
        )
    if ranks_per_particle == 1:
        return dist.group.WORLD, None
    k = ranks_per_particle
    particle_group = None
    for first in range(0, world, k):
        group = dist.new_group(list(range(first, first + k)), timeout=timeout)
        if first <= rank < first + k:
            particle_group = group
    swarm_group = dist.new_group(list(range(0, world, k)), timeout=timeout)
    return (swarm_group if rank % k == 0 else None), particle_group


def place(
    ranks_per_particle: int,
    timeout: timedelta | None = None,
    device: torch.device = CPU,
) -> Placement:
    """This rank's placement in the default group (makes the groups: call on every rank)."""
    swarm_group, particle_group = particle_groups(ranks_per_particle, timeout)
    return Placement(
        dist.get_rank(),
        dist.get_world_size(),
        ranks_per_particle,
        swarm_group,
        particle_group,
        device,
    )
