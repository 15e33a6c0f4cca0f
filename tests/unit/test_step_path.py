"""The training step's own cost (issue 17, item 13): what the loop does besides training.

A single worker must be about as fast as a plain PyTorch loop (``benchmarks/single_vs_plain.py``);
these tests keep the cuts in place without timing anything: the end-of-run evaluation is not
training time, the running training loss is fed only where it is read (and with one in-place add),
a step without a pacer or an injected slowdown is not timed, and fp32 enters no autocast.
"""

from __future__ import annotations

import math
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nosync.core.evaluate import TrainLoss
from nosync.core.placement import Placement
from nosync.run import control, devices
from nosync.run.config import resolve
from nosync.run.control import Control
from nosync.run.strategies import SingleStrategy, SwarmStrategy


def _cfg(**flags: Any) -> Any:
    return resolve({}, {"dataset": "digits", "threads": 1, "quiet": True, **flags})


def test_only_strategies_that_read_the_training_loss_are_fed_it() -> None:
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    place = Placement(0, 1, 1, None, None)
    losses = TrainLoss()

    def held_out(m: nn.Module) -> float:
        return 0.0

    assert not SingleStrategy(model, opt, place).reads(losses)
    for train_loss, fitness, reads in (
        (losses, held_out, True),  # nosync: logged per round
        (None, losses, True),  # easgd with --fitness train-loss: its fitness
        (None, held_out, False),  # easgd with the held-out fitness
    ):
        swarm = types.SimpleNamespace(train_loss=train_loss, fitness=fitness)
        assert SwarmStrategy(model, opt, place, swarm).reads(losses) is reads  # type: ignore[arg-type]


def test_the_running_loss_adds_in_place_and_sums_exactly_as_before() -> None:
    g = torch.Generator().manual_seed(0)
    values = (torch.rand(200, generator=g) * 3).tolist() + [0.0, 1e-30, 7.5e5]
    losses, reference = TrainLoss(), 0.0
    for i, v in enumerate(values):
        loss = torch.tensor(v, dtype=torch.float32)
        losses.observe(loss)
        reference = reference + loss.double()  # the formula before issue 17
        if i == 0:
            window = losses.total
        assert losses.total is window  # one tensor for the whole window, added in place
    assert torch.equal(losses.total, reference)
    assert losses.take() == float(reference) / len(values)
    losses.load_state_dict({"total": 2.5, "count": 1, "last": math.nan})  # a resumed window
    losses.observe(torch.tensor(0.25))
    assert losses.take() == (2.5 + 0.25) / 2
    shaped = TrainLoss()  # a user loss of shape (1,)
    for v in (1.0, 2.0):
        shaped.observe(torch.tensor([v]))
    assert shaped.take() == 1.5


def test_a_step_without_pacer_or_slowdown_is_not_timed(monkeypatch, tmp_path: Path) -> None:
    calls = [0]

    def counting() -> float:
        calls[0] += 1
        return 0.0

    monkeypatch.setattr(control, "time", types.SimpleNamespace(perf_counter=counting))
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = _cfg(strategy="single", steps=100, out=str(tmp_path))
    strategy = SingleStrategy(model, opt, Placement(0, 1, 1, None, None))
    ctl = Control(cfg, Placement(0, 1, 1, None, None), model, opt, None, strategy, 100)
    try:
        calls[0] = 0
        with strategy:
            for _ in range(10):  # before the first vote (step 20) and the first checkpoint
                opt.step()
                ctl.after_step(dict, 0.0)
        assert calls[0] == 0
    finally:
        ctl.close()


def test_fp32_enters_no_autocast() -> None:
    assert not isinstance(devices.autocast(torch.device("cpu"), "fp32"), torch.autocast)
    assert isinstance(devices.autocast(torch.device("cpu"), "bf16"), torch.autocast)
