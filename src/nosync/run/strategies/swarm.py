"""The strategies whose rounds a :class:`~nosync.core.swarm.Swarm` runs: ``nosync`` (each
particle trains alone and is pulled by the configured rule) and ``easgd`` (the swarm with the
``easgd`` rule, ending with the centre variable).  :func:`swarm_of` turns a configuration into
the ``Swarm`` (``nosync simulate`` builds its particles' swarms with it too).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from nosync.core.evaluate import TrainLoss
from nosync.core.options import RuleOptions
from nosync.core.placement import Placement
from nosync.core.population import Population
from nosync.core.records import RoundRecord
from nosync.core.swarm import Swarm
from nosync.run.config import TrainConfig
from nosync.run.strategies.base import Context, FitnessFn, Strategy


def swarm_of(
    cfg: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    fitness: FitnessFn,
    total_steps: int,
    placement: Placement | None = None,
    **overrides: Any,
) -> Swarm:
    """The :class:`Swarm` a configuration describes (``overrides`` win; e.g. a ``transport``)."""
    settings: dict[str, Any] = {
        "round": cfg.round,
        "delay": cfg.delay,  # None: automatic
        "period": cfg.period,
        "pressure": cfg.pressure,
        "rule": cfg.rule,
        "schedule": cfg.schedule,
        "total_steps": total_steps,
        "options": RuleOptions(
            inertia=cfg.inertia,
            c1=cfg.c1,
            c2=cfg.c2,
            temperature=cfg.temperature,
            outer_lr=cfg.outer_lr,  # None: step by the pressure
            outer_momentum=cfg.outer_momentum or 0.0,  # None (automatic): none for a swarm
        ),
        "seed": cfg.seed,
        "topology": cfg.topology,
        "neighbors": cfg.neighbors,
        "wire_dtype": getattr(torch, cfg.wire_dtype),
        "select": cfg.select,
    }
    if placement is not None:
        settings |= {"group": placement.swarm_group, "particle_group": placement.particle_group}
    return Swarm(model, optimizer, fitness=fitness, **(settings | overrides))


class SwarmStrategy(Strategy):
    """NoSync: each particle (one rank, or a DDP group) trains alone; a :class:`Swarm` pulls it
    every period with the configured rule."""

    name = "nosync"

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        placement: Placement,
        swarm: Swarm,
    ) -> None:
        super().__init__(model, optimizer, placement)
        self.swarm = swarm

    @property
    def population(self) -> Population | None:
        return self.swarm.population

    @classmethod
    def build(cls, ctx: Context) -> Strategy:
        swarm = swarm_of(
            ctx.cfg, ctx.model, ctx.optimizer, ctx.fitness, ctx.total_steps, ctx.placement,
            train_loss=ctx.losses, bn_data=ctx.bn_data, explore=ctx.explore,
        )  # fmt: skip
        return cls(ctx.model, ctx.optimizer, ctx.placement, swarm)

    def __enter__(self) -> SwarmStrategy:
        self.swarm.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.swarm.__exit__(*exc)

    def skip(self) -> None:
        self.skipped += 1
        self.swarm.skip()

    def reads(self, losses: TrainLoss) -> bool:
        return losses is self.swarm.train_loss or losses is self.swarm.fitness

    @property
    def step(self) -> int:
        return self.swarm.step

    @property
    def blocked_seconds(self) -> float:
        return self.swarm.blocked_seconds

    @property
    def history(self) -> list[RoundRecord]:
        return self.swarm.history

    @property
    def settled(self) -> int:
        return self.swarm.settled

    def describe_selected(self) -> str:
        if self.swarm.ingredients is not None:
            kind = "weight average" if self.swarm.select == "average" else "greedy soup"
            return f"the {kind} of particles {self.swarm.ingredients}"
        if self.swarm.best_particle is None:
            return "the best particle by fitness"
        return f"particle {self.swarm.best_particle} (best fitness)"

    def selected(self, fitness: Tensor, weights: Tensor) -> int | Tensor:
        """The particle with the best fitness (NaN the worst)."""
        return int(torch.nan_to_num(fitness, nan=math.inf).argmin())

    @property
    def best_particle(self) -> int | None:
        return self.swarm.best_particle

    def ingredients(self) -> list[int] | None:
        return self.swarm.ingredients

    def final_fitness(self) -> list[float | None] | None:
        return self.swarm.final_fitness

    def comm(self) -> tuple[float, int]:
        seconds, nbytes = super().comm()
        return seconds + self.swarm.comm_seconds, nbytes + self.swarm.comm_bytes

    def flush(self) -> None:
        self.swarm.flush()

    def finalize(self) -> None:
        self.swarm.finalize()

    def state_dict(self) -> dict[str, Any]:
        return {"swarm": self.swarm.state_dict(), "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.swarm.load_state_dict(state["swarm"])
        self.skipped = int(state.get("skipped", 0))


class EASGDStrategy(SwarmStrategy):
    """Elastic averaging SGD (Zhang et al. 2015): the swarm with the ``easgd`` rule, whose
    moving rate is alpha = beta / particles, ending with the centre variable."""

    name = "easgd"

    @classmethod
    def build(cls, ctx: Context) -> Strategy:
        alpha = ctx.cfg.easgd_beta / ctx.placement.particles
        swarm = swarm_of(
            ctx.cfg, ctx.model, ctx.optimizer, ctx.fitness, ctx.total_steps, ctx.placement,
            rule="easgd", pressure=alpha, schedule="constant",
        )  # fmt: skip
        return cls(ctx.model, ctx.optimizer, ctx.placement, swarm)

    def describe_selected(self) -> str:
        return "the centre variable"

    def selected(self, fitness: Tensor, weights: Tensor) -> int | Tensor:
        """The centre variable (the workers' mean before the first round gives it one)."""
        center = self.center()
        return self.average_selected(weights.mean(0)) if center is None else center

    def center(self) -> Tensor | None:
        return self.swarm.center
