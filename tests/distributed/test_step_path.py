"""The training step's own cost (issue 17, item 13): what the loop does besides training.

A single worker must be about as fast as a plain PyTorch loop (``benchmarks/single_vs_plain.py``);
these tests keep the cuts in place without timing anything: the end-of-run evaluation is not
training time, the running training loss is fed only where it is read (and with one in-place add),
a step without a pacer or an injected slowdown is not timed, and fp32 enters no autocast.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import torch

from nosync.core.evaluate import TrainLoss
from nosync.run.config import resolve

from support.distributed import run_ranks

LEAP = 1000.0  # seconds the fake clock jumps inside each end-of-run selection


def _train_with_a_slow_end(rank: int, world: int, tmp: str) -> dict[str, Any]:
    """A short single-worker run whose end-of-run evaluation takes LEAP seconds per selection
    (by the run's clocks), and how many steps fed the running training loss."""
    import time

    from nosync.core import evaluate, selection
    from nosync.core.placement import place
    from nosync.run import clocks
    from nosync.run.train import train

    offset = [0.0]
    clocks.time = types.SimpleNamespace(  # the run's clocks only
        perf_counter=lambda: time.perf_counter() + offset[0], time=time.time
    )
    select = selection.select_weights

    def slow_select(*args: Any, **kwargs: Any) -> Any:
        offset[0] += LEAP
        return select(*args, **kwargs)

    selection.select_weights = slow_select
    observed = [0]
    observe = evaluate.TrainLoss.observe

    def counted(self: TrainLoss, loss: torch.Tensor) -> None:
        observed[0] += 1
        observe(self, loss)

    evaluate.TrainLoss.observe = counted
    summaries = {}
    for strategy in ("single", "nosync"):
        flags = {
            "strategy": strategy, "workers": world, "dataset": "digits", "steps": 12,
            "period": 4, "eval_every": 6, "checkpoint_every": 0, "threads": 1, "quiet": True,
            "fitness": "train-loss", "out": f"{tmp}/{strategy}",
        }  # fmt: skip
        before = observed[0]
        summaries[strategy] = train(resolve({}, flags), place(1))
        summaries[strategy]["observed"] = observed[0] - before
    return summaries


def test_the_end_of_run_evaluation_is_not_training_time_and_single_feeds_no_loss(
    tmp_path: Path,
) -> None:
    runs = run_ranks(_train_with_a_slow_end, 1, timeout=120, tmp=str(tmp_path))[0]
    single = runs["single"]
    assert single["train_seconds"] < LEAP <= single["eval_seconds"]
    assert single["train_samples_per_second"] > 12 * 32 / LEAP
    # single reads no training loss; a swarm with the train-loss fitness reads every step's
    assert single["observed"] == 0 and runs["nosync"]["observed"] == 12
