"""The learning rate over a run: cosine decay, and warm-up for data-parallel particles.

One formula for the scheduler that trains (:func:`scheduler`) and for loggers that report the
rate (:func:`learning_rate`), so the two cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from nosync.run.config import TrainConfig

WARMUP = 0.05  # of the steps, for learning rates scaled up for data-parallel particles


def lr_factor(
    cfg: TrainConfig, total: int, ranks_per_particle: int
) -> Callable[[int], float] | None:
    """Cosine decay to 0 over the run (``--lr-schedule cosine``), and for a learning rate scaled
    linearly with the ranks of a data-parallel particle a linear warm-up over the first 5 % of
    the steps (Goyal et al., "Accurate, Large Minibatch SGD", 2017, shortened to fit short
    runs).  None when the rate is constant."""
    cosine = cfg.lr_schedule == "cosine"
    warmup = round(WARMUP * total) if ranks_per_particle > 1 and cfg.lr_scaling == "linear" else 0
    if not cosine and not warmup:
        return None

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
        return warm * (0.5 * (1 + math.cos(math.pi * step / total)) if cosine else 1.0)

    return factor


def base_lr(cfg: TrainConfig, ranks_per_particle: int) -> float:
    return cfg.lr * (ranks_per_particle if cfg.lr_scaling == "linear" else 1)


def learning_rate(cfg: TrainConfig, step: int, total: int, ranks_per_particle: int) -> float:
    """The rate after ``step`` optimizer steps (what the scheduler sets; for loggers)."""
    factor = lr_factor(cfg, total, ranks_per_particle)
    return base_lr(cfg, ranks_per_particle) * (factor(step) if factor else 1.0)


def scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total: int, ranks_per_particle: int
) -> LambdaLR | None:
    factor = lr_factor(cfg, total, ranks_per_particle)
    return LambdaLR(optimizer, factor) if factor else None
