"""Fault injection for tests (``--inject``): what each spec means and how it is parsed.

``control.py`` acts on the faults; ``config.validate`` checks them against the run's ranks.
No torch here: the configuration is checked before torch is imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nosync.errors import UserError


@dataclass(frozen=True)
class Fault:
    """``nan@STEP:RANK``: that rank's weights become NaN after STEP.  ``slow@RANK:FACTOR``: that
    rank sleeps after each step for FACTOR - 1 times the step's own time."""

    kind: str
    rank: int
    step: int = 0
    factor: float = 1.0


def parse_inject(spec: str) -> list[Fault]:
    """``nan@STEP:RANK,slow@RANK:FACTOR,...``: several faults are fine, the same one twice is a
    mistake."""
    faults: list[Fault] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, _, where = item.partition("@")
        left, _, right = where.partition(":")
        if kind == "nan" and left.isdigit() and right.isdigit() and int(left) >= 1:
            fault = Fault("nan", int(right), step=int(left))
        elif kind == "slow" and left.isdigit() and _number(right) > 1:
            fault = Fault("slow", int(left), factor=_number(right))
        else:
            raise UserError(
                f"inject: {item!r} is not of the form nan@STEP:RANK (STEP >= 1) or "
                "slow@RANK:FACTOR (FACTOR > 1)"
            )
        if any((f.kind, f.rank, f.step) == (fault.kind, fault.rank, fault.step) for f in faults):
            raise UserError(f"inject: {item!r} is given twice")
        faults.append(fault)
    return faults


def check_ranks(spec: str, workers: int) -> None:
    """Every fault names a rank the run has."""
    for fault in parse_inject(spec):
        if fault.rank >= workers:
            raise UserError(
                f"inject: rank {fault.rank} does not exist (ranks are 0..{workers - 1})"
            )


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan
