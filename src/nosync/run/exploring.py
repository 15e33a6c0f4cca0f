"""``--explore`` in a run: the :class:`~nosync.core.population.Explore` a configuration
describes, with what the core cannot reach itself: the run's lr scheduler (whose base rates follow
each particle's ``lr``, so the cosine schedule multiplies the particle's own rate) and its
training loss (whose label smoothing follows the particle's ``label_smoothing``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from nosync.core.population import Explore, Population
from nosync.run.config import TrainConfig


class SmoothedLoss:
    """Cross-entropy with a label smoothing the explore step may change while training."""

    def __init__(self, smoothing: float = 0.0) -> None:
        self.smoothing = smoothing

    def __call__(self, out: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(out, target, label_smoothing=self.smoothing)


def explores_smoothing(cfg: TrainConfig) -> bool:
    return bool(cfg.explore) and "label_smoothing=" in cfg.explore.replace(" ", "")


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
