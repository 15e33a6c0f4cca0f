"""What ``summary.json`` says of a training run.

Every summary names the run (strategy, rule, workers, particles, data, model, seed) and its
length and time; a finished run's adds the model it ends with and its accuracy, the models a
swarm could return, its rounds and the time they held training up, what each rank ended with,
its traffic and the machine (the README lists the keys).  A diverged run's has no accuracy and
no model.  The monitor gathers the facts; this module names them.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from nosync.core.placement import Placement
from nosync.run import attempt, devices, exploring
from nosync.run.build import label_smoothing
from nosync.run.clocks import Clocks
from nosync.run.config import SWARMS, TrainConfig
from nosync.run.strategies import Strategy


def weights_digest(model: nn.Module) -> str:
    """sha256 of the model's state (every tensor's bytes, in order): equal models, equal digests."""
    digest = hashlib.sha256()
    for value in model.state_dict().values():
        digest.update(
            value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()


def per_rank(strategy: Strategy, model: nn.Module, world: int) -> tuple[list[Any], ...]:
    """Every rank's seconds held up by rounds, steps skipped (``--stragglers skip``) and a
    digest of the model it ends with (the same on every rank, or finalize went wrong); a
    collective: every rank calls it."""
    rounds = strategy.history
    mine = (sum(r["blocked_seconds"] for r in rounds), strategy.skipped, weights_digest(model))
    gathered: list[Any] = [None] * world
    if world > 1:
        dist.all_gather_object(gathered, mine)
    else:
        gathered = [mine]
    blocked, skipped, digests = (list(column) for column in zip(*gathered, strict=True))
    return blocked, skipped, digests


@dataclass
class RunSummary:
    """The summaries of one run: ``total`` steps of ``steps_per_epoch``, timed by ``clocks``."""

    cfg: TrainConfig
    place: Placement
    total: int
    steps_per_epoch: int
    clocks: Clocks

    def run_keys(self) -> dict[str, Any]:
        """What a summary says of the run itself (finished or diverged)."""
        cfg = self.cfg
        return {
            "strategy": cfg.strategy,
            "rule": cfg.rule if cfg.strategy == "nosync" else None,
            "workers": cfg.workers,
            "particles": self.place.particles,
            "ranks_per_particle": self.place.ranks_per_particle,
            "dataset": cfg.dataset,
            "model": cfg.model,
            "seed": cfg.seed,
        }

    def time_keys(self, train_seconds: float) -> dict[str, Any]:
        """Its length and where its time went (finished or diverged)."""
        return {
            "steps": self.total,
            "epochs": self.total / self.steps_per_epoch,
            "samples_per_worker": self.total * self.cfg.batch_size,
            "wall_seconds": self.clocks.wall_seconds(),
            "train_seconds": train_seconds,
            "eval_seconds": self.clocks.eval_seconds,
        }

    def diverged(self, strategy: Strategy, step: int) -> dict[str, Any]:
        """A run that diverged at ``step``: ``"diverged": {"step": step}``, no accuracy."""
        rounds = strategy.history
        train_seconds = self.clocks.train_seconds()
        comm_seconds, comm_bytes = strategy.comm()
        return {
            **self.run_keys(),
            "diverged": {"step": step},
            "test_accuracy": None,
            "worker_test_accuracy": None,
            "ensemble_test_accuracy": None,
            **self.time_keys(train_seconds),
            "train_samples_per_second": None,
            "sync_rounds": len(rounds),
            "comm_bytes": comm_bytes,
            "comm_seconds": comm_seconds,
            "leaders": [r["leader"] for r in rounds],
            "restarts": attempt.restarts(),
        }

    def finished(
        self,
        strategy: Strategy,
        test_accuracy: float,
        before: dict[str, Any],
        ranks: tuple[list[Any], ...],
        train_seconds: float,
    ) -> dict[str, Any]:
        """A run that finished: the selected model's ``test_accuracy``, what the evaluation
        ``before`` finalize found, and the facts of every rank (:func:`per_rank`)."""
        return {
            **self.run_keys(),
            **self._selected(strategy, test_accuracy),
            **before,
            **self.time_keys(train_seconds),
            **self._rounds(strategy, ranks, train_seconds),
            **devices.facts(self.place.device, self.cfg.precision),
            "compile": self.cfg.compile,
            "backend": str(dist.get_backend()),
            "threads": torch.get_num_threads(),
        }

    def _selected(self, strategy: Strategy, test_accuracy: float) -> dict[str, Any]:
        """The model the run ends with, and how it was chosen."""
        cfg, swarm = self.cfg, self.cfg.strategy == "nosync"
        particles = self.place.particles
        return {
            "selected": strategy.describe_selected(),
            "best_particle": strategy.best_particle,
            "select": cfg.select if swarm else None,
            "selected_ingredients": strategy.ingredients(),
            "label_smoothing": (
                [label_smoothing(cfg, i) for i in range(particles)] if cfg.diversity else None
            ),
            "final_fitness": strategy.final_fitness(),
            "test_accuracy": test_accuracy,
            "explore": exploring.summary_of(strategy.population, strategy.best_particle),
        }

    def _rounds(
        self, strategy: Strategy, ranks: tuple[list[Any], ...], train_seconds: float
    ) -> dict[str, Any]:
        """Its rounds, the time they held training up, every rank's facts and its traffic."""
        cfg, rounds = self.cfg, strategy.history
        blocked, skipped, digests = ranks
        comm_seconds, comm_bytes = strategy.comm()
        samples = (self.total * cfg.workers - sum(skipped)) * cfg.batch_size
        return {
            "train_samples_per_second": samples / train_seconds if train_seconds > 0 else math.nan,
            "sync_rounds": len(rounds),
            "sync_seconds": sum(r["seconds"] for r in rounds),
            "round_mode": cfg.round if cfg.strategy in SWARMS else None,
            "blocked_seconds": blocked[0],
            "blocked_seconds_per_rank": blocked,
            "blocked_share": blocked[0] / train_seconds if train_seconds > 0 else math.nan,
            "stragglers": cfg.stragglers if cfg.strategy == "nosync" else None,
            "skipped_steps_per_rank": skipped,
            "final_sha256_per_rank": digests,
            "comm_bytes": comm_bytes,
            "comm_seconds": comm_seconds,
            "leaders": [r["leader"] for r in rounds],
            "restarts": attempt.restarts(),
        }
