"""``nosync train --explore`` as a user runs it: each particle's own hyperparameters in the
records and the summary, a resume that continues bit for bit (the values and the lineage are in
the checkpoint), and ``--replay`` of the winner's schedule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from support.helpers import back_to_checkpoint, nosync, summary

FLAGS = [
    "--workers", "2", "--dataset", "digits", "--steps", "40", "--period", "5",
    "--explore", "lr=0.005..0.5:log,weight_decay=0..0.001", "--exploit-every", "2",
    "--checkpoint-every", "2", "--threads", "1", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def explored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("explore") / "run"
    result = nosync("train", *FLAGS, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_each_particle_trains_with_its_own_values_and_the_worst_copies(explored: Path) -> None:
    s = summary(explored)
    explore = s["explore"]
    assert explore["space"] == "lr=0.005..0.5:log,weight_decay=0..0.001"
    assert sorted(v["lr"] for v in explore["start"]) == pytest.approx(
        [0.5 / 10**1.5, 0.005 * 10**1.5]
    )
    rounds = [json.loads(line) for line in (explored / "metrics.jsonl").read_text().splitlines()]
    rounds = [r for r in rounds if r["type"] == "round"]
    copies = [r["explore"]["exploits"] for r in rounds]
    assert [bool(c) for c in copies] == [i % 2 == 1 for i in range(len(rounds))]
    assert explore["exploits"] == sum(len(c) for c in copies)
    assert rounds[-1]["explore"]["values"] == explore["values"]
    schedule = explore["schedule"]
    assert schedule[0]["step"] == 0 and schedule == sorted(schedule, key=lambda c: c["step"])
    assert explore["winner"] == s["best_particle"]
    config = (explored / "config.toml").read_text()
    assert 'fitness = "train-loss"' in config  # the default: it judged as well (RESULTS §17)


def test_a_resumed_explore_run_ends_bit_identical(explored: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    shutil.copytree(explored, cut)
    back_to_checkpoint(cut, 30)  # round 6 in flight: its copy lands after the resume
    result = nosync("train", "--resume", str(cut))
    assert result.returncode == 0, result.stderr
    a = torch.load(explored / "final.pt", weights_only=True)["state_dict"]
    b = torch.load(cut / "final.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert summary(cut)["explore"] == summary(explored)["explore"]


def test_replay_retrains_the_winners_schedule_on_one_worker(explored: Path, tmp_path: Path) -> None:
    out = tmp_path / "replay"
    flags = ["--strategy", "single", "--steps", "40", "--threads", "1", "--quiet"]
    result = nosync("train", *flags, "--replay", str(explored), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert summary(out)["test_accuracy"] > 0.5
    refused = nosync("train", *flags, "--replay", str(out), "--out", str(tmp_path / "again"))
    assert refused.returncode == 2
    assert "is not a finished --explore run" in refused.stderr


def test_report_draws_the_lineage_and_names_the_winners_schedule(explored: Path) -> None:
    result = nosync("report", str(explored))
    assert result.returncode == 0, result.stderr
    text = (explored / "report.md").read_text()
    explore = summary(explored)["explore"]
    assert f"{explore['exploits']} copies; the winner, particle {explore['winner']}" in text
    assert (explored / "explore.png").stat().st_size > 0
