"""Async rounds: the delayed correction, their equivalence with blocking rounds at delay 0,
exact resume with a round in flight, and their bad values."""

from __future__ import annotations

import signal

import pytest
import torch
from torch import nn

from nosync.run.metrics import read_metrics

from support.helpers import checkpoint_step, nosync, start_nosync, summary, wait_for

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
