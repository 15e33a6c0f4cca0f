"""``Swarm(explore=...)`` on a ``LocalWorld``: the exploit step inside real rounds (the pull for
the others, the copy for the worst), its records, a diverged particle, async rounds, and the
state a resume needs."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from nosync import Swarm
from nosync.core.population import Explore
from nosync.core.weights import flatten_weights

from support.helpers import bn_model, train_steps
from support.threads import in_threads


def _run(fitness: list[float], rule: str = "leader", round_: str = "blocking", **kw: Any) -> list:
    def particle(endpoint: Any, i: int) -> dict:
        model = bn_model(seed=i)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        swarm = Swarm(
            model, opt, fitness=lambda m: fitness[i], period=2, pressure=0.5, rule=rule,
            transport=endpoint, round=round_, explore=Explore("lr=0.01..1:log", every=2), **kw,
        )  # fmt: skip
        lrs = [opt.param_groups[0]["lr"]]
        with swarm:
            train_steps(model, opt, 8, seed=i)  # 4 rounds: exploits after rounds 2 and 4
            lrs.append(opt.param_groups[0]["lr"])
        swarm.flush()
        return {"swarm": swarm, "opt": opt, "model": model, "lrs": lrs}

    out = in_threads(len(fitness), particle)
    assert not any(isinstance(o, BaseException) for o in out), out
    return out


def test_the_worst_copy_the_best_every_k_rounds_and_the_records_say_so() -> None:
    out = _run([0.3, 0.1, 0.9, 0.5])
    history = out[0]["swarm"].history
    copies = [r["explore"]["exploits"] for r in history]
    assert [bool(c) for c in copies] == [False, True, False, True]
    assert copies[1][0]["particle"] == 2 and copies[1][0]["donor"] == 1
    values = history[-1]["explore"]["values"]
    assert len(values) == 4 and all(0.01 <= v["lr"] <= 1 for v in values)
    for i, o in enumerate(out):  # each particle trains with its own row
        assert o["opt"].param_groups[0]["lr"] == pytest.approx(values[i]["lr"])
        assert o["swarm"].history[-1]["explore"] == history[-1]["explore"]
    assert torch.equal(flatten_weights(out[2]["model"]), flatten_weights(out[1]["model"]))
    lineage = out[0]["swarm"].population.lineage
    assert lineage.schedule(2)[0] == {"step": 0, "values": lineage.start[1]}


def test_the_starting_values_are_spread_one_stratum_each() -> None:
    out = _run([0.3, 0.1, 0.9, 0.5])
    lrs = sorted(o["lrs"][0] for o in out)
    assert lrs == pytest.approx([0.01 * 100 ** ((k + 0.5) / 4) for k in range(4)])


def test_with_rule_none_it_is_plain_pbt() -> None:
    out = _run([0.3, 0.1, 0.9, 0.5], rule="none")
    history = out[0]["swarm"].history
    assert history[1]["explore"]["exploits"][0]["particle"] == 2
    assert history[0]["fitness"] is None  # the rule asked for nothing; the exploit gathered


def test_async_rounds_exploit_where_the_pull_lands() -> None:
    out = _run([0.3, 0.1, 0.9, 0.5], round_="async", delay=1)
    history = out[0]["swarm"].history
    assert [bool(r["explore"]["exploits"]) for r in history] == [False, True, False, True]
    assert torch.equal(flatten_weights(out[2]["model"]), flatten_weights(out[1]["model"]))


def test_a_diverged_particle_copies_at_once() -> None:
    fitness = [0.3, 0.1, math.nan, 0.5]
    out = _run(fitness)
    first = out[0]["swarm"].history[0]["explore"]["exploits"]
    assert [(c["particle"], c["donor"]) for c in first] == [(2, 1)]


def test_state_dict_carries_the_values_and_lineage() -> None:
    out = _run([0.3, 0.1, 0.9, 0.5])
    state = out[2]["swarm"].state_dict()
    assert state["population"]["values"] == out[2]["swarm"].population.table()
    assert state["population"]["lineage"]["events"]
