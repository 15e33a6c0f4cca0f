"""Training strategies behind one interface, so that one training loop runs them all.

A strategy wraps the model for the forward/backward pass (``net``), hooks what it needs around
``optimizer.step`` while it is entered (and counts the steps: ``step`` is the run's one step
counter, read by the loop, the stop vote and checkpoints), and ``finalize()`` leaves the
selected model in ``model`` on every rank.  Each strategy is a class registered in ``REGISTRY``
under its ``--strategy`` name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager

from nosync.core.evaluate import TrainLoss
from nosync.core.hooks import StepHook
from nosync.core.options import RuleOptions
from nosync.core.placement import Placement
from nosync.core.records import RoundRecord, round_record
from nosync.core.rules import nesterov_step
from nosync.core.swarm import Swarm
from nosync.run.config import TrainConfig

FitnessFn = Callable[[nn.Module], float]


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
    particle and a step counter hooked on ``optimizer.step``.

    ``selection`` says which model the strategy ends with: ``model`` (there is one), ``best``
    (the particle with the best fitness), ``average`` (the mean of the workers' weights) or
    ``center`` (EASGD's centre variable).
    """

    name: ClassVar[str]
    selection: ClassVar[str] = "model"

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
    def build(
        cls,
        cfg: TrainConfig,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        fitness: FitnessFn,
        placement: Placement,
        total_steps: int,
        losses: TrainLoss | None = None,
        bn_data: list[Tensor] | None = None,
    ) -> Strategy:
        return cls(model, optimizer, placement)

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

    def describe_selected(self) -> str:
        return "the model"

    def best_particle(self) -> int | None:
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
        """Selection ``average``: the model the run would end with now, given the mean of the
        workers' flat weights (DiLoCo applies its outer step to it)."""
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


class SingleStrategy(Strategy):
    """One worker, no exchange at all."""

    name = "single"


class DDPStrategy(Strategy):
    """Synchronous data-parallel training: gradients all-reduced every step (torch DDP)."""

    name = "ddp"


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
        "delay": None if cfg.delay < 0 else cfg.delay,
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
            outer_lr=cfg.outer_lr or None,  # 0: step by the pressure
            outer_momentum=max(cfg.outer_momentum, 0.0),  # -1 (automatic): none for a swarm
        ),
        "seed": cfg.seed,
        "topology": cfg.topology,
        "neighbors": cfg.neighbors,
        "wire_dtype": getattr(torch, cfg.exchange),
        "select": cfg.select,
    }
    if placement is not None:
        settings |= {"group": placement.swarm_group, "particle_group": placement.particle_group}
    return Swarm(model, optimizer, fitness=fitness, **(settings | overrides))


class SwarmStrategy(Strategy):
    """NoSync: each particle (one rank, or a DDP group) trains alone; a :class:`Swarm` pulls it
    every period with the configured rule."""

    name = "nosync"
    selection = "best"

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        placement: Placement,
        swarm: Swarm,
    ) -> None:
        super().__init__(model, optimizer, placement)
        self.swarm = swarm

    @classmethod
    def build(
        cls,
        cfg: TrainConfig,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        fitness: FitnessFn,
        placement: Placement,
        total_steps: int,
        losses: TrainLoss | None = None,
        bn_data: list[Tensor] | None = None,
    ) -> Strategy:
        swarm = swarm_of(
            cfg, model, optimizer, fitness, total_steps, placement,
            train_loss=losses, bn_data=bn_data,
        )  # fmt: skip
        return cls(model, optimizer, placement, swarm)

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
    selection = "center"

    @classmethod
    def build(
        cls,
        cfg: TrainConfig,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        fitness: FitnessFn,
        placement: Placement,
        total_steps: int,
        losses: TrainLoss | None = None,
        bn_data: list[Tensor] | None = None,
    ) -> Strategy:
        alpha = cfg.easgd_beta / placement.particles
        swarm = swarm_of(
            cfg, model, optimizer, fitness, total_steps, placement,
            rule="easgd", pressure=alpha, schedule="constant",
        )  # fmt: skip
        return cls(model, optimizer, placement, swarm)

    def describe_selected(self) -> str:
        return "the centre variable"

    def center(self) -> Tensor | None:
        return self.swarm.center


class LocalSGDStrategy(Strategy):
    """Local SGD: workers train alone and torch's ``PeriodicModelAverager`` averages their
    parameters every ``period`` steps (Lin et al., "Don't use large mini-batches, use local
    SGD", ICLR 2020).  The run ends with one more average, buffers included.
    """

    name = "localsgd"
    selection = "average"

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        placement: Placement,
        period: int,
    ) -> None:
        super().__init__(model, optimizer, placement)
        self.period = period
        # The averager counts its own calls from 0 and averages when (count - warmup_steps) is
        # a multiple of `period`; warmup_steps = period - 1 puts the averages after optimizer
        # steps period, 2 * period, ... exactly where a swarm has its rounds.  All ranks
        # average: the ranks of a data-parallel particle are identical, so this weighs every
        # particle equally.
        self.averager = PeriodicModelAverager(period=period, warmup_steps=period - 1)
        self.seconds, self.bytes = 0.0, 0
        self._history: list[RoundRecord] = []

    @classmethod
    def build(
        cls,
        cfg: TrainConfig,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        fitness: FitnessFn,
        placement: Placement,
        total_steps: int,
        losses: TrainLoss | None = None,
        bn_data: list[Tensor] | None = None,
    ) -> Strategy:
        return cls(model, optimizer, placement, cfg.period)

    @property
    def history(self) -> list[RoundRecord]:
        return self._history

    def _after_step(self, *_: object) -> None:
        super()._after_step()
        if self.step % self.period:
            self.averager.average_parameters(self.model.parameters())  # only counts the step
            return
        start = time.perf_counter()
        self.averager.average_parameters(self.model.parameters())
        seconds = time.perf_counter() - start
        nbytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        self.seconds, self.bytes = self.seconds + seconds, self.bytes + nbytes
        self._history.append(
            round_record(
                len(self._history) + 1,
                self.step,
                target="mean",
                pressure=1.0,
                seconds=seconds,
                blocked_seconds=seconds,
                comm_seconds=seconds,
                comm_bytes=nbytes,
            )
        )

    def describe_selected(self) -> str:
        return "the average of the workers"

    def finalize(self) -> None:
        world = dist.get_world_size()
        with torch.no_grad():
            for t in [*self.model.parameters(), *self.model.buffers()]:
                if t.is_floating_point():
                    dist.all_reduce(t)
                    t.div_(world)

    def comm(self) -> tuple[float, int]:
        seconds, nbytes = super().comm()
        return seconds + self.seconds, nbytes + self.bytes

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "averager_step": self.averager.step,
            "history": self._history,
            "seconds": self.seconds,
            "bytes": self.bytes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.averager.step = state["averager_step"]
        self._history[:] = state["history"]
        self.seconds, self.bytes = state["seconds"], state["bytes"]


class DiLoCoStrategy(LocalSGDStrategy):
    """DiLoCo (Douillard et al. 2023), also SlowMo (Wang et al. 2020), as torchft ships it:
    workers train alone; every ``period`` steps the pseudo-gradient ``anchor - mean(workers)``
    is the gradient of an outer optimizer - ``torch.optim.SGD(nesterov=True)`` with outer lr
    ``lr`` (SlowMo's alpha) and momentum ``momentum`` (SlowMo's beta) on the anchor's
    parameters - the anchor steps, and every worker restarts from it with its inner optimizer
    state kept.  Outer lr 1 and momentum 0 is local SGD.  The run ends with one more outer step
    (when steps were taken since the last one) and the workers' float buffers averaged.
    """

    name = "diloco"
    selection = "average"

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        placement: Placement,
        period: int,
        lr: float = 0.7,
        momentum: float = 0.9,
    ) -> None:
        super().__init__(model, optimizer, placement, period)
        self.anchor = [nn.Parameter(p.detach().clone()) for p in model.parameters()]
        self.lr, self.momentum = lr, momentum
        self.outer = torch.optim.SGD(self.anchor, lr=lr, momentum=momentum, nesterov=momentum > 0)

    @classmethod
    def build(
        cls,
        cfg: TrainConfig,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        fitness: FitnessFn,
        placement: Placement,
        total_steps: int,
        losses: TrainLoss | None = None,
        bn_data: list[Tensor] | None = None,
    ) -> Strategy:
        return cls(model, optimizer, placement, cfg.period, cfg.outer_lr, cfg.outer_momentum)

    def _after_step(self, *_: object) -> None:
        self._steps += 1
        if self.step % self.period == 0:
            self._outer_step(log=True)

    def _mean(self) -> Tensor:
        flat = torch.cat([p.detach().reshape(-1) for p in self.model.parameters()])
        dist.all_reduce(flat)
        return flat / dist.get_world_size()

    @torch.no_grad()
    def _outer_step(self, log: bool) -> None:
        start = time.perf_counter()
        mean = self._mean()
        seconds = time.perf_counter() - start
        nbytes = mean.numel() * mean.element_size()
        for a, m in zip(self.anchor, mean.split([a.numel() for a in self.anchor]), strict=True):
            a.grad = a.detach() - m.view_as(a)  # the pseudo-gradient
        self.outer.step()
        for p, a in zip(self.model.parameters(), self.anchor, strict=True):
            p.copy_(a)
        self.seconds, self.bytes = self.seconds + seconds, self.bytes + nbytes
        if log:
            self._history.append(
                round_record(
                    len(self._history) + 1,
                    self.step,
                    target="anchor",
                    pressure=self.lr,
                    seconds=time.perf_counter() - start,
                    blocked_seconds=time.perf_counter() - start,
                    comm_seconds=seconds,
                    comm_bytes=nbytes,
                )
            )

    def average_selected(self, mean: Tensor) -> Tensor:
        """The anchor after the outer step ``finalize`` would take now (buffers: the mean)."""
        n = sum(a.numel() for a in self.anchor)
        anchor = torch.cat([a.detach().reshape(-1) for a in self.anchor])
        if self.step % self.period == 0:  # a round just ran: the workers sit on the anchor
            return torch.cat([anchor, mean[n:]])
        bufs = [self.outer.state.get(a, {}).get("momentum_buffer") for a in self.anchor]
        v = None if any(b is None for b in bufs) else torch.cat([b.reshape(-1) for b in bufs])
        new, _ = nesterov_step(anchor, mean[:n].to(anchor.dtype), v, self.lr, self.momentum)
        return torch.cat([new, mean[n:]])

    def describe_selected(self) -> str:
        return "the anchor after the last outer step"

    def finalize(self) -> None:
        if self.step % self.period:
            self._outer_step(log=False)
        super().finalize()  # parameters: identical anchors; float buffers: averaged

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "anchor": [a.detach().clone() for a in self.anchor],
            "outer": self.outer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            for a, saved in zip(self.anchor, state["anchor"], strict=True):
                a.copy_(saved)
        self.outer.load_state_dict(state["outer"])


REGISTRY: dict[str, type[Strategy]] = {
    s.name: s
    for s in (
        SingleStrategy,
        DDPStrategy,
        SwarmStrategy,
        LocalSGDStrategy,
        EASGDStrategy,
        DiLoCoStrategy,
    )
}


def build(
    cfg: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    fitness: FitnessFn,
    placement: Placement,
    total_steps: int,
    losses: TrainLoss | None = None,
    bn_data: list[Tensor] | None = None,
) -> Strategy:
    """The strategy named by ``cfg.strategy`` (see ``REGISTRY``); ``losses`` is the training
    loop's running training loss (the swarm logs it, and uses it under train-loss fitness);
    ``bn_data`` are training batches for an averaged model's BatchNorm statistics."""
    cls = REGISTRY[cfg.strategy]
    return cls.build(
        cfg, model, optimizer, fitness, placement, total_steps, losses=losses, bn_data=bn_data
    )
