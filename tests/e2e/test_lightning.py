"""The Lightning integration: a Trainer on 2 CPU processes, each one particle of a swarm."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support.helpers import ROOT

pytest.importorskip("lightning")


def test_the_lightning_example_ends_with_one_model_on_both_ranks(tmp_path) -> None:
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "lightning_swarm.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["checksum"] == ranks[1]["checksum"]  # finalize: the best particle everywhere
    rounds = ranks[0]["rounds"]
    assert [r["step"] for r in rounds] == [10, 20, 30, 40, 50, 60]
    # no gradient all-reduce: the particles trained apart between rounds
    assert all(r["fitness"][0] != r["fitness"][1] for r in rounds)
    assert ranks[0]["best_particle"] == ranks[1]["best_particle"] is not None
    best = ranks[0]["best_particle"]  # and the example says so, beside Lightning's banners
    assert "6 rounds; fitness at the end" in result.stdout, result.stdout[-2000:]
    assert f"every rank now holds particle {best}" in result.stdout
    assert "identical" not in result.stderr  # the example gives each rank its own data order
