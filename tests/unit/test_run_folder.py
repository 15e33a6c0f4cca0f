"""What a run folder promises under pressure: a full disk, a torn metrics line, flipped bytes in a
checkpoint, flags given with --resume, and two runs aimed at one folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nosync.errors import UserError
from nosync.launch.runlock import acquire
from nosync.run.checkpoint import WriteFailed, atomic_write_text
from nosync.run.metrics import MetricsLog, read_metrics, truncate_metrics

from support.helpers import left_behind


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


# ---- item 2: one run per folder -----------------------------------------------------------------
def test_the_lock_names_its_holder(tmp_path) -> None:
    held = acquire(tmp_path / "run")
    with pytest.raises(UserError, match=rf"in use by another nosync run \(pid {os.getpid()}\)"):
        acquire(tmp_path / "run")
    held.release()
    acquire(tmp_path / "run").release()  # free again once released


# ---- issue 17 item 4: a run that saved no checkpoint leaves a folder a fresh run may use -------


def test_a_folder_without_a_checkpoint_may_be_reused_and_the_hints_are_true(tmp_path) -> None:
    from nosync.cli import resume_hint
    from nosync.launch.launcher import _check_out
    from nosync.run.checkpoint import check_resumable
    from nosync.run.config import TrainConfig

    failed = left_behind(tmp_path / "failed")
    _check_out(TrainConfig(out=str(failed)))  # a fresh run may use it
    assert "a fresh run may use it again" in resume_hint(failed)
    with pytest.raises(UserError, match="start it afresh without --resume"):
        check_resumable(failed, TrainConfig(out=str(failed)).to_dict())
    # every particle diverged before the first checkpoint: the same
    diverged = left_behind(tmp_path / "nan", **{"summary.json": '{"diverged": {"step": 20}}'})
    _check_out(TrainConfig(out=str(diverged)))


# ---- issue 17 item 12: the benchmarks read run files as weights only ----------------------------
def test_every_torch_load_in_the_benchmarks_is_weights_only() -> None:
    """A run folder may come from anywhere; ``torch.load`` without ``weights_only=True`` would
    run a crafted pickle's code (``gpu_bench.py`` did).  Read from the benchmarks' source, so no
    test imports them."""
    import ast

    root = Path(__file__).resolve().parents[2] / "benchmarks"
    loads = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                flags = {k.arg: ast.unparse(k.value) for k in node.keywords}
                loads.append((path.name, node.lineno, flags.get("weights_only")))
    assert any(name == "gpu_bench.py" for name, _, _ in loads)  # the case that was wrong
    assert all(flag == "True" for _, _, flag in loads), loads
