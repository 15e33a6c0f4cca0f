"""``--replay RUN``: the winner's schedule of an ``--explore`` run, applied by optimizer step
(``nosync.run.exploring.Replay``), and the refusals of a folder that holds none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from nosync.errors import UserError
from nosync.run.config import load_schedule
from nosync.run.exploring import Replay, SmoothedLoss

SCHEDULE = [
    {"step": 0, "values": {"lr": 0.1, "label_smoothing": 0.0}},
    {"step": 3, "values": {"lr": 0.02, "label_smoothing": 0.05}},
    {"step": 5, "values": {"lr": 0.3, "label_smoothing": 0.1}},
]


def test_the_schedule_changes_the_values_after_its_steps() -> None:
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)  # a factor the values keep
    loss = SmoothedLoss()
    Replay(SCHEDULE, opt, sched, loss, step=0)
    seen = [(opt.param_groups[0]["lr"], loss.smoothing)]
    for _ in range(6):
        opt.zero_grad()
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
        sched.step()
        seen.append((opt.param_groups[0]["lr"], loss.smoothing))
    lrs = [round(lr, 6) for lr, _ in seen]
    assert lrs == [0.05, 0.05, 0.05, 0.01, 0.01, 0.15, 0.15]
    assert [s for _, s in seen] == [0.0, 0.0, 0.0, 0.05, 0.05, 0.1, 0.1]


def test_a_resumed_replay_starts_at_its_step() -> None:
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    Replay(SCHEDULE, opt, None, None, step=4)
    assert opt.param_groups[0]["lr"] == 0.02


def test_a_folder_without_a_schedule_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no summary.json"):
        load_schedule(str(tmp_path))
    (tmp_path / "summary.json").write_text(json.dumps({"test_accuracy": 0.9, "explore": None}))
    with pytest.raises(UserError, match="not a finished --explore run"):
        load_schedule(str(tmp_path))
    (tmp_path / "summary.json").write_text(json.dumps({"explore": {"schedule": SCHEDULE}}))
    assert load_schedule(str(tmp_path)) == SCHEDULE
