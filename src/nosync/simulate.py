"""``nosync simulate --particles P``: a swarm of P particles in one process.

For studying *statistical* efficiency (steps per particle to a target accuracy) with far more
particles than there are machines.  Every particle is an ordinary :class:`~nosync.swarm.Swarm`
with the same data order, initialisation, optimizer, fitness, rule and neighbourhoods as in a
real run; they run as threads of this process and meet for their rounds on a
:class:`~nosync.transport.LocalWorld` instead of a process group, so the round is the real one,
not a copy.  With one thread per particle it reproduces a real ``nosync train`` run of the same
configuration: the same leaders and, up to the order of floating-point sums, the same weights.

What it does not predict: wall time on a cluster.  There is no network and no straggler; the
particles share this machine's cores.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from . import rules, seeds
from .checkpoint import atomic_torch_save, atomic_write_text
from .config import TrainConfig
from .data import Batches, Dataset, fitness_split, load_dataset
from .errors import UserError
from .evaluate import accuracy, accuracy_of, fitness_value, loss_fitness, predict_proba
from .metrics import MetricsLog, clean_json
from .models import build_model
from .strategies import swarm_of
from .train import lr_scheduler
from .transport import LocalWorld
from .weights import flatten_weights


class Particle:
    """One particle: model, optimizer, schedule, data order and its ``Swarm``."""

    def __init__(
        self, cfg: TrainConfig, index: int, world: LocalWorld, data: Dataset, fitness: Any, n: int
    ) -> None:
        self.index, self.fitness = index, fitness
        self.order: list[Tensor] = []
        init_seed = seeds.init(cfg.seed, index, same=cfg.init == "same")
        self.model = build_model(cfg.model, data.input_shape, data.classes, init_seed)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        self.batches = Batches(n, cfg.batch_size, cfg.seed, index, world.particles, shard=cfg.shard)
        self.total = cfg.steps or max(1, round(cfg.epochs * self.batches.steps_per_epoch))
        self.scheduler = lr_scheduler(self.optimizer, cfg, self.total, ranks_per_particle=1)
        self.swarm = swarm_of(
            cfg, self.model, self.optimizer, fitness, self.total, transport=world.endpoint(index)
        )

    def train(self, until: int, x: Tensor, y: Tensor) -> None:
        """Train to step ``until``; the swarm's hook runs the rounds (meeting the others)."""
        with self.swarm:
            while (step := self.swarm.step) < until:
                epoch, b = divmod(step, self.batches.steps_per_epoch)
                if b == 0 or not self.order:
                    self.order = self.batches.epoch(epoch)
                idx = self.order[b]
                loss = F.cross_entropy(self.model(x[idx]), y[idx])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                if self.scheduler:
                    self.scheduler.step()

    def fitness_now(self) -> float:
        return fitness_value(self.fitness, self.model, flatten_weights(self.model))


def run_together(
    world: LocalWorld, swarm: list[Particle], until: int, x: Tensor, y: Tensor
) -> None:
    """Every particle trains to ``until`` in its own thread; the first failure is raised."""
    errors: list[BaseException] = []

    def work(p: Particle) -> None:
        try:
            p.train(until, x, y)
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller
            errors.append(err)
            world.abort()

    threads = [threading.Thread(target=work, args=(p,), daemon=True) for p in swarm]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        first = next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), None)
        raise first or errors[0]


def simulate(cfg: TrainConfig, particles: int) -> dict[str, Any]:
    """Run the swarm; writes ``config.toml``, ``metrics.jsonl``, ``summary.json``, ``final.pt``."""
    if cfg.strategy != "nosync" or cfg.rule not in rules.RULES:
        raise UserError(
            f"strategy: simulate runs the nosync strategy (rules {', '.join(rules.RULES)})"
        )
    start = time.perf_counter()
    torch.set_num_threads(cfg.threads or 1)
    data = load_dataset(cfg.dataset, cfg.data_dir or None, cfg.train_subset)
    train_idx, fit_idx = fitness_split(len(data.y_train), cfg.fitness_size, cfg.seed)
    x, y = data.x_train[train_idx], data.y_train[train_idx]
    fitness = loss_fitness(data.x_train[fit_idx], data.y_train[fit_idx])
    world = LocalWorld(particles, timeout=cfg.timeout)
    swarm = [Particle(cfg, i, world, data, fitness, len(y)) for i in range(particles)]
    total, steps_per_epoch = swarm[0].total, swarm[0].batches.steps_per_epoch
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.toml", cfg.to_toml())
    log = MetricsLog(out / "metrics.jsonl")
    every = cfg.eval_every or steps_per_epoch
    bar = tqdm(
        total=total,
        desc=f"simulate x{particles}",
        unit="step",
        disable=cfg.quiet,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    logged = 0
    for until in [*range(every, total, every), total]:
        run_together(world, swarm, until, x, y)
        for i, record in enumerate(swarm[0].swarm.history[logged:], start=logged):
            leaders = [p.swarm.history[i]["leader"] for p in swarm]
            log.write({"type": "round", **record, "leaders": leaders})
        logged = len(swarm[0].swarm.history)
        log.write(
            {
                "type": "eval",
                "step": until,
                "samples_per_worker": until * cfg.batch_size,
                **_evaluate(swarm, data, x, y),
            }
        )
        bar.update(until - bar.n)
    bar.close()
    final = _evaluate(swarm, data, x, y)
    probs = torch.stack([predict_proba(p.model, data.x_test) for p in swarm])
    best = swarm[final["best_particle"]]
    leaders = [r["leader"] for r in swarm[0].swarm.history]
    summary = {
        "strategy": "simulate",
        "rule": cfg.rule,
        "topology": cfg.topology,
        "particles": particles,
        "workers": particles,
        "steps": total,
        "test_accuracy": final["selected_test_accuracy"],
        "worker_test_accuracy": final["test_accuracy"],
        "ensemble_test_accuracy": accuracy_of(probs.mean(0), data.y_test),
        "best_particle": best.index,
        "final_fitness": final["fitness"],
        "leaders": leaders,
        "sync_rounds": len(leaders),
        "wall_seconds": time.perf_counter() - start,
    }
    log.write({"type": "final", "test_accuracy": summary["test_accuracy"], "steps": total})
    log.close()
    atomic_torch_save(
        {"state_dict": best.model.state_dict(), "config": cfg.to_dict()}, out / "final.pt"
    )
    atomic_write_text(out / "summary.json", json.dumps(clean_json(summary), indent=2) + "\n")
    return summary


def _evaluate(swarm: list[Particle], data: Dataset, x: Tensor, y: Tensor) -> dict[str, Any]:
    """Per-particle accuracy and fitness; the selected (best-fitness) particle's accuracy."""
    test = [accuracy(p.model, data.x_test, data.y_test) for p in swarm]
    train = [accuracy(p.model, x[:2000], y[:2000]) for p in swarm]
    fits = [p.fitness_now() for p in swarm]
    best = rules.elect_leader(torch.tensor(fits, dtype=torch.float64)) or 0
    weights = torch.stack([flatten_weights(p.model) for p in swarm])
    return {
        "test_accuracy": test,
        "train_accuracy": train,
        "fitness": fits,
        "best_particle": best,
        "selected_test_accuracy": test[best],
        "selected_train_accuracy": train[best],
        "spread": rules.mean_pairwise_distance(weights),
    }
