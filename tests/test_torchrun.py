"""``nosync train`` under an external torchrun: the shared preflight, the attempt every rank
agrees on, and elastic restarts across two torchrun nodes after a kill -9."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch.distributed as dist

from nosync import attempt

from helpers import ROOT, summary

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))
SHORT = ["--workers", "2", "--steps", "40", "--period", "10", "--quiet"]


def torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    assert TORCHRUN, "torchrun is installed with torch"
    return subprocess.run(
        [TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "nosync", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "LOGLEVEL": "ERROR"},
    )


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_under_torchrun_rank_0_preflights_for_every_rank(tmp_path) -> None:
    out = tmp_path / "run"
    first = torchrun("train", *SHORT, "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert summary(out)["steps"] == 40
    before = snapshot(out)
    again = torchrun("train", *SHORT, "--seed", "3", "--out", str(out))
    assert again.returncode != 0
    refusals = [line for line in again.stderr.splitlines() if line.startswith("nosync: error:")]
    assert refusals == [
        f"nosync: error: out: {out} already holds a run; continue it with --resume {out} or "
        "pick another --out"
    ], again.stderr
    assert snapshot(out) == before  # nothing was written


# ---- the attempt every rank agrees on ------------------------------------------------------------
def _agree_all(port: int, world: int, late_rank_0: bool) -> list[attempt.Attempt]:
    found: list[attempt.Attempt | None] = [None] * world

    def rank(r: int) -> None:
        client = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=30))
        found[r] = attempt.agree(client, r, world, timeout=30)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(world)]
    for t in threads[1:]:
        t.start()
    if late_rank_0:
        time.sleep(0.5)  # the other ranks first see the previous attempt's generation
    threads[0].start()
    for t in threads:
        t.join(timeout=60)
    assert all(f is not None for f in found)
    return found  # type: ignore[return-value]


def test_every_rank_agrees_on_the_attempt_whatever_its_node_counted(monkeypatch) -> None:
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")  # a node that only re-joined
    server = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    first = _agree_all(server.port, 3, late_rank_0=False)
    assert first == [attempt.Attempt(1, 0)] * 3
    second = _agree_all(server.port, 3, late_rank_0=True)  # stale values in the store
    assert second == [attempt.Attempt(2, 1)] * 3
    assert attempt.restarts() == 1


def test_agreement_waits_no_longer_than_the_timeout() -> None:
    server = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    with pytest.raises(TimeoutError, match="timed out"):
        attempt.agree(server, 0, 2, timeout=1)  # rank 1 never comes


# ---- two nodes, one worker killed ---------------------------------------------------------------
def _bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # its helper, nosync_run
    path = ROOT / "benchmarks" / "two_node_kill.py"
    spec = importlib.util.spec_from_file_location("two_node_kill", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_torchrun_nodes_recover_from_a_killed_worker(tmp_path) -> None:
    """The benchmark's cycle, twice (benchmarks/two_node_kill.py runs it ten times)."""
    bench = _bench()
    outcomes = [
        bench.one_try(
            tmp_path / f"try-{i}", steps=200, timeout=30, hang_after=200, log=tmp_path / f"t{i}"
        )
        for i in range(2)
    ]
    logs = "\n".join(p.read_text()[-2000:] for p in sorted(tmp_path.glob("*.log")))
    assert outcomes == ["recovered", "recovered"], logs
