"""``Swarm(explore=...)`` with data-parallel ("hybrid") particles on a real gloo world.

Four ranks make two particles of two DDP ranks each.  Only a particle's head decides and sends
or receives an exploit; its other rank must take the head's table, lineage and, when the
particle copied, the donor's weights and optimizer state and its own new hyperparameters
(``Population._share`` over ``transport.share_in_particle``).  Particle 0 is made clearly worse,
so it copies particle 1 at every exploit round (two particles: one loser, one donor).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from nosync import Swarm, particle_groups
from nosync.core.population import Explore
from nosync.core.weights import flatten_weights

from support.distributed import run_ranks
from support.helpers import bn_model, train_steps

FITNESS = [1.0, 0.1]  # particle 0 is worse: it copies particle 1
FACTORS = (0.8, 1.25)


def _state(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's state tensors by (param index, key), cloned."""
    params = [p for g in opt.param_groups for p in g["params"]]
    return {
        f"{i}.{key}": value.detach().clone()
        for i, p in enumerate(params)
        for key, value in opt.state.get(p, {}).items()
        if isinstance(value, torch.Tensor)
    }


def _snapshot(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    return {
        "weights": flatten_weights(model).clone(),  # parameters and BatchNorm statistics
        "params": torch.cat([p.detach().reshape(-1) for p in model.parameters()]),
        "ints": flatten_weights(model, integer=True).clone(),
        "state": _state(opt),
        "lr": [g["lr"] for g in opt.param_groups],
    }


def _hybrid_exploit(rank: int, world: int, rule: str, round_: str) -> dict[str, Any]:
    swarm_group, particle_group = particle_groups(2)
    particle = rank // 2
    model = bn_model(seed=particle)  # the particles start apart
    net = nn.parallel.DistributedDataParallel(model, process_group=particle_group)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)  # state: step, exp_avg, exp_avg_sq
    explore = Explore(space="lr=0.005..0.5:log", every=1, factors=FACTORS, resample=0.0)
    swarm = Swarm(
        net, opt, fitness=lambda m: FITNESS[particle], period=1000, rule=rule, round=round_,
        group=swarm_group, particle_group=particle_group, seed=3, explore=explore,
    )  # fmt: skip
    initial = swarm.population.table()  # type: ignore[union-attr]
    train_steps(net, opt, 3, seed=rank)  # different data on each rank; Adam's state exists
    before = _snapshot(model, opt)
    record = swarm.sync()  # round 1: an exploit round (every=1)
    after = _snapshot(model, opt)
    population = swarm.population
    assert population is not None
    table = population.table()
    events = [vars(e) for e in population.lineage.events]
    train_steps(net, opt, 2, seed=rank + 10)  # DDP at the new lr: the ranks must stay together
    later = _snapshot(model, opt)
    return {
        "initial": initial,
        "before": before,
        "after": after,
        "later": later,
        "table": table,
        "events": events,
        "explore": record["explore"],
        "particle": swarm.particle,
    }


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What differs between two snapshots' weights and optimizer state (lr aside)."""
    found = [k for k in ("weights", "ints") if not torch.equal(a[k], b[k])]
    if a["state"].keys() != b["state"].keys():
        return [*found, "state keys"]
    return found + [k for k in a["state"] if not torch.equal(a["state"][k], b["state"][k])]


# "none": the exploit alone, and the fitness gathered for it; "leader": the round's fitness (the
# copier is pulled first, then overwritten; the donor leads and stays) on the async rounds' twin
@pytest.mark.parametrize(("rule", "round_"), [("none", "blocking"), ("leader", "async")])
def test_hybrid_copier_takes_the_donor_heads_state_on_every_rank_and_its_own_new_lr(
    rule: str, round_: str
) -> None:
    out = run_ranks(_hybrid_exploit, 4, timeout=90, rule=rule, round_=round_)
    assert [o["particle"] for o in out] == [0, 0, 1, 1]
    initial = out[0]["initial"]
    donor = out[2]["before"]  # the donor's head, just before the exploit round

    # every rank holds the same table, lineage and round record
    for o in out:
        assert o["initial"] == initial
        assert o["table"] == out[0]["table"] and o["events"] == out[0]["events"]
        assert o["explore"] == out[0]["explore"]
    (event,) = out[0]["events"]
    assert (event["round"], event["particle"], event["donor"]) == (1, 0, 1)
    assert event["before"] == initial[1]
    new_lr = event["after"]["lr"]
    assert any(abs(new_lr - initial[1]["lr"] * f) < 1e-12 for f in FACTORS)
    assert out[0]["table"] == [{"lr": new_lr}, initial[1]]
    assert out[0]["explore"]["exploits"] == [{"particle": 0, "donor": 1, "values": {"lr": new_lr}}]

    # the test means something: the particles (and a particle's ranks' BatchNorm statistics,
    # from their own batches) differ before the round, and the copier's lr was its own
    assert not torch.equal(out[0]["before"]["weights"], donor["weights"])
    assert not torch.equal(out[0]["before"]["state"]["0.exp_avg"], donor["state"]["0.exp_avg"])
    assert out[0]["before"]["lr"] == out[1]["before"]["lr"] == [initial[0]["lr"]]
    assert initial[0]["lr"] != initial[1]["lr"]
    assert not torch.equal(out[3]["before"]["weights"], donor["weights"])

    for rank in (0, 1):  # both ranks of the copier: the donor head's weights and state ...
        assert _differences(out[rank]["after"], donor) == [], f"rank {rank}"
        # ... and its own new lr, not the donor's (which came with nothing but the state)
        assert out[rank]["after"]["lr"] == [new_lr] != [initial[1]["lr"]]
    for rank in (2, 3):  # the donor is untouched by the copy (its rank 3 takes its head's)
        assert _differences(out[rank]["after"], donor) == [], f"rank {rank}"
        assert out[rank]["after"]["lr"] == [initial[1]["lr"]]

    # afterwards DDP keeps each particle's ranks identical (the same lr on both ranks)
    for a, b in ((0, 1), (2, 3)):
        later_a, later_b = out[a]["later"], out[b]["later"]
        assert torch.equal(later_a["params"], later_b["params"])  # (statistics: own batches)
        assert later_a["state"].keys() == later_b["state"].keys()
        assert all(torch.equal(later_a["state"][k], later_b["state"][k]) for k in later_a["state"])
        assert later_a["lr"] == later_b["lr"]
    assert not torch.equal(out[0]["later"]["weights"], out[2]["later"]["weights"])
