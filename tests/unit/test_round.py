"""The round and every rule, in one process: particles are threads meeting on a ``LocalWorld``
(the in-process transport ``nosync simulate`` runs on), so no subprocess or process group."""

from __future__ import annotations

import math
import threading
import warnings
from typing import Any

import pytest
import torch
from torch import nn

from nosync import Swarm, SwarmDivergedError
from nosync.core.rules import (
    EASGDRule,
    ElasticRule,
    Exchanged,
    LeaderRule,
    NoneRule,
    PSORule,
    RuleOptions,
    easgd_update,
    pso_update,
)
from nosync.core.weights import flatten_weights, load_weights

from support.helpers import bn_model, train_steps
from support.threads import in_threads


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# ---- each rule against its equation, on small tensors ------------------------------------------
def test_leader_rule_moves_toward_the_leader_by_p() -> None:
    own, lead = t(1.0, -2.0, 3.0), t(3.0, 2.0, -1.0)
    got = Exchanged(pressure=0.25, leader=lead)
    rule = LeaderRule()
    assert torch.equal(rule.anchor(own, got), lead)
    assert torch.allclose(rule.pull(own, lead, got), t(1.5, -1.0, 2.0))
    assert (rule.needs_fitness, rule.needs, rule.target) == (True, "leader", "leader")


def test_pso_rule_updates_personal_best_and_velocity_with_its_own_draws() -> None:
    options = RuleOptions(particle=2, seed=7, inertia=0.5, c1=0.5, c2=2.0)
    rule, twin = PSORule(options), PSORule(options)
    own, lead = t(1.0, 2.0), t(3.0, 0.0)
    new = rule.pull(own, lead, Exchanged(pressure=0.5, fitness=0.4, leader=lead))
    g = torch.Generator().manual_seed(7 * 1_000_003 + 2)  # seeds.pso(seed, particle)
    r1, r2 = (
        torch.rand(2, generator=g, dtype=own.dtype),
        torch.rand(2, generator=g, dtype=own.dtype),
    )
    expected, v = pso_update(
        own, torch.zeros(2, dtype=own.dtype), own, lead,
        pressure=0.5, inertia=0.5, c1=0.5, c2=2.0, r1=r1, r2=r2,
    )  # fmt: skip
    assert torch.allclose(new, expected) and torch.allclose(rule.velocity, v)
    assert rule.best_fitness == 0.4 and torch.equal(rule.best, own)
    # a worse fitness keeps the personal best; state round-trips exactly
    rule.pull(new, lead, Exchanged(pressure=0.5, fitness=0.9, leader=lead))
    assert rule.best_fitness == 0.4
    twin.load_state_dict(rule.state_dict())
    a = rule.pull(new, lead, Exchanged(pressure=0.5, fitness=0.9, leader=lead))
    b = twin.pull(new, lead, Exchanged(pressure=0.5, fitness=0.9, leader=lead))
    assert torch.equal(a, b)
    rule.reset()
    assert rule.velocity is None and rule.best is None and rule.best_fitness == math.inf


def test_elastic_rule_pulls_toward_the_mean_of_the_live_particles() -> None:
    rule = ElasticRule()
    own, total = t(2.0, 0.0), t(6.0, 3.0)  # three live particles
    got = Exchanged(pressure=0.5, total=total, alive=3)
    mean = rule.anchor(own, got)
    assert torch.allclose(mean, t(2.0, 1.0))
    assert torch.allclose(rule.pull(own, mean, got), t(2.0, 0.5))
    assert not rule.needs_fitness and rule.needs == "sum"


def test_easgd_rule_against_a_hand_computation() -> None:
    rule = EASGDRule()
    rule.prepare(t(1.0, 1.0), lambda own: t(2.0, 4.0))  # the centre starts at the swarm mean
    assert torch.equal(rule.center, t(2.0, 4.0))
    own = t(1.0, 6.0)
    assert torch.equal(rule.contribution(own, Exchanged(pressure=0.1)), t(-1.0, 2.0))
    got = Exchanged(pressure=0.1, total=t(0.5, -1.0), alive=3)  # sum_j (w_j - c)
    new = rule.pull(own, rule.anchor(own, got), got)
    # w - a (w - c) and c + a sum_j (w_j - c)
    assert torch.allclose(new, t(1.0 - 0.1 * (1.0 - 2.0), 6.0 - 0.1 * (6.0 - 4.0)))
    assert torch.allclose(rule.center, t(2.0 + 0.1 * 0.5, 4.0 - 0.1 * 1.0))
    assert torch.equal(rule.selected_weights(), rule.center)
    w, c = easgd_update(own, t(2.0, 4.0), t(0.5, -1.0), 0.1)
    assert torch.allclose(w, new) and torch.allclose(c, rule.center)


