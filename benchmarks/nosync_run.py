"""The one way benchmarks run ``nosync``: a subprocess of the real command line, then its files.

``run("train", flags, out)`` runs ``python -m nosync train FLAGS --quiet --out OUT`` (skipped
when ``OUT`` already holds a finished run, so an interrupted benchmark continues where it
stopped) and returns the run's ``summary.json`` and ``metrics.jsonl`` records.  A failed run
stops the benchmark with the command and the end of its stderr.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DIVERGED = 3  # nosync's exit status for a run that diverged (it still writes its summary)


@dataclass
class Run:
    out: Path
    summary: dict[str, Any]
    records: list[dict[str, Any]]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """The ``metrics.jsonl`` records of one type: ``round``, ``eval``, ``resume``, ..."""
        return [r for r in self.records if r["type"] == kind]


def command(subcommand: str, flags: list[str], out: Path) -> list[str]:
    return [sys.executable, "-m", "nosync", subcommand, *flags, "--quiet", "--out", str(out)]


def read(out: Path) -> Run:
    """A finished run's files (a torn last line of ``metrics.jsonl`` is skipped)."""
    records = []
    for line in (out / "metrics.jsonl").read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return Run(out, json.loads((out / "summary.json").read_text()), records)


def run(subcommand: str, flags: list[str], out: Path, *, prefix: list[str] | None = None) -> Run:
    """Run ``nosync SUBCOMMAND`` (under ``prefix``, e.g. ``ip netns exec NAME``) unless ``out``
    holds a finished run; a half-written ``out`` is started again."""
    if (out / "summary.json").exists():
        return read(out)
    if out.exists():
        shutil.rmtree(out)
    cmd = [*(prefix or []), *command(subcommand, flags, out)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode == DIVERGED and (out / "summary.json").exists():
        return read(out)  # a result too: the summary says where it diverged
    if result.returncode:
        sys.exit(f"benchmark run failed: {' '.join(cmd)}\n{result.stderr[-2000:]}")
    return read(out)
