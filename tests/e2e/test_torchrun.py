"""``nosync train`` under an external torchrun: the shared preflight, the attempt every rank
agrees on, and elastic restarts across two torchrun nodes after a kill -9."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from support.helpers import ROOT, summary

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


# ---- two nodes, one worker killed ---------------------------------------------------------------
def test_two_torchrun_nodes_recover_from_a_killed_worker(tmp_path) -> None:
    """The benchmark's cycle, twice (benchmarks/two_node_kill.py runs it ten times), run as a
    user runs the benchmark: its command line, its raw file."""
    import json

    raw = tmp_path / "two_node_kill.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "two_node_kill.py"), "--tries", "2"]
    command += ["--steps", "200", "--timeout", "30", "--hang-after", "200"]
    command += ["--keep", str(tmp_path / "runs"), "--out", str(raw)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    logs = "\n".join(p.read_text()[-2000:] for p in sorted((tmp_path / "runs").glob("*.log")))
    assert result.returncode == 0, result.stdout + result.stderr + logs
    tries = json.loads(raw.read_text())["tries"]
    assert [t["outcome"] for t in tries] == ["recovered", "recovered"], logs
