"""What a run writes: ``metrics.jsonl`` (one JSON object a line) and ``summary.json``.

Each record goes to the file in one ``write`` call, unbuffered: a failure (a full disk) raises
at once, naming the file, and leaves at most one torn line at the end, which a resume drops.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nosync.errors import UserError
from nosync.files import atomic_write_text, write_failed

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
    """Appends records to ``metrics.jsonl``, each in one unbuffered write so a crash loses
    nothing and nothing is left in a buffer to fail again at exit."""

    def __init__(self, path: str | Path, append: bool = False) -> None:
        self.path = Path(path)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        try:
            self._fd: int | None = os.open(self.path, flags, 0o666)
        except OSError as err:
            raise write_failed(self.path, err) from None

    def write(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        data = (json.dumps(clean_json(record)) + "\n").encode()
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as err:
            raise write_failed(self.path, err) from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_metrics(path: str | Path, torn_tail: bool = False) -> list[dict[str, Any]]:
    """The records of ``path``; with ``torn_tail``, unparsable lines at the end (a write cut
    short by a full disk or a kill) are dropped instead of failing."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = [line for line in handle if line.strip()]
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            if torn_tail and all(not _parses(rest) for rest in lines[number:]):
                break
            raise UserError(f"metrics: {path} line {number} is not a JSON record") from None
        records.append(record)
    return records


def _parses(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def truncate_metrics(path: str | Path, step: int, rounds: int | None = None) -> None:
    """After a resume from ``step``: drop what the interrupted run logged past it, and a torn
    last line.  A round is logged when its record is final, which can be steps after the
    round's own ``step`` (an async pull, the distances that come with the next round): with
    ``rounds``, the rounds the checkpoint had logged, the later ones go too."""
    kept = [
        r
        for r in read_metrics(path, torn_tail=True)
        if r.get("step", 0) <= step
        and r.get("type") != "final"
        and not (rounds is not None and r.get("type") == "round" and r["round"] > rounds)
    ]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def write_summary(
    path: str | Path, summary: dict[str, Any], required: Iterable[str] = SUMMARY_KEYS
) -> None:
    """``summary.json``, refused (a bug, not bad input) if a ``required`` key is missing."""
    missing = [k for k in required if k not in summary]
    if missing:
        raise ValueError(f"summary lacks {missing}")
    atomic_write_text(path, json.dumps(clean_json(summary), indent=2) + "\n")
