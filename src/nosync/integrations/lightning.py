"""nosync for Lightning (``pip install 'nosync[lightning]'``): each Trainer process is a particle.

Lightning's DDP wraps the model in ``DistributedDataParallel``, which all-reduces gradients every
step and would collapse the swarm into one model.  Lightning has no parallel strategy without
gradient sync, so :class:`LightningSwarmStrategy` is DDP's strategy minus the wrapper: the same
launcher, process group (gloo on CPU) and distributed sampler, but every process trains its own
model.  :class:`SwarmCallback` then couples them: on fit start it builds a
:class:`~nosync.Swarm` on that process group and hooks the optimizer (a round every ``period``
steps); when training ends it finalizes, so every process ends holding the best particle::

    trainer = L.Trainer(accelerator="cpu", devices=4, strategy=LightningSwarmStrategy(),
                        callbacks=[SwarmCallback(fitness, period=25, pressure=0.3)])
    trainer.fit(module, loader)

``fitness(module) -> float`` is lower-is-better (held-out loss), as for ``Swarm``.  Lightning's own
checkpoints hold one process's particle and not the swarm's round state.

``SwarmStrategy``, this strategy's old name (a run's ``nosync.run.strategies.SwarmStrategy``
is another class), still imports, with a :class:`DeprecationWarning`, for one release.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from nosync.core.swarm import Swarm

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.strategies import DDPStrategy
except ImportError as err:  # the optional extra is missing
    raise ImportError(
        "nosync.integrations.lightning needs Lightning: pip install 'nosync[lightning]'"
    ) from err


class LightningSwarmStrategy(DDPStrategy):
    """DDP's processes and process group without ``DistributedDataParallel``: no gradient
    all-reduce, each process keeps its own particle."""

    strategy_name = "nosync_swarm"

    def configure_ddp(self) -> None:
        """Leave the LightningModule unwrapped (DDP would average the particles' gradients)."""


class SwarmCallback(Callback):
    """Create a :class:`~nosync.Swarm` over the Trainer's processes and run its rounds.

    Keyword arguments beyond ``period``, ``pressure`` and ``rule`` go to ``Swarm`` (``schedule``,
    ``topology``, ``seed``, ...).  ``history`` and ``best_particle`` are the swarm's after fit.
    """

    def __init__(
        self,
        fitness: Callable[[nn.Module], float],
        period: int = 25,
        pressure: float = 0.3,
        rule: str = "leader",
        **swarm_options: Any,
    ) -> None:
        self.fitness, self.period, self.pressure, self.rule = fitness, period, pressure, rule
        self.options = swarm_options
        self.swarm: Swarm | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "SwarmCallback needs several processes: strategy=LightningSwarmStrategy()"
            )
        if isinstance(trainer.strategy.model, DistributedDataParallel):
            raise RuntimeError(
                "SwarmCallback: the model is wrapped in DistributedDataParallel, whose gradient "
                "all-reduce would make the particles one model; "
                "use strategy=LightningSwarmStrategy()"
            )
        if len(trainer.optimizers) != 1:
            raise RuntimeError("SwarmCallback: configure_optimizers must return one optimizer")
        total = trainer.estimated_stepping_batches
        self.swarm = Swarm(
            pl_module,
            trainer.optimizers[0],
            fitness=self.fitness,
            period=self.period,
            pressure=self.pressure,
            rule=self.rule,
            total_steps=int(total) if total != float("inf") else None,
            **self.options,
        )
        self.swarm.__enter__()  # hooks optimizer.step: a round every `period` steps

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Before Lightning tears the processes down: every process takes the best particle."""
        if self.swarm is not None:
            self.swarm.__exit__(None, None, None)
            self.swarm.finalize()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self.swarm is not None:
            self.swarm.__exit__(type(exception), exception, None)

    @property
    def history(self) -> list[Any]:
        return self.swarm.history if self.swarm else []

    @property
    def best_particle(self) -> int | None:
        return self.swarm.best_particle if self.swarm else None


def __getattr__(name: str) -> Any:
    if name == "SwarmStrategy":  # the old name, for one release
        warnings.warn(
            "nosync.integrations.lightning.SwarmStrategy is now LightningSwarmStrategy; the old "
            "name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return LightningSwarmStrategy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
