"""The CUDA path: ``pytest -m gpu`` on a machine with a GPU (``benchmarks/gpu_check.sh`` runs
it); every test here skips without CUDA.  Tiny runs on digits: they check that training works
on the device and ends consistent, not how fast (``benchmarks/gpu_bench.py`` measures that)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from support.helpers import nosync, summary

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
TINY = ["--dataset", "digits", "--steps", "40", "--period", "10", "--quiet", "--device", "cuda"]


def run(tmp_path: Path, *flags: str) -> tuple[dict, str]:
    out = tmp_path / "run"
    result = nosync("train", *TINY, *flags, "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    return summary(out), result.stderr


def rank_models(out: Path) -> list[dict[str, torch.Tensor]]:
    """Every rank's model in the last checkpoint set (taken at the last step)."""
    last = sorted((out / "checkpoints").glob("step-*"))[-1]
    return [torch.load(f, weights_only=False)["model"] for f in sorted(last.glob("rank-*.pt"))]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def test_single_on_cuda_reports_the_gpu(tmp_path: Path) -> None:
    s, _ = run(tmp_path, "--strategy", "single")
    assert s["device"].startswith("cuda") and s["precision"] == "fp32"
    assert s["device_name"] and s["peak_memory_bytes"] > 0 and s["test_accuracy"] > 0.5


def test_bf16_and_compile_on_cuda(tmp_path: Path) -> None:
    s, _ = run(
        tmp_path, "--strategy", "single", "--model", "cnn", "--precision", "bf16", "--compile"
    )
    assert s["precision"] == "bf16" and s["compile"] and s["test_accuracy"] > 0.3


def test_two_workers_on_the_gpus_end_consistent(tmp_path: Path) -> None:
    """Two particles (sharing one GPU over gloo, or one GPU each over NCCL); with pressure 1 at
    the last step every rank holds the leader's weights, and final.pt is that model."""
    s, stderr = run(tmp_path, "--workers", "2", "--pressure", "1")
    shared = torch.cuda.device_count() < 2
    assert ("share 1 GPU" in stderr) == shared
    assert s["backend"] == ("gloo" if shared else "cpu:gloo,cuda:nccl")
    models = rank_models(tmp_path / "run")
    final = torch.load(tmp_path / "run" / "final.pt", weights_only=False)["state_dict"]
    assert len(models) == 2 and all(same(m, final) for m in models)


def test_ring_and_ddp_particles_on_the_gpus(tmp_path: Path) -> None:
    """Point-to-point messages (ring) and DDP inside a particle, on CUDA tensors."""
    s, _ = run(tmp_path, "--workers", "4", "--ranks-per-particle", "2", "--topology", "ring")
    assert s["particles"] == 2 and s["sync_rounds"] == 4
