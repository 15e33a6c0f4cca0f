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

from nosync.checkpoint import WriteFailed, atomic_write_text
from nosync.errors import UserError
from nosync.metrics import MetricsLog, read_metrics, truncate_metrics
from nosync.runlock import acquire

from helpers import checkpoint_step, nosync, start_nosync, wait_for

SHORT = ["--workers", "2", "--steps", "40", "--period", "10", "--quiet"]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def finished_once(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    result = nosync("train", *SHORT, "--checkpoint-every", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def finished(finished_once, tmp_path) -> Path:
    """A finished two-rank run with a checkpoint at every round (a copy per test)."""
    return Path(shutil.copytree(finished_once, tmp_path / "run"))


# ---- item 1: a full disk and a torn metrics line -----------------------------------------------
def test_a_failed_metrics_write_names_the_file() -> None:
    log = MetricsLog("/dev/full")  # every write: ENOSPC
    with pytest.raises(WriteFailed, match="cannot write /dev/full: No space left on device"):
        log.write({"type": "eval", "step": 1})
    log.close()


def test_a_failed_atomic_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch) -> None:
    target = tmp_path / "latest.json"
    target.write_text("old\n")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteFailed, match=f"cannot write {target}: No space left on device"):
        atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_truncate_drops_a_torn_last_line_but_not_a_broken_middle(tmp_path) -> None:
    path = tmp_path / "metrics.jsonl"
    records = [{"type": "eval", "step": s} for s in (10, 20, 30)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"type": "eval", "st')
    truncate_metrics(path, 20)
    assert read_metrics(path) == records[:2]
    path.write_text('{"type": "eval", "step": 10}\n{"ty\n{"type": "eval", "step": 20}\n')
    with pytest.raises(UserError, match="line 2 is not a JSON record"):
        truncate_metrics(path, 20)


def test_truncate_drops_rounds_the_checkpoint_had_not_logged(tmp_path) -> None:
    """A round is logged steps after its own step (its distances come with the next round):
    rounds past the checkpoint's count go even when their step is before the checkpoint, or
    the resumed run would log them twice."""
    path = tmp_path / "metrics.jsonl"
    records = [{"type": "round", "round": n, "step": 10 * n} for n in (1, 2)]
    records += [{"type": "eval", "step": 20}, {"type": "eval", "step": 30}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    truncate_metrics(path, 20, rounds=1)
    assert read_metrics(path) == [records[0], records[2]]


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


# ---- item 2: one run per folder -----------------------------------------------------------------
def test_the_lock_names_its_holder(tmp_path) -> None:
    held = acquire(tmp_path / "run")
    with pytest.raises(UserError, match=rf"in use by another nosync run \(pid {os.getpid()}\)"):
        acquire(tmp_path / "run")
    held.release()
    acquire(tmp_path / "run").release()  # free again once released


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
    from nosync.checkpoint import latest

    index = finished / "checkpoints" / "latest.json"
    record = json.loads(index.read_text())
    del record["sha256"]["rank-00001.pt"]
    index.write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"records no sha256 of rank-00001\.pt, so those files"):
        latest(finished)


# ---- issue 17 item 12: the GPU benchmark reads run files as weights only -------------------------
def _gpu_bench():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_bench.py"
    spec = importlib.util.spec_from_file_location("gpu_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_benchmark_loads_run_files_as_weights_only(finished, tmp_path) -> None:
    """``consistent`` reads a real run's ``final.pt`` and rank files (tensors and plain dicts,
    which ``weights_only=True`` accepts), and refuses a pickle that would run code."""
    import pickle

    import torch

    bench = _gpu_bench()
    assert bench.consistent(finished) in (True, False)  # loads; async rounds need not agree
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"state_dict": Payload()}, finished / "final.pt")
    with pytest.raises(pickle.UnpicklingError):
        bench.consistent(finished)
    assert not marker.exists()  # the pickle's code never ran


# ---- issue 17 item 4: a run that saved no checkpoint leaves a folder a fresh run may use -------
def _left_behind(folder: Path, **files: str) -> Path:
    """What a run that stopped before its first checkpoint leaves (its lock file, config.toml
    and metrics.jsonl), plus ``files``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {
        ".lock": "",
        "config.toml": "seed = 1\n",
        "metrics.jsonl": "",
        **files,
    }.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_a_folder_without_a_checkpoint_may_be_reused_and_the_hints_are_true(tmp_path) -> None:
    from nosync.checkpoint import check_resumable
    from nosync.cli import resume_hint
    from nosync.config import TrainConfig
    from nosync.launch import _check_out

    failed = _left_behind(tmp_path / "failed")
    _check_out(TrainConfig(out=str(failed)))  # a fresh run may use it
    assert "a fresh run may use it again" in resume_hint(failed)
    with pytest.raises(UserError, match="start it afresh without --resume"):
        check_resumable(failed, TrainConfig(out=str(failed)).to_dict())
    # every particle diverged before the first checkpoint: the same
    diverged = _left_behind(tmp_path / "nan", **{"summary.json": '{"diverged": {"step": 20}}'})
    _check_out(TrainConfig(out=str(diverged)))


def test_a_folder_with_a_checkpoint_or_a_finished_run_is_refused_with_a_true_hint(
    tmp_path,
) -> None:
    from nosync.config import TrainConfig
    from nosync.launch import _check_out

    latest = {"checkpoints/latest.json": "{}"}
    cases = [
        (_left_behind(tmp_path / "a", **latest), "continue it with --resume"),
        (
            _left_behind(tmp_path / "b", **latest, **{"summary.json": '{"diverged": {"step": 7}}'}),
            "holds a run that diverged at step 7; pick another --out",
        ),
        (_left_behind(tmp_path / "c", **{"summary.json": "{}"}), "holds a finished run"),
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
