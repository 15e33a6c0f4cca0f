"""Async rounds: the delayed correction, their equivalence with blocking rounds at delay 0,
exact resume with a round in flight, and their bad values."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from nosync import Swarm
from nosync.core.weights import flatten_weights

from support.threads import in_threads

PERIOD, DELAY, P = 4, 3, 0.3


def batches(seed: int, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g))
        for _ in range(steps)
    ]


def train(model: nn.Module, opt: torch.optim.Optimizer, data: list) -> None:
    for x, y in data:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_the_pull_lands_delay_steps_later_as_a_correction_from_the_snapshots() -> None:
    fitness = [0.1, 0.5]  # particle 0 leads

    def start(i: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(i)  # (the global generator: models are made here, not in threads)
        model = nn.Linear(4, 3)
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    made = [start(i) for i in range(2)]

    def particle(endpoint: Any, i: int) -> torch.Tensor:
        model, opt = made[i]
        swarm = Swarm(
            model, opt, fitness=lambda m: fitness[i], period=PERIOD, pressure=P,
            round="async", delay=DELAY, transport=endpoint,
        )  # fmt: skip
        with swarm:
            train(model, opt, batches(i, PERIOD + DELAY))
        assert [r["applied_step"] for r in swarm.history] == [PERIOD + DELAY]
        return flatten_weights(model)

    out = in_threads(2, particle)
    # by hand: the same steps without a swarm, and the pull computed from the snapshots at PERIOD
    snapshots, finals = [], []
    for i in range(2):
        model, opt = start(i)
        train(model, opt, batches(i, PERIOD + DELAY)[:PERIOD])
        snapshots.append(flatten_weights(model))
        train(model, opt, batches(i, PERIOD + DELAY)[PERIOD:])
        finals.append(flatten_weights(model))
    expected = finals[1] + P * (snapshots[0] - snapshots[1])
    assert torch.allclose(out[1], expected, atol=1e-6)
    assert not torch.allclose(out[1], finals[1])  # it did move
    assert torch.equal(out[0], finals[0])  # the leader's own pull is zero


@pytest.mark.filterwarnings("ignore:Swarm. all 2 particles are identical:UserWarning")  # by design
def test_a_snapshot_fitness_is_evaluated_on_the_snapshot_not_the_live_model() -> None:
    seen: list[torch.Tensor] = []

    def particle(endpoint: Any, i: int) -> torch.Tensor:
        torch.manual_seed(0)
        model = nn.Linear(4, 3)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)

        def fitness(m: nn.Module) -> float:
            if i == 0:
                seen.append(flatten_weights(m))
            return float(i)

        swarm = Swarm(
            model, opt, fitness=fitness, period=2, round="async", delay=1, transport=endpoint
        )
        data = batches(0, 3)  # one round: starts after step 2, lands after step 3
        with swarm:
            train(model, opt, data[:2])
            snapshot = flatten_weights(model)
            train(model, opt, data[2:])
        assert [r["applied_step"] for r in swarm.history] == [3]
        return snapshot

    out = in_threads(2, particle)
    assert len(seen) == 1 and torch.equal(seen[0], out[0])


def test_a_round_that_never_lands_fails_within_the_transport_timeout() -> None:
    """The training thread waits for a background round no longer than the transport's
    timeout (``--timeout``), not for ever: here the other particle never comes to the round."""
    import time

    from nosync.core.transport import LocalWorld

    world = LocalWorld(2, timeout=600)  # the barrier alone would hold for 10 minutes
    endpoint = world.endpoint(0)
    endpoint.timeout = 1.0
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    swarm = Swarm(
        model, opt, fitness=lambda m: 0.0, period=2, round="async", delay=1, transport=endpoint
    )
    started = time.monotonic()
    due = "round 1 timed out: no answer from another rank"
    with pytest.raises(TimeoutError, match=due), swarm:
        train(model, opt, batches(0, 3))  # the round starts at step 2, is due at step 3
    assert time.monotonic() - started < 60  # 1 s, far below the barrier's 600 s
    world.abort()  # release the background thread


# ---- bad values: one line, status 2, nothing written (tests/e2e/test_async.py runs one of them
# through a subprocess, to see the exit status from outside) ----------------------------------
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--round", "async", "--period", "10", "--delay", "11"],
            "delay: 11 is more than the period",
        ),
        (
            ["--inject", "slow@9:2", "--workers", "2"],
            "inject: rank 9 does not exist (ranks are 0..1)",
        ),
        (["--inject", "slow@1:1"], "slow@RANK:FACTOR (FACTOR > 1)"),
        (["--inject", "slow@1:0.5"], "slow@RANK:FACTOR (FACTOR > 1)"),
        (["--fitness", "validation"], "argument --fitness: invalid choice"),
        (["--round", "sometimes"], "argument --round: invalid choice"),
        (["--stragglers", "skip", "--strategy", "localsgd"], "stragglers: skip needs"),
        (["--stragglers", "skip", "--ranks-per-particle", "2"], "stragglers: skip needs"),
    ],
)
def test_bad_async_values_are_one_line_and_status_2(tmp_path, capsys, flags, message) -> None:
    from nosync.cli import main

    out = tmp_path / "run"
    assert main(["train", *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not out.exists()
