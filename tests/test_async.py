"""Async rounds: the delayed correction, their equivalence with blocking rounds at delay 0,
exact resume with a round in flight, and their bad values."""

from __future__ import annotations

import signal
from typing import Any

import pytest
import torch
from test_round import in_threads
from torch import nn

from nosync import Swarm
from nosync.metrics import read_metrics
from nosync.weights import flatten_weights

from helpers import checkpoint_step, nosync, start_nosync, summary, wait_for

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
            model, opt, lambda m: fitness[i], period=PERIOD, pressure=P,
            mode="async", delay=DELAY, transport=endpoint,
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

        swarm = Swarm(model, opt, fitness, period=2, mode="async", delay=1, transport=endpoint)
        data = batches(0, 3)  # one round: starts after step 2, lands after step 3
        with swarm:
            train(model, opt, data[:2])
            snapshot = flatten_weights(model)
            train(model, opt, data[2:])
        assert [r["applied_step"] for r in swarm.history] == [3]
        return snapshot

    out = in_threads(2, particle)
    assert len(seen) == 1 and torch.equal(seen[0], out[0])


FLAGS = ["--workers", "2", "--steps", "200", "--period", "10", "--quiet", "--threads", "1"]


def test_async_with_no_delay_gives_the_weights_of_blocking_rounds(tmp_path) -> None:
    runs = {}
    modes = {"blocking": ["--round", "blocking"], "async": ["--round", "async", "--delay", "0"]}
    for name, extra in modes.items():
        result = nosync("train", *FLAGS, *extra, "--out", str(tmp_path / name))
        assert result.returncode == 0, result.stderr
        runs[name] = torch.load(tmp_path / name / "final.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(runs["async"][k], runs["blocking"][k]) for k in runs["blocking"])
    assert summary(tmp_path / "async")["round_mode"] == "async"


def test_async_rounds_land_late_and_resume_exactly_with_a_round_in_flight(tmp_path) -> None:
    flags = [
        "--workers", "2", "--steps", "800", "--period", "10", "--checkpoint-every", "3",
        "--quiet", "--round", "async", "--delay", "4", "--rule", "pso", "--threads", "1",
    ]  # fmt: skip
    run = start_nosync("train", *flags, "--out", str(tmp_path / "cut"))
    wait_for(lambda: checkpoint_step(tmp_path / "cut"), 120, "a first checkpoint")
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    resumed = nosync("train", "--resume", str(tmp_path / "cut"))
    assert resumed.returncode == 0, resumed.stderr
    whole = nosync("train", *flags, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    cut = torch.load(tmp_path / "cut" / "final.pt", weights_only=False)["state_dict"]
    ref = torch.load(tmp_path / "whole" / "final.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(cut[k], ref[k]) for k in ref)
    rounds = [r for r in read_metrics(tmp_path / "whole" / "metrics.jsonl") if r["type"] == "round"]
    assert [r["applied_step"] - r["step"] for r in rounds[:-1]] == [4] * (len(rounds) - 1)
    # the resumed log has every round once, with the distances the whole run logged (a round's
    # distances arrive with the next round's fitness, across the checkpoint too)
    logged = [r for r in read_metrics(tmp_path / "cut" / "metrics.jsonl") if r["type"] == "round"]
    assert [r["round"] for r in logged] == [r["round"] for r in rounds] == list(range(1, 81))
    assert [r["distance"] for r in logged] == [r["distance"] for r in rounds]
    assert all(d is not None for r in rounds for d in r["distance"])
    s = summary(tmp_path / "whole")
    assert 0 <= s["blocked_seconds"] <= s["sync_seconds"]
    assert len(s["blocked_seconds_per_rank"]) == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--round", "async", "--delay", "-2"], "delay: invalid value -2"),
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
def test_bad_async_values_are_one_line_and_exit_2(tmp_path, flags: list[str], message: str) -> None:
    result = nosync("train", *flags, "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_train_loss_fitness_elects_by_the_training_loss(tmp_path) -> None:
    out = tmp_path / "run"
    result = nosync("train", *FLAGS, "--fitness", "train-loss", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rounds = [r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "round"]
    for r in rounds:
        assert r["fitness"] == r["train_loss"]  # the fitness is the logged training loss
        assert r["leader"] == min(range(2), key=lambda i: r["train_loss"][i])


def test_a_slow_rank_is_slower(tmp_path) -> None:
    """``slow@RANK:FACTOR`` stretches that rank's steps (a count, not a timing: its share of the
    blocked time in a blocking swarm is what the fast rank waits for it)."""
    out = tmp_path / "run"
    flags = ["--round", "blocking", "--inject", "slow@1:4"]  # async rounds hide the wait
    result = nosync("train", *FLAGS, *flags, "--out", str(out))
    assert result.returncode == 0, result.stderr
    s = summary(out)
    fast, slow = s["blocked_seconds_per_rank"]
    assert fast > slow  # rank 0 waits for rank 1 in every blocking round, not the other way


def test_a_straggler_skips_batches_and_the_fast_rank_trains_every_step(tmp_path) -> None:
    """``--stragglers skip`` with ``slow@1:4``: the slow rank drops batches to keep the fast
    rank's pace (counts, not timings), every rank meets every round, and every rank ends with
    the same selected model."""
    out = tmp_path / "run"
    flags = ["--round", "async", "--inject", "slow@1:4", "--stragglers", "skip"]
    result = nosync("train", *FLAGS, "--steps", "300", *flags, "--out", str(out))
    assert result.returncode == 0, result.stderr
    s = summary(out)
    fast, slow = s["skipped_steps_per_rank"]
    assert slow > 50 and fast < slow / 2, s["skipped_steps_per_rank"]  # ~3/4 of 300 expected
    assert s["sync_rounds"] == 30 and s["stragglers"] == "skip"
    assert len(set(s["final_sha256_per_rank"])) == 1  # every rank holds the selected model
    evals = [r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "eval"]
    assert evals[-1]["skipped_steps"] == [fast, slow]


def test_a_round_that_never_lands_fails_within_the_transport_timeout() -> None:
    """The training thread waits for a background round no longer than the transport's
    timeout (``--timeout``), not for ever: here the other particle never comes to the round."""
    import time

    from nosync.transport import LocalWorld

    world = LocalWorld(2, timeout=600)  # the barrier alone would hold for 10 minutes
    endpoint = world.endpoint(0)
    endpoint.timeout = 1.0
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    swarm = Swarm(model, opt, lambda m: 0.0, period=2, mode="async", delay=1, transport=endpoint)
    started = time.monotonic()
    due = "round 1 timed out: no answer from another rank"
    with pytest.raises(TimeoutError, match=due), swarm:
        train(model, opt, batches(0, 3))  # the round starts at step 2, is due at step 3
    assert time.monotonic() - started < 60  # 1 s, far below the barrier's 600 s
    world.abort()  # release the background thread


def _twin_times_out(rank: int, world: int, done: str) -> dict[str, Any]:
    import os
    import time

    from nosync.transport import DistTransport

    twin = DistTransport(None).twin()  # the group an async round runs on
    result: dict[str, Any] = {"timeout": twin.timeout}
    if rank == 0:  # rank 1 never joins this collective, as a SIGSTOPped rank would not
        started = time.monotonic()
        try:
            twin.all_gather(torch.zeros(1))
        except RuntimeError as err:
            result["error"], result["failed_after"] = str(err), time.monotonic() - started
        open(done, "w").close()
    else:  # alive (its connections open) until rank 0 gave up: a timeout, not a lost peer
        deadline = time.monotonic() + 100
        while not os.path.exists(done) and time.monotonic() < deadline:
            time.sleep(0.05)
    return result


def test_the_async_rounds_group_inherits_the_run_timeout_not_torchs_30_minutes(tmp_path) -> None:
    from distributed import run_ranks

    results = run_ranks(_twin_times_out, 2, timeout=150, _pg_timeout=3, done=str(tmp_path / "d"))
    assert [r["timeout"] for r in results] == [3.0, 3.0]
    assert "timed out" in results[0]["error"].lower(), results[0]
    assert results[0]["failed_after"] < 60  # 3 s, not 1800 s
