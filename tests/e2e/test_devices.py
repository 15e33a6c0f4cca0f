"""Devices on a CPU-only machine: the CPU path, the combined backend's syntax over gloo, bf16
autocast, compiled models, skipped optimizer steps and the thread count.  The CUDA path itself
is ``tests/e2e/test_gpu.py`` (``pytest -m gpu``, skipped here)."""

from __future__ import annotations

from pathlib import Path

from support.helpers import nosync, summary


def test_user_omp_num_threads_wins_over_the_default(tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = ["--strategy", "single", "--dataset", "digits", "--steps", "5", "--quiet"]
    result = nosync("train", *flags, "--out", str(out), env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert summary(out)["threads"] == 1
