"""Training strategies behind one interface, so that one training loop runs them all.

A strategy wraps the model for the forward/backward pass (``net``), hooks whatever it needs
around ``optimizer.step`` while it is entered, and ``finalize()`` leaves the selected model in
``model`` on every rank.  New strategies register in ``BUILDERS``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager

from .config import TrainConfig
from .swarm import Swarm


@dataclass
class Topology:
    """Where this rank sits: particle ``rank // k`` of ``world // k``, data-parallel inside."""

    rank: int
    world: int
    ranks_per_particle: int
    swarm_group: dist.ProcessGroup | None  # the first rank of every particle; None elsewhere
    particle_group: dist.ProcessGroup | None  # this particle's DDP group; None when k == 1

    @property
    def particle(self) -> int:
        return self.rank // self.ranks_per_particle

    @property
    def particles(self) -> int:
        return self.world // self.ranks_per_particle

    @property
    def rank_in_particle(self) -> int:
        return self.rank % self.ranks_per_particle

    @property
    def is_head(self) -> bool:
        return self.rank_in_particle == 0


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


class Strategy:
    """No exchange at all (``single``; ``ddp`` adds the DDP wrapper).

    ``selection`` says which model the strategy ends with: ``model`` (there is one), ``best``
    (the particle with the best fitness), ``average`` (the mean of the workers' weights) or
    ``center`` (EASGD's centre variable).
    """

    name = "single"
    selection = "model"

    def __init__(self, model: nn.Module, topo: Topology) -> None:
        self.model, self.net, self.topo = model, model, topo
        self.ddp_comm: CommCounter | None = None
        if topo.particle_group is not None:
            self.ddp_comm = CommCounter(topo.particle_group)
            self.net = nn.parallel.DistributedDataParallel(model, process_group=topo.particle_group)
            self.net.register_comm_hook(self.ddp_comm, counting_allreduce_hook)
        self.history: list[dict[str, Any]] = []
        self.selected = "the model"

    def __enter__(self) -> Strategy:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def finalize(self) -> None:
        return None

    def comm(self) -> tuple[float, int]:
        """(seconds, payload bytes) this rank spent in training collectives."""
        if self.ddp_comm is None:
            return 0.0, 0
        return self.ddp_comm.seconds, self.ddp_comm.bytes

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def center(self) -> torch.Tensor | None:
        """EASGD's centre variable (flat), where there is one."""
        return None


class DDPStrategy(Strategy):
    """Synchronous data-parallel training: gradients all-reduced every step (torch DDP)."""

    name = "ddp"


