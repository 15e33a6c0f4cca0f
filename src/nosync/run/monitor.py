"""Watching a run: evaluation across the swarm, ``metrics.jsonl``, the progress bar and the
files written at the end.  Only global rank 0 writes; the first rank of every particle takes
part in the evaluation collectives (evaluation traffic is not counted as training traffic).
"""

from __future__ import annotations

import copy
import hashlib
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from nosync.core import selection
from nosync.core.evaluate import accuracy, accuracy_of, predict_proba
from nosync.core.placement import Placement
from nosync.core.rules import mean_pairwise_distance
from nosync.core.weights import flatten_weights, load_weights
from nosync.data.datasets import Dataset
from nosync.errors import Diverged
from nosync.files import atomic_write_text
from nosync.run import attempt, devices, loggers
from nosync.run.build import TRAIN_EVAL_EXAMPLES
from nosync.run.checkpoint import atomic_torch_save
from nosync.run.config import TrainConfig
from nosync.run.export import save_safetensors
from nosync.run.metrics import MetricsLog, truncate_metrics, write_summary
from nosync.run.strategies import Strategy


def weights_digest(model: nn.Module) -> str:
    """sha256 of the model's state (every tensor's bytes, in order): equal models, equal digests."""
    digest = hashlib.sha256()
    for value in model.state_dict().values():
        digest.update(
            value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()


def gather(t: Tensor, group: dist.ProcessGroup | None) -> Tensor:
    """Stack ``t`` from every member of ``group`` (the particles' first ranks).  Evaluation
    traffic goes through the CPU (gloo), whatever the device: it is rare and not timed."""
    w = t.detach().cpu().contiguous()
    out = [torch.empty_like(w) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, w, group=group)
    return torch.stack(out).to(t.device)


def _smoothing(cfg: TrainConfig, particles: int) -> list[float] | None:
    """``--diversity``: each particle's label smoothing (None without it)."""
    from nosync.run.build import label_smoothing

    return [label_smoothing(cfg, i) for i in range(particles)] if cfg.diversity else None


class Monitor:
    def __init__(
        self,
        cfg: TrainConfig,
        place: Placement,
        data: Dataset,
        x_train: Tensor,
        y_train: Tensor,
        fitness: Any,
        total_steps: int,
        steps_per_epoch: int,
        wall_start: float,
    ) -> None:
        self.cfg, self.place, self.data, self.fitness = cfg, place, data, fitness
        self.total, self.steps_per_epoch = total_steps, steps_per_epoch
        self.root = place.rank == 0
        n = TRAIN_EVAL_EXAMPLES
        self.x_train_eval, self.y_train_eval = x_train[:n], y_train[:n]
        self.out = Path(cfg.out)
        self.log: loggers.Log | None = None
        self.wall_start = wall_start
        self.logged_rounds = 0
        self.eval_seconds = 0.0
        self._scratch: nn.Module | None = None  # evaluates averaged/centre weights
        self.train_start = time.perf_counter()

    def begin(self, strategy: Strategy, resumed: dict[str, Any] | None) -> None:
        """Open the outputs (continuing them after a resume) and start the clocks."""
        start = resumed["step"] if resumed else 0
        if resumed:
            now, saved = time.perf_counter(), resumed["monitor"]
            self.eval_seconds = saved["eval_seconds"]
            self.train_start = now - saved["train_seconds"] - saved["eval_seconds"]
            self.wall_start -= saved["wall_seconds"]
            self.logged_rounds = strategy.settled  # what the checkpointed run had logged
        if self.root:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "config.toml", self.cfg.to_toml())
            metrics = self.out / "metrics.jsonl"
            if resumed and metrics.exists():
                truncate_metrics(metrics, start, self.logged_rounds)
            if not resumed:  # a folder reused after a run that saved no checkpoint
                (self.out / "summary.json").unlink(missing_ok=True)
            self.log = loggers.attach(  # metrics.jsonl, and TensorBoard with --logger
                MetricsLog(metrics, append=bool(resumed)),
                self.cfg,
                self.total,
                self.place.ranks_per_particle,
            )
            if resumed:
                restarts = attempt.restarts()
                self.log.write(
                    {"type": "resume", "step": start, "restart": restarts, "time": time.time()}
                )
                why = f"restart {restarts} after a worker failed: " if restarts else ""
                print(
                    f"nosync: {why}resuming from the checkpoint at step {start}",
                    file=sys.stderr,
                    flush=True,
                )
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

    def _where(self) -> str:
        """The progress line names the device and precision when they are not the defaults."""
        device, bf16 = self.place.device, self.cfg.precision == "bf16"
        return (f" {device}" if device.type != "cpu" else "") + (" bf16" if bf16 else "")

    def state_dict(self) -> dict[str, float]:
        """The clocks, so that a resumed run reports its whole time."""
        return {
            "train_seconds": self.train_seconds(),
            "eval_seconds": self.eval_seconds,
            "wall_seconds": time.perf_counter() - self.wall_start,
        }

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
            if self.log:
                self.log.write({"type": "round", **record})
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
            self.bar.set_postfix(
                epoch=step // self.steps_per_epoch,
                best=f"{min(finite):.4f}",
                leader=last["leader"],
                **memory,
                refresh=False,
            )

    def train_seconds(self) -> float:
        return time.perf_counter() - self.train_start - self.eval_seconds

    def evaluate(self, step: int, model: nn.Module, strategy: Strategy) -> None:
        """Per-particle test/train accuracy and fitness, the selected model's accuracy and the
        swarm spread, logged on rank 0."""
        start = time.perf_counter()
        if self.place.is_head:
            group = self.place.swarm_group
            own = torch.tensor(
                self._accuracies(model) + [float(self.fitness(model)), float(strategy.skipped)],
                dtype=torch.float64,
            )
            rows = gather(own, group)
            weights = gather(flatten_weights(model), group)
            selected = self._selected(strategy, model, rows, weights)
            if self.log:
                self.log.write(
                    {
                        "type": "eval",
                        "step": step,
                        "epoch": step / self.steps_per_epoch,
                        "samples_per_worker": step * self.cfg.batch_size,
                        "train_seconds": self.train_seconds(),
                        "test_accuracy": rows[:, 0].tolist(),
                        "train_accuracy": rows[:, 1].tolist(),
                        "fitness": rows[:, 2].tolist(),
                        "skipped_steps": [int(n) for n in rows[:, 3].tolist()],
                        "selected_test_accuracy": selected[0],
                        "selected_train_accuracy": selected[1],
                        "spread": mean_pairwise_distance(weights),
                    }
                )
        self.eval_seconds += time.perf_counter() - start

    def _accuracies(self, model: nn.Module) -> list[float]:
        return [
            accuracy(model, self.data.x_test, self.data.y_test),
            accuracy(model, self.x_train_eval, self.y_train_eval),
        ]

    def _selected(
        self, strategy: Strategy, model: nn.Module, rows: Tensor, weights: Tensor
    ) -> list[float]:
        """(test, train) accuracy of the model the strategy would end with if it ended now."""
        if strategy.selection in ("model", "best"):
            fitness = torch.nan_to_num(rows[:, 2], nan=math.inf)
            best = int(fitness.argmin()) if strategy.selection == "best" else 0
            return rows[best, :2].tolist()
        center = strategy.center() if strategy.selection == "center" else None  # flat weights
        if self._scratch is None:
            self._scratch = copy.deepcopy(model)
        mean = strategy.average_selected(weights.mean(0)) if center is None else center
        load_weights(self._scratch, mean)
        return self._accuracies(self._scratch)

    # ---- at the end ---------------------------------------------------------------------------
    def _run_keys(self) -> dict[str, Any]:
        """What a summary says of the run itself (finished or diverged)."""
        return {
            "strategy": self.cfg.strategy,
            "rule": self.cfg.rule if self.cfg.strategy == "nosync" else None,
            "workers": self.cfg.workers,
            "particles": self.place.particles,
            "ranks_per_particle": self.place.ranks_per_particle,
            "dataset": self.cfg.dataset,
            "model": self.cfg.model,
            "seed": self.cfg.seed,
        }

    def _time_keys(self, train_seconds: float) -> dict[str, Any]:
        """Its length and where its time went (finished or diverged)."""
        return {
            "steps": self.total,
            "epochs": self.total / self.steps_per_epoch,
            "samples_per_worker": self.total * self.cfg.batch_size,
            "wall_seconds": time.perf_counter() - self.wall_start,
            "train_seconds": train_seconds,
            "eval_seconds": self.eval_seconds,
        }

    def diverged(self, strategy: Strategy, step: int) -> dict[str, Any] | None:
        """Training diverged at ``step`` on every rank: rank 0 logs it and writes a summary with
        ``"diverged": {"step": step}`` (and no accuracy, no final model: there is none to give)."""
        if not self.root:
            return None
        rounds = strategy.history
        train_seconds = self.train_seconds()
        comm_seconds, comm_bytes = strategy.comm()
        summary = {
            **self._run_keys(),
            "diverged": {"step": step},
            "test_accuracy": None,
            "worker_test_accuracy": None,
            "ensemble_test_accuracy": None,
            **self._time_keys(train_seconds),
            "train_samples_per_second": None,
            "sync_rounds": len(rounds),
            "comm_bytes": comm_bytes,
            "comm_seconds": comm_seconds,
            "leaders": [r["leader"] for r in rounds],
            "restarts": attempt.restarts(),
        }
        if self.log:
            self.log.write({"type": "diverged", "step": step})
            self.log.close()
        write_summary(self.out / "summary.json", summary)
        return summary

    def evaluate_swarm(self, model: nn.Module) -> dict[str, Any]:
        """Before finalize: each particle's test accuracy, their ensemble, and the three models a
        swarm can return (``selection.py``): the best particle by fitness, the weight average
        and the greedy soup (averages with their BatchNorm statistics recomputed).  Its time is
        evaluation time, not training time (issue 17)."""
        start = time.perf_counter()
        try:
            return self._evaluate_swarm(model)
        finally:
            self.eval_seconds += time.perf_counter() - start

    def _evaluate_swarm(self, model: nn.Module) -> dict[str, Any]:
        if not self.place.is_head:
            return {}
        group, x, y = self.place.swarm_group, self.data.x_test, self.data.y_test
        probs = gather(predict_proba(model, x), group)
        weights = gather(flatten_weights(model), group)
        fits = gather(torch.tensor([float(self.fitness(model))], dtype=torch.float64), group)
        fitness = [f if math.isfinite(f) else math.inf for f in fits.view(-1).tolist()]
        if not selection.live(fitness):  # (select_weights would have nothing to choose from)
            raise Diverged("every particle's fitness is NaN or infinite at the end", self.total)
        scratch = copy.deepcopy(model)
        found: dict[str, Any] = {}
        for kind in selection.SELECTS:
            flat, ints, ingredients = selection.select_weights(
                kind, weights, fitness, scratch, self.fitness, self._bn_batches
            )
            load_weights(scratch, flat)
            load_weights(scratch, ints, integer=True)
            name = "weight_average" if kind == "average" else kind
            found[f"{name}_test_accuracy"] = accuracy(scratch, x, y)
            if kind == "soup":
                found["soup_ingredients"] = ingredients
        return {
            "worker_test_accuracy": [accuracy_of(p, y) for p in probs],
            "ensemble_test_accuracy": accuracy_of(probs.mean(0), y),
            **found,
        }

    def _bn_batches(self) -> list[Tensor]:
        """Training batches for recomputing an averaged model's BatchNorm statistics."""
        return list(self.x_train_eval.split(self.cfg.batch_size))

    def finish(
        self, strategy: Strategy, model: nn.Module, before: dict[str, Any]
    ) -> dict[str, Any] | None:
        train_seconds = self.train_seconds()  # not the end's bookkeeping below
        rounds = strategy.history
        if strategy.settled > self.logged_rounds:  # a round that landed or settled at the end
            self._log_rounds(strategy, strategy.step)
        # every rank's seconds held up by rounds, steps skipped (--stragglers skip), and a digest
        # of the model it ends with (the same on every rank, or finalize went wrong)
        mine = (sum(r["blocked_seconds"] for r in rounds), strategy.skipped, weights_digest(model))
        per_rank: list[Any] = [None] * self.place.world
        if self.place.world > 1:
            dist.all_gather_object(per_rank, mine)
        else:
            per_rank = [mine]
        blocked, skipped, digests = (list(column) for column in zip(*per_rank, strict=True))
        if not self.root:
            return None
        comm_seconds, comm_bytes = strategy.comm()
        samples = (self.total * self.cfg.workers - sum(skipped)) * self.cfg.batch_size
        summary = {
            **self._run_keys(),
            "selected": strategy.describe_selected(),
            "best_particle": strategy.best_particle(),
            "select": self.cfg.select if self.cfg.strategy == "nosync" else None,
            "selected_ingredients": strategy.ingredients(),
            "label_smoothing": _smoothing(self.cfg, self.place.particles),
            "final_fitness": strategy.final_fitness(),
            "test_accuracy": accuracy(model, self.data.x_test, self.data.y_test),
            **before,
            **self._time_keys(train_seconds),
            "train_samples_per_second": samples / train_seconds if train_seconds > 0 else math.nan,
            "sync_rounds": len(rounds),
            "sync_seconds": sum(r["seconds"] for r in rounds),
            "round_mode": self.cfg.round if self.cfg.strategy in ("nosync", "easgd") else None,
            "blocked_seconds": blocked[0],
            "blocked_seconds_per_rank": blocked,
            "blocked_share": blocked[0] / train_seconds if train_seconds > 0 else math.nan,
            "stragglers": self.cfg.stragglers if self.cfg.strategy == "nosync" else None,
            "skipped_steps_per_rank": skipped,
            "final_sha256_per_rank": digests,
            "comm_bytes": comm_bytes,
            "comm_seconds": comm_seconds,
            "leaders": [r["leader"] for r in rounds],
            "restarts": attempt.restarts(),
            **devices.facts(self.place.device, self.cfg.precision),
            "compile": self.cfg.compile,
            "backend": str(dist.get_backend()),
            "threads": torch.get_num_threads(),
        }
        if self.log:
            self.log.write({"type": "final", **{k: summary[k] for k in ("test_accuracy", "steps")}})
            self.log.close()
        state = {k: v.cpu() for k, v in model.state_dict().items()}  # loads anywhere
        final = {"state_dict": state, "config": self.cfg.to_dict()}
        atomic_torch_save(final, self.out / "final.pt")
        save_safetensors(state, self.cfg.to_dict(), self.out / "final.safetensors")
        write_summary(self.out / "summary.json", summary)
        return summary
