"""The equations of the pull rules, and the round's small formulas, as pure tensor functions.

This module owns the arithmetic: each rule object (:mod:`nosync.core.rule_objects`) applies one
of these to flat weight vectors (a particle's parameters and floating-point buffers,
concatenated), and the tests check them against their equations.  Nothing here keeps state or
knows about particles, processes or the round.

The NoSync paper (Isakov & Kinsy, ICANN 2018) is not available to us in full; ``leader_pull`` is a
reconstruction from its abstract and from its closest published relatives (Leader SGD, EASGD,
PSO-PS).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nosync.core.catalog import SCHEDULES


def leader_pull(w: Tensor, leader: Tensor, pressure: float) -> Tensor:
    """NoSync (reconstruction): ``w <- w + p * (w_leader - w)``.

    ``torch.lerp`` is exact at both ends: p=0 returns ``w`` and p=1 returns ``w_leader``.
    """
    return torch.lerp(w, leader, pressure)


def elastic_pull(w: Tensor, mean: Tensor, pressure: float) -> Tensor:
    """EASGD-like pull toward the swarm mean: ``w <- w + p * (mean(w) - w)``; p=1 is averaging."""
    return torch.lerp(w, mean, pressure)


def fitness_weights(fitness: Tensor, temperature: float) -> Tensor:
    """``weighted``: ``softmax(-fitness / T)`` over the finite fitness values; a non-finite
    (diverged) particle gets weight 0.  Computed in float64 with the best fitness subtracted
    first, so that a small ``T`` cannot overflow: ``T -> 0`` puts all the weight on the best
    particle (the leader, when it is unique) and ``T -> inf`` spreads it evenly (the mean)."""
    f = fitness.double()
    finite = torch.isfinite(f)
    if not bool(finite.any()):
        return torch.zeros_like(f)
    best = f[finite].min()
    logits = torch.where(finite, -(f - best) / temperature, torch.full_like(f, -math.inf))
    return torch.softmax(logits, 0)


def nesterov_step(
    w: Tensor, target: Tensor, velocity: Tensor | None, lr: float, momentum: float
) -> tuple[Tensor, Tensor]:
    """Outer momentum: one step of Nesterov SGD on the pseudo-gradient toward ``target``.

    ``g = w - target``, ``v <- momentum * v + g`` (``v`` starts at 0), and
    ``w <- w - lr * (g + momentum * v)`` - exactly ``torch.optim.SGD(nesterov=True)`` with
    ``g`` as the gradient.  With ``momentum = 0`` it is the plain pull at pressure ``lr``:
    ``w + lr * (target - w)``.
    """
    g = w - target
    v = g.clone() if velocity is None else momentum * velocity + g
    return w - lr * (g + momentum * v), v


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
    """Particle-swarm step in weight space (PSO-PS style), applied once per round.

    ``v <- inertia*v + c1*r1*(w_best - w) + p*c2*r2*(w_leader - w)`` and ``w <- w + v``.
    The pressure ``p`` scales the social term so that a pressure schedule works for ``pso`` as
    it does for ``leader``; with ``c2 = 2`` and ``r2 ~ U(0, 1)`` the expected social pull equals
    the ``leader`` rule's.  ``r1`` and ``r2`` are fresh uniform draws (per coordinate) each round.
    """
    v = inertia * velocity + c1 * r1 * (personal_best - w) + pressure * c2 * r2 * (leader - w)
    return w + v, v


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
