"""The end of a swarm: every particle's final fitness, and the model every rank ends holding.

This module owns ``Swarm.finalize``'s choice, made by the particles' first ranks: the rule's own
model (EASGD's centre), or what ``select`` says - the best particle by fitness (broadcast from
it, integer buffers included), or the weight average or greedy soup
(:mod:`nosync.core.selection`), which the first particle computes from everybody's weights and
hands to the others.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nosync.core import selection
from nosync.core.distances import Distances
from nosync.core.equations import elect_leader
from nosync.core.evaluate import fitness_value
from nosync.core.planner import finite_or_none
from nosync.core.records import RoundRecord
from nosync.core.round import SwarmDivergedError
from nosync.core.rule_objects import Rule
from nosync.core.transport import Transport
from nosync.core.weights import flatten_weights, load_weights, unwrap


@dataclass
class Ending:
    """What the end decided (the same on every particle's first rank)."""

    final_fitness: list[float | None]  # per particle (None: diverged)
    best_particle: int | None = None  # select "best": the particle every rank now holds
    ingredients: list[int] | None = None  # select "average"/"soup": the particles averaged


def choose(
    model: nn.Module,
    transport: Transport,
    rule: Rule,
    fitness: Callable[[nn.Module], float],
    select: str,
    bn_data: Iterable[Any] | None,
    distances: Distances,
    history: list[RoundRecord],
) -> Ending:
    """Load the selected model into ``model`` (see the module docstring); every head calls it.
    The fitness all-gather brings the last round's distances to ``history`` as well."""
    own = flatten_weights(model)
    fit = fitness_value(fitness, model, own)
    mine = torch.tensor([fit, distances.carry], dtype=torch.float64, device=distances.device)
    rows = transport.all_gather(mine).view(-1, 2).cpu()  # + the last round's distances
    distances.land(history, [finite_or_none(d) for d in rows[:, 1].tolist()])
    fits = rows[:, 0].contiguous()
    best = elect_leader(fits)
    if best is None:
        raise SwarmDivergedError(f"every particle diverged (fitness {fits.tolist()})")
    ending = Ending([finite_or_none(f) for f in fits.tolist()])
    chosen = rule.selected_weights()
    if chosen is not None:
        load_weights(model, chosen)
    elif select != "best":
        ending.ingredients = _select_many(
            model, transport, own, fits.tolist(), select, fitness, bn_data
        )
    else:
        ending.best_particle = best
        load_weights(model, transport.broadcast(own, best))
        ints = flatten_weights(model, integer=True)
        if ints.numel():
            load_weights(model, transport.broadcast(ints, best), integer=True)
    return ending


def _select_many(
    model: nn.Module,
    t: Transport,
    own: Tensor,
    fits: list[float],
    select: str,
    fitness: Callable[[nn.Module], float],
    bn_data: Iterable[Any] | None,
) -> list[int]:
    """``average`` or ``soup``: the first particle computes it from everybody's weights (each
    candidate's BatchNorm statistics recomputed on ``bn_data``) and hands it to the others;
    returns the particles it averaged."""
    weights = t.all_gather(own).view(t.particles, -1)
    flat, ints = flatten_weights(model), flatten_weights(model, integer=True)
    mask = torch.zeros(t.particles, dtype=torch.float64, device=own.device)
    if t.particle == 0:
        flat, ints, ingredients = selection.select_weights(
            select,
            weights,
            fits,
            copy.deepcopy(unwrap(model)),
            lambda m: fitness_value(fitness, m, flatten_weights(m)),
            None if bn_data is None else lambda: iter(bn_data),
        )
        mask[ingredients] = 1.0
    load_weights(model, t.broadcast(flat, 0))
    if ints.numel():
        load_weights(model, t.broadcast(ints, 0), integer=True)
    return [i for i, m in enumerate(t.broadcast(mask, 0).tolist()) if m]


def share(model: nn.Module, transport: Transport, box: Any) -> Any:
    """Hybrid particles: the head's model (integer buffers included) and ``box`` to the
    particle's other ranks; returns the head's ``box``."""
    flat, ints = flatten_weights(model), flatten_weights(model, integer=True)
    box = transport.share_in_particle([flat, ints], box)
    load_weights(model, flat)
    load_weights(model, ints, integer=True)
    return box
