"""Async rounds: the delayed correction, their equivalence with blocking rounds at delay 0,
exact resume with a round in flight, and their bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nosync.run.metrics import read_metrics

from support.fixtures import Interrupted, made_once
from support.helpers import nosync, summary

FLAGS = ["--workers", "2", "--steps", "200", "--period", "10", "--quiet", "--threads", "1"]


@pytest.fixture(scope="module")
def delay_zero(tmp_path_factory) -> dict[str, Path]:
    """The same run with blocking rounds and with async rounds at delay 0 (both electing by the
    training loss, named here rather than left to the default)."""
    modes = {"blocking": ["--round", "blocking"], "async": ["--round", "async", "--delay", "0"]}

    def make(root: Path) -> dict[str, Path]:
        for name, extra in modes.items():
            flags = [*FLAGS, *extra, "--fitness", "train-loss"]
            result = nosync("train", *flags, "--out", str(root / name))
            assert result.returncode == 0, result.stderr
        return {name: root / name for name in modes}

    return made_once(tmp_path_factory, "async_delay_zero", make)  # one run for every worker


def test_async_with_no_delay_gives_the_weights_of_blocking_rounds(delay_zero) -> None:
    runs = {
        name: torch.load(out / "final.pt", weights_only=False)["state_dict"]
        for name, out in delay_zero.items()
    }
    assert all(torch.equal(runs["async"][k], runs["blocking"][k]) for k in runs["blocking"])
    assert summary(delay_zero["async"])["round_mode"] == "async"


def test_async_rounds_land_late_and_resume_exactly_with_a_round_in_flight(
    ctrl_c_resumed: Interrupted,
) -> None:
    """The run of ``support.fixtures.CTRL_C`` (async, delay 4, pso), stopped by Ctrl+C after its
    first checkpoint and resumed; shared with the reliability tests."""
    run = ctrl_c_resumed
    assert run.stopped.returncode == 130, run.stopped.stderr
    assert run.resumed.returncode == 0, run.resumed.stderr
    assert run.finished_whole.returncode == 0, run.finished_whole.stderr
    cut = torch.load(run.cut / "final.pt", weights_only=False)["state_dict"]
    ref = torch.load(run.whole / "final.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(cut[k], ref[k]) for k in ref)
    rounds = [r for r in read_metrics(run.whole / "metrics.jsonl") if r["type"] == "round"]
    assert [r["applied_step"] - r["step"] for r in rounds[:-1]] == [4] * (len(rounds) - 1)
    # the resumed log has every round once, with the distances the whole run logged (a round's
    # distances arrive with the next round's fitness, across the checkpoint too)
    logged = [r for r in read_metrics(run.cut / "metrics.jsonl") if r["type"] == "round"]
    assert [r["round"] for r in logged] == [r["round"] for r in rounds] == list(range(1, 81))
    assert [r["distance"] for r in logged] == [r["distance"] for r in rounds]
    assert all(d is not None for r in rounds for d in r["distance"])
    s = summary(run.whole)
    assert 0 <= s["blocked_seconds"] <= s["sync_seconds"]
    assert len(s["blocked_seconds_per_rank"]) == 2


def test_a_bad_async_value_is_one_line_and_exit_2(tmp_path) -> None:
    """Seen from outside, as a user sees it (the other bad values run in process, in
    ``tests/unit/test_async.py``)."""
    result = nosync("train", "--round", "async", "--delay", "-2", "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "delay: invalid value -2" in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_train_loss_fitness_elects_by_the_training_loss(delay_zero) -> None:
    out = delay_zero["async"]  # --fitness train-loss
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


def test_a_straggler_that_skips_batches_still_takes_part_in_every_exploit(tmp_path) -> None:
    """Issue 19: ``--explore`` with ``--stragglers skip``: the slow rank skips batches, yet
    both ranks meet at every round, copy at every exploit round (a 2-particle swarm always has
    one copier), agree on every particle's values, and end with the same selected model."""
    out = tmp_path / "run"
    flags = ["--round", "async", "--inject", "slow@1:4", "--stragglers", "skip"]
    explore = ["--explore", "lr=0.01..0.5:log", "--exploit-every", "3"]
    result = nosync("train", *FLAGS, "--steps", "300", *flags, *explore, "--out", str(out))
    assert result.returncode == 0, result.stderr
    s = summary(out)
    assert s["skipped_steps_per_rank"][1] > 50 and s["sync_rounds"] == 30
    rounds = [r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "round"]
    copied = [r["round"] for r in rounds if r["explore"]["exploits"]]
    assert copied == list(range(3, 31, 3)), copied
    assert s["explore"]["exploits"] == 10
    assert s["explore"]["values"] == rounds[-1]["explore"]["values"]
    assert len(set(s["final_sha256_per_rank"])) == 1
