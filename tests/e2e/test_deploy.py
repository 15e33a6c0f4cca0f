"""Beyond one machine: two torchrun "nodes" running one swarm, and the launch templates."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from support.helpers import ROOT

TORCHRUN = str(Path(sys.executable).parent / "torchrun")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_nodes_run_one_swarm(tmp_path: Path) -> None:
    port, out = free_port(), tmp_path / "two-nodes"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def node(rank: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                TORCHRUN,
                "--nnodes",
                "2",
                "--node-rank",
                str(rank),
                "--nproc-per-node",
                "2",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                f"127.0.0.1:{port}",
                "--rdzv-id",
                "two-nodes-test",
                "-m",
                "nosync",
                "train",
                "--steps",
                "100",
                "--period",
                "20",
                "--quiet",
                "--out",
                str(out),
            ],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    nodes = [node(0), node(1)]
    outputs = [n.communicate(timeout=240) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], outputs
    summary = json.loads((out / "summary.json").read_text())
    assert summary["workers"] == 4 and summary["particles"] == 4 and summary["sync_rounds"] == 5
    assert "selected model" in outputs[0][0] + outputs[1][0]  # printed by global rank 0 only
