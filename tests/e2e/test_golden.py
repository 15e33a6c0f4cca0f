"""Guards for refactors of the round: seeded runs must end with the same weights.

Two checks, because exact bits do not travel between machines (tests/golden/README.md):

* **Exact** (:func:`test_seeded_runs_end_with_the_recorded_weights`, 11 CLI runs + simulate):
  the sha256 of every rank's model in the final checkpoint and of ``final.pt``, compared bit for
  bit with ``golden/checksums.json``.  The bits depend on the CPU's kernels (vector width,
  vendor, MKL's code path), so checksums are kept per machine :func:`fingerprint` and checked
  where one matches; elsewhere these cases skip, naming the command that records them
  (``NOSYNC_GOLDEN=record pytest tests/e2e/test_golden.py``).
* **Portable** (:func:`test_float64_runs_end_near_the_stored_weights`, 6 runs): the same kind of
  runs in float64 (``NOSYNC_FLOAT64=1``, ``build.float64_if_asked``), whose weights are compared
  with ``golden/float64.npz`` within :data:`TOLERANCE` on any machine.  They cover a leader
  swarm, a sum rule (elastic), single, localsgd, a hybrid particle (2 ranks each) and simulate
  (pso on a ring).  Rounds still send float32 (``--exchange``), so a kernel's last-bit
  difference could round one float32 weight the other way: that is 6e-8 relative, still far
  below a change of behaviour, and the test checks that the weights are float64.

Choosing :data:`TOLERANCE` (measured on this AMD EPYC, AVX2, torch 2.13.0, all six cases):
``ATEN_CPU_CAPABILITY=default`` gives other float32 bits here (other checksums), but its float64
values differ from an unset run's by at most 1.7e-16 (``avx2``: 0, the CPU's own).  A real
change of behaviour moves them by over 4000 times the tolerance: ``--pressure 0.31`` instead
of 0.3 by 0.019 to 0.040 (the four cases with a rule), one step more (``--steps 41``) by 0.0044
to 0.052, the leader rule's pull scaled by 1.01 by 0.012 (leader) and 0.0060 (hybrid).  The
tolerance, 1e-6, leaves room above the kernels' spread for a float32 weight of a round that
rounds the other way (6e-8 relative) and grows a little over the remaining steps.

Every flag that affects the result is given explicitly, so that a change of a default does not
touch the checks.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import platform
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from support.helpers import nosync

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CHECKSUMS = GOLDEN / "checksums.json"
FLOAT64 = GOLDEN / "float64.npz"
RECORD = "NOSYNC_GOLDEN=record pytest tests/e2e/test_golden.py"
RECORD_FLOAT64 = "NOSYNC_GOLDEN=record-float64 pytest tests/e2e/test_golden.py -k float64"
TOLERANCE = 1e-6  # largest |found - stored| of a float64 value (see the docstring)
SAMPLES = 64  # evenly spaced entries kept per tensor (plus its mean and RMS)

COMMON = [
    "--dataset", "digits", "--steps", "40", "--period", "10", "--seed", "5", "--threads", "1",
    "--eval-every", "20", "--checkpoint-every", "0", "--pressure", "0.3", "--quiet",
    "--lr", "0.05", "--momentum", "0.9", "--batch-size", "32", "--schedule", "constant",
    "--exchange", "float32", "--topology", "all", "--stragglers", "wait",
]  # fmt: skip
SWARM = ["--round", "blocking", "--fitness", "held-out"]  # nosync and easgd only (others refuse)


def swarm_flags(flags: list[str]) -> list[str]:
    """:data:`SWARM` for the cases whose strategy has rounds (the others refuse those flags)."""
    baselines = {"single", "ddp", "localsgd"}
    return [] if any(f in baselines for f in flags) else SWARM


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

# (command, flags after COMMON) of the float64 runs
PORTABLE: dict[str, tuple[str, list[str]]] = {
    "leader": ("train", ["--workers", "3", "--rule", "leader", "--init", "different"]),
    "elastic": ("train", ["--workers", "3", "--rule", "elastic", "--init", "different"]),
    "single": ("train", ["--strategy", "single", "--workers", "1"]),
    "localsgd": ("train", ["--strategy", "localsgd", "--workers", "2", "--init", "different"]),
    "hybrid": ("train", ["--workers", "4", "--ranks-per-particle", "2", "--init", "different"]),
    "simulate": (
        "simulate",
        ["--particles", "4", "--rule", "pso", "--topology", "ring", "--init", "different"],
    ),
}  # fmt: skip


# ---- what a run ended with ------------------------------------------------------------------
def final_states(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    """``final.pt`` and every rank's model in the last checkpoint set, if any."""
    states = {"final": torch.load(out / "final.pt", weights_only=True)["state_dict"]}
    sets = sorted((out / "checkpoints").glob("step-*"))
    if sets:
        for rank_file in sorted(sets[-1].glob("rank-*.pt")):
            states[rank_file.stem] = torch.load(rank_file, weights_only=True)["model"]
    return states


def checksum(out: Path) -> str:
    """sha256 over the bytes of :func:`final_states`, in a fixed order."""
    h = hashlib.sha256()
    for state in final_states(out).values():  # final, then rank-0, rank-1, ...
        for key in sorted(state):
            h.update(key.encode())
            h.update(state[key].detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:24]


def sketch(out: Path) -> dict[str, np.ndarray]:
    """Per tensor of every final state: :data:`SAMPLES` evenly spaced entries, then the mean
    and RMS of all of them (so a change anywhere in the tensor shows), as float64; and every
    particle's final fitness (simulate keeps only the best particle's weights, which may never
    have been pulled: the others show in their fitness)."""
    summary = json.loads((out / "summary.json").read_text())
    fitness = summary.get("final_fitness")  # None without rounds (single, localsgd, ddp)
    found = {} if fitness is None else {"fitness": np.asarray(fitness, dtype=np.float64)}
    for part, state in final_states(out).items():
        for key, tensor in state.items():
            flat = tensor.detach().cpu().double().reshape(-1).numpy()
            pick = np.unique(np.linspace(0, len(flat) - 1, SAMPLES).astype(int))
            rms = np.sqrt(np.mean(flat * flat))
            found[f"{part}/{key}"] = np.concatenate([flat[pick], [flat.mean(), rms]])
    return found