def test_none_rule_asks_for_nothing() -> None:
    rule = NoneRule()
    assert (rule.needs_fitness, rule.needs, rule.target) == (False, "none", None)


# ---- whole rounds on a LocalWorld ----------------------------------------------------------------
def test_leader_round_resets_a_nan_particle_with_the_leaders_integer_buffers() -> None:
    fitness = [0.5, 0.1, 0.05, 0.1]  # 2 claims the best but its weights are NaN; 1 and 3 tie

    def particle(endpoint: Any, i: int) -> dict:
        model = bn_model(seed=i)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        train_steps(model, opt, i + 1, seed=i)  # num_batches_tracked = i + 1
        if i == 2:
            with torch.no_grad():
                model[0].weight[0, 0] = math.nan
        before = flatten_weights(model).clone()
        swarm = Swarm(
            model, opt, fitness=lambda m: fitness[i], period=5, pressure=0.5, transport=endpoint
        )
        record = swarm.sync()
        swarm.settle()  # its distances (they come with the next round's fitness otherwise)
        return {
            "record": record,
            "before": before,
            "after": flatten_weights(model),
            "tracked": int(model[1].num_batches_tracked),
            "state": len(opt.state),
        }

    out = in_threads(4, particle)
    record = out[0]["record"]
    assert record["leader"] == 1 and record["reset"] == [2]
    assert record["fitness"] == [0.5, 0.1, None, 0.1]
    lead = out[1]["before"]
    assert torch.equal(out[2]["after"], lead) and out[2]["state"] == 0
    assert out[2]["tracked"] == 2  # the leader's integer buffers came along
    for i in (0, 3):
        expected = out[i]["before"] + 0.5 * (lead - out[i]["before"])
        assert torch.allclose(out[i]["after"], expected, atol=1e-6)  # (lerp rounds otherwise)
        assert out[i]["state"] > 0 and out[i]["tracked"] == i + 1
    assert record["distance"][1] == 0.0 and record["distance"][2] is None


@pytest.mark.parametrize(
    ("rule", "anchor", "message"),
    [("leader", 0.0, ["all_gather", "broadcast"]), ("elastic", 1.0, ["all_reduce"])],
)
def test_distances_ride_with_the_next_rounds_message(rule, anchor, message) -> None:
    """A round's distances cost no collective of their own: they arrive with the next round's
    fitness (leader) or sum (elastic), and the last ones with ``settle``."""

    def particle(endpoint: Any, i: int) -> dict:
        calls: list[str] = []
        for name in ("all_gather", "all_reduce", "broadcast", "send_recv"):
            real = getattr(endpoint, name)
            setattr(endpoint, name, lambda *a, _r=real, _n=name: (calls.append(_n), _r(*a))[1])
        model = nn.Linear(3, 2)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(i))  # particle i sits at (i, i, ..., i)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        swarm = Swarm(
            model, opt, fitness=lambda m: float(i), pressure=0.5, rule=rule, transport=endpoint
        )
        first = swarm.sync()
        pending = first["distance"], swarm.settled
        done = len(calls)
        second = swarm.sync()
        second_calls = calls[done:]
        first_distances = list(first["distance"])
        swarm.settle()
        return {
            "pending": pending,
            "second_calls": second_calls,
            "first": first_distances,
            "second": second["distance"],
            "settled": swarm.settled,
        }

    out = in_threads(3, particle)
    root8 = math.sqrt(8)  # 8 weights: a unit apart in each is sqrt(8) apart
    for o in out:
        assert o["pending"] == (None, 0)  # not known yet, not logged yet
        assert o["second_calls"] == message  # the round's own message, nothing else
        assert o["first"] == pytest.approx([root8 * abs(i - anchor) for i in range(3)])
        # after a pull of 0.5 toward the anchor, every particle is halfway there
        assert o["second"] == pytest.approx([root8 * abs(i - anchor) / 2 for i in range(3)])
        assert o["settled"] == 2


def test_every_particle_diverged_is_a_clear_error() -> None:
    def particle(endpoint: Any, i: int) -> Any:
        model = nn.Linear(3, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        return Swarm(model, opt, fitness=lambda m: math.nan, transport=endpoint).sync()

    errors = in_threads(3, particle)
    assert all(isinstance(e, (SwarmDivergedError, threading.BrokenBarrierError)) for e in errors)
    assert any("every particle diverged" in str(e) for e in errors)


def test_rules_without_fitness_never_evaluate_it() -> None:
    def particle(endpoint: Any, i: int) -> tuple[Any, torch.Tensor, torch.Tensor]:
        model = bn_model(seed=i)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)

        def fitness(m: nn.Module) -> float:
            raise AssertionError("fitness evaluated")

        before = flatten_weights(model).clone()
        swarm = Swarm(model, opt, fitness=fitness, pressure=1.0, rule="elastic", transport=endpoint)
        record, after = swarm.sync(), flatten_weights(model).clone()
        swarm.settle()
        return record, before, after

    out = in_threads(3, particle)
    mean = torch.stack([b for _, b, _ in out]).mean(0)
    for record, _, after in out:
        assert torch.allclose(after, mean, atol=1e-6)
        assert record["fitness"] is None and record["leader"] is None
        assert record["target"] == "mean" and len(record["distance"]) == 3


def test_elastic_finds_a_diverged_particle_through_the_sum_and_resets_it() -> None:
    def particle(endpoint: Any, i: int) -> tuple[Any, torch.Tensor, torch.Tensor]:
        model = nn.Linear(3, 2)
        with torch.no_grad():
            model.weight.fill_(float(i))
            model.bias.fill_(math.nan if i == 1 else float(i))
        before = flatten_weights(model).clone()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        swarm = Swarm(
            model, opt, fitness=lambda m: 0.0, pressure=0.5, rule="elastic", transport=endpoint
        )
        record, after = swarm.sync(), flatten_weights(model).clone()
        swarm.settle()
        return record, before, after

    out = in_threads(3, particle)
    mean = (out[0][1] + out[2][1]) / 2  # particle 1 does not count
    assert torch.allclose(out[1][2], mean)  # and restarts at the mean
    assert torch.allclose(out[0][2], out[0][1] + 0.5 * (mean - out[0][1]))
    assert all(o[0]["reset"] == [1] for o in out)
    # the restarted particle has no distance (it restarted rather than pulled)
    expected = [float(torch.linalg.vector_norm(out[i][1] - mean)) for i in (0, 2)]
    distance = out[0][0]["distance"]
    assert distance[1] is None and distance[::2] == pytest.approx(expected)


def test_none_rounds_cost_no_collective() -> None:
    def particle(endpoint: Any, i: int) -> tuple[int, Any]:
        model = nn.Linear(4, 3)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        swarm = Swarm(model, opt, fitness=lambda m: 0.0, period=1, rule="none", transport=endpoint)
        swarm.sync()
        first = endpoint.bytes  # the one-off shape check
        with swarm:
            train_steps(model, opt, 3, seed=i)
        return endpoint.bytes - first, swarm.history[-1]

    for extra, record in in_threads(2, particle):
        assert extra == 0 and record["target"] is None and record["leader"] is None


def test_easgd_rounds_keep_one_centre_and_finalize_to_it() -> None:
    def particle(endpoint: Any, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        model = nn.Linear(3, 2)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(i))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        swarm = Swarm(
            model, opt, fitness=lambda m: 0.0, pressure=0.3, rule="easgd", transport=endpoint
        )
        swarm.sync()
        center = swarm.center.clone()
        after_round = flatten_weights(model).clone()
        swarm.finalize()
        return center, after_round, flatten_weights(model)

    out = in_threads(3, particle)
    # positions 0, 1, 2: the centre starts at 1; sum_j (w_j - c) = 0, so it stays at 1
    for i, (center, after_round, final) in enumerate(out):
        assert torch.allclose(center, torch.ones(8))
        assert torch.allclose(after_round, torch.full((8,), i - 0.3 * (i - 1.0)))
        assert torch.equal(final, center)


