"""The run folder's files as :class:`~nosync.run.outputs.Outputs` writes them (for ``train``
and ``simulate`` alike): config, metrics records, the final model and the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from nosync.run.config import resolve
from nosync.run.metrics import SUMMARY_KEYS, read_metrics
from nosync.run.outputs import Outputs


def _outputs(tmp_path: Path) -> Outputs:
    cfg = resolve({}, {"dataset": "digits", "out": str(tmp_path / "run"), "steps": 4})
    return Outputs(cfg, total=4)


def test_a_finished_run_leaves_its_records_model_and_summary(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path)
    run = outputs.out
    run.mkdir()
    (run / "summary.json").write_text("{}")  # a reused folder's old summary
    outputs.open()
    assert not (run / "summary.json").exists()
    assert "strategy" in (run / "config.toml").read_text()
    outputs.write({"type": "eval", "step": 4})
    model = nn.Linear(2, 2)
    summary = dict.fromkeys(SUMMARY_KEYS, 0) | {"test_accuracy": 0.5, "steps": 4}
    outputs.finished(summary, model)
    assert read_metrics(run / "metrics.jsonl") == [
        {"type": "eval", "step": 4},
        {"type": "final", "test_accuracy": 0.5, "steps": 4},
    ]
    saved = torch.load(run / "final.pt", weights_only=True)
    assert torch.equal(saved["state_dict"]["weight"], model.weight.detach())
    assert saved["config"]["steps"] == 4 and (run / "final.safetensors").exists()
    assert json.loads((run / "summary.json").read_text()) == summary


def test_a_diverged_run_leaves_no_model_and_a_summary_needs_its_keys(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path)
    outputs.open()
    with pytest.raises(ValueError, match="summary lacks"):
        outputs.diverged({"strategy": "nosync"}, 3)
    outputs = _outputs(tmp_path)
    outputs.open()
    outputs.diverged({"strategy": "nosync", "diverged": {"step": 3}}, 3, required=["strategy"])
    run = outputs.out
    assert read_metrics(run / "metrics.jsonl") == [{"type": "diverged", "step": 3}]
    assert not (run / "final.pt").exists()
    assert json.loads((run / "summary.json").read_text())["diverged"] == {"step": 3}
