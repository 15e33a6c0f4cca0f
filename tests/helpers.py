"""Running the real command line in a subprocess, with a timeout so a hang fails."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def nosync(
    *args: str, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m nosync ARGS``; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "nosync", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text())


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    """Write ``array`` (uint8) as an IDX file, the format of MNIST and Fashion-MNIST."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def tiny_image_dataset(folder: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """A learnable 10-class, 28x28 IDX dataset: each class lights up its own image band."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 * label : 2 * label + 3, :] += 150
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder
