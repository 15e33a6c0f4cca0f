"""``--explore`` in a run: the :class:`~nosync.core.population.Explore` a configuration
describes, with what the core cannot reach itself: the run's lr scheduler (whose base rates follow
each particle's ``lr``, so the cosine schedule multiplies the particle's own rate) and its
training loss (whose label smoothing follows the particle's ``label_smoothing``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nosync.core.explore import Space
from nosync.core.population import OPTIMIZER_NAMES, Explore, Population, apply_to_optimizer
from nosync.run.config import TrainConfig, load_schedule


class SmoothedLoss:
    """Cross-entropy with a label smoothing the explore step may change while training."""

    def __init__(self, smoothing: float = 0.0) -> None:
        self.smoothing = smoothing

    def __call__(self, out: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(out, target, label_smoothing=self.smoothing)


def explores_smoothing(cfg: TrainConfig) -> bool:
    """Whether the training loss's label smoothing may change while training (an explored or
    replayed ``label_smoothing``)."""
    if cfg.replay:
        return (
            cfg.loss == "cross_entropy"
            and "label_smoothing" in load_schedule(cfg.replay)[0]["values"]
        )
    return bool(cfg.explore) and "label_smoothing" in Space.parse(cfg.explore).names


def explore_of(cfg: TrainConfig, scheduler: Any, loss: object) -> Explore | None:
    """The swarm's ``explore=`` for ``cfg`` (None without ``--explore``); ``loss`` is the
    particle's training loss (a :class:`SmoothedLoss` when label smoothing is explored)."""
    if not cfg.explore:
        return None

    def apply(particle: int, values: Mapping[str, float]) -> None:
        if "label_smoothing" in values and isinstance(loss, SmoothedLoss):
            loss.smoothing = float(values["label_smoothing"])

    return Explore(
        cfg.explore,
        every=cfg.exploit_every,
        quantile=cfg.exploit_quantile,
        factors=tuple(float(f) for f in cfg.explore_factors.split(",")),
        resample=cfg.explore_resample,
        apply=apply,
        scheduler=scheduler,
    )


def summary_of(population: Population | None, winner: int | None) -> dict[str, Any] | None:
    """What ``summary.json`` says of ``--explore``: the space, every particle's final values,
    the copies, and the winner's schedule (the values its ancestors trained with, followed back
    through the copies: what ``--replay`` retrains on)."""
    if population is None:
        return None
    return {
        "space": population.space.text(),
        "exploit_every": population.config.every,
        "start": population.lineage.start,
        "values": population.table(),
        "exploits": len(population.lineage.events),
        "winner": winner,
        "schedule": None if winner is None else population.lineage.schedule(winner),
    }


class Replay:
    """``--replay RUN``: the winner's schedule applied by optimizer step, as the explore run's
    winner line trained with it (Ray Tune's ``PopulationBasedTrainingReplay``): from each
    change's step on, its values."""

    def __init__(
        self, schedule: list[dict[str, Any]], optimizer: torch.optim.Optimizer, scheduler: Any,
        loss: object, step: int,
    ) -> None:  # fmt: skip
        self.schedule, self.optimizer, self.scheduler, self.loss = (
            schedule,
            optimizer,
            scheduler,
            loss,
        )
        self.step, self.current = step, -1
        self._apply()
        optimizer.register_step_post_hook(self._after_step)

    def _after_step(self, *_: object) -> None:
        self.step += 1
        self._apply()

    def _apply(self) -> None:
        """The values of the last change at or before this step, once per change."""
        due = max(i for i, change in enumerate(self.schedule) if change["step"] <= self.step)
        if due != self.current:
            self.current, values = due, self.schedule[due]["values"]
            own = {k: v for k, v in values.items() if k in OPTIMIZER_NAMES}
            apply_to_optimizer(self.optimizer, own, self.scheduler)
            if "label_smoothing" in values and isinstance(self.loss, SmoothedLoss):
                self.loss.smoothing = float(values["label_smoothing"])
