"""What happens between training steps besides training: checkpoints, Ctrl+C, fault injection.

Stopping and checkpointing must happen at the same step on every rank, or a rank would wait
forever in a collective the others never enter.  Checkpoints come at fixed steps (every
``checkpoint_every`` rounds of ``period`` steps, and the last step).  Stopping goes through a *stop
vote* (one tiny all-reduce) on a cadence of its own: about every ``VOTE_SECONDS`` of training, and
at least once a period, so a Ctrl+C takes effect quickly even with a very long period.  The
cadence is agreed in each vote (the slowest rank's seconds per step ride along), so every rank
knows the next vote step without asking.  Every checkpoint step votes too, and the vote carries
whether any rank's weights are still finite: when none is, training diverged (nothing is left to
recover from) and every rank raises :class:`~nosync.errors.Diverged` at the same step, before a
checkpoint of the diverged weights is written.

Stragglers (``--stragglers skip``, :class:`Pacer`): the vote also carries the fastest rank's
time per trained step, and every vote ends at the same moment on every rank, so from then on a
slow rank knows about which step the fastest rank is at without asking, and skips batches (the
step counter moves, the optimizer does not) while it lags.  Every rank still meets every round,
vote and checkpoint at the same step, and the fast ranks do not wait.  Which batches are skipped
depends on timing: such a run is not reproducible.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from nosync.core.placement import Placement
from nosync.errors import Diverged
from nosync.run import attempt, checkpoint
from nosync.run.config import TrainConfig
from nosync.run.faults import parse_inject
from nosync.run.strategies import Strategy


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


VOTE_SECONDS = 0.5  # aim: a Ctrl+C is honoured within about this much training time
FIRST_VOTE = 20  # steps to the first vote, before any step has been timed
SKIP_SLACK = 1.0  # --stragglers skip: steps a rank may lag the fastest before it skips
STRAGGLER = 1.3  # ... and only a rank whose trained steps take this much longer than the fastest's


def finite_weights(model: nn.Module) -> bool:
    """No parameter holds a NaN or an infinity (one pass over the weights, at votes only)."""
    with torch.no_grad():
        return all(bool(torch.isfinite(p).all()) for p in model.parameters())


class Pacer:
    """Keeps a straggler on the fastest rank's pace (``--stragglers skip``).

    It times this rank's *trained* steps (their own time: waiting for other ranks in a round
    and evaluations left out) and each vote tells every rank the fastest rank's trained step
    time: the median since the last vote, so that a few steps stretched by the machine (a
    descheduled process) do not hide a rank that is slow at every step.  A rank whose trained
    steps are ``STRAGGLER`` times slower than the fastest's at two votes in a row is a
    straggler.  From the vote's end (the same moment on every rank) it
    projects the fastest rank's step at that pace and skips batches while it lags by more than
    ``SKIP_SLACK`` steps.  The projection leaves out the fastest rank's own overheads (rounds,
    evaluations), so a straggler runs slightly ahead and waits at the next collective itself,
    rather than the fast ranks waiting for it.
    """

    def __init__(self) -> None:
        self.anchor: tuple[int, float, float] | None = None  # vote step, its end, fastest pace
        self.straggler = self._slower = False
        self.times: list[float] = []  # trained steps' own seconds since the last vote

    def timed(self, seconds: float) -> None:
        """One trained step took ``seconds`` on this rank (an injected slowdown included)."""
        self.times.append(seconds)

    def busy_pace(self) -> float:
        """This rank's typical trained step since the last vote (inf: it trained none)."""
        pace = statistics.median(self.times) if self.times else math.inf
        self.times = []
        return pace

    def agreed(self, step: int, ended: float, own: float, fastest: float) -> None:
        self.anchor = (step, ended, fastest)
        slower = own > STRAGGLER * fastest  # twice in a row: not one noisy interval
        self.straggler, self._slower = slower and self._slower, slower

    def behind(self, step: int) -> bool:
        """A straggler more than ``SKIP_SLACK`` steps behind the fastest rank."""
        if self.anchor is None or not self.straggler:
            return False
        since, ended, pace = self.anchor
        fastest = since + (time.perf_counter() - ended) / max(pace, 1e-9)
        return fastest - step > 1.0 + SKIP_SLACK


