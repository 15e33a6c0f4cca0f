"""The averaging strategies: ``localsgd`` (workers train alone; their parameters are averaged
every ``period`` steps) and ``diloco`` (the average is the target of an outer Nesterov step on
an anchor).  Both end with the average, so they select no particle but its weights.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager

from nosync.core.placement import Placement
from nosync.core.records import RoundRecord, round_record
from nosync.core.rules import nesterov_step
from nosync.run.strategies.base import Context, Strategy


class LocalSGDStrategy(Strategy):
    """Local SGD: workers train alone and torch's ``PeriodicModelAverager`` averages their
    parameters every ``period`` steps (Lin et al., "Don't use large mini-batches, use local
    SGD", ICLR 2020).  The run ends with one more average, buffers included.
    """

    name = "localsgd"

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
    def build(cls, ctx: Context) -> Strategy:
        return cls(ctx.model, ctx.optimizer, ctx.placement, ctx.cfg.period)

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

    def selected(self, fitness: Tensor, weights: Tensor) -> int | Tensor:
        """The average of the workers (for DiLoCo, the anchor an outer step would give)."""
        return self.average_selected(weights.mean(0))

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
    def build(cls, ctx: Context) -> Strategy:
        cfg = ctx.cfg
        lr, momentum = cfg.outer_lr, cfg.outer_momentum
        assert lr is not None and momentum is not None  # config.resolve set diloco's automatic
        return cls(ctx.model, ctx.optimizer, ctx.placement, cfg.period, lr, momentum)

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
