"""``nosync simulate`` against a real multi-process run; compressed exchange."""

from __future__ import annotations

import pytest
import torch

from nosync.run.metrics import read_metrics

from support.helpers import nosync, summary

SAME = ["--steps", "150", "--period", "25", "--seed", "3", "--quiet"]


def rounds(out) -> list[dict]:
    return [r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "round"]


@pytest.mark.parametrize(
    ("rule", "topology"),
    [("leader", "all"), ("pso", "all"), ("leader", "ring"), ("pso", "random-k")],
)
def test_simulate_agrees_with_a_real_run_of_four_particles(
    tmp_path, rule: str, topology: str
) -> None:
    flags = ["--rule", rule, "--topology", topology, "--init", "different", *SAME]
    sim = nosync("simulate", "--particles", "4", *flags, "--out", str(tmp_path / "s"))
    real = nosync("train", "--workers", "4", *flags, "--out", str(tmp_path / "r"))
    assert sim.returncode == 0 and real.returncode == 0, sim.stderr + real.stderr
    simulated, measured = rounds(tmp_path / "s"), rounds(tmp_path / "r")
    assert [r["leader"] for r in simulated] == [r["leader"] for r in measured]
    if topology != "all":  # local leaders differ between particles
        assert any(len(set(r["leaders"])) > 1 for r in simulated)
    for a, b in zip(simulated, measured, strict=True):
        assert [f is None for f in a["fitness"]] == [f is None for f in b["fitness"]]
        known = [(f, g) for f, g in zip(a["fitness"], b["fitness"], strict=True) if f is not None]
        assert [f for f, _ in known] == pytest.approx([g for _, g in known], rel=1e-5)
        # distances, the last round's too (they arrive with the next round, or at the end)
        assert [d is None for d in a["distance"]] == [d is None for d in b["distance"]]
        near = [(d, e) for d, e in zip(a["distance"], b["distance"], strict=True) if d is not None]
        assert near and [d for d, _ in near] == pytest.approx([e for _, e in near], rel=1e-4)
    w_sim = torch.load(tmp_path / "s" / "final.pt", weights_only=False)["state_dict"]
    w_real = torch.load(tmp_path / "r" / "final.pt", weights_only=False)["state_dict"]
    for key in w_real:
        assert torch.allclose(w_sim[key], w_real[key], atol=1e-5), key
    assert summary(tmp_path / "s")["best_particle"] == summary(tmp_path / "r")["best_particle"]


def test_simulate_a_ring_of_many(tmp_path) -> None:
    result = nosync(
        "simulate",
        "--particles",
        "12",
        "--topology",
        "ring",
        "--steps",
        "60",
        "--period",
        "10",
        "--quiet",
        "--out",
        str(tmp_path / "ring"),
    )
    assert result.returncode == 0, result.stderr
    s = summary(tmp_path / "ring")
    assert s["particles"] == 12 and len(s["worker_test_accuracy"]) == 12
    assert s["test_accuracy"] > 0.5
    first = rounds(tmp_path / "ring")[0]
    assert len(first["leaders"]) == 12 and len(set(first["leaders"])) > 1  # local leaders