class SwarmStrategy(Strategy):
    """NoSync: each particle (one rank, or a DDP group) trains alone and is pulled every period."""

    name = "nosync"
    selection = "best"

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        fitness: Callable[[nn.Module], float],
        topo: Topology,
        cfg: TrainConfig,
        total_steps: int,
        rule: str | None = None,
    ) -> None:
        super().__init__(model, topo)
        pressure = cfg.pressure
        if rule == "easgd":  # the paper's moving rate: alpha = beta / p, with beta = 0.9
            self.name, self.selection = "easgd", "center"
            pressure = cfg.easgd_beta / topo.particles
        self.swarm = Swarm(
            model,
            optimizer,
            fitness,
            period=cfg.period,
            pressure=pressure,
            rule=rule or cfg.rule,
            schedule="constant" if rule == "easgd" else cfg.schedule,
            total_steps=total_steps,
            group=topo.swarm_group,
            particle_group=topo.particle_group,
            inertia=cfg.inertia,
            c1=cfg.c1,
            c2=cfg.c2,
            seed=cfg.seed,
            topology=cfg.topology,
            neighbors=cfg.neighbors,
            exchange_dtype=getattr(torch, cfg.exchange),
        )
        self.history = self.swarm.history
        self.selected = "the best particle by fitness"

    def __enter__(self) -> SwarmStrategy:
        self.swarm.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.swarm.__exit__(*exc)

    def finalize(self) -> None:
        self.swarm.finalize()
        if self.selection == "center":
            self.selected = "the centre variable"
        else:
            self.selected = f"particle {self.swarm.best_particle} (best fitness)"

    def center(self) -> torch.Tensor | None:
        return self.swarm.center

    def comm(self) -> tuple[float, int]:
        seconds, nbytes = super().comm()
        return seconds + self.swarm.comm_seconds, nbytes + self.swarm.comm_bytes

    def state_dict(self) -> dict[str, Any]:
        return {"swarm": self.swarm.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.swarm.load_state_dict(state["swarm"])
        self.history = self.swarm.history


class LocalSGDStrategy(Strategy):
    """Local SGD: workers train alone and torch's ``PeriodicModelAverager`` averages their
    parameters every ``period`` steps (Lin et al., "Don't use large mini-batches, use local
    SGD", ICLR 2020).  The run ends with one more average, buffers included.
    """

    name = "localsgd"
    selection = "average"

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, topo: Topology, period: int
    ) -> None:
        super().__init__(model, topo)
        self.optimizer, self.period, self.step = optimizer, period, 0
        # The averager counts its own calls from 0 and averages when (count - warmup_steps) is
        # a multiple of `period`; warmup_steps = period - 1 puts the averages after optimizer
        # steps period, 2 * period, ... exactly where a swarm has its sync rounds.  All ranks
        # average: the ranks of a data-parallel particle are identical, so this weighs every
        # particle equally.
        self.averager = PeriodicModelAverager(period=period, warmup_steps=period - 1)
        self.seconds, self.bytes = 0.0, 0
        self._hook: Any = None

    def __enter__(self) -> LocalSGDStrategy:
        self._hook = self.optimizer.register_step_post_hook(self._after_step)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _after_step(self, *_: object) -> None:
        self.step += 1
        if self.step % self.period:
            self.averager.average_parameters(self.model.parameters())  # only counts the step
            return
        start = time.perf_counter()
        self.averager.average_parameters(self.model.parameters())
        seconds = time.perf_counter() - start
        nbytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        self.seconds, self.bytes = self.seconds + seconds, self.bytes + nbytes
        self.history.append(
            {
                "round": len(self.history) + 1,
                "step": self.step,
                "seconds": seconds,
                "comm_seconds": seconds,
                "comm_bytes": nbytes,
            }
        )

    def finalize(self) -> None:
        world = dist.get_world_size()
        with torch.no_grad():
            for t in [*self.model.parameters(), *self.model.buffers()]:
                if t.is_floating_point():
                    dist.all_reduce(t)
                    t.div_(world)
        self.selected = "the average of the workers"

    def comm(self) -> tuple[float, int]:
        seconds, nbytes = super().comm()
        return seconds + self.seconds, nbytes + self.bytes

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "averager_step": self.averager.step,
            "history": self.history,
            "seconds": self.seconds,
            "bytes": self.bytes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.averager.step = state["step"], state["averager_step"]
        self.history[:] = state["history"]
        self.seconds, self.bytes = state["seconds"], state["bytes"]


def build(
    cfg: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    fitness: Callable[[nn.Module], float],
    topo: Topology,
    total_steps: int,
) -> Strategy:
    """The strategy named by ``cfg.strategy``; see ``BUILDERS`` for the registry."""
    return BUILDERS[cfg.strategy](cfg, model, optimizer, fitness, topo, total_steps)


Builder = Callable[
    [TrainConfig, nn.Module, torch.optim.Optimizer, Callable[[nn.Module], float], Topology, int],
    Strategy,
]
BUILDERS: dict[str, Builder] = {
    "single": lambda cfg, m, opt, fit, topo, n: Strategy(m, topo),
    "ddp": lambda cfg, m, opt, fit, topo, n: DDPStrategy(m, topo),
    "nosync": lambda cfg, m, opt, fit, topo, n: SwarmStrategy(m, opt, fit, topo, cfg, n),
    "localsgd": lambda cfg, m, opt, fit, topo, n: LocalSGDStrategy(m, opt, topo, cfg.period),
    "easgd": lambda cfg, m, opt, fit, topo, n: SwarmStrategy(m, opt, fit, topo, cfg, n, "easgd"),
}