class Control:
    def __init__(
        self,
        cfg: TrainConfig,
        placement: Placement,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        strategy: Strategy,
        total_steps: int,
    ) -> None:
        self.cfg, self.placement, self.total = cfg, placement, total_steps
        self.model, self.optimizer, self.strategy = model, optimizer, strategy
        self.scheduler = scheduler
        mine = [f for f in parse_inject(cfg.inject) if f.rank == placement.rank]
        self.faults = {f.step for f in mine if f.kind == "nan"}
        self.slow = max([f.factor for f in mine if f.kind == "slow"], default=1.0)
        self._step_began = time.perf_counter()
        self.save_every = cfg.checkpoint_every * cfg.period
        self.pacer = Pacer() if cfg.stragglers == "skip" else None
        self._timed = self.pacer is not None or self.slow > 1  # else no step needs its own time
        self._skipping, self._blocked, self._evals = False, 0.0, 0.0
        self._previous_handler = install_sigint_handler()
        self._schedule_vote(strategy.step, min(cfg.period, FIRST_VOTE))

    def close(self) -> None:
        signal.signal(signal.SIGINT, self._previous_handler)

    # ---- before and after every optimizer step ---------------------------------------------
    def should_skip(self) -> bool:
        """``--stragglers skip``: this rank lags the fastest one; skip the next batch."""
        self._skipping = self.pacer is not None and self.pacer.behind(self.strategy.step)
        return self._skipping

    def after_step(self, monitor_state: Callable[[], dict[str, Any]], eval_seconds: float) -> None:
        """Inject faults, and at vote steps agree on stopping and save checkpoints (at the
        strategy's step, the run's one step counter).  ``eval_seconds``: the monitor's time
        evaluating so far (not part of any step's own time)."""
        step = self.strategy.step
        if step in self.faults:
            self._inject_nan(step)
        if self._timed:
            self._time_step(eval_seconds)
        due = step == self.total or bool(self.save_every and step % self.save_every == 0)
        # a checkpoint step votes too, for divergence only (a checkpoint of diverged weights
        # would only diverge again); Ctrl+C keeps to the vote's own cadence
        voting = step == self._next_vote
        stop = self._vote(step) and voting if voting or due else False
        if stop or due:
            self.save(step, monitor_state())
        if stop:
            raise Interrupted(step)
        if self._timed:
            self._step_began = time.perf_counter()  # the vote's wait and a save are not the step's

    def _time_step(self, eval_seconds: float) -> None:
        """The step's own time (for the pacer, and an injected slowdown): not the time a round
        held it up (waiting for others), nor an evaluation's."""
        blocked = self.strategy.blocked_seconds
        waited = blocked - self._blocked + eval_seconds - self._evals
        own = max(0.0, time.perf_counter() - self._step_began - waited)
        if self.slow > 1:  # a straggler: this step takes `slow` times as long
            time.sleep((self.slow - 1) * own)
            own *= self.slow
        if self.pacer is not None and not self._skipping:
            self.pacer.timed(own)
        self._blocked, self._evals = blocked, eval_seconds

    def _schedule_vote(self, step: int, every: int) -> None:
        self._next_vote, self._vote_clock = step + max(1, every), (step, time.perf_counter())

    def _vote(self, step: int) -> bool:
        """Agree on stopping, and on the steps to the next vote (from the slowest rank's pace);
        raise :class:`Diverged` on every rank when no rank's weights are finite any more."""
        since, t0 = self._vote_clock
        pace = (time.perf_counter() - t0) / max(1, step - since)
        stop = 1.0 if _stop_requested_at else 0.0
        busy = self.pacer.busy_pace() if self.pacer is not None else 0.0
        alive = 1.0 if finite_weights(self.model) else 0.0
        # MAX-reduced: stop, the slowest pace, (negated) the fastest rank's trained step time,
        # and whether any rank's weights are finite
        vote = torch.tensor([stop, pace, -busy, alive], dtype=torch.float64)
        if dist.get_world_size() > 1:  # alone, there is no one to agree with (saves ~2 ms)
            dist.all_reduce(vote, op=dist.ReduceOp.MAX)
        if not vote[3]:  # nothing to recover from: no particle has finite weights to lead
            raise Diverged(f"every particle's weights are NaN or infinite at step {step}", step)
        every = min(self.cfg.period, round(VOTE_SECONDS / max(float(vote[1]), 1e-9)))
        self._schedule_vote(step, every)
        if self.pacer is not None:
            self.pacer.agreed(step, self._vote_clock[1], busy, -float(vote[2]))
        return bool(vote[0])

    def _inject_nan(self, step: int) -> None:
        # one write (print writes the text and its newline apart, and two ranks' lines on one
        # stderr could then interleave into a joined line and an empty one)
        sys.stderr.write(
            f"nosync: rank {self.placement.rank}: injecting NaN weights at step {step}\n"
        )
        sys.stderr.flush()
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
            "rank": self.placement.rank,
        }
        checkpoint.save_rank(self.cfg.out, step, self.placement.rank, state)
        if self.placement.world > 1:  # alone, no other rank's file to wait for
            dist.barrier()
        if self.placement.rank == 0:
            checkpoint.commit(self.cfg.out, step, self.placement.world, self.cfg.to_dict())

    def restore(self) -> dict[str, Any] | None:
        """Load this rank's part of the latest checkpoint when resuming or restarting."""
        restarted = attempt.restarts() > 0
        if not (self.cfg.resume or restarted):
            return None
        record = checkpoint.latest(self.cfg.out)
        if record is None:
            return None  # a restart before the first checkpoint starts over
        state = checkpoint.load_rank(self.cfg.out, record, self.placement.rank)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler:
            self.scheduler.load_state_dict(state["scheduler"])
        self.strategy.load_state_dict(state["strategy"])
        torch.set_rng_state(state["rng"])
        self._schedule_vote(self.strategy.step, min(self.cfg.period, FIRST_VOTE))
        return state
