"""The exploit step's tensors (``nosync.core.population``): copies by value, the copier's own
values applied after the donor's optimizer state, diverged particles, neighbourhoods, state."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nosync.core.explore import Space
from nosync.core.population import (
    Explore,
    Population,
    apply_to_optimizer,
    flatten_state,
    load_state,
    state_slots,
)
from nosync.core.weights import flatten_weights

from support.threads import in_threads


def _particle(i: int, kind: str = "sgd") -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(i)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        if kind == "sgd"
        else torch.optim.Adam(model.parameters(), lr=0.01)
    )
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
    return model, opt


def test_state_travels_as_a_flat_copy_by_value() -> None:
    a_model, a = _particle(0, "adam")
    b_model, b = _particle(1, "adam")
    slots = state_slots(a)
    load_state(b, flatten_state(a, torch.device("cpu")), slots)
    pa, pb = next(a_model.parameters()), next(b_model.parameters())
    assert torch.equal(a.state[pa]["exp_avg"], b.state[pb]["exp_avg"])
    assert b.state[pb]["exp_avg"].data_ptr() != a.state[pa]["exp_avg"].data_ptr()
    b.state[pb]["exp_avg"].add_(1.0)  # the donor's buffer is not the copier's
    assert not torch.equal(a.state[pa]["exp_avg"], b.state[pb]["exp_avg"])
    b.state.clear()  # a reset particle still takes the layout it remembered
    load_state(b, flatten_state(a, torch.device("cpu")), slots)
    assert torch.equal(a.state[pa]["exp_avg_sq"], b.state[pb]["exp_avg_sq"])


def test_the_optimizer_takes_lr_weight_decay_momentum_and_betas() -> None:
    _, sgd = _particle(0)
    apply_to_optimizer(sgd, {"lr": 0.3, "weight_decay": 0.01, "momentum": 0.5})
    group = sgd.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["momentum"]) == (0.3, 0.01, 0.5)
    _, adam = _particle(0, "adam")
    apply_to_optimizer(adam, {"beta1": 0.8, "beta2": 0.99})
    assert adam.param_groups[0]["betas"] == (0.8, 0.99)
    with pytest.raises(ValueError, match="has no beta1"):
        apply_to_optimizer(sgd, {"beta1": 0.8})


def test_lr_keeps_the_schedules_factor() -> None:
    model, opt = _particle(0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    apply_to_optimizer(opt, {"lr": 0.2}, sched)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)  # the scheduler's base followed


def test_names_the_optimizer_does_not_hold_need_a_callback() -> None:
    with pytest.raises(ValueError, match="unknown hyperparameter 'dropout'"):
        Explore("dropout=0..0.5").resolved()
    with pytest.raises(ValueError, match=r"quantile must be in \(0, 0.5\]"):
        Explore("lr=0.1..1", quantile=0.75).resolved()
    assert Explore("dropout=0..0.5", apply=lambda i, v: None).resolved().names == ["dropout"]


def _swarm(world_fitness: list[float], config: Explore, topology: str = "all") -> list:
    def work(t, i):  # noqa: ANN001, ANN202
        model, opt = _particle(i)
        pop = Population(config, model, opt, t, seed=0, topology_=topology)
        start = pop.table()
        before = flatten_weights(model).clone()
        events = pop.exploit(4, 40, world_fitness)
        return model, opt, pop, start, before, events

    return in_threads(len(world_fitness), work)


def test_the_worst_take_a_winners_weights_state_and_perturbed_values() -> None:
    fitness = [0.3, 0.1, 0.9, 0.5]
    out = _swarm(fitness, Explore("lr=0.01..1:log", every=1))
    assert not any(isinstance(o, BaseException) for o in out), out
    events = out[0][5]
    assert [(e.particle, e.donor) for e in events] == [(2, 1)]
    model2, opt2, pop2 = out[2][:3]
    model1, opt1 = out[1][:2]
    assert torch.equal(flatten_weights(model2), flatten_weights(model1))
    assert torch.equal(flatten_weights(model2, True), flatten_weights(model1, True))
    p1, p2 = next(model1.parameters()), next(model2.parameters())
    assert torch.equal(opt1.state[p1]["momentum_buffer"], opt2.state[p2]["momentum_buffer"])
    start = out[0][3]
    after = events[0].after["lr"]
    assert events[0].before == start[1]
    assert after != start[1]["lr"] and after != start[2]["lr"]
    assert opt2.param_groups[0]["lr"] == pytest.approx(after)  # its own, not the donor's
    assert opt1.param_groups[0]["lr"] == pytest.approx(start[1]["lr"])
    for o in out:  # every head keeps the same table
        assert o[2].table() == pop2.table()
    assert torch.equal(out[3][4], flatten_weights(out[3][0]))  # the others are left alone


def test_a_diverged_particle_copies_between_exploit_rounds() -> None:
    fitness = [0.3, math.nan, 0.9, 0.5]

    def work(t, i):  # noqa: ANN001, ANN202
        model, opt = _particle(i)
        pop = Population(Explore("lr=0.01..1:log"), model, opt, t, seed=0)
        return pop.exploit(5, 50, fitness, only_diverged=True)

    out = in_threads(4, work)
    assert [(e.particle, e.donor) for e in out[0]] == [(1, 0)]


def test_neighbourhoods_exploit_within_themselves() -> None:
    fitness = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    out = _swarm(fitness, Explore("lr=0.01..1:log"), topology="ring")
    events = out[0][5]
    assert events, "the worst of some neighbourhood copies"
    for e in events:
        assert abs(e.particle - e.donor) % 8 in (1, 7)  # a ring neighbour, not particle 0


def test_state_dict_round_trips_values_and_lineage() -> None:
    out = _swarm([0.3, 0.1, 0.9, 0.5], Explore("lr=0.01..1:log"))
    pop = out[2][2]
    state = pop.state_dict()
    model, opt = _particle(2)

    class Alone:
        particle, particles, is_head, hybrid = 2, 4, True, False

    fresh = Population(Explore("lr=0.01..1:log"), model, opt, Alone(), seed=0)  # type: ignore[arg-type]
    fresh.load_state_dict(state)
    assert fresh.table() == pop.table()
    assert fresh.lineage.schedule(2) == pop.lineage.schedule(2)
    assert opt.param_groups[0]["lr"] == pytest.approx(pop.mine["lr"])
    assert Space.parse("lr=0.01..1:log") == fresh.space
