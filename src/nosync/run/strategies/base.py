"""The strategy interface, what every strategy shares, and the context it is built from.

A strategy wraps the model for the forward/backward pass (``net``), hooks what it needs around
``optimizer.step`` while it is entered (and counts the steps: ``step`` is the run's one step
counter, read by the loop, the stop vote and checkpoints), and ``finalize()`` leaves the
selected model in ``model`` on every rank.  What it selects it says itself
(:meth:`Strategy.selected`), so that the monitor can evaluate it without knowing the strategy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from nosync.core.evaluate import TrainLoss
from nosync.core.hooks import StepHook
from nosync.core.placement import Placement
from nosync.core.population import Explore, Population
from nosync.core.records import RoundRecord
from nosync.run.config import TrainConfig

FitnessFn = Callable[[nn.Module], float]


@dataclass(frozen=True)
class Context:
    """What a strategy is built from: the run's configuration, this rank's model and optimizer,
    the fitness, where this rank sits (``placement``: its groups and device) and the run's
    length; ``losses`` is the training loop's running training loss (a swarm logs it, and uses
    it under train-loss fitness), ``bn_data`` training batches for an averaged model's
    BatchNorm statistics, ``explore`` the swarm's population based training."""

    cfg: TrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    fitness: FitnessFn
    placement: Placement
    total_steps: int
    losses: TrainLoss | None = None
    bn_data: list[Tensor] | None = None
    explore: Explore | None = None  # ``--explore`` (run/exploring.py), for the swarm


class CommCounter:
    """Payload bytes and in-flight seconds of the all-reduces a DDP comm hook ran.

    The seconds are the time each bucket's all-reduce was in flight; DDP overlaps it with the
    backward pass, so it is an upper bound on what communication cost the step.
    """

    def __init__(self, group: dist.ProcessGroup | None) -> None:
        self.group, self.bytes, self.seconds = group, 0, 0.0


# No annotations: DDP checks them at run time, and `from __future__ import annotations` turns
# them into strings it rejects.
def counting_allreduce_hook(state, bucket):  # noqa: ANN001, ANN201
    """torch's own ``allreduce_hook``, counted in ``state`` (a :class:`CommCounter`)."""
    start = time.perf_counter()
    state.bytes += bucket.buffer().numel() * bucket.buffer().element_size()

    def done(fut):  # noqa: ANN001, ANN202
        state.seconds += time.perf_counter() - start
        return fut.value()

    return allreduce_hook(state.group, bucket).then(done)


class Strategy(StepHook):
    """The interface, and what every strategy shares: the DDP wrapper of a data-parallel
    particle and a step counter hooked on ``optimizer.step``.  Without an override it trains
    one model and ends with it (``single``, ``ddp``)."""

    name: ClassVar[str]

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, placement: Placement
    ) -> None:
        self.model, self.net, self.optimizer, self.placement = model, model, optimizer, placement
        self.ddp_comm: CommCounter | None = None
        if placement.particle_group is not None:
            self.ddp_comm = CommCounter(placement.particle_group)
            self.net = nn.parallel.DistributedDataParallel(
                model,
                process_group=placement.particle_group,
                device_ids=[placement.device] if placement.device.type == "cuda" else None,
            )
            self.net.register_comm_hook(self.ddp_comm, counting_allreduce_hook)
        self._steps, self.skipped = 0, 0

    @classmethod
    def build(cls, ctx: Context) -> Strategy:
        """The strategy ``ctx`` describes (each strategy reads what it needs from it)."""
        return cls(ctx.model, ctx.optimizer, ctx.placement)

    # ---- around optimizer.step ------------------------------------------------------------------
    def _after_step(self, *_: object) -> None:
        self._steps += 1

    def skip(self) -> None:
        """Count a step this rank did not train (``--stragglers skip``): the step counter, and
        so the rounds, votes and checkpoints, stay in line with the other ranks."""
        self.skipped += 1
        self._after_step()

    def reads(self, losses: TrainLoss) -> bool:
        """Whether this strategy ever reads the loop's running training loss ``losses`` (to log
        or as the fitness); the loop feeds it only then (a few tensor ops a step otherwise)."""
        return False

    @property
    def blocked_seconds(self) -> float:
        """Seconds the training thread was held up by rounds (none without rounds)."""
        return 0.0

    @property
    def step(self) -> int:
        """Optimizer steps counted by this rank, skipped ones included (the run's one step
        counter)."""
        return self._steps

    # ---- what the monitor reads ---------------------------------------------------------------
    @property
    def history(self) -> list[RoundRecord]:
        """The rounds so far (none for strategies without rounds)."""
        return []

    @property
    def settled(self) -> int:
        """How many records of ``history`` are final (the monitor logs only those)."""
        return len(self.history)

    def selected(self, fitness: Tensor, weights: Tensor) -> int | Tensor:
        """The model the run would end with if it ended now, given every particle's
        ``fitness`` and flat ``weights`` (one row each): a particle (its row), or the flat
        weights of a model that is none of them (an average, a centre variable)."""
        return 0  # the one model

    @property
    def population(self) -> Population | None:
        """``--explore``'s particles' hyperparameters and copies (a swarm's; else None)."""
        return None

    def describe_selected(self) -> str:
        return "the model"

    @property
    def best_particle(self) -> int | None:
        """The particle whose model the run ends with (a swarm's is None until ``finalize``
        chooses it, or where it ends with an average)."""
        return 0

    def ingredients(self) -> list[int] | None:
        """The particles the selected model averages (``--select average|soup``)."""
        return None

    def final_fitness(self) -> list[float | None] | None:
        return None

    def center(self) -> Tensor | None:
        """EASGD's centre variable (flat), where there is one."""
        return None

    def average_selected(self, mean: Tensor) -> Tensor:
        """The model an averaging strategy would end with now, given the mean of the workers'
        flat weights (DiLoCo applies its outer step to it)."""
        return mean

    def comm(self) -> tuple[float, int]:
        """(seconds, payload bytes) this rank spent in training collectives."""
        if self.ddp_comm is None:
            return 0.0, 0
        return self.ddp_comm.seconds, self.ddp_comm.bytes

    # ---- the end and checkpoints --------------------------------------------------------------
    def flush(self) -> None:
        """Land whatever is still in flight (an async round) before the end's evaluation."""

    def finalize(self) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"step": self._steps, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._steps, self.skipped = int(state["step"]), int(state.get("skipped", 0))
