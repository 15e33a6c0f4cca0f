"""Devices on a CPU-only machine: the CPU path, the combined backend's syntax over gloo, bf16
autocast, compiled models, skipped optimizer steps and the thread count.  The CUDA path itself
is ``tests/e2e/test_gpu.py`` (``pytest -m gpu``, skipped here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from support.distributed import run_ranks


# ---- the combined backend's syntax ("cpu:gloo") through a whole training run --------------------
def _train_twice(rank: int, world: int, tmp: str) -> Any:
    """A 2-rank swarm on ``cpu:gloo``: stop votes, round traffic, the monitor's gathers, object
    collectives and checkpoint barriers; once in bf16, once in fp32."""
    import torch.distributed as dist

    from nosync.core.placement import place
    from nosync.run.config import resolve
    from nosync.run.train import train

    assert dist.get_backend() == "cpu:gloo"
    finals = {}
    for precision in ("bf16", "fp32"):
        flags = {
            "workers": world, "dataset": "digits", "steps": 20, "period": 5, "eval_every": 10,
            "threads": 1, "quiet": True, "precision": precision, "out": f"{tmp}/{precision}",
        }  # fmt: skip
        finals[precision] = train(resolve({}, flags), place(1))
    return finals


def test_combined_backend_syntax_runs_a_swarm_and_bf16_changes_the_weights(tmp_path: Path) -> None:
    finals = run_ranks(_train_twice, 2, timeout=120, _backend="cpu:gloo", tmp=str(tmp_path))
    bf16, fp32 = finals[0]["bf16"], finals[0]["fp32"]
    assert bf16["backend"] == "cpu:gloo" and bf16["device"] == "cpu"
    assert (bf16["precision"], fp32["precision"]) == ("bf16", "fp32")
    assert bf16["sync_rounds"] == fp32["sync_rounds"] == 4
    weights = [
        torch.load(tmp_path / p / "final.pt", weights_only=False)["state_dict"]
        for p in ("bf16", "fp32")
    ]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
