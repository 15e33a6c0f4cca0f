"""Neighbourhoods: the pure functions, and information spreading on real gloo ranks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
from torch import nn

from nosync import Swarm
from nosync.planner import plan
from nosync.swarm import flatten_weights
from nosync.topology import in_neighbours, out_neighbours

from distributed import run_ranks


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


# ---- a good particle's weights reach every particle ------------------------------------------
TARGET = torch.linspace(-1, 1, 4 * 3 + 3)


def _spread(rank: int, world: int, topology: str, rounds: int) -> list[bool]:
    torch.manual_seed(rank)
    model = nn.Linear(4, 3)
    if rank == 0:  # particle 0 sits on the optimum
        with torch.no_grad():
            model.weight.copy_(TARGET[:12].view(3, 4))
            model.bias.copy_(TARGET[12:])
    fitness = lambda m: float(torch.linalg.vector_norm(flatten_weights(m) - TARGET))  # noqa: E731
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    swarm = Swarm(model, opt, fitness, pressure=1.0, topology=topology, neighbors=2, seed=7)
    reached = []
    for _ in range(rounds):
        swarm.sync()
        reached.append(bool(torch.allclose(flatten_weights(model), TARGET)))
    dist.barrier()
    return reached


def test_on_a_ring_the_best_weights_travel_one_hop_per_round() -> None:
    world = 6
    reached = run_ranks(_spread, world, topology="ring", rounds=3)
    for rank, per_round in enumerate(reached):
        hops = min(rank, world - rank)  # distance to particle 0 around the ring
        assert per_round == [r + 1 >= hops for r in range(3)], (rank, per_round)


def test_random_k_spreads_the_best_weights_to_everyone() -> None:
    reached = run_ranks(_spread, 5, topology="random-k", rounds=6)
    assert all(per_round[-1] for per_round in reached)
    # not everyone on the first round: k = 2 of 4 others is a real neighbourhood
    assert not all(per_round[0] for per_round in reached)
