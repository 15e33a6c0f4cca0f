"""Shared fixtures: runs that several tests read, made once per session.

Under ``pytest -n`` every worker has its own session, so a session fixture alone would make its
run once per worker that needs it: :func:`made_once` makes it once for all of them.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from support.helpers import (
    alive,
    checkpoint_step,
    descendants,
    nosync,
    start_nosync,
    wait_for,
    worker_pids,
)

T = TypeVar("T")


def made_once(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], T]) -> T:
    """``make(folder)`` once per test session, even under ``pytest -n``: the first worker that
    asks makes it under a file lock, the others wait for it and read its result (pickled beside
    the folder).  A failed ``make`` leaves no result, so the next to ask tries again (and fails
    the same way).  The folder is shared: a test that spoils it works on a copy."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # pytest-N/, shared by the session's workers (popen-gwK/ each)
    folder, done = base / f"shared-{name}", base / f"shared-{name}.pickle"
    with open(base / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return pickle.loads(done.read_bytes())
        shutil.rmtree(folder, ignore_errors=True)  # a failed attempt's
        folder.mkdir()
        result = make(folder)
        done.write_bytes(pickle.dumps(result))
        return result


# The README's default swarm: `nosync train --workers 4 --dataset digits` (all defaults).
DEFAULT_SWARM = ["--workers", "4", "--dataset", "digits"]


@pytest.fixture(scope="session")
def default_swarm(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    def make(folder: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
        result = nosync("train", *DEFAULT_SWARM, "--out", str(folder / "swarm"))
        assert result.returncode == 0, result.stderr
        return folder / "swarm", result

    return made_once(tmp_path_factory, "default_swarm", make)


# A finished two-rank run with a checkpoint at every round (steps 10, 20, 30, 40).
FINISHED = ["--workers", "2", "--steps", "40", "--period", "10", "--quiet"]


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only: a test that spoils it works on a copy (``shutil.copytree``)."""

    def make(folder: Path) -> Path:
        flags = [*FINISHED, "--checkpoint-every", "1", "--out", str(folder / "run")]
        result = nosync("train", *flags)
        assert result.returncode == 0, result.stderr
        return folder / "run"

    return made_once(tmp_path_factory, "finished_run", make)


# Long enough to interrupt (800 steps on digits, a checkpoint every 3 rounds of 10 steps), async
# rounds landing 4 steps late, and pso (velocity and personal best must survive the resume).
CTRL_C = [
    "--workers", "2", "--steps", "800", "--period", "10", "--checkpoint-every", "3",
    "--quiet", "--round", "async", "--delay", "4", "--rule", "pso", "--threads", "1",
]  # fmt: skip


@dataclass
class Interrupted:
    """A run stopped by Ctrl+C after its first checkpoint, then resumed to its end; and the same
    run uninterrupted (``whole``)."""

    cut: Path
    whole: Path
    stopped: subprocess.CompletedProcess[str]  # the Ctrl+C'd run (stdout, stderr, exit status)
    workers: list[int]  # its ranks' pids
    lingering: list[int]  # its descendants still alive 10 s after it exited
    stopped_at: int | None  # the step of the checkpoint it left
    summary_after_stop: bool  # whether it wrote summary.json
    resumed: subprocess.CompletedProcess[str]
    finished_whole: subprocess.CompletedProcess[str]


@pytest.fixture(scope="session")
def ctrl_c_resumed(tmp_path_factory: pytest.TempPathFactory) -> Interrupted:
    """One Ctrl+C'd, resumed and uninterrupted run set that the reliability tests (exit status,
    children, hint) and the async tests (a round in flight at the checkpoint) both read."""
    return made_once(tmp_path_factory, "ctrl_c_resumed", _ctrl_c_resumed)


def _ctrl_c_resumed(root: Path) -> Interrupted:
    cut = root / "cut"
    run = start_nosync("train", *CTRL_C, "--out", str(cut))
    wait_for(lambda: checkpoint_step(cut), 120, "a first checkpoint")
    workers = worker_pids(run.pid)
    everything = descendants(run.pid)  # ranks, their fork server, the resource tracker
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in everything) and time.monotonic() < deadline:
        time.sleep(0.1)
    lingering = [p for p in everything if alive(p)]
    stopped_at = checkpoint_step(cut)
    summary_after_stop = (cut / "summary.json").exists()
    resumed = nosync("train", "--resume", str(cut))
    whole = nosync("train", *CTRL_C, "--out", str(root / "whole"))
    stopped = subprocess.CompletedProcess(run.args, run.returncode, out, err)
    return Interrupted(
        cut, root / "whole", stopped, workers, lingering, stopped_at, summary_after_stop,
        resumed, whole,
    )  # fmt: skip
