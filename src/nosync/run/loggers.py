"""Loggers beside ``metrics.jsonl``: ``--logger tensorboard`` (the ``nosync[tensorboard]`` extra).

``metrics.jsonl`` stays the record that ``report`` and ``compare`` read; a logger is fed the very
same records as they are written (:func:`attach` wraps the metrics log) and turns them into
scalars: per-particle fitness and accuracy, the leader, the spread, the pressure, the learning
rate, and each round's seconds (in all, the training thread's blocked time, the time in
collectives) and bytes.  ``round/seconds_blocked``, the old name of ``round/comm_seconds``, is
written too for one release.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Protocol

from nosync.errors import UserError
from nosync.run import lr_schedule
from nosync.run.config import TrainConfig

INSTALL_HINT = "pip install 'nosync[tensorboard]'"


class Log(Protocol):
    def write(self, record: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def check(cfg: TrainConfig) -> None:
    """Before anything starts: the chosen logger's package is installed."""
    if cfg.logger == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise UserError(f"logger: tensorboard is not installed; {INSTALL_HINT}")


def attach(log: Log, cfg: TrainConfig, total: int, ranks_per_particle: int) -> Log:
    """``log`` itself, or ``log`` and the configured logger fed the same records."""
    if cfg.logger == "none":
        return log
    check(cfg)
    board = TensorBoard(Path(cfg.out) / "tensorboard", cfg, total, ranks_per_particle)
    return Tee(log, board)


class Tee:
    """Writes every record to the metrics log, then to the logger."""

    def __init__(self, log: Log, logger: Log) -> None:
        self.log, self.logger = log, logger

    def write(self, record: dict[str, Any]) -> None:
        self.log.write(record)
        self.logger.write(record)

    def close(self) -> None:
        self.log.close()
        self.logger.close()


class TensorBoard:
    """Metrics records as TensorBoard scalars under ``OUT/tensorboard`` (global step = the
    optimizer step).  Tags group per-particle curves: ``fitness/particle_3``."""

    def __init__(self, folder: Path, cfg: TrainConfig, total: int, ranks_per_particle: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))
        self.cfg, self.total, self.ranks = cfg, total, ranks_per_particle

    def write(self, record: dict[str, Any]) -> None:
        kind, step = record.get("type"), record.get("step")
        if step is None:
            return
        scalar = self.writer.add_scalar
        if kind in ("round", "eval"):
            lr = lr_schedule.learning_rate(self.cfg, step, self.total, self.ranks)
            scalar("train/learning_rate", lr, step)
        if kind == "round":
            self._per_particle("fitness", record.get("fitness"), step)
            self._per_particle("distance", record.get("distance"), step)
            for tag, key in (
                ("swarm/leader", "leader"),
                ("swarm/pressure", "pressure"),
                ("round/seconds", "seconds"),
                ("round/blocked_seconds", "blocked_seconds"),
                ("round/comm_seconds", "comm_seconds"),
                ("round/seconds_blocked", "comm_seconds"),  # round/comm_seconds' old name
                ("round/bytes", "comm_bytes"),
            ):
                if record.get(key) is not None:
                    scalar(tag, record[key], step)
            scalar("swarm/particles_reset", len(record.get("reset") or []), step)
            self._explore(record.get("explore"), step)
        elif kind == "eval":
            self._per_particle("test_accuracy", record.get("test_accuracy"), step)
            self._per_particle("train_accuracy", record.get("train_accuracy"), step)
            self._per_particle("eval_fitness", record.get("fitness"), step)
            for tag, key in (
                ("selected/test_accuracy", "selected_test_accuracy"),
                ("selected/train_accuracy", "selected_train_accuracy"),
                ("swarm/spread", "spread"),
                ("swarm/best_particle", "best_particle"),
            ):
                if record.get(key) is not None:
                    scalar(tag, record[key], step)
        elif kind == "final" and record.get("test_accuracy") is not None:
            scalar("selected/final_test_accuracy", record["test_accuracy"], step)

    def _explore(self, explore: dict[str, Any] | None, step: int) -> None:
        """``--explore``: each particle's value of each hyperparameter (``explore/lr/particle_2``)
        and the copies this round."""
        if not explore:
            return
        values = explore["values"]
        for name in values[0] if values else ():
            self._per_particle(f"explore/{name}", [v[name] for v in values], step)
        self.writer.add_scalar("explore/copies", len(explore["exploits"]), step)

    def _per_particle(self, name: str, values: list[float | None] | None, step: int) -> None:
        for i, value in enumerate(values or []):
            if value is not None:
                self.writer.add_scalar(f"{name}/particle_{i}", value, step)

    def close(self) -> None:
        self.writer.close()
