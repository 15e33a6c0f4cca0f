"""``--explore``'s decisions (``nosync.core.explore``): ranges, starting strata, who copies whom,
the perturbation and the lineage; pure functions, no process group."""

from __future__ import annotations

import math

import pytest

from nosync.core import explore
from nosync.core.explore import Dimension, Event, Lineage, Space


def test_parse_reads_names_ranges_and_log() -> None:
    space = Space.parse("lr=0.005..0.5:log, weight_decay=0..1e-3")
    assert space.dims == (
        Dimension("lr", 0.005, 0.5, True),
        Dimension("weight_decay", 0.0, 1e-3, False),
    )
    assert Space.parse(space.text()) == space
    assert Space.of({"lr": "0.005..0.5:log", "weight_decay": [0, 1e-3]}) == space
    assert Space.of({"lr": (0.005, 0.5, "log"), "weight_decay": (0, 0.001)}) == space


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("dropout=0..0.5", "unknown hyperparameter 'dropout'"),
        ("lr=0.5..0.005", "LOW > HIGH"),
        ("lr=0..0.5:log", "needs LOW > 0"),
        ("lr=-1..0.5:log", "needs LOW > 0"),
        ("lr=0.1", "not NAME=LOW..HIGH"),
        ("lr=a..b", "must be numbers"),
        ("lr=0.1..0.2,lr=0.1..0.3", "named twice"),
        ("", "at least one"),
        ("lr=0..inf", "finite"),
    ],
)
def test_bad_ranges_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Space.parse(text)


def test_a_callback_may_take_names_the_optimizer_does_not_know() -> None:
    assert Space.parse("dropout=0..0.5", names=None).names == ["dropout"]


def test_starting_values_take_one_stratum_each() -> None:
    space = Space.parse("lr=0.005..0.5:log,weight_decay=0..0.001")
    values = space.initial(5, seed=0)
    lrs = sorted(v["lr"] for v in values)
    expected = [0.005 * 100 ** ((k + 0.5) / 5) for k in range(5)]  # geometric midpoints
    assert lrs == pytest.approx(expected)
    wds = sorted(v["weight_decay"] for v in values)
    assert wds == pytest.approx([0.001 * (k + 0.5) / 5 for k in range(5)])
    assert space.initial(5, seed=0) == values  # a seed formula: the same on every rank
    assert [v["lr"] for v in space.initial(5, seed=1)] != [v["lr"] for v in values]


def test_perturb_multiplies_or_redraws_and_clips() -> None:
    space = Space.parse("lr=0.01..1:log")
    seen = set()
    for r in range(200):
        new = space.perturb({"lr": 0.1}, explore.draw(0, r, 0))["lr"]
        assert 0.01 <= new <= 1
        seen.add(
            "down"
            if new == pytest.approx(0.08)
            else "up"
            if new == pytest.approx(0.125)
            else "redraw"
        )
    assert seen == {"down", "up", "redraw"}
    clipped = space.perturb({"lr": 1.0}, explore.draw(0, 0, 0), factors=(1.25,), resample=0)
    assert clipped == {"lr": 1.0}
    assert space.perturb({"lr": 0.1}, explore.draw(0, 0, 0), resample=1) != {"lr": 0.1}


def test_redraw_rate_matches_resample() -> None:
    space = Space.parse("lr=0.01..1")
    redraws = sum(
        space.perturb({"lr": 0.5}, explore.draw(3, r, 1))["lr"] not in (0.4, 0.625)
        for r in range(2000)
    )
    assert 0.2 < redraws / 2000 < 0.3


def test_bottom_quantile_copies_the_top() -> None:
    fitness = {0: 0.5, 1: 0.1, 2: 0.9, 3: 0.3, 4: 0.2, 5: 0.8, 6: 0.7, 7: 0.4}
    moves = explore.choose(fitness, 0.25, seed=0, round_=3)
    assert set(moves) == {2, 5}  # ceil(0.25 * 8) = 2 worst
    assert set(moves.values()) <= {1, 4}  # copy one of the 2 best
    assert explore.choose(fitness, 0.25, seed=0, round_=3) == moves
    assert explore.choose({0: 1.0, 1: 2.0}, 0.25, 0, 0) == {1: 0}  # at least one when n >= 2
    assert explore.choose({0: 1.0}, 0.25, 0, 0) == {}
    assert len(explore.choose(fitness, 0.5, 0, 0)) == 4


def test_donors_are_drawn_from_the_whole_top() -> None:
    fitness = {i: float(i) for i in range(8)}
    donors = {d for r in range(50) for d in explore.choose(fitness, 0.25, 0, r).values()}
    assert donors == {0, 1}


def test_a_diverged_particle_always_copies_and_is_never_copied() -> None:
    fitness = {0: 0.5, 1: math.nan, 2: 0.1, 3: 0.3, 4: 0.2, 5: 0.25, 6: math.inf, 7: 0.4}
    moves = explore.choose(fitness, 0.125, seed=0, round_=0)
    assert {1, 6} <= set(moves)
    assert not {1, 6} & set(moves.values())
    assert explore.choose({0: math.nan, 1: math.nan}, 0.25, 0, 0) == {}


def test_quantile_is_checked() -> None:
    for bad in (0, -0.1, 0.6):
        with pytest.raises(ValueError, match=r"\(0, 0.5\]"):
            explore.check_quantile(bad)
    assert explore.check_quantile(0.5) == 0.5


def test_lineage_follows_the_copies_back() -> None:
    start = [{"lr": 0.1}, {"lr": 0.2}, {"lr": 0.3}]
    lineage = Lineage(start)
    for r, step, who, donor, before, after in [
        (1, 100, 2, 1, 0.2, 0.25),
        (2, 200, 0, 2, 0.25, 0.2),
        (2, 200, 2, 1, 0.2, 0.16),
    ]:
        lineage.events.append(Event(r, step, who, donor, {"lr": before}, {"lr": after}))
    assert lineage.schedule(0) == [
        {"step": 0, "values": {"lr": 0.2}},
        {"step": 100, "values": {"lr": 0.25}},
        {"step": 200, "values": {"lr": 0.2}},
    ]  # particle 0 took 2's state from *before* 2's own copy in the same round
    assert lineage.schedule(1) == [{"step": 0, "values": {"lr": 0.2}}]
    again = Lineage.from_state(lineage.state_dict())
    assert again.schedule(0) == lineage.schedule(0)
