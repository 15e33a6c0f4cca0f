"""Every seed a run derives from ``--seed``, in one place.

A real run (one process per particle) and ``nosync simulate`` (every particle in one process)
must draw exactly the same numbers, so neither computes a seed itself: both call these.  Each
formula keeps its streams apart (data order, initialisation, PSO draws, neighbourhoods) and is
fixed: changing one changes every recorded result.
"""

from __future__ import annotations

import torch

_A, _B = 1_000_003, 10_007  # primes that keep (seed, index, counter) triples apart


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (the only kind the swarm draws from)."""
    return torch.Generator().manual_seed(seed)


def init(seed: int, particle: int, same: bool) -> int:
    """Model initialisation: the run's seed for every particle, or one per particle."""
    return seed if same else seed + 1000 * (particle + 1)


def batch_order(seed: int, particle: int, epoch: int) -> int:
    """The permutation of a particle's training examples in one epoch."""
    return (seed * _A + particle) * _B + epoch


def shard(seed: int) -> int:
    """The split of the training set into disjoint per-particle shards (``--shard``)."""
    return seed + 7919


def fitness_split(seed: int) -> int:
    """Which training examples are held out as the fitness set (the same on every particle)."""
    return seed


def pso(seed: int, particle: int) -> int:
    """A particle's stream of ``r1, r2`` draws under the ``pso`` rule."""
    return seed * _A + particle


def neighbours(seed: int, round_: int, particle: int) -> int:
    """A particle's ``random-k`` in-neighbours in one round (every rank computes all of them)."""
    return (seed * _A + round_) * _B + particle


def diversity(seed: int, particle: int) -> int:
    """A particle's own regularisation under ``--diversity`` (its label smoothing)."""
    return (seed * _A + particle) * _B + 104_729


def explore(seed: int, round_: int, particle: int, stream: int = 0) -> int:
    """``--explore``: a particle's draws in one round (``stream`` 0 picks its donor, 1 perturbs
    its values); ``round_`` -1 deals the starting strata (``particle`` is then the dimension)."""
    return ((seed * _A + round_ + 1) * _B + particle) * 4 + stream + 3_000_017
