"""The pull rules against their equations, and properties that must hold for any input."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nosync.core import rules

floats = st.floats(-1e3, 1e3, allow_nan=False, width=32)
vectors = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(floats, min_size=n, max_size=n), st.lists(floats, min_size=n, max_size=n)
    )
)
pressures = st.floats(0.0, 1.0)


def t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_leader_pull_matches_the_equation() -> None:
    w, lead = t([1.0, -2.0, 3.0]), t([3.0, 2.0, -1.0])
    assert torch.allclose(rules.leader_pull(w, lead, 0.25), w + 0.25 * (lead - w))


@settings(max_examples=200, deadline=None)
@given(vectors)
def test_pressure_zero_changes_nothing_and_one_lands_on_the_leader(pair) -> None:
    w, lead = t(pair[0]), t(pair[1])
    assert torch.equal(rules.leader_pull(w, lead, 0.0), w)
    assert torch.equal(rules.leader_pull(w, lead, 1.0), lead)
    assert torch.equal(rules.elastic_pull(w, lead, 0.0), w)
    assert torch.equal(rules.elastic_pull(w, lead, 1.0), lead)


@settings(max_examples=200, deadline=None)
@given(vectors, pressures)
def test_distance_to_the_leader_shrinks_by_one_minus_p(pair, p) -> None:
    w, lead = t(pair[0]), t(pair[1])
    before = torch.linalg.vector_norm(w - lead)
    after = torch.linalg.vector_norm(rules.leader_pull(w, lead, p) - lead)
    assert math.isclose(float(after), (1 - p) * float(before), rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=100, deadline=None)
@given(vectors, pressures)
def test_elastic_pull_keeps_the_swarm_mean(pair, p) -> None:
    # pulling every particle toward the mean by the same p leaves the mean where it was
    swarm = torch.stack([t(pair[0]), t(pair[1]), t(pair[0]) * 0.5])
    mean = swarm.mean(0)
    moved = torch.stack([rules.elastic_pull(w, mean, p) for w in swarm])
    assert torch.allclose(moved.mean(0), mean, atol=1e-9)


def test_pso_update_matches_the_equation() -> None:
    g = torch.Generator().manual_seed(0)
    w, v, best, lead = (torch.randn(5, generator=g, dtype=torch.float64) for _ in range(4))
    r1, r2 = (
        torch.rand(5, generator=g, dtype=torch.float64),
        torch.rand(5, generator=g, dtype=torch.float64),
    )
    new_w, new_v = rules.pso_update(
        w, v, best, lead, pressure=0.3, inertia=0.7, c1=0.5, c2=2.0, r1=r1, r2=r2
    )
    expected_v = 0.7 * v + 0.5 * r1 * (best - w) + 0.3 * 2.0 * r2 * (lead - w)
    assert torch.allclose(new_v, expected_v)
    assert torch.allclose(new_w, w + expected_v)


def test_pso_without_forces_or_inertia_stays_put() -> None:
    w = torch.randn(7)
    new_w, new_v = rules.pso_update(
        w,
        torch.randn(7),
        torch.randn(7),
        torch.randn(7),
        pressure=1.0,
        inertia=0.0,
        c1=0.0,
        c2=0.0,
        r1=torch.rand(7),
        r2=torch.rand(7),
    )
    assert torch.equal(new_w, w) and not new_v.any()


def test_leader_is_the_lowest_finite_fitness_ties_to_lowest_index() -> None:
    assert rules.elect_leader(t([0.5, 0.2, 0.2, 0.9])) == 1
    assert rules.elect_leader(t([math.nan, 0.3, -math.inf, 0.3])) == 1
    assert rules.elect_leader(t([math.inf, math.nan, 2.0])) == 2
    assert rules.elect_leader(t([math.nan, math.inf])) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(floats, st.just(math.nan), st.just(math.inf)), min_size=1, max_size=12))
def test_leader_never_non_finite(values) -> None:
    leader = rules.elect_leader(t(values))
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        assert leader is None
    else:
        assert values[leader] == min(finite) and values.index(min(finite)) == leader


def test_pressure_schedules() -> None:
    assert rules.pressure_at("constant", 0.2, 0.7) == 0.2
    assert rules.pressure_at("linear", 0.2, 0.0) == 0.2
    assert math.isclose(rules.pressure_at("linear", 0.2, 0.5), 0.6)
    assert rules.pressure_at("linear", 0.2, 1.0) == 1.0
    assert rules.pressure_at("linear", 0.2, 3.0) == 1.0  # clamped past the end


def test_mean_pairwise_distance() -> None:
    w = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert math.isclose(rules.mean_pairwise_distance(w), (5 + 0 + 5) / 3)
    assert rules.mean_pairwise_distance(w[:1]) == 0.0


def test_easgd_update_against_a_hand_computation() -> None:
    # three workers, two coordinates, alpha = 0.1; the centre starts at (1, 1)
    workers = [t([2.0, 0.0]), t([0.0, 4.0]), t([1.0, 1.0])]
    centre = t([1.0, 1.0])
    diff_sum = t([(2 - 1) + (0 - 1) + (1 - 1), (0 - 1) + (4 - 1) + (1 - 1)])  # = (0, 2)
    w, c = rules.easgd_update(workers[1], centre, diff_sum, 0.1)
    # w - 0.1 (w - c) = (0, 4) - 0.1 (-1, 3) = (0.1, 3.7); c + 0.1 (0, 2) = (1, 1.2)
    assert torch.allclose(w, t([0.1, 3.7])) and torch.allclose(c, t([1.0, 1.2]))
    assert torch.equal(rules.easgd_update(workers[2], centre, diff_sum, 0.1)[0], workers[2])


# ---- weighted and outer momentum -----------------------------------------------------------------
def test_fitness_weights_are_a_softmax_of_minus_fitness_over_t_with_diverged_at_zero() -> None:
    a = rules.fitness_weights(t([1.0, 2.0, math.inf, math.nan]), 0.5)
    e = math.exp(-2.0)  # exp(-(2 - 1) / 0.5)
    assert torch.allclose(a, t([1 / (1 + e), e / (1 + e), 0.0, 0.0]))
    # T -> 0: all the weight on the best (the leader); T -> inf: uniform over the live (the mean)
    assert torch.equal(rules.fitness_weights(t([0.3, 0.1, 0.2]), 1e-9), t([0.0, 1.0, 0.0]))
    hot = rules.fitness_weights(t([0.3, 0.1, math.inf]), 1e9)
    assert torch.allclose(hot, t([0.5, 0.5, 0.0]), atol=1e-9)
    assert torch.equal(rules.fitness_weights(t([math.inf, math.inf]), 1.0), t([0.0, 0.0]))


def test_nesterov_step_is_torchs_nesterov_sgd_on_the_pseudo_gradient() -> None:
    w, v = t([1.0, -2.0]), None
    p = torch.nn.Parameter(w.clone())
    opt = torch.optim.SGD([p], lr=0.7, momentum=0.9, nesterov=True)
    for target in (t([0.0, 0.0]), t([3.0, 1.0]), t([-1.0, 2.0])):
        w, v = rules.nesterov_step(w, target, v, lr=0.7, momentum=0.9)
        p.grad = p.detach() - target  # g = w - target
        opt.step()
        assert torch.allclose(w, p.detach())
    # by hand, first step: g = w - x, v = g, w - lr (g + beta g)
    first, _ = rules.nesterov_step(t([1.0]), t([0.0]), None, lr=0.5, momentum=0.5)
    assert torch.allclose(first, t([1.0 - 0.5 * 1.5]))


@settings(max_examples=100, deadline=None)
@given(vectors, pressures)
def test_outer_momentum_zero_with_lr_p_is_the_plain_pull(pair, p) -> None:
    own, target, p = t(pair[0]), t(pair[1]), max(p, 1e-3)  # an outer lr is > 0
    got = rules.Exchanged(pressure=0.3, leader=target)
    for name in ("leader", "elastic", "weighted"):
        inner = rules.REGISTRY[name].create(rules.RuleOptions())
        outer = rules.OuterMomentum(inner, lr=p, momentum=0.0)
        assert torch.allclose(outer.pull(own, target, got), own + p * (target - own), atol=1e-9)
    # no outer lr: the step is the round's pressure (its schedule still applies)
    by_pressure = rules.OuterMomentum(rules.LeaderRule(), None, 0.0)
    assert torch.allclose(by_pressure.pull(own, target, got), rules.leader_pull(own, target, 0.3))


def test_outer_momentum_keeps_a_velocity_in_its_state_and_forgets_it_on_reset() -> None:
    options = rules.RuleOptions(outer_momentum=0.5, outer_lr=1.0)
    rule = rules.make_rule("weighted", options)
    assert isinstance(rule, rules.OuterMomentum) and rule.inner.name == "weighted"
    assert (rule.name, rule.needs, rule.needs_fitness) == ("weighted", "sum", True)
    got = rules.Exchanged(pressure=0.3)
    new = rule.pull(t([1.0]), t([0.0]), got)  # g = 1, v = 1, 1 - (1 + 0.5)
    assert torch.allclose(new, t([-0.5])) and torch.allclose(rule.velocity, t([1.0]))
    new = rule.pull(new, t([0.0]), got)  # g = -0.5, v = 0.5 - 0.5 = 0, -0.5 - (-0.5 + 0)
    assert torch.allclose(new, t([0.0])) and torch.allclose(rule.velocity, t([0.0]))
    twin = rules.make_rule("weighted", options)
    twin.load_state_dict(rule.state_dict())
    assert torch.equal(twin.velocity, rule.velocity)
    rule.reset()
    assert rule.velocity is None
    assert not isinstance(rules.make_rule("leader", rules.RuleOptions()), rules.OuterMomentum)


def test_bad_temperature_and_outer_settings_raise_value_error() -> None:
    import pytest

    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="temperature"):
            rules.make_rule("weighted", rules.RuleOptions(temperature=bad))
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="outer_momentum"):
            rules.make_rule("leader", rules.RuleOptions(outer_momentum=bad))
    with pytest.raises(ValueError, match="outer_lr"):
        rules.make_rule("leader", rules.RuleOptions(outer_lr=0.0))
    with pytest.raises(ValueError, match="outer momentum works with the rules"):
        rules.make_rule("pso", rules.RuleOptions(outer_momentum=0.9))
