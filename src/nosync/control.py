"""What happens between training steps besides training: checkpoints, Ctrl+C, fault injection.

Stopping and checkpointing must happen at the same step on every rank, or a rank would wait
forever in a collective the others never enter.  So every ``period`` steps all ranks take part in
a *stop vote* (one tiny all-reduce); the vote and the checkpoint steps are the only places a run
stops.  A swarm already meets at that step for its sync round, so the vote adds no new waiting;
Ctrl+C takes effect within one period.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from . import attempt, checkpoint
from .config import TrainConfig, parse_inject
from .strategies import Strategy, Topology


class Interrupted(Exception):
    """Ctrl+C: every rank stopped at the same step and saved a checkpoint there."""

    def __init__(self, step: int) -> None:
        super().__init__(f"interrupted at step {step}")
        self.step = step


_stop_requested_at = 0.0  # monotonic time of the first Ctrl+C, 0 when there was none


def _on_sigint(*_: object) -> None:
    """First Ctrl+C: stop at the next vote.  Another one seconds later: stop now.

    (A Ctrl+C in a terminal reaches the workers twice, from the terminal and from the launcher
    forwarding it, within milliseconds; only a deliberate second press forces the stop.)
    """
    global _stop_requested_at
    now = time.monotonic()
    if _stop_requested_at and now - _stop_requested_at > 3:
        raise KeyboardInterrupt
    if not _stop_requested_at:
        _stop_requested_at = now
        if os.environ.get("RANK", "0") == "0":
            print(
                "\nnosync: interrupted; stopping at the next sync point to save a checkpoint",
                file=sys.stderr,
                flush=True,
            )


def install_sigint_handler() -> Any:
    """Turn Ctrl+C into a request that the stop vote honours; returns the previous handler."""
    return signal.signal(signal.SIGINT, _on_sigint)


class Control:
    def __init__(
        self,
        cfg: TrainConfig,
        topo: Topology,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        strategy: Strategy,
        total_steps: int,
    ) -> None:
        self.cfg, self.topo, self.total = cfg, topo, total_steps
        self.model, self.optimizer, self.strategy = model, optimizer, strategy
        self.scheduler = scheduler
        self.faults = {step for kind, step, rank in parse_inject(cfg.inject) if rank == topo.rank}
        self.save_every = cfg.checkpoint_every * cfg.period
        self._previous_handler = install_sigint_handler()

    def close(self) -> None:
        signal.signal(signal.SIGINT, self._previous_handler)

    # ---- after every optimizer step --------------------------------------------------------
    def after_step(self, step: int, monitor_state: Callable[[], dict[str, Any]]) -> None:
        """Inject faults, and at vote steps agree on stopping and save checkpoints."""
        if step in self.faults:
            self._inject_nan(step)
        if step % self.cfg.period and step != self.total:
            return
        stop = bool(_stop_requested_at)
        if dist.get_world_size() > 1:  # alone, there is no one to agree with (saves ~2 ms)
            flag = torch.tensor([1.0 if stop else 0.0])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        due = step == self.total or (self.save_every and step % self.save_every == 0)
        if stop or due:
            self.save(step, monitor_state())
        if stop:
            raise Interrupted(step)

    def _inject_nan(self, step: int) -> None:
        print(
            f"nosync: rank {self.topo.rank}: injecting NaN weights at step {step}",
            file=sys.stderr,
            flush=True,
        )
        with torch.no_grad():
            for p in self.model.parameters():
                p.fill_(math.nan)

    # ---- checkpoints -------------------------------------------------------------------------
    def save(self, step: int, monitor: dict[str, Any]) -> None:
        state = {
            "step": step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "strategy": self.strategy.state_dict(),
            "rng": torch.get_rng_state(),
            "monitor": monitor,
            "rank": self.topo.rank,
        }
        checkpoint.save_rank(self.cfg.out, step, self.topo.rank, state)
        dist.barrier()
        if self.topo.rank == 0:
            checkpoint.commit(self.cfg.out, step, self.topo.world, self.cfg.to_dict())

    def restore(self) -> dict[str, Any] | None:
        """Load this rank's part of the latest checkpoint when resuming or restarting."""
        restarted = attempt.restarts() > 0
        if not (self.cfg.resume or restarted):
            return None
        record = checkpoint.latest(self.cfg.out)
        if record is None:
            return None  # a restart before the first checkpoint starts over
        state = checkpoint.load_rank(self.cfg.out, record, self.topo.rank)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler:
            self.scheduler.load_state_dict(state["scheduler"])
        self.strategy.load_state_dict(state["strategy"])
        torch.set_rng_state(state["rng"])
        return state
