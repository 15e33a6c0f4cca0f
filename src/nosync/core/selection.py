"""What a swarm returns at the end (``select``), as functions of the particles' weights.

- ``best``: the particle with the best (lowest finite) fitness - what the swarm always did;
- ``average``: the uniform weight average of the live particles;
- ``soup``: a greedy soup (Wortsman et al., "Model soups", ICML 2022) on the fitness set: the
  particles sorted by fitness, each added to the uniform average of those kept so far while the
  average's fitness gets strictly better (lower).

Averaged weights carry averaged BatchNorm statistics, which do not describe the averaged
network; :func:`recalibrate_bn` recomputes them on training batches
(``torch.optim.swa_utils.update_bn``: a cumulative average over at most :data:`BN_BATCHES`
batches), which changes the running statistics and nothing else.  ``Swarm.finalize`` and the
monitor's end-of-run evaluation both call :func:`select_weights`, so what the run returns and
what ``summary.json`` reports are the same computation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from torch import Tensor, nn
from torch.optim.swa_utils import update_bn

from nosync.core.weights import flatten_weights, load_weights

SELECTS = ("best", "average", "soup")
BN_BATCHES = 200  # at most this many training batches recompute an averaged model's statistics


def check_select(value: object) -> str:
    if value not in SELECTS:
        raise ValueError(f"select must be one of {', '.join(SELECTS)}, got {value!r}")
    return str(value)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def recalibrate_bn(model: nn.Module, batches: Iterable[Any] | None) -> None:
    """Recompute BatchNorm running statistics on up to :data:`BN_BATCHES` training batches
    (tensors, or ``(inputs, targets)`` pairs); nothing without BatchNorm or without data."""
    if batches is not None and has_batchnorm(model):
        update_bn(itertools.islice(batches, BN_BATCHES), model)


def live(fitness: Sequence[float]) -> list[int]:
    """The particles with a finite fitness, best first (ties to the lowest index)."""
    finite = [i for i, f in enumerate(fitness) if math.isfinite(f)]
    return sorted(finite, key=lambda i: (fitness[i], i))


def greedy_soup(
    weights: Tensor, fitness: Sequence[float], score: Callable[[Tensor], float]
) -> list[int]:
    """The soup's ingredients: start from the best particle; try the others in order of
    fitness, keeping each whose addition makes ``score`` (of the uniform average of the
    ingredients) strictly lower.  The best particle's own score is its ``fitness``."""
    order = live(fitness)
    if not order:
        raise ValueError("soup: every particle diverged")
    soup, best = [order[0]], fitness[order[0]]
    for i in order[1:]:
        value = score(weights[[*soup, i]].mean(0))
        if value < best:
            soup, best = [*soup, i], value
    return soup


def select_weights(
    select: str,
    weights: Tensor,
    fitness: Sequence[float],
    scratch: nn.Module,
    model_fitness: Callable[[nn.Module], float],
    bn_batches: Callable[[], Iterable[Any]] | None,
) -> tuple[Tensor, Tensor, list[int]]:
    """``(float weights, integer buffers, ingredients)`` of the model ``select`` picks from
    ``weights`` (particles x values, flat as ``flatten_weights``).  ``scratch`` is a model of
    the same shape to evaluate candidates on; ``bn_batches()`` gives training batches for
    BatchNorm recalibration of averaged candidates."""
    order = live(fitness)
    if not order:
        raise ValueError("select: every particle diverged")

    def build(ingredients: list[int]) -> None:
        load_weights(scratch, weights[ingredients].mean(0))
        if len(ingredients) > 1:
            recalibrate_bn(scratch, bn_batches() if bn_batches is not None else None)

    def score(flat: Tensor) -> float:
        load_weights(scratch, flat)
        recalibrate_bn(scratch, bn_batches() if bn_batches is not None else None)
        value = float(model_fitness(scratch))
        return value if math.isfinite(value) else math.inf

    if select == "best":
        ingredients = order[:1]
    elif select == "average":
        ingredients = sorted(order)
    else:
        ingredients = greedy_soup(weights, fitness, score)
    build(ingredients)
    return flatten_weights(scratch), flatten_weights(scratch, integer=True), ingredients
