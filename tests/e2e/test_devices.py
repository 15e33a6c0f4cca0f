"""Devices on a CPU-only machine: the CPU path, the combined backend's syntax over gloo, bf16
autocast, compiled models, skipped optimizer steps and the thread count.  The CUDA path itself
is ``tests/e2e/test_gpu.py`` (``pytest -m gpu``, skipped here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from support.helpers import nosync, summary

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


# ---- rounds stay aligned when a GradScaler skips optimizer steps ---------------------------------
class SkippingScaler:
    """A GradScaler's interface that skips ``optimizer.step()`` at the given iterations."""

    def __init__(self, skip: set[int]) -> None:
        self.skip, self.iteration = skip, 0

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.iteration += 1
        if self.iteration not in self.skip:
            optimizer.step()

    def update(self) -> None:
        pass


def test_user_omp_num_threads_wins_over_the_default(tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = ["--strategy", "single", "--dataset", "digits", "--steps", "5", "--quiet"]
    result = nosync("train", *flags, "--out", str(out), env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert summary(out)["threads"] == 1
