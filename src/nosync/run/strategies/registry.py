"""The strategies by ``--strategy`` name (:data:`REGISTRY`), and :func:`build`, which makes the
one a configuration names.  The names themselves live in :mod:`.names`, without torch."""

from __future__ import annotations

import warnings
from typing import Any

from nosync.run.config import TrainConfig
from nosync.run.strategies.base import Context, Strategy
from nosync.run.strategies.ddp import DDPStrategy, SingleStrategy
from nosync.run.strategies.localsgd import DiLoCoStrategy, LocalSGDStrategy
from nosync.run.strategies.swarm import EASGDStrategy, SwarmStrategy

REGISTRY: dict[str, type[Strategy]] = {
    s.name: s
    for s in (
        SwarmStrategy,
        SingleStrategy,
        DDPStrategy,
        LocalSGDStrategy,
        EASGDStrategy,
        DiLoCoStrategy,
    )
}


def build(ctx: Context | TrainConfig, *args: Any, **kwargs: Any) -> Strategy:
    """The strategy named by ``ctx.cfg.strategy`` (see :data:`REGISTRY`), built from ``ctx``.

    The old form ``build(cfg, model, optimizer, fitness, placement, total_steps, losses,
    bn_data)`` still works, with a :class:`DeprecationWarning`, for one release."""
    if not isinstance(ctx, Context):
        warnings.warn(
            "strategies.build(cfg, model, ...) is deprecated; pass a strategies.Context",
            DeprecationWarning,
            stacklevel=2,
        )
        ctx = Context(ctx, *args, **kwargs)
    elif args or kwargs:
        raise TypeError("build(ctx) takes only the context")
    return REGISTRY[ctx.cfg.strategy].build(ctx)
