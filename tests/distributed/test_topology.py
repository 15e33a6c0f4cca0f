"""Neighbourhoods: the pure functions, and information spreading on real gloo ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from nosync import Swarm
from nosync.core.swarm import flatten_weights

from support.distributed import run_ranks

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
    swarm = Swarm(model, opt, fitness=fitness, pressure=1.0, topology=topology, neighbors=2, seed=7)
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
