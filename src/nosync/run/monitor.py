"""Watching a run: when to evaluate, what to log, the progress bar, and the end.

The monitor is what the training loop sees; each job it delegates to a part: ``evaluation``
(across the swarm), ``clocks`` (training, evaluation and wall time), ``outputs`` (the run
folder's files) and ``summary`` (what ``summary.json`` says).  Only global rank 0 writes; the
first rank of every particle takes part in the evaluation collectives (evaluation traffic is not
counted as training traffic).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from nosync.core.evaluate import accuracy
from nosync.core.placement import Placement
from nosync.run import attempt
from nosync.run.build import Task
from nosync.run.clocks import Clocks
from nosync.run.config import TrainConfig
from nosync.run.evaluation import Evaluator, gather
from nosync.run.outputs import Outputs
from nosync.run.strategies import Strategy
from nosync.run.summary import RunSummary, per_rank, weights_digest

__all__ = ["Monitor", "gather", "weights_digest"]  # the last two lived here before the split


class Monitor:
    """The run's evaluation, log, progress bar and final files, for one rank of it: ``total``
    steps of ``steps_per_epoch``; ``wall_start``, when the run started (its wall clock);
    ``bn_data``, training batches for an averaged model's BatchNorm statistics."""

    def __init__(
        self,
        cfg: TrainConfig,
        place: Placement,
        task: Task,
        total_steps: int,
        steps_per_epoch: int,
        wall_start: float,
        bn_data: list[Tensor],
    ) -> None:
        self.cfg, self.place, self.task = cfg, place, task
        self.total, self.steps_per_epoch = total_steps, steps_per_epoch
        self.root = place.rank == 0
        self.clocks = Clocks(wall_start)
        self.evaluator = Evaluator(place, task, bn_data)
        self.summary = RunSummary(cfg, place, total_steps, steps_per_epoch, self.clocks)
        self.outputs = Outputs(cfg, total_steps, place.ranks_per_particle) if self.root else None
        self.logged_rounds = 0

    @property
    def eval_seconds(self) -> float:
        return self.clocks.eval_seconds

    def state_dict(self) -> dict[str, float]:
        """The clocks, so that a resumed run reports its whole time."""
        return self.clocks.state_dict()

    def begin(self, strategy: Strategy, resumed: dict[str, Any] | None) -> None:
        """Open the outputs (continuing them after a resume) and start the clocks."""
        start = resumed["step"] if resumed else 0
        if resumed:
            self.clocks.resume(resumed["monitor"])
            self.logged_rounds = strategy.settled  # what the checkpointed run had logged
        if self.outputs is not None:
            self.outputs.open(start if resumed else None, self.logged_rounds)
            if resumed:
                self._say_resumed(start)
        self.bar = tqdm(
            total=self.total,
            initial=start,
            disable=self.cfg.quiet or not self.root,
            file=sys.stderr,
            desc=f"{self.cfg.strategy} x{self.cfg.workers}{self._where()}",
            unit="step",
            dynamic_ncols=True,
            leave=True,
        )

    def _say_resumed(self, start: int) -> None:
        """A ``resume`` record in ``metrics.jsonl``, and one line on stderr."""
        assert self.outputs is not None
        restarts = attempt.restarts()
        record = {"type": "resume", "step": start, "restart": restarts, "time": time.time()}
        self.outputs.write(record)
        why = f"restart {restarts} after a worker failed: " if restarts else ""
        print(
            f"nosync: {why}resuming from the checkpoint at step {start}",
            file=sys.stderr,
            flush=True,
        )

    def _where(self) -> str:
        """The progress line names the device and precision when they are not the defaults."""
        device, bf16 = self.place.device, self.cfg.precision == "bf16"
        return (f" {device}" if device.type != "cpu" else "") + (" bf16" if bf16 else "")

    def close(self) -> None:
        self.bar.close()

    # ---- during training ------------------------------------------------------------------
    def after_step(self, strategy: Strategy, model: nn.Module) -> None:
        step = strategy.step
        self.bar.update(1)
        if strategy.settled > self.logged_rounds:
            self._log_rounds(strategy, step)
        every = self.cfg.eval_every
        if (every and step % every == 0) or step % self.steps_per_epoch == 0 or step == self.total:
            self.evaluate(step, model, strategy)

    def _log_rounds(self, strategy: Strategy, step: int) -> None:
        """Log the rounds whose records are final (a round's distances come with the next)."""
        for record in strategy.history[self.logged_rounds : strategy.settled]:
            if self.outputs is not None:
                self.outputs.write({"type": "round", **record})
            for particle in record["reset"] if self.root else []:
                self.bar.write(
                    f"nosync: particle {particle} diverged (non-finite fitness or weights) before "
                    f"step {record['step']}; reset to the leader, particle {record['leader']}",
                    file=sys.stderr,
                )
        self.logged_rounds = strategy.settled
        last = strategy.history[self.logged_rounds - 1]
        finite = [f for f in last["fitness"] or [] if f is not None]
        if finite:
            memory = {}
            if self.place.device.type == "cuda":  # peak GPU memory so far
                memory["mem"] = f"{torch.cuda.max_memory_allocated(self.place.device) / 2**30:.2f}G"
            shown = {  # the round's, which the table at the end may not show (see report.py)
                "epoch": step // self.steps_per_epoch,
                "round": last["round"],
                "leader": last["leader"],
                "best": f"{min(finite):.4f}",
            }
            self.bar.set_postfix({**shown, **memory}, refresh=False)

    def evaluate(self, step: int, model: nn.Module, strategy: Strategy) -> None:
        """Per-particle test/train accuracy and fitness, the selected model's accuracy and the
        swarm spread, logged on rank 0."""
        with self.clocks.evaluating():
            measures = self.evaluator.during(model, strategy)
            if measures is not None and self.outputs is not None:
                self.outputs.write(
                    {
                        "type": "eval",
                        "step": step,
                        "epoch": step / self.steps_per_epoch,
                        "samples_per_worker": step * self.cfg.batch_size,
                        "train_seconds": self.clocks.train_seconds(),
                        **measures,
                    }
                )

    # ---- at the end ---------------------------------------------------------------------------
    def diverged(self, strategy: Strategy, step: int) -> dict[str, Any] | None:
        """Training diverged at ``step`` on every rank: rank 0 logs it and writes a summary with
        ``"diverged": {"step": step}`` (and no accuracy, no final model: there is none to give)."""
        if self.outputs is None:
            return None
        summary = self.summary.diverged(strategy, step)
        self.outputs.diverged(summary, step)
        return summary

    def evaluate_swarm(self, model: nn.Module) -> dict[str, Any]:
        """Before finalize: each particle's test accuracy, their ensemble, and the three models a
        swarm can return (``Evaluator.at_end``).  Its time is evaluation time, not training
        time (issue 17)."""
        with self.clocks.evaluating():
            return self.evaluator.at_end(model, self.total)

    def finish(
        self, strategy: Strategy, model: nn.Module, before: dict[str, Any]
    ) -> dict[str, Any] | None:
        """After finalize: log what is left, gather every rank's facts, and on rank 0 write the
        final model and the summary."""
        train_seconds = self.clocks.train_seconds()  # not the end's bookkeeping below
        if strategy.settled > self.logged_rounds:  # a round that landed or settled at the end
            self._log_rounds(strategy, strategy.step)
        ranks = per_rank(strategy, model, self.place.world)  # every rank takes part
        if self.outputs is None:
            return None
        data = self.task.data
        test_accuracy = accuracy(model, data.x_test, data.y_test)
        summary = self.summary.finished(strategy, test_accuracy, before, ranks, train_seconds)
        self.outputs.finished(summary, model)
        return summary
