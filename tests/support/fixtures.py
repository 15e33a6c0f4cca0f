"""Shared fixtures: runs that several tests read, made once per session."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from support.helpers import nosync

# The README's default swarm: `nosync train --workers 4 --dataset digits` (all defaults).
DEFAULT_SWARM = ["--workers", "4", "--dataset", "digits"]


@pytest.fixture(scope="session")
def default_swarm(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("runs") / "swarm"
    result = nosync("train", *DEFAULT_SWARM, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, result
