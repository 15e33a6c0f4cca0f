"""What a run writes: ``metrics.jsonl`` (one JSON object a line) and ``summary.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write_text

SUMMARY_KEYS = (
    "strategy",
    "rule",
    "workers",
    "particles",
    "test_accuracy",
    "worker_test_accuracy",
    "ensemble_test_accuracy",
    "wall_seconds",
    "train_samples_per_second",
    "sync_rounds",
    "comm_bytes",
    "comm_seconds",
    "leaders",
    "restarts",
)


def clean_json(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


class MetricsLog:
    """Appends records to ``metrics.jsonl``, flushed line by line so a crash loses nothing."""

    def __init__(self, path: str | Path, append: bool = False) -> None:
        self.path = Path(path)
        self._handle = open(self.path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(clean_json(record)) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def truncate_metrics(path: str | Path, step: int) -> None:
    """After a resume from ``step``: drop what the interrupted run logged past it."""
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= step and r["type"] != "final"]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def write_summary(path: str | Path, summary: dict[str, Any]) -> None:
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing:
        raise ValueError(f"summary lacks {missing}")
    atomic_write_text(path, json.dumps(clean_json(summary), indent=2) + "\n")
