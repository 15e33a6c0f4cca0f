"""Neighbourhoods: the pure functions, and information spreading on real gloo ranks."""

from __future__ import annotations

import math

import pytest

from nosync.core.planner import plan
from nosync.core.topology import in_neighbours, out_neighbours


def test_ring_neighbours() -> None:
    assert in_neighbours("ring", 0, 6) == [1, 5]
    assert in_neighbours("ring", 3, 6) == [2, 4]
    assert in_neighbours("ring", 1, 2) == [0]  # a ring of two is a pair
    assert in_neighbours("ring", 0, 1) == []


@pytest.mark.parametrize("topology", ["ring", "random-k", "all"])
def test_out_neighbours_are_the_inverse_of_in_neighbours(topology: str) -> None:
    for round_ in range(3):
        for i in range(7):
            for j in out_neighbours(topology, i, 7, round_, k=3, seed=1):
                assert i in in_neighbours(topology, j, 7, round_, k=3, seed=1)


def test_random_k_draws_k_others_afresh_each_round_the_same_everywhere() -> None:
    draws = [in_neighbours("random-k", 2, 10, r, k=3, seed=5) for r in range(6)]
    assert all(len(d) == 3 and 2 not in d for d in draws)
    assert len({tuple(d) for d in draws}) > 1
    assert draws == [in_neighbours("random-k", 2, 10, r, k=3, seed=5) for r in range(6)]


def test_local_leader_is_lowest_finite_ties_to_lowest_index() -> None:
    def local_leader(known: dict[int, float]) -> int | None:
        return plan(0, 6, known, everyone=False).leader

    assert local_leader({5: 0.2, 1: 0.2, 3: 0.9}) == 1
    assert local_leader({0: math.nan, 4: 0.3}) == 4
    assert local_leader({0: math.inf}) is None
