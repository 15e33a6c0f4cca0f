"""Evaluating a run across the swarm: during training each particle's accuracies and fitness,
the accuracy of the model the strategy would end with and the spread; at the end each particle,
their ensemble and the three models a swarm can return.

The first rank of every particle takes part (the others have the same model); its traffic goes
through the CPU (gloo), whatever the device, and is not counted as training traffic.  The
caller times it (``clocks.Clocks.evaluating``) and logs it.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from nosync.core import selection
from nosync.core.evaluate import accuracy, accuracy_of, predict_proba
from nosync.core.placement import Placement
from nosync.core.rules import mean_pairwise_distance
from nosync.core.weights import flatten_weights, load_weights
from nosync.errors import Diverged
from nosync.run.build import Task
from nosync.run.strategies import Strategy


def gather(t: Tensor, group: dist.ProcessGroup | None) -> Tensor:
    """Stack ``t`` from every member of ``group`` (the particles' first ranks).  Evaluation
    traffic goes through the CPU (gloo), whatever the device: it is rare and not timed."""
    w = t.detach().cpu().contiguous()
    out = [torch.empty_like(w) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, w, group=group)
    return torch.stack(out).to(t.device)


class Evaluator:
    """Evaluates on the task's test set and its fixed training subset; ``fitness`` is the
    held-out fitness, and ``bn_data`` the training batches an averaged model's BatchNorm
    statistics are recomputed on (``build.bn_batches``)."""

    def __init__(self, place: Placement, task: Task, bn_data: list[Tensor]) -> None:
        self.place, self.task, self.fitness, self.bn_data = place, task, task.fitness, bn_data
        self._scratch: nn.Module | None = None  # evaluates averaged/centre weights

    def during(self, model: nn.Module, strategy: Strategy) -> dict[str, Any] | None:
        """Per-particle test/train accuracy, fitness and skipped steps, the selected model's
        accuracy and the swarm spread (None on the ranks that take no part)."""
        if not self.place.is_head:
            return None
        group = self.place.swarm_group
        own = torch.tensor(
            self._accuracies(model) + [float(self.fitness(model)), float(strategy.skipped)],
            dtype=torch.float64,
        )
        rows = gather(own, group)
        weights = gather(flatten_weights(model), group)
        selected = self._selected(strategy, model, rows, weights)
        return {
            "test_accuracy": rows[:, 0].tolist(),
            "train_accuracy": rows[:, 1].tolist(),
            "fitness": rows[:, 2].tolist(),
            "skipped_steps": [int(n) for n in rows[:, 3].tolist()],
            "selected_test_accuracy": selected[0],
            "selected_train_accuracy": selected[1],
            "spread": mean_pairwise_distance(weights),
        }

    def _accuracies(self, model: nn.Module) -> list[float]:
        data = self.task.data
        return [
            accuracy(model, data.x_test, data.y_test),
            accuracy(model, self.task.x_eval, self.task.y_eval),
        ]

    def _selected(
        self, strategy: Strategy, model: nn.Module, rows: Tensor, weights: Tensor
    ) -> list[float]:
        """(test, train) accuracy of the model the strategy would end with if it ended now."""
        chosen = strategy.selected(rows[:, 2], weights)
        if isinstance(chosen, int):  # a particle: its row
            return rows[chosen, :2].tolist()
        if self._scratch is None:
            self._scratch = copy.deepcopy(model)
        load_weights(self._scratch, chosen)
        return self._accuracies(self._scratch)

    def at_end(self, model: nn.Module, total: int) -> dict[str, Any]:
        """Before finalize: each particle's test accuracy, their ensemble, and the three models
        a swarm can return (``selection.py``): the best particle by fitness, the weight average
        and the greedy soup (averages with their BatchNorm statistics recomputed).  Raises
        :class:`Diverged` (at step ``total``) when no particle has a finite fitness."""
        if not self.place.is_head:
            return {}
        group, x, y = self.place.swarm_group, self.task.data.x_test, self.task.data.y_test
        probs = gather(predict_proba(model, x), group)
        weights = gather(flatten_weights(model), group)
        fits = gather(torch.tensor([float(self.fitness(model))], dtype=torch.float64), group)
        fitness = [f if math.isfinite(f) else math.inf for f in fits.view(-1).tolist()]
        if not selection.live(fitness):  # (select_weights would have nothing to choose from)
            raise Diverged("every particle's fitness is NaN or infinite at the end", total)
        scratch = copy.deepcopy(model)
        found: dict[str, Any] = {}
        for kind in selection.SELECTS:
            flat, ints, ingredients = selection.select_weights(
                kind, weights, fitness, scratch, self.fitness, lambda: self.bn_data
            )
            load_weights(scratch, flat)
            load_weights(scratch, ints, integer=True)
            name = "weight_average" if kind == "average" else kind
            found[f"{name}_test_accuracy"] = accuracy(scratch, x, y)
            if kind == "soup":
                found["soup_ingredients"] = ingredients
        return {
            "worker_test_accuracy": [accuracy_of(p, y) for p in probs],
            "ensemble_test_accuracy": accuracy_of(probs.mean(0), y),
            **found,
        }
