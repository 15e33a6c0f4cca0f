"""The strategies with one model: ``single`` (one worker) and ``ddp`` (torch DDP).

Both are the base :class:`~nosync.run.strategies.base.Strategy` as it is: a data-parallel
particle's DDP wrapper (every rank for ``ddp``) and the step counter, nothing between steps.
"""

from __future__ import annotations

from nosync.run.strategies.base import Strategy


class SingleStrategy(Strategy):
    """One worker, no exchange at all."""

    name = "single"


class DDPStrategy(Strategy):
    """Synchronous data-parallel training: gradients all-reduced every step (torch DDP)."""

    name = "ddp"
