"""The strategies package: one registry whose names the configuration and the command line read
without torch, one context to build from, and each strategy saying what it selects."""

from __future__ import annotations

import subprocess
import sys
import types
import warnings
from typing import Any

import pytest
import torch
from torch import nn

from nosync.core.placement import Placement
from nosync.run import strategies
from nosync.run.config import FIELDS, STRATEGIES, SWARMS, resolve
from nosync.run.strategies import (
    REGISTRY,
    Context,
    DiLoCoStrategy,
    EASGDStrategy,
    LocalSGDStrategy,
    SingleStrategy,
    SwarmStrategy,
)
from nosync.run.strategies import names as strategy_names


def test_the_torch_free_names_are_the_registrys() -> None:
    assert tuple(REGISTRY) == strategy_names.STRATEGIES == STRATEGIES
    assert FIELDS["strategy"].metadata["choices"] == STRATEGIES  # --strategy's choices
    assert {n for n, c in REGISTRY.items() if issubclass(c, SwarmStrategy)} == set(SWARMS)
    assert all(cls.name == name for name, cls in REGISTRY.items())


def test_the_names_import_without_torch() -> None:
    code = (
        "import sys, nosync.run.strategies.names as n; print(n.STRATEGIES); "
        "print(sorted(m for m in sys.modules if m.startswith('torch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [str(STRATEGIES), "[]"], out.stdout


def test_an_unknown_strategy_is_refused_by_the_configuration() -> None:
    from nosync.errors import UserError

    with pytest.raises(UserError, match="strategy"):
        resolve({}, {"strategy": "gossip", "dataset": "digits"})


def _parts() -> tuple[nn.Module, torch.optim.Optimizer, Placement]:
    model = nn.Linear(4, 3)
    return model, torch.optim.SGD(model.parameters(), lr=0.1), Placement(0, 1, 1, None, None)


def test_build_takes_a_context_and_the_old_arguments_with_a_warning() -> None:
    cfg = resolve({}, {"strategy": "single", "dataset": "digits", "threads": 1})
    model, opt, place = _parts()
    ctx = Context(cfg, model, opt, lambda m: 0.0, place, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        built = strategies.build(ctx)
    assert type(built) is SingleStrategy and built.model is model
    with pytest.warns(DeprecationWarning, match="Context"):
        old = strategies.build(cfg, model, opt, lambda m: 0.0, place, 10, None, None)
    assert type(old) is SingleStrategy and old.optimizer is opt


def test_each_strategy_says_what_it_selects() -> None:
    model, opt, place = _parts()
    fitness = torch.tensor([0.5, float("nan"), 0.2, 0.2], dtype=torch.float64)
    weights = torch.arange(12, dtype=torch.float32).view(4, 3)
    assert SingleStrategy(model, opt, place).selected(fitness, weights) == 0
    swarm: Any = types.SimpleNamespace(center=None)
    nosync = SwarmStrategy(model, opt, place, swarm)
    assert nosync.selected(fitness, weights) == 2  # the best, NaN the worst, ties to the first
    assert nosync.selected(torch.full((2,), float("nan")), weights[:2]) == 0
    easgd = EASGDStrategy(model, opt, place, swarm)
    assert torch.equal(easgd.selected(fitness, weights), weights.mean(0))  # no centre yet
    swarm.center = torch.tensor([7.0, 8.0, 9.0])
    assert easgd.selected(fitness, weights) is swarm.center
    # the averaging strategies (a PeriodicModelAverager needs a process group to be built)
    local = object.__new__(LocalSGDStrategy)
    assert torch.equal(local.selected(fitness, weights), weights.mean(0))
    diloco = object.__new__(DiLoCoStrategy)
    diloco.average_selected = lambda mean: mean + 1  # type: ignore[method-assign]
    assert torch.equal(diloco.selected(fitness, weights), weights.mean(0) + 1)


def test_best_particle_is_a_property_as_on_the_swarm() -> None:
    model, opt, place = _parts()
    assert SingleStrategy(model, opt, place).best_particle == 0
    swarm: Any = types.SimpleNamespace(best_particle=3)
    assert SwarmStrategy(model, opt, place, swarm).best_particle == 3


def test_the_package_still_exports_what_the_module_did() -> None:
    assert set(strategies.__all__) == set(strategies._EXPORTS)
    for name in strategies.__all__:
        assert getattr(strategies, name) is not None
    assert strategies.swarm_of.__module__ == "nosync.run.strategies.swarm"
