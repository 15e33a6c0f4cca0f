"""Beyond one machine: two torchrun "nodes" running one swarm, and the launch templates."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

from torch.distributed.run import get_args_parser

from nosync.cli import main

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


def split_command(args: list[str]) -> tuple[list[str], list[str]]:
    """torchrun's own arguments, and the arguments after ``-m nosync``."""
    at = args.index("-m")
    assert args[at + 1] == "nosync"
    return args[:at], args[at + 2 :]


def check_command(torchrun_args: list[str], nosync_args: list[str], capsys) -> str:
    parsed = get_args_parser().parse_args([*torchrun_args, "-m", "nosync", *nosync_args])
    assert parsed.module and parsed.training_script == "nosync"
    assert main([*nosync_args, "--print-config"]) == 0
    return capsys.readouterr().out


def test_slurm_script_parses_and_runs_the_same_entry_point(capsys) -> None:
    script = ROOT / "deploy" / "slurm.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    stub = (
        'srun() { printf "%s\\0" "$@"; }; scontrol() { printf "node-a\\nnode-b\\n"; }; '
        f"source {shlex.quote(str(script))} --rule pso"
    )
    env = {
        **os.environ,
        "SLURM_JOB_NODELIST": "node-[a-b]",
        "SLURM_NNODES": "2",
        "SLURM_CPUS_PER_TASK": "8",
        "SLURM_JOB_ID": "42",
    }
    result = subprocess.run(["bash", "-c", stub], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    args = result.stdout.split("\0")[:-1]
    assert args[0] == "torchrun"
    torchrun_args, nosync_args = split_command(args[1:])
    assert "node-a:29400" in torchrun_args
    config = check_command(torchrun_args, nosync_args, capsys)
    assert "workers = 4" in config and 'rule = "pso"' in config and 'model = "cnn"' in config
