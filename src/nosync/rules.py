"""The pull rules of a sync round, as pure tensor functions.

Nothing here knows about processes or models: every function takes flat weight vectors (a
particle's parameters and floating-point buffers, concatenated) and returns new ones, so each can
be checked against its equation in isolation.  ``swarm.py`` does the communication around them.

The NoSync paper (Isakov & Kinsy, ICANN 2018) is not available to us in full; ``leader_pull`` is a
reconstruction from its abstract and from its closest published relatives (Leader SGD, EASGD,
PSO-PS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

RULES = ("leader", "pso", "elastic", "none")  # the rules of `nosync train --rule`
SWARM_RULES = (*RULES, "easgd")  # `easgd` is a strategy of its own (it selects the centre)
SCHEDULES = ("constant", "linear")


def leader_pull(w: Tensor, leader: Tensor, pressure: float) -> Tensor:
    """NoSync (reconstruction): ``w <- w + p * (w_leader - w)``.

    ``torch.lerp`` is exact at both ends: p=0 returns ``w`` and p=1 returns ``w_leader``.
    """
    return torch.lerp(w, leader, pressure)


def elastic_pull(w: Tensor, mean: Tensor, pressure: float) -> Tensor:
    """EASGD-like pull toward the swarm mean: ``w <- w + p * (mean(w) - w)``; p=1 is averaging."""
    return torch.lerp(w, mean, pressure)


def pso_update(
    w: Tensor,
    velocity: Tensor,
    personal_best: Tensor,
    leader: Tensor,
    *,
    pressure: float,
    inertia: float,
    c1: float,
    c2: float,
    r1: Tensor,
    r2: Tensor,
) -> tuple[Tensor, Tensor]:
    """Particle-swarm step in weight space (PSO-PS style), applied once per sync round.

    ``v <- inertia*v + c1*r1*(w_best - w) + p*c2*r2*(w_leader - w)`` and ``w <- w + v``.
    The pressure ``p`` scales the social term so that a pressure schedule works for ``pso`` as
    it does for ``leader``; with ``c2 = 2`` and ``r2 ~ U(0, 1)`` the expected social pull equals
    the ``leader`` rule's.  ``r1`` and ``r2`` are fresh uniform draws (per coordinate) each round.
    """
    v = inertia * velocity + c1 * r1 * (personal_best - w) + pressure * c2 * r2 * (leader - w)
    return w + v, v


@dataclass
class PSOState:
    """One particle's memory under ``pso``: its velocity and the best place it has been."""

    velocity: Tensor | None = None
    best: Tensor | None = None
    best_fitness: float = math.inf


def pso_round(
    w: Tensor,
    fitness: float,
    leader: Tensor,
    state: PSOState,
    *,
    pressure: float,
    inertia: float,
    c1: float,
    c2: float,
    generator: torch.Generator,
) -> Tensor:
    """A particle's whole ``pso`` round: update its personal best, draw fresh ``r1, r2`` (one
    per coordinate, from the particle's own seeded generator) and move (:func:`pso_update`)."""
    if state.best is None or fitness < state.best_fitness:
        state.best, state.best_fitness = w.clone(), fitness
    if state.velocity is None:
        state.velocity = torch.zeros_like(w)
    r1 = torch.rand(w.shape, generator=generator, dtype=w.dtype).to(w.device)
    r2 = torch.rand(w.shape, generator=generator, dtype=w.dtype).to(w.device)
    new, state.velocity = pso_update(
        w,
        state.velocity,
        state.best,
        leader,
        pressure=pressure,
        inertia=inertia,
        c1=c1,
        c2=c2,
        r1=r1,
        r2=r2,
    )
    return new


def easgd_update(
    w: Tensor, center: Tensor, diff_sum: Tensor, alpha: float
) -> tuple[Tensor, Tensor]:
    """Synchronous EASGD (Zhang, Choromanska & LeCun, NeurIPS 2015), one round.

    ``w <- w - alpha * (w - c)`` and ``c <- c + alpha * sum_j (w_j - c)``, both from the
    positions before the round (``diff_sum`` is the all-reduced ``sum_j (w_j - c)``): the
    workers are pulled toward the centre and the centre moves toward the workers.
    """
    return w - alpha * (w - center), center + alpha * diff_sum


def elect_leader(fitness: Tensor) -> int | None:
    """Index of the lowest finite fitness; ties go to the lowest index; None if none is finite."""
    finite = torch.isfinite(fitness)
    if not bool(finite.any()):
        return None
    masked = torch.where(finite, fitness, torch.full_like(fitness, math.inf))
    best = masked.min()
    return int(torch.nonzero(masked == best)[0].item())


def pressure_at(schedule: str, base: float, progress: float) -> float:
    """Pressure for a round at ``progress`` in [0, 1] of training.

    ``constant`` keeps ``base``; ``linear`` ramps from ``base`` to 1 at the end, so that the
    swarm ends as one model.
    """
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        return base
    if schedule == "linear":
        return base + (1.0 - base) * progress
    raise ValueError(f"schedule: unknown pressure schedule {schedule!r} (choose from {SCHEDULES})")


def mean_pairwise_distance(weights: Tensor) -> float:
    """Swarm spread: mean L2 distance over all pairs of rows of ``weights`` (particles x dims)."""
    if weights.shape[0] < 2:
        return 0.0
    return float(torch.pdist(weights.double()).mean())
