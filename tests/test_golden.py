"""Bit-for-bit guard for refactors of the round: seeded runs must end with the same weights.

The checksums below were recorded with the code *before* the swarm redesign (issue 8) and every
flag that affects the result is given explicitly, so that a change of a default does not touch
them.  A run's checksum covers every rank's model in the final checkpoint (every particle, before
``finalize``) and ``final.pt`` (the selected model).

They hold for this machine's CPU build of torch with one thread per rank.  On another CPU or
torch build, regenerate them with the code you trust:
``NOSYNC_GOLDEN=print pytest tests/test_golden.py -s`` prints the table to paste here.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from helpers import nosync

COMMON = [
    "--dataset", "digits", "--steps", "40", "--period", "10", "--seed", "5", "--threads", "1",
    "--eval-every", "20", "--checkpoint-every", "0", "--pressure", "0.3", "--quiet",
    "--lr", "0.05", "--momentum", "0.9", "--batch-size", "32", "--schedule", "constant",
    "--exchange", "float32", "--topology", "all", "--stragglers", "wait",
]  # fmt: skip
SWARM = ["--round", "blocking", "--fitness", "held-out"]  # nosync and easgd only (others refuse)

CASES: dict[str, list[str]] = {
    "leader": ["--workers", "3", "--rule", "leader"],
    "pso-different-init": ["--workers", "3", "--rule", "pso", "--init", "different"],
    "elastic-linear": ["--workers", "3", "--rule", "elastic", "--schedule", "linear"],
    "none": ["--workers", "2", "--rule", "none", "--init", "different"],
    "leader-ring": [
        "--workers", "4", "--rule", "leader", "--topology", "ring", "--init", "different",
    ],
    "pso-random-k-bf16": [
        "--workers", "4", "--rule", "pso", "--topology", "random-k", "--neighbors", "2",
        "--exchange", "bfloat16", "--init", "different",
    ],
    "hybrid-cnn": [
        "--workers", "4", "--ranks-per-particle", "2", "--model", "cnn", "--init", "different",
    ],
    "single": ["--strategy", "single", "--workers", "1"],
    "ddp": ["--strategy", "ddp", "--workers", "2"],
    "localsgd": ["--strategy", "localsgd", "--workers", "2", "--init", "different"],
    "easgd": ["--strategy", "easgd", "--workers", "3", "--init", "different"],
}  # fmt: skip
SIMULATE = ["--particles", "4", "--rule", "leader", "--init", "different"]

GOLDEN: dict[str, str] = {
    "leader": "c8aad972f157bee340aa5889",
    "pso-different-init": "6f3659cf60ecc91adb29ce6a",
    "elastic-linear": "6623217fc26079247f6f9a48",
    "none": "61a1cbc5708a5657f74553a0",
    "leader-ring": "9a9699340a5727b593c1fc2e",
    "pso-random-k-bf16": "b448d8547b7eec1f54cbb716",
    "hybrid-cnn": "8b46ea8e6b2935c16650f80f",
    "single": "185fe769b8de47ba393bd97a",
    "ddp": "5a0a2de1e6e336f35df7872f",
    "localsgd": "66db1edf1a77bfc00680987e",
    "easgd": "8740af7d8c8bae1e996a0c20",
    "simulate": "e54fa8d036493d7d0ca268fb",
}


def _digest(state: dict[str, torch.Tensor], h: hashlib._Hash) -> None:
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().contiguous().cpu().numpy().tobytes())


def checksum(out: Path) -> str:
    """sha256 over ``final.pt`` and every rank file of the last checkpoint set, if any."""
    h = hashlib.sha256()
    _digest(torch.load(out / "final.pt", weights_only=True)["state_dict"], h)
    sets = sorted((out / "checkpoints").glob("step-*"))
    if sets:
        for rank_file in sorted(sets[-1].glob("rank-*.pt")):
            _digest(torch.load(rank_file, weights_only=True)["model"], h)
    return h.hexdigest()[:24]


def _check(name: str, out: Path) -> None:
    found = checksum(out)
    if os.environ.get("NOSYNC_GOLDEN") == "print":
        print(f'\n    "{name}": "{found}",')
        return
    assert found == GOLDEN[name], f"{name}: weights changed ({found} != {GOLDEN[name]})"


@pytest.mark.parametrize("name", list(CASES))
def test_seeded_runs_end_with_the_recorded_weights(tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    swarm = SWARM if name not in ("single", "ddp", "localsgd") else []
    result = nosync("train", *COMMON, *swarm, *CASES[name], "--out", str(out))
    assert result.returncode == 0, result.stderr
    _check(name, out)


def test_simulate_ends_with_the_recorded_weights(tmp_path: Path) -> None:
    out = tmp_path / "simulate"
    result = nosync("simulate", *COMMON, *SWARM, *SIMULATE, "--out", str(out))
    assert result.returncode == 0, result.stderr
    _check("simulate", out)