def test_ring_round_pulls_toward_the_best_neighbour_only() -> None:
    fitness = [0.9, 0.8, 0.1, 0.7, 0.6]

    def particle(endpoint: Any, i: int) -> tuple[Any, torch.Tensor, torch.Tensor]:
        model = nn.Linear(2, 1)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(i))
        before = flatten_weights(model).clone()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        swarm = Swarm(
            model,
            opt,
            fitness=lambda m: fitness[i],
            pressure=1.0,
            topology="ring",
            transport=endpoint,
        )
        return swarm.sync(), before, flatten_weights(model)

    out = in_threads(5, particle)
    leaders = [o[0]["leader"] for o in out]
    assert leaders == [4, 2, 2, 2, 4]  # each sees itself and its two ring neighbours
    for i, (_, _, after) in enumerate(out):
        assert torch.equal(after, out[leaders[i]][1])


def test_a_reset_in_a_ring_takes_the_local_leaders_integer_buffers() -> None:
    fitness = [0.5, 0.1, 0.3, 0.2]

    def particle(endpoint: Any, i: int) -> tuple[Any, int, torch.Tensor]:
        model = bn_model(seed=i)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        train_steps(model, opt, i + 1, seed=i)  # num_batches_tracked = i + 1
        if i == 0:
            with torch.no_grad():
                model[0].bias.fill_(math.nan)
        swarm = Swarm(
            model,
            opt,
            fitness=lambda m: fitness[i],
            pressure=0.5,
            topology="ring",
            transport=endpoint,
        )
        record = swarm.sync()
        return record, int(model[1].num_batches_tracked), flatten_weights(model)

    out = in_threads(4, particle)
    assert out[0][0]["leader"] == 1 and out[0][0]["reset"] == [0]  # ring: sees 3, 0 and 1
    assert out[0][1] == 2 and torch.isfinite(out[0][2]).all()  # particle 1's buffers came along
    assert [o[1] for o in out[1:]] == [2, 3, 4]  # the others keep their own


def test_a_float16_exchange_rounds_what_others_receive_but_the_leader_keeps_its_weights() -> None:
    def particle(endpoint: Any, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        model = nn.Linear(3, 1)
        with torch.no_grad():
            model.weight.copy_(torch.tensor([[0.1 + i, 1 / 3, 2 / 3]]))
            model.bias.fill_(1 / 7)
        before = flatten_weights(model).clone()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        swarm = Swarm(
            model, opt, fitness=lambda m: float(i), pressure=1.0,
            wire_dtype=torch.float16, transport=endpoint,
        )  # fmt: skip
        swarm.sync()
        return before, flatten_weights(model)

    (lead_before, lead_after), (_, other_after) = in_threads(2, particle)
    assert torch.equal(lead_after, lead_before)  # exact, not rounded to float16
    assert torch.equal(other_after, lead_before.half().float())  # what travelled
    assert not torch.equal(other_after, lead_before)


@pytest.mark.filterwarnings("ignore:Swarm. all 2 particles are identical:UserWarning")  # by design
def test_a_rule_object_can_be_passed_in() -> None:
    class HalfwayToZero(LeaderRule):
        name = "halfway"

        def pull(self, own, anchor, got):  # noqa: ANN001, ANN201
            return own * 0.5

    def particle(endpoint: Any, i: int) -> torch.Tensor:
        model = nn.Linear(2, 1)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(2.0)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        swarm = Swarm(
            model, opt, fitness=lambda m: float(i), rule=HalfwayToZero(), transport=endpoint
        )
        swarm.sync()
        return flatten_weights(model)

    for weights in in_threads(2, particle):
        assert torch.equal(weights, torch.ones(3))


def test_local_world_sums_in_particle_order_identically_everywhere() -> None:
    def particle(endpoint: Any, i: int) -> torch.Tensor:
        return endpoint.all_reduce(torch.tensor([0.1 * (i + 1)], dtype=torch.float32))

    results = in_threads(4, particle)
    assert all(torch.equal(r, results[0]) for r in results)
    assert results[0].item() == pytest.approx(1.0)


def test_load_weights_round_trips_integer_buffers() -> None:
    model = bn_model(0)
    ints = flatten_weights(model, integer=True)
    load_weights(model, ints + 5, integer=True)
    assert int(model[1].num_batches_tracked) == int(ints[0]) + 5


# ---- weighted: the fitness-weighted mean, and its limits -----------------------------------------
def _weighted_round(rule: str, temperature: float, fitness: list[float]) -> list[dict]:
    def particle(endpoint: Any, i: int) -> dict:
        model = bn_model(seed=i)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        train_steps(model, opt, 2, seed=i)
        if math.isnan(fitness[i]):
            with torch.no_grad():
                model[0].weight[0, 0] = math.nan
        before = flatten_weights(model).clone()
        swarm = Swarm(
            model, opt, fitness=lambda m: fitness[i], period=5, pressure=0.5, rule=rule,
            options=RuleOptions(temperature=temperature), transport=endpoint,
        )  # fmt: skip
        return {"record": swarm.sync(), "before": before, "after": flatten_weights(model)}

    return in_threads(len(fitness), particle)


def test_weighted_round_pulls_toward_the_softmax_weighted_mean_of_the_live_particles() -> None:
    fitness = [0.4, 0.2, math.nan]  # particle 2 diverged: weight 0, reset to the weighted mean
    out = _weighted_round("weighted", 0.1, fitness)
    e = math.exp(-(0.4 - 0.2) / 0.1)
    a0, a1 = e / (1 + e), 1 / (1 + e)
    target = a0 * out[0]["before"] + a1 * out[1]["before"]
    for i in (0, 1):
        expected = out[i]["before"] + 0.5 * (target - out[i]["before"])
        assert torch.allclose(out[i]["after"], expected, atol=1e-6)
    assert torch.allclose(out[2]["after"], target, atol=1e-6)
    record = out[0]["record"]
    assert record["target"] == "weighted mean" and record["reset"] == [2]
    assert record["leader"] == 1 and record["fitness"] == [0.4, 0.2, None]


def test_weighted_at_small_t_is_the_leader_rule_and_at_large_t_the_elastic_rule() -> None:
    fitness = [0.3, 0.1, 0.2]  # (threads share torch's seed: compare within one run)
    cold, hot = (
        _weighted_round("weighted", 1e-9, fitness),
        _weighted_round("weighted", 1e9, fitness),
    )
    mean = torch.stack([o["before"] for o in hot]).mean(0)
    for i in range(3):
        leader = LeaderRule().pull(cold[i]["before"], cold[1]["before"], Exchanged(pressure=0.5))
        assert torch.allclose(cold[i]["after"], leader, atol=1e-6)
        elastic = ElasticRule().pull(hot[i]["before"], mean, Exchanged(pressure=0.5))
        assert torch.allclose(hot[i]["after"], elastic, atol=1e-6)


@pytest.mark.parametrize(("rule", "round_"), [("leader", "blocking"), ("elastic", "async")])
def test_particles_that_saw_the_same_batches_get_one_warning(rule: str, round_: str) -> None:
    """The trap of a loop whose ranks all shuffle alike: identical particles at the first round
    are one warning (from particle 0), later rounds none; particles of their own data none."""

    start = nn.Linear(4, 3).state_dict()  # the same initial weights on every particle

    def run(same: bool) -> list[Any]:
        def particle(endpoint: Any, i: int) -> None:
            model = nn.Linear(4, 3)
            model.load_state_dict(start)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            swarm = Swarm(
                model, opt, fitness=lambda m: 0.5, period=2, rule=rule, round=round_,
                transport=endpoint,
            )  # fmt: skip
            with swarm:
                train_steps(model, opt, 6, seed=0 if same else i)
            swarm.finalize()

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert in_threads(3, particle) == [None] * 3
        return [w for w in caught if issubclass(w.category, UserWarning)]

    caught = run(same=True)
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert "all 3 particles are identical at the first round" in message
    assert "own data order" in message and "manual_seed(rank)" in message
    assert run(same=False) == []
