"""What a run folder promises under pressure: a full disk, a torn metrics line, flipped bytes in a
checkpoint, flags given with --resume, and two runs aimed at one folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from nosync.errors import UserError
from nosync.run.metrics import read_metrics

from support.helpers import checkpoint_step, left_behind, nosync, start_nosync, wait_for

SHORT = ["--workers", "2", "--steps", "40", "--period", "10", "--quiet"]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
def finished(finished_run, tmp_path) -> Path:
    """A finished two-rank run with a checkpoint at every round (``support.fixtures``; a copy
    per test)."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def test_resume_after_a_torn_metrics_line_succeeds(finished) -> None:
    metrics = finished / "metrics.jsonl"
    with open(metrics, "a", encoding="utf-8") as handle:
        handle.write('{"type": "eval", "step": 40, "test_acc')  # the disk filled up here
    (finished / "summary.json").unlink()
    result = nosync("train", "--resume", str(finished))
    assert result.returncode == 0, result.stderr
    assert all(r["type"] for r in read_metrics(metrics))  # every line parses again
    assert (finished / "summary.json").exists()


def _can_mount_tmpfs(folder: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    folder.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)])
    return made.returncode == 0


def test_a_full_disk_stops_the_run_naming_the_file_and_resume_continues(tmp_path) -> None:
    disk = tmp_path / "disk"
    if not _can_mount_tmpfs(disk):
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: mount -t tmpfs must work")
        pytest.skip("needs root to mount a 3 MB tmpfs")
    try:
        filler = disk / "filler"
        filler.write_bytes(bytes(1_500_000))  # room for one checkpoint set, not three
        out = disk / "run"
        flags = [*SHORT, "--steps", "200", "--checkpoint-every", "1", "--eval-every", "1"]
        flags += ["--round", "blocking"]  # sized for sets without a round in flight
        full = nosync("train", *flags, "--out", str(out))
        assert full.returncode == 1, full.stderr
        assert "Traceback" not in full.stderr
        assert f"cannot write {out}/" in full.stderr and "No space left on device" in full.stderr
        saved = checkpoint_step(out)
        assert saved is not None and f"continue from the checkpoint at step {saved}" in full.stderr
        filler.unlink()
        resumed = nosync("train", "--resume", str(out))
        assert resumed.returncode == 0, resumed.stderr
        assert f"resuming from the checkpoint at step {saved}" in resumed.stderr
        assert read_metrics(out / "metrics.jsonl")[-1]["type"] == "final"
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


# ---- item 14: flipped bytes in a rank file ------------------------------------------------------
def test_a_flipped_byte_in_a_rank_checkpoint_is_refused(finished) -> None:
    latest = json.loads((finished / "checkpoints" / "latest.json").read_text())
    assert set(latest["sha256"]) == {"rank-00000.pt", "rank-00001.pt"}
    rank_file = finished / "checkpoints" / latest["dir"] / "rank-00001.pt"
    data = bytearray(rank_file.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the tensor bytes: the file still loads
    rank_file.write_bytes(bytes(data))
    line = one_error_line(nosync("train", "--resume", str(finished)))
    assert f"corrupt checkpoint {rank_file}" in line and "sha256" in line


# ---- item 4: flags given with --resume ----------------------------------------------------------
@pytest.mark.parametrize(
    ("flag", "value", "saved"),
    [
        ("--lr", "0.1", "lr=0.05"),
        ("--momentum", "0.5", "momentum=0.9"),
        ("--pressure", "0.9", "pressure=0.3"),
    ],
)
def test_resume_refuses_a_flag_it_would_ignore(finished, flag, value, saved) -> None:
    before = (finished / "config.toml").read_text()
    line = one_error_line(nosync("train", "--resume", str(finished), flag, value))
    assert "cannot change" in line and f"(now {value})" in line and saved in line
    assert (finished / "config.toml").read_text() == before  # nothing recorded


def test_resume_applies_and_records_an_adjustable_flag(finished) -> None:
    (finished / "summary.json").unlink()
    result = nosync("train", "--resume", str(finished), "--timeout", "77", "--eval-every", "5")
    assert result.returncode == 0, result.stderr
    config = (finished / "config.toml").read_text()
    assert "timeout = 77.0" in config and "eval_every = 5" in config


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_runs(tmp_path) -> None:
    out = tmp_path / "run"
    first = start_nosync("train", *SHORT, "--steps", "1000000", "--seed", "7", "--out", str(out))
    try:
        wait_for(lambda: (out / "config.toml").exists(), 120, "the first run to start")
        second = nosync("train", *SHORT, "--out", str(out))
        line = one_error_line(second)
        assert f"{out} is in use by another nosync run (pid {first.pid})" in line
        for other in (["--resume", str(out)], [*SHORT, "--out", str(out / ".")]):
            assert "in use by another nosync run" in one_error_line(nosync("train", *other))
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=180)
    assert first.returncode == 130, err
    assert "seed = 7" in (out / "config.toml").read_text()  # still the first run's folder


# ---- issue 17 item 8: a checkpoint index without the rank files' digests -------------------------
def test_a_checkpoint_index_without_digests_is_refused_not_trained_on(finished) -> None:
    """Without ``sha256`` in ``latest.json`` a flipped rank file could not be told from a good
    one, so the whole index is refused (before, the flipped file was trained on)."""
    index = finished / "checkpoints" / "latest.json"
    latest = json.loads(index.read_text())
    del latest["sha256"]
    index.write_text(json.dumps(latest))
    rank_file = finished / "checkpoints" / latest["dir"] / "rank-00001.pt"
    data = bytearray(rank_file.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the tensor bytes: the file still loads
    rank_file.write_bytes(bytes(data))
    line = one_error_line(nosync("train", "--resume", str(finished)))
    assert f"corrupt checkpoint index {index}" in line
    assert "no sha256 of rank-00000.pt, rank-00001.pt" in line


def test_a_checkpoint_index_missing_one_digest_is_refused(finished) -> None:
    from nosync.run.checkpoint import latest

    index = finished / "checkpoints" / "latest.json"
    record = json.loads(index.read_text())
    del record["sha256"]["rank-00001.pt"]
    index.write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"records no sha256 of rank-00001\.pt, so those files"):
        latest(finished)


# ---- issue 17 item 4: a run that saved no checkpoint leaves a folder a fresh run may use -------


def test_a_folder_with_a_checkpoint_or_a_finished_run_is_refused_with_a_true_hint(
    tmp_path,
) -> None:
    from nosync.launch.launcher import _check_out
    from nosync.run.config import TrainConfig

    latest = {"checkpoints/latest.json": "{}"}
    cases = [
        (left_behind(tmp_path / "a", **latest), "continue it with --resume"),
        (
            left_behind(tmp_path / "b", **latest, **{"summary.json": '{"diverged": {"step": 7}}'}),
            "holds a run that diverged at step 7; pick another --out",
        ),
        (left_behind(tmp_path / "c", **{"summary.json": "{}"}), "holds a finished run"),
    ]
    bare = tmp_path / "d"
    bare.mkdir()
    (bare / "config.toml").write_text("seed = 1\n")  # no lock: not a folder a run made
    cases.append((bare, "already holds a run (a config.toml, no checkpoint); pick another --out"))
    for folder, message in cases:
        with pytest.raises(UserError, match=None) as refused:
            _check_out(TrainConfig(out=str(folder)))
        assert message in str(refused.value), (folder, refused.value)
        if "continue" not in message:
            assert "--resume" not in str(refused.value)
