"""Evaluation helpers: predictions, accuracy, a held-out-loss fitness for ``Swarm``, and a
particle's fitness at a round's snapshot (:class:`SnapshotFitness`)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nosync.core.weights import load_weights, unwrap


@torch.no_grad()
def predict_proba(model: nn.Module, x: Tensor, batch_size: int = 2048) -> Tensor:
    """Softmax outputs in eval mode (BatchNorm uses running stats); restores the mode after."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat(
            [F.softmax(model(x[i : i + batch_size]), 1) for i in range(0, len(x), batch_size)]
        )
    finally:
        model.train(was_training)


def accuracy_of(proba: Tensor, y: Tensor) -> float:
    return float((proba.argmax(1) == y).float().mean())


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return accuracy_of(predict_proba(model, x), y)


Loss = Callable[[Tensor, Tensor], Tensor]


@torch.no_grad()
def mean_loss(
    model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 2048, loss: Loss | None = None
) -> float:
    """Mean loss in eval mode (cross-entropy, or ``loss``, a batch mean weighted by the batch's
    size); NaN/inf propagate (the swarm treats them as worst)."""
    was_training = model.training
    model.eval()
    try:
        total = 0.0
        for i in range(0, len(x), batch_size):
            out, target = model(x[i : i + batch_size]), y[i : i + batch_size]
            if loss is None:
                total += float(F.cross_entropy(out, target, reduction="sum"))
            else:
                total += float(loss(out, target)) * len(target)
    finally:
        model.train(was_training)
    return total / len(x)


def loss_fitness(x: Tensor, y: Tensor, loss: Loss | None = None) -> Callable[[nn.Module], float]:
    """A ``Swarm`` fitness: mean loss (the training loss; default cross-entropy) on a fixed
    held-out set (never the test set)."""
    return lambda model: mean_loss(model, x, y, loss=loss)


def fitness_value(fitness: Callable[[nn.Module], float], model: nn.Module, flat: Tensor) -> float:
    """A particle's fitness as the swarm sees it: +inf when its weights (``flat``) or its loss
    are not finite, so that a diverged particle never leads."""
    if not bool(torch.isfinite(flat).all()):
        return math.inf
    value = fitness(model)
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"fitness must return a number, got {type(value).__name__}") from err
    return value if math.isfinite(value) else math.inf


class TrainLoss:
    """A free fitness (``--fitness train-loss``): the mean training loss since the last call.

    The training loop calls :meth:`observe` with each step's loss; a round takes the mean (and
    starts a new window).  ``cheap`` tells ``Swarm`` it may read it on the training thread at the
    round's start, which is what keeps an async round deterministic.  Its state is part of the
    swarm's checkpoint, so that a resumed run sees the same values.
    """

    cheap = True

    def __init__(self) -> None:
        self.total: Tensor | float = 0.0  # a tensor while steps add to it: no sync per step
        self.count = 0
        self.last = math.nan  # the previous window's mean, for a take() with no step since

    def observe(self, loss: Tensor) -> None:
        if isinstance(self.total, Tensor):  # one in-place add a step (exact: the sum is fp64)
            self.total.add_(loss.detach())
        else:  # a window's first step (0.0 + loss, as a new fp64 tensor: 0.0 + -0.0 is 0.0)
            self.total = loss.detach().double() + self.total
        self.count += 1

    def take(self) -> float:
        """The mean since the last take (or the previous mean when no step came since; NaN
        before any step); starts a new window."""
        if self.count:
            self.last = float(self.total) / self.count
        self.total, self.count = 0.0, 0
        return self.last

    def __call__(self, model: nn.Module) -> float:
        value = self.take()
        return value if math.isfinite(value) else math.inf

    def state_dict(self) -> dict[str, float]:
        return {"total": float(self.total), "count": self.count, "last": self.last}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.total, self.count = float(state["total"]), int(state["count"])
        self.last = float(state["last"])


class SnapshotFitness:
    """A particle's fitness at a round's snapshot ``own`` of its weights, as a thunk the round
    calls only if its rule uses fitness: the training loss (free, read now), the live model
    (blocking rounds: it still holds the snapshot), or a scratch copy loaded with the snapshot
    (async rounds, evaluated in the background while training goes on)."""

    def __init__(
        self,
        fitness: Callable[[nn.Module], float],
        model: nn.Module,
        train_loss: TrainLoss | None,
    ) -> None:
        self.fitness, self.model, self.train_loss = fitness, model, train_loss
        self._scratch: nn.Module | None = None

    def at(self, own: Tensor, aux: float, background: bool) -> Callable[[], float]:
        if self.fitness is self.train_loss or getattr(self.fitness, "cheap", False):
            value = (
                aux
                if self.fitness is self.train_loss
                else fitness_value(self.fitness, self.model, own)
            )
            return lambda: value if math.isfinite(value) else math.inf
        if not background:
            return lambda: fitness_value(self.fitness, self.model, own)
        if self._scratch is None:
            self._scratch = copy.deepcopy(unwrap(self.model))
        scratch = self._scratch

        def on_snapshot() -> float:
            load_weights(scratch, own)
            return fitness_value(self.fitness, scratch, own)

        return on_snapshot
