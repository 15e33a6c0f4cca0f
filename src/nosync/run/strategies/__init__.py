"""Training strategies behind one interface, so that one training loop runs them all.

One module per family, each strategy a class registered under its ``--strategy`` name:

- ``base``: the :class:`Strategy` interface, what all share, and the :class:`Context` a
  strategy is built from;
- ``ddp``: one model (``single``, ``ddp``);
- ``swarm``: a :class:`~nosync.core.swarm.Swarm` runs the rounds (``nosync``, ``easgd``);
- ``localsgd``: the workers' average (``localsgd``, ``diloco``);
- ``registry``: :data:`REGISTRY` (name -> class) and :func:`build`;
- ``names``: the names alone, without torch, for the configuration and the command line.

The names below are imported on first use (PEP 562): importing ``names`` (as the configuration
does) must not pull torch in through this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nosync.run.strategies.base import (
        CommCounter,
        Context,
        FitnessFn,
        Strategy,
        counting_allreduce_hook,
    )
    from nosync.run.strategies.ddp import DDPStrategy, SingleStrategy
    from nosync.run.strategies.localsgd import DiLoCoStrategy, LocalSGDStrategy
    from nosync.run.strategies.names import STRATEGIES, SWARMS
    from nosync.run.strategies.registry import REGISTRY, build
    from nosync.run.strategies.swarm import EASGDStrategy, SwarmStrategy, swarm_of

_EXPORTS = {
    **dict.fromkeys(
        ("CommCounter", "Context", "FitnessFn", "Strategy", "counting_allreduce_hook"), ".base"
    ),
    **dict.fromkeys(("DDPStrategy", "SingleStrategy"), ".ddp"),
    **dict.fromkeys(("DiLoCoStrategy", "LocalSGDStrategy"), ".localsgd"),
    **dict.fromkeys(("STRATEGIES", "SWARMS"), ".names"),
    **dict.fromkeys(("REGISTRY", "build"), ".registry"),
    **dict.fromkeys(("EASGDStrategy", "SwarmStrategy", "swarm_of"), ".swarm"),
}
__all__ = [
    "CommCounter",
    "Context",
    "DDPStrategy",
    "DiLoCoStrategy",
    "EASGDStrategy",
    "FitnessFn",
    "LocalSGDStrategy",
    "REGISTRY",
    "STRATEGIES",
    "SWARMS",
    "SingleStrategy",
    "Strategy",
    "SwarmStrategy",
    "build",
    "counting_allreduce_hook",
    "swarm_of",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
