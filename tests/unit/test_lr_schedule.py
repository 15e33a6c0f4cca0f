"""The learning-rate schedule: cosine decay to 0, and the warm-up of a linearly scaled rate."""

from __future__ import annotations

import math

import pytest
import torch

from nosync.run.config import TrainConfig
from nosync.run.lr_schedule import WARMUP
from nosync.run.lr_schedule import scheduler as lr_scheduler


def rates(cfg: TrainConfig, total: int, ranks_per_particle: int, lr: float) -> list[float]:
    """The rate of every step, as the training loop sees it (step, then scheduler.step)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = lr_scheduler(opt, cfg, total, ranks_per_particle)
    seen = []
    for _ in range(total):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched:
            sched.step()
    return seen


def test_cosine_decays_from_the_rate_to_zero() -> None:
    seen = rates(TrainConfig(lr_schedule="cosine"), 100, 1, 0.05)
    assert seen[0] == pytest.approx(0.05) and seen[50] == pytest.approx(0.025)
    assert seen[99] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 99 / 100)))
    assert all(a >= b for a, b in zip(seen, seen[1:], strict=False))  # never rises


def test_constant_without_scaling_has_no_scheduler() -> None:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
    assert lr_scheduler(opt, TrainConfig(lr_schedule="constant"), 100, 1) is None


def test_a_scaled_rate_warms_up_linearly_over_five_percent_of_the_steps() -> None:
    total, k = 200, 4
    warm = round(WARMUP * total)  # 10 steps
    seen = rates(TrainConfig(lr_schedule="constant"), total, k, 0.05 * k)
    assert seen[:warm] == pytest.approx([0.2 * (s + 1) / warm for s in range(warm)])
    assert seen[warm:] == pytest.approx([0.2] * (total - warm))
    cosine = rates(TrainConfig(lr_schedule="cosine"), total, k, 0.2)
    assert cosine[4] == pytest.approx(0.2 * 5 / warm * 0.5 * (1 + math.cos(math.pi * 4 / total)))
    unscaled = rates(TrainConfig(lr_schedule="constant", lr_scaling="none"), total, k, 0.05)
    assert unscaled == pytest.approx([0.05] * total)  # no scaling, no warm-up