# ---- exact checksums, per machine -----------------------------------------------------------
@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's entries of ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        block = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return {}
    pairs = (line.split(":", 1) for line in block.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _cpu() -> str:
    """The CPU's vendor and model name."""
    info = _cpuinfo()
    if not info:
        return platform.processor() or platform.machine()
    return f"{info.get('vendor_id', '?')} {info.get('model name', '?')}"


def _isa() -> str:
    """The widest vector instructions the hardware has (``/proc/cpuinfo``'s flags).  oneDNN picks
    its convolution kernels by the hardware, not by ``ATEN_CPU_CAPABILITY``: on an AVX-512 host
    forced to ``avx2`` the cnn's bits differ from a host that only has AVX2 (measured: the same
    "AMD EPYC" model name, one checksum of twelve apart)."""
    if not _cpuinfo():
        return "?"
    flags = _cpuinfo().get("flags", "").split()
    return "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "other"


# variables that pick MKL's or oneDNN's code path, and so the bits
KERNEL_ENV = ("MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def fingerprint() -> dict[str, str]:
    """What decides a run's bits besides the code: torch, the kernels it picks
    (``get_cpu_capability`` follows ``ATEN_CPU_CAPABILITY``), the CPU, MKL and oneDNN."""
    found = {
        "torch": torch.__version__,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": _cpu(),
        "isa": _isa(),
        "machine": platform.machine(),
        "mkl": str(torch.backends.mkl.is_available()),
        "mkldnn": str(torch.backends.mkldnn.is_available()),
    }
    found.update({k: os.environ[k] for k in KERNEL_ENV if os.environ.get(k)})
    return found


def _entries() -> list[dict[str, Any]]:
    return json.loads(CHECKSUMS.read_text()) if CHECKSUMS.exists() else []


def recorded() -> dict[str, str] | None:
    """This machine's checksums, or None when none were recorded for its fingerprint."""
    mine = fingerprint()
    return next((e["checksums"] for e in _entries() if e["fingerprint"] == mine), None)


@contextmanager
def _locked():
    """Test workers (pytest -n) record into one file: one at a time."""
    GOLDEN.mkdir(exist_ok=True)
    with open(Path(tempfile.gettempdir()) / "nosync-golden.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _record(name: str, found: str) -> None:
    with _locked():
        entries, mine = _entries(), fingerprint()
        entry = next((e for e in entries if e["fingerprint"] == mine), None)
        if entry is None:
            entry = {"fingerprint": mine, "checksums": {}}
            entries.append(entry)
        entry["checksums"][name] = found
        entry["checksums"] = dict(sorted(entry["checksums"].items()))
        CHECKSUMS.write_text(json.dumps(entries, indent=1) + "\n")


def _exact(name: str, out_root: Path, command: str, flags: list[str]) -> None:
    mode = os.environ.get("NOSYNC_GOLDEN", "")
    expected = (recorded() or {}).get(name)
    if expected is None and mode not in ("print", "record"):
        pytest.skip(f"no exact checksum of {name!r} for this machine {fingerprint()}; "
                    f"record them with: {RECORD}")  # fmt: skip
    out = out_root / name
    result = nosync(command, *COMMON, *swarm_flags(flags), *flags, "--out", str(out))
    assert result.returncode == 0, result.stderr
    found = checksum(out)
    if mode == "print":
        print(f'\n    "{name}": "{found}",')
    elif mode == "record":
        _record(name, found)
    else:
        assert found == expected, f"{name}: weights changed ({found} != {expected})"


@pytest.mark.parametrize("name", list(CASES))
def test_seeded_runs_end_with_the_recorded_weights(tmp_path: Path, name: str) -> None:
    _exact(name, tmp_path, "train", CASES[name])


def test_simulate_ends_with_the_recorded_weights(tmp_path: Path) -> None:
    _exact("simulate", tmp_path, "simulate", SIMULATE)


# ---- float64 runs, on any machine -----------------------------------------------------------
def run_float64(name: str, out: Path, *extra: str) -> dict[str, np.ndarray]:
    """The portable case ``name`` (``extra`` flags last), run in float64; its :func:`sketch`."""
    command, flags = PORTABLE[name]
    result = nosync(
        command,
        *COMMON,
        *swarm_flags(flags),
        *flags,
        *extra,
        "--out",
        str(out),
        env={"NOSYNC_FLOAT64": "1"},
    )
    assert result.returncode == 0, result.stderr
    dtypes = {t.dtype for s in final_states(out).values() for t in s.values()}
    assert dtypes <= {torch.float64, torch.int64}, f"{name}: not a float64 run: {dtypes}"
    return sketch(out)


def stored_float64(name: str) -> dict[str, np.ndarray]:
    with np.load(FLOAT64) as saved:
        return {k.split("/", 1)[1]: saved[k] for k in saved.files if k.split("/")[0] == name}


def deviation(found: dict[str, np.ndarray], stored: dict[str, np.ndarray]) -> float:
    """The largest ``|found - stored|`` over every value (inf when the tensors differ or a value
    is NaN)."""
    if found.keys() != stored.keys() or any(found[k].shape != stored[k].shape for k in found):
        return float("inf")
    moved = np.concatenate([np.abs(found[k] - stored[k]) for k in found])
    return float("inf") if np.isnan(moved).any() else float(moved.max(initial=0.0))


def _record_float64(name: str, found: dict[str, np.ndarray]) -> None:
    with _locked():
        keep = {}
        if FLOAT64.exists():
            with np.load(FLOAT64) as saved:
                keep = {k: saved[k] for k in saved.files if k.split("/")[0] != name}
        keep.update({f"{name}/{k}": v for k, v in found.items()})
        with open(FLOAT64, "wb") as f:
            np.savez(f, **dict(sorted(keep.items())))


@pytest.mark.parametrize("name", list(PORTABLE))
def test_float64_runs_end_near_the_stored_weights(tmp_path: Path, name: str) -> None:
    found = run_float64(name, tmp_path / name)
    if os.environ.get("NOSYNC_GOLDEN") == "record-float64":
        _record_float64(name, found)
        return
    stored = stored_float64(name)
    assert stored, f"{name}: no stored float64 weights; record them with: {RECORD_FLOAT64}"
    moved = deviation(found, stored)
    assert moved <= TOLERANCE, (
        f"{name}: float64 weights moved by {moved:.3g} (tolerance {TOLERANCE:g}); if the change "
        f"is intended, record them with: {RECORD_FLOAT64}, then {RECORD}"
    )
