"""``Swarm`` on real gloo process groups (3-4 ranks, each test with a timeout)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nosync import Swarm


def test_api_arguments_are_checked() -> None:
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cases = [
        (dict(period=0), ValueError, "period"),
        (dict(period=2.5), TypeError, "period"),
        (dict(pressure=1.5), ValueError, "pressure"),
        (dict(rule="best"), ValueError, "rule"),
        (dict(schedule="linear"), ValueError, "total_steps"),
    ]
    for kwargs, kind, word in cases:
        with pytest.raises(kind, match=word):
            Swarm(model, opt, fitness=lambda m: 0.0, **kwargs)
    with pytest.raises(TypeError, match="model"):
        Swarm("model", opt, fitness=lambda m: 0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="optimizer"):
        Swarm(model, "sgd", fitness=lambda m: 0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fitness"):
        Swarm(model, opt, fitness=0.5)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="init_process_group"):
        Swarm(model, opt, fitness=lambda m: 0.0)
