"""Beyond one machine: two torchrun "nodes" running one swarm, and the launch templates."""

from __future__ import annotations

import os
import shlex
import subprocess

import yaml
from torch.distributed.run import get_args_parser

from nosync.cli import main

from support.helpers import ROOT


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


def test_kubernetes_pytorchjob_parses_and_runs_the_same_entry_point(capsys) -> None:
    job = yaml.safe_load((ROOT / "deploy" / "pytorchjob.yaml").read_text())
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    spec = job["spec"]
    assert spec["elasticPolicy"]["rdzvBackend"] == "c10d"
    worker = spec["pytorchReplicaSpecs"]["Worker"]
    container = worker["template"]["spec"]["containers"][0]
    assert container["name"] == "pytorch"  # the operator finds the container by this name
    assert container["command"] == ["torchrun"]
    torchrun_args, nosync_args = split_command(container["args"])
    config = check_command(torchrun_args, nosync_args, capsys)
    workers = worker["replicas"] * int(spec["nprocPerNode"])
    assert f"workers = {workers}" in config
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    out = nosync_args[nosync_args.index("--out") + 1]
    assert any(out.startswith(m) for m in mounts)  # checkpoints on the shared volume


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
