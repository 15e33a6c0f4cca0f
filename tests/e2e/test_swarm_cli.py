"""The swarm's promises through the real ``nosync train``: neighbourhoods.  (A swarm that
diverged whole: ``test_reliability.py``.)"""

from __future__ import annotations

import pytest

from nosync.run.metrics import read_metrics

from support.helpers import nosync, summary

FLAGS = ["--workers", "4", "--steps", "60", "--period", "10", "--quiet", "--init", "different"]


@pytest.mark.parametrize("topology", ["ring", "random-k"])
def test_neighbourhood_topologies_train_with_local_leaders(tmp_path, topology: str) -> None:
    out = tmp_path / topology
    result = nosync("train", *FLAGS, "--topology", topology, "--neighbors", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rounds = [r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "round"]
    assert len(rounds) == 6
    for r in rounds:
        # rank 0 knows only its neighbourhood: itself and 2 in-neighbours
        assert sum(f is not None for f in r["fitness"]) == 3
        assert [d is not None for d in r["distance"]] == [True, False, False, False]
        assert r["fitness"][r["leader"]] == min(f for f in r["fitness"] if f is not None)
    assert summary(out)["test_accuracy"] > 0.5
