"""Beyond one machine: two torchrun "nodes" running one swarm, and the launch templates."""

from __future__ import annotations

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
