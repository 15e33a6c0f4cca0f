"""nosync: swarm training for PyTorch (NoSync, Isakov & Kinsy, ICANN 2018, reconstructed).

Workers each train their own model (a particle) and every ``period`` steps are pulled toward the
best one.  The public API is :class:`Swarm`; ``nosync train`` runs it from the command line.

The names below are imported on first use (PEP 562), so that ``nosync``'s command line starts
without importing torch and a Ctrl+C while it loads gets one line, not a traceback.
"""

from __future__ import annotations

import importlib
from typing import Any

from nosync import _moved

_moved.install()  # the flat layout's module paths, deprecated (see _moved.py)

_EXPORTS = {
    "loss_fitness": ".core.evaluate",
    "TrainLoss": ".core.evaluate",
    "REGISTRY": ".core.rules",
    "RULES": ".core.rules",
    "Rule": ".core.rules",
    "RuleOptions": ".core.options",
    "Swarm": ".core.swarm",
    "SwarmDivergedError": ".core.swarm",
    "particle_groups": ".core.swarm",
    "LocalWorld": ".core.transport",
}
__all__ = [
    "REGISTRY",
    "RULES",
    "LocalWorld",
    "Rule",
    "RuleOptions",
    "Swarm",
    "SwarmDivergedError",
    "TrainLoss",
    "loss_fitness",
    "particle_groups",
]
__version__ = "0.1.0"


def __dir__() -> list[str]:
    """The public API (what ``from nosync import *`` gives) and the version, not the helpers
    of this module."""
    return sorted([*__all__, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
