"""``Swarm`` on real gloo process groups (3-4 ranks, each test with a timeout)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from nosync import Swarm, particle_groups
from nosync.core.swarm import flatten_weights

from support.distributed import run_ranks
from support.helpers import bn_model, train_steps


def fixed_fitness(values: list[float]):
    return lambda model: values[dist.get_rank()]


# ---- leader election with a NaN particle ---------------------------------------------------
def _election(rank: int, world: int) -> dict:
    model = bn_model(seed=rank)  # different weights per particle
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_steps(model, opt, 3, seed=rank)  # momentum buffers now exist
    if rank == 2:
        with torch.no_grad():
            model[0].weight[0, 0] = math.nan
    momentum = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    before = flatten_weights(model).clone()
    # rank 1 and 3 tie for the best fitness: the tie goes to the lowest index
    swarm = Swarm(model, opt, fitness=fixed_fitness([0.5, 0.1, 0.05, 0.1]), period=10, pressure=0.5)
    record = swarm.sync()
    swarm.settle()  # its distances (they come with the next round's fitness otherwise)
    lead = flatten_weights(model).clone() if rank == 1 else torch.empty_like(before)
    dist.broadcast(lead, src=1)
    after = flatten_weights(model)
    state_kept = all(
        torch.equal(opt.state[p]["momentum_buffer"], m)
        for p, m in zip(model.parameters(), momentum, strict=True)
        if p in opt.state
    )
    return {
        "record": record,
        "before": before,
        "after": after,
        "lead": lead,
        "state_kept": state_kept,
        "state_empty": len(opt.state) == 0,
    }


def test_nan_particle_never_leads_and_is_reset_to_the_leader() -> None:
    out = run_ranks(_election, 4)
    record = out[0]["record"]
    assert record["leader"] == 1  # rank 2 claimed 0.05 but its weights are NaN
    assert record["fitness"][2] is None and record["reset"] == [2]
    for o in out:  # every rank logs the same round
        assert (o["record"]["leader"], o["record"]["fitness"]) == (1, record["fitness"])
    lead = out[1]["before"]
    # the diverged particle is replaced whole and its optimizer state is cleared
    assert torch.equal(out[2]["after"], lead) and out[2]["state_empty"]
    for rank in (0, 3):  # finite particles move halfway and keep their momentum
        assert torch.allclose(
            out[rank]["after"], out[rank]["before"] + 0.5 * (lead - out[rank]["before"])
        )
        assert out[rank]["state_kept"]
    assert torch.equal(out[1]["after"], lead) and out[1]["state_kept"]
    assert record["distance"][1] == 0.0 and record["distance"][2] is None


# ---- pressure 1: everyone lands on the leader (params and BatchNorm buffers) ---------------
def _pressure_one(rank: int, world: int) -> tuple[torch.Tensor, int, dict]:
    model = bn_model(seed=rank)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Swarm(model, opt, fitness=fixed_fitness([0.3, 0.2, 0.1]), period=5, pressure=1.0) as swarm:
        train_steps(model, opt, 5, seed=rank)  # the 5th step triggers the round
    return flatten_weights(model), swarm.rounds, dict(model[1].state_dict())


def test_pressure_one_makes_every_particle_the_leader_buffers_included() -> None:
    out = run_ranks(_pressure_one, 3)
    lead, rounds, lead_bn = out[2]
    for flat, r, bn in out:
        assert r == 1
        assert torch.equal(flat, lead)
        assert torch.equal(bn["running_mean"], lead_bn["running_mean"])
        assert torch.equal(bn["running_var"], lead_bn["running_var"])


# ---- elastic with pressure 1 is exact averaging ---------------------------------------------
def _elastic(rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    model = bn_model(seed=rank)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train_steps(model, opt, 2, seed=rank)
    before = flatten_weights(model).double()
    Swarm(
        model, opt, fitness=fixed_fitness([1.0, 2.0, 3.0, 4.0]), pressure=1.0, rule="elastic"
    ).sync()
    return before, flatten_weights(model).double()


def test_elastic_with_pressure_one_equals_the_exact_mean() -> None:
    out = run_ranks(_elastic, 4)
    mean = torch.stack([b for b, _ in out]).mean(0)
    for _, after in out:
        assert torch.allclose(after, mean, atol=1e-6)


# ---- pso: deterministic, and personal best and velocity are kept ----------------------------
def _pso(rank: int, world: int) -> tuple[torch.Tensor, dict]:
    model = bn_model(seed=rank)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    swarm = Swarm(
        model, opt, fitness=fixed_fitness([0.3, 0.1, 0.2]), period=3, pressure=0.5, rule="pso"
    )
    with swarm:
        train_steps(model, opt, 9, seed=rank)
    return flatten_weights(model), swarm.state_dict()


def test_pso_is_reproducible_with_the_same_seed() -> None:
    first, second = run_ranks(_pso, 3), run_ranks(_pso, 3)
    for (w1, s1), (w2, s2) in zip(first, second, strict=True):
        assert torch.equal(w1, w2)
        assert s1["rounds"] == 3 and s1["rule"]["velocity"] is not None
        assert torch.equal(s1["rule"]["velocity"], s2["rule"]["velocity"])
    assert first[0][1]["rule"]["velocity"].abs().sum() > 0  # the non-leaders moved


# ---- hybrid: each particle is a DDP group; its ranks stay identical ------------------------
def _hybrid(rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    swarm_group, particle_group = particle_groups(2)
    particle = rank // 2
    model = bn_model(seed=particle)
    net = nn.parallel.DistributedDataParallel(model, process_group=particle_group)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    fitness = lambda m: [0.5, 0.2][particle]  # noqa: E731
    swarm = Swarm(
        net,
        opt,
        fitness=fitness,
        period=4,
        pressure=0.3,
        group=swarm_group,
        particle_group=particle_group,
    )
    with swarm:
        train_steps(net, opt, 8, seed=rank)  # different data on each rank; rounds at 4 and 8
        at_round = flatten_weights(model)
        train_steps(net, opt, 2, seed=rank + 10)
    assert len(swarm.history) == 2 and swarm.history[-1]["leader"] == 1
    # DDP keeps parameters equal every step; buffers (BatchNorm statistics) are made equal at
    # every sync round (DDP itself only re-broadcasts them at the next forward)
    return at_round, torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_hybrid_ranks_of_a_particle_stay_identical_particles_differ() -> None:
    out = run_ranks(_hybrid, 4)
    for i in (0, 1):
        assert torch.equal(out[0][i], out[1][i]) and torch.equal(out[2][i], out[3][i])
        assert not torch.allclose(out[0][i], out[2][i])


# ---- finalize: every rank ends holding the best particle ------------------------------------
def _finalize(rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    model = bn_model(seed=rank)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train_steps(model, opt, rank + 1, seed=rank)  # num_batches_tracked differs per rank
    swarm = Swarm(model, opt, fitness=fixed_fitness([0.9, 0.8, 0.1]), rule="none")
    before = flatten_weights(model)
    state = swarm.finalize()
    assert torch.equal(state["1.num_batches_tracked"], model[1].num_batches_tracked)
    after = flatten_weights(model)
    return before, after, int(model[1].num_batches_tracked), swarm.best_particle


def test_finalize_hands_every_rank_the_best_particle() -> None:
    out = run_ranks(_finalize, 3)
    best_before = out[2][0]
    assert not torch.equal(out[0][0], best_before)
    for _, after, tracked, best_particle in out:
        assert best_particle == 2 and tracked == 3  # integer buffers come along
        assert torch.equal(after, best_before)


# ---- misuse is caught before a collective can hang ------------------------------------------
def _mismatch(rank: int, world: int) -> str:
    model = nn.Linear(4, 3 if rank == 0 else 2)
    try:
        Swarm(model, torch.optim.SGD(model.parameters(), lr=0.1), fitness=lambda m: 0.0).sync()
    except ValueError as err:
        return str(err)
    return "no error"


def test_models_of_different_shapes_fail_clearly_on_every_rank() -> None:
    for message in run_ranks(_mismatch, 3, timeout=60):
        assert "differ in shape" in message


# ---- our elastic rule against torch's own PeriodicModelAverager -----------------------------
def _averaging(rank: int, world: int, use_torch: bool) -> torch.Tensor:
    from nosync.core.placement import Placement
    from nosync.run.strategies import LocalSGDStrategy

    torch.manual_seed(rank)  # different starting points, so that averaging matters
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    if use_torch:  # local SGD through torch.distributed.algorithms.model_averaging
        place = Placement(rank, world, 1, dist.group.WORLD, None)
        coordinator = LocalSGDStrategy(model, opt, place, period=5)
    else:
        coordinator = Swarm(
            model, opt, fitness=lambda m: 0.0, period=5, pressure=1.0, rule="elastic"
        )
    with coordinator:
        train_steps(model, opt, 17, seed=rank)  # rounds after steps 5, 10 and 15
    return flatten_weights(model)


def test_elastic_with_pressure_one_gives_the_weights_of_torchs_model_averager() -> None:
    ours, theirs = (
        run_ranks(_averaging, 3, use_torch=False),
        run_ranks(_averaging, 3, use_torch=True),
    )
    assert not torch.allclose(ours[0], ours[1])  # two steps after the last round they differ
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


# ---- diloco: local SGD at outer lr 1 and momentum 0; its outer state survives a resume -------
def _diloco(rank: int, world: int) -> dict:
    import copy

    from nosync.core.placement import Placement
    from nosync.run.strategies import DiLoCoStrategy, LocalSGDStrategy

    place = Placement(rank, world, 1, dist.group.WORLD, None)

    def run(make: Any, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        """Steps 1-12, a checkpoint, steps 13-20 (rounds at 5, 10, 15, 20); or from ``state``,
        the checkpoint, only steps 13-20."""
        model = bn_model(seed=rank)  # different starting points, so that averaging matters
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        strategy, saved = make(model, opt), state
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            strategy.load_state_dict(state["strategy"])
        with strategy:
            if state is None:
                train_steps(model, opt, 12, seed=rank)
                parts = {"model": model, "opt": opt, "strategy": strategy}
                saved = copy.deepcopy({k: v.state_dict() for k, v in parts.items()})
            train_steps(model, opt, 8, seed=rank + 10)
        strategy.finalize()
        return flatten_weights(model), saved

    localsgd = run(lambda m, o: LocalSGDStrategy(m, o, place, period=5))[0]
    plain = run(lambda m, o: DiLoCoStrategy(m, o, place, period=5, lr=1.0, momentum=0.0))[0]
    outer = lambda m, o: DiLoCoStrategy(m, o, place, period=5, lr=0.7, momentum=0.9)  # noqa: E731
    whole, cut = run(outer)
    resumed = run(outer, copy.deepcopy(cut))[0]
    return {"localsgd": localsgd, "plain": plain, "whole": whole, "again": resumed, "cut": cut}


def test_diloco_at_outer_lr_one_is_localsgd_and_its_outer_state_resumes_exactly() -> None:
    out = run_ranks(_diloco, 3)
    for o in out:
        assert torch.allclose(o["plain"], o["localsgd"], atol=1e-6, rtol=0)
        assert torch.equal(o["whole"], o["again"])  # the resumed run ends where it would have
        assert not torch.allclose(o["whole"], o["localsgd"])
        velocity = o["cut"]["strategy"]["outer"]["state"][0]["momentum_buffer"]
        assert velocity.abs().sum() > 0  # the outer momentum is part of the checkpoint
    assert torch.equal(out[0]["whole"], out[1]["whole"])  # every rank ends with the anchor
