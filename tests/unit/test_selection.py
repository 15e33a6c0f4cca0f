"""What a swarm returns (``selection.py``): the greedy soup on a toy problem whose answer is
known, the weight average, and BatchNorm recalibration of averaged models."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from nosync import RuleOptions, Swarm
from nosync.core.evaluate import TrainLoss
from nosync.core.selection import greedy_soup, recalibrate_bn, select_weights
from nosync.core.weights import flatten_weights, load_weights

from support.helpers import bn_model
from support.threads import in_threads

# one scalar weight per particle; fitness (w - 0)^2
W = torch.tensor([[1.0], [-1.0], [3.0], [0.5], [math.nan]])
FIT = [1.0, 1.0, 9.0, 0.25, math.inf]  # particle 4 diverged


def scalar_model() -> nn.Module:
    return nn.Linear(1, 1, bias=False)


def square(model: nn.Module) -> float:
    return float(flatten_weights(model).pow(2).sum())


def test_greedy_soup_adds_particles_in_order_of_fitness_while_the_soup_improves() -> None:
    # order 3 (0.25), 0 (1.0, tie to the lower index), 1, 2; 4 diverged and never enters.
    # +0: mean(0.5, 1) = 0.75 -> 0.5625, worse: out.  +1: mean(0.5, -1) = -0.25 -> 0.0625: in.
    # +2: mean(0.5, -1, 3) = 0.833 -> 0.69, worse: out.
    calls = []

    def score(flat: torch.Tensor) -> float:
        calls.append(float(flat))
        return float(flat.pow(2).sum())

    assert greedy_soup(W, FIT, score) == [3, 1]
    assert calls == pytest.approx([0.75, -0.25, 2.5 / 3])
    flat, _, ingredients = select_weights("soup", W, FIT, scalar_model(), square, None)
    assert ingredients == [3, 1] and torch.allclose(flat, torch.tensor([-0.25]))
    flat, _, ingredients = select_weights("average", W, FIT, scalar_model(), square, None)
    assert ingredients == [0, 1, 2, 3] and torch.allclose(flat, torch.tensor([0.875]))
    flat, _, ingredients = select_weights("best", W, FIT, scalar_model(), square, None)
    assert ingredients == [3] and torch.equal(flat, torch.tensor([0.5]))


def test_bn_recalibration_changes_the_running_statistics_and_nothing_else() -> None:
    a, b = bn_model(seed=0), bn_model(seed=1)
    averaged = bn_model(seed=2)
    load_weights(averaged, (flatten_weights(a) + flatten_weights(b)) / 2)
    params = [p.detach().clone() for p in averaged.parameters()]
    before = {k: v.clone() for k, v in averaged.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(16, 4, generator=g) for _ in range(5)]
    averaged.eval()
    recalibrate_bn(averaged, batches)
    assert not averaged.training  # the mode is restored
    assert all(torch.equal(p, q) for p, q in zip(averaged.parameters(), params, strict=True))
    bn = averaged[1]
    changed = {k for k, v in averaged.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"1.running_mean", "1.running_var", "1.num_batches_tracked"}
    with torch.no_grad():  # the cumulative average of every batch's statistics
        inputs = [averaged[0](x) for x in batches]
    assert torch.allclose(bn.running_mean, torch.stack([x.mean(0) for x in inputs]).mean(0))
    assert torch.allclose(bn.running_var, torch.stack([x.var(0) for x in inputs]).mean(0))
    plain = nn.Linear(4, 3)
    kept = flatten_weights(plain).clone()
    recalibrate_bn(plain, batches)  # no BatchNorm: nothing to do
    assert torch.equal(flatten_weights(plain), kept)


def test_swarm_finalize_returns_the_soup_or_the_average_on_every_particle() -> None:
    def particle(endpoint: Any, i: int, select: str) -> torch.Tensor:
        model = scalar_model()
        load_weights(model, W[i])
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        fitness = (lambda m: math.nan) if i == 4 else square
        swarm = Swarm(model, opt, fitness=fitness, rule="none", select=select, transport=endpoint)
        swarm.finalize()
        return flatten_weights(model), swarm.ingredients

    for select, expected, ingredients in (
        ("soup", -0.25, [1, 3]),
        ("average", 0.875, [0, 1, 2, 3]),
    ):
        out = in_threads(5, lambda e, i, s=select: particle(e, i, s))
        for flat, got in out:
            assert torch.allclose(flat, torch.tensor([expected])) and got == ingredients


def test_bad_select_arguments_raise_value_error() -> None:
    model = bn_model(seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    from nosync import LocalWorld

    endpoint = LocalWorld(1).endpoint(0)
    with pytest.raises(ValueError, match="select must be one of best, average, soup"):
        Swarm(model, opt, fitness=square, select="median", transport=endpoint)
    with pytest.raises(ValueError, match="needs bn_data="):
        Swarm(model, opt, fitness=square, select="average", transport=endpoint)
    losses = TrainLoss()
    with pytest.raises(ValueError, match="not the train loss"):
        Swarm(
            model,
            opt,
            fitness=losses,
            select="soup",
            train_loss=losses,
            transport=endpoint,
            bn_data=[],
        )
    for kwargs, name in (
        ({"temperature": 0.0}, "temperature"),
        ({"outer_momentum": 1.0}, "outer_momentum"),
        ({"outer_lr": -0.5}, "outer_lr"),
    ):
        with pytest.raises(ValueError, match=name):
            Swarm(model, opt, fitness=square, transport=endpoint, options=RuleOptions(**kwargs))
