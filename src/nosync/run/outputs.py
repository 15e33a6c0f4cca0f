"""The files a run leaves in its folder (``--out``): ``config.toml``, ``metrics.jsonl`` (and the
``--logger`` beside it), ``summary.json`` and the final model (``final.pt``,
``final.safetensors``).

``nosync train`` (global rank 0) and ``nosync simulate`` both write them through
:class:`Outputs`, so that the two leave the same files, written the same way.  What goes in a
summary is the caller's (``run.summary`` for a training run).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch import nn

from nosync.files import atomic_write_text
from nosync.run import loggers
from nosync.run.checkpoint import atomic_torch_save
from nosync.run.config import TrainConfig
from nosync.run.export import save_safetensors
from nosync.run.metrics import SUMMARY_KEYS, MetricsLog, truncate_metrics, write_summary


class Outputs:
    """The run folder of ``cfg``; ``total`` steps and ``ranks_per_particle`` are what the
    logger's learning-rate curve needs."""

    def __init__(self, cfg: TrainConfig, total: int, ranks_per_particle: int = 1) -> None:
        self.cfg, self.total, self.ranks_per_particle = cfg, total, ranks_per_particle
        self.out = Path(cfg.out)
        self.log: loggers.Log | None = None

    def open(self, resumed_step: int | None = None, logged_rounds: int | None = None) -> None:
        """Write ``config.toml`` and open ``metrics.jsonl``: a new one, or after a resume from
        ``resumed_step`` the old one, cut back to what the checkpoint had logged."""
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "config.toml", self.cfg.to_toml())
        metrics = self.out / "metrics.jsonl"
        resumed = resumed_step is not None
        if resumed_step is not None and metrics.exists():
            truncate_metrics(metrics, resumed_step, logged_rounds)
        if not resumed:  # a folder reused after a run that saved no checkpoint
            (self.out / "summary.json").unlink(missing_ok=True)
        self.log = loggers.attach(  # metrics.jsonl, and TensorBoard with --logger
            MetricsLog(metrics, append=resumed), self.cfg, self.total, self.ranks_per_particle
        )

    def write(self, record: dict[str, Any]) -> None:
        """One record of ``metrics.jsonl`` (and the logger)."""
        if self.log is None:
            raise ValueError(f"{self.out}: the outputs are not open")
        self.log.write(record)

    def finished(
        self, summary: dict[str, Any], model: nn.Module, required: Iterable[str] = SUMMARY_KEYS
    ) -> None:
        """The end of a run that finished: its last record, the model it ends with and its
        summary (which must hold the ``required`` keys)."""
        self.write({"type": "final", **{k: summary[k] for k in ("test_accuracy", "steps")}})
        self._close()
        state = {k: v.cpu() for k, v in model.state_dict().items()}  # loads anywhere
        config = self.cfg.to_dict()
        atomic_torch_save({"state_dict": state, "config": config}, self.out / "final.pt")
        save_safetensors(state, config, self.out / "final.safetensors")
        write_summary(self.out / "summary.json", summary, required)

    def diverged(
        self, summary: dict[str, Any], step: int, required: Iterable[str] = SUMMARY_KEYS
    ) -> None:
        """The end of a run that diverged at ``step``: the record, and a summary (no model:
        there is none to give)."""
        self.write({"type": "diverged", "step": step})
        self._close()
        write_summary(self.out / "summary.json", summary, required)

    def _close(self) -> None:
        if self.log is not None:
            self.log.close()
