"""``nosync simulate --particles P``: a swarm of P particles in one process, one after another.

For studying *statistical* efficiency (steps per particle to a target accuracy) with far more
particles than there are machines.  It runs the same pieces as a real run - the same data order
per particle, initialisation, optimizer, fitness and the same pull rules, leader election and
neighbourhoods from ``rules.py`` and ``topology.py`` - but in sequence, with no process group.
With one thread it reproduces a real ``nosync train`` run of the same configuration: the same
leaders and, up to the order of floating-point sums, the same weights.

What it does not predict: wall time on a cluster.  There is no communication, no waiting for
stragglers, no network; a simulated round costs nothing but the fitness evaluations.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from . import rules, topology
from .checkpoint import atomic_torch_save, atomic_write_text
from .config import TrainConfig
from .data import Batches, fitness_split, load_dataset
from .errors import UserError
from .evaluate import accuracy, accuracy_of, loss_fitness, predict_proba
from .metrics import MetricsLog, clean_json
from .models import build_model
from .swarm import flatten_weights, load_weights
from .train import lr_scheduler


class Particle:
    """One particle's model, optimizer, data order and rule state."""

    def __init__(
        self, cfg: TrainConfig, index: int, particles: int, data: Any, n: int, total: int
    ) -> None:
        init_seed = cfg.seed if cfg.init == "same" else cfg.seed + 1000 * (index + 1)
        self.index = index
        self.model = build_model(cfg.model, data.input_shape, data.classes, init_seed)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        self.scheduler = lr_scheduler(self.optimizer, cfg, total, ranks_per_particle=1)
        self.batches = Batches(n, cfg.batch_size, cfg.seed, index, particles, shard=cfg.shard)
        self.generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + index)
        self.pso = rules.PSOState()
        self.order: list[Tensor] = []

    def step(self, step: int, x: Tensor, y: Tensor) -> None:
        epoch, b = divmod(step, self.batches.steps_per_epoch)
        if b == 0:
            self.order = self.batches.epoch(epoch)
        idx = self.order[b]
        loss = F.cross_entropy(self.model(x[idx]), y[idx])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.scheduler:
            self.scheduler.step()

    def reset(self, weights: Tensor) -> None:
        """A diverged particle: the leader's weights, fresh optimizer and rule state."""
        load_weights(self.model, weights)
        self.optimizer.state.clear()
        self.pso = rules.PSOState()


def fitness_of(particle: Particle, fitness: Any) -> float:
    """As ``Swarm``: non-finite weights or loss count as +inf."""
    flat = flatten_weights(particle.model)
    if not bool(torch.isfinite(flat).all()):
        return math.inf
    value = float(fitness(particle.model))
    return value if math.isfinite(value) else math.inf


def sync_round(
    cfg: TrainConfig, swarm: list[Particle], fitness: Any, round_: int, pressure: float
) -> dict[str, Any]:
    """One round for every particle, with the rules and neighbourhoods of a real run
    (``round_`` counts from 1, as ``Swarm.rounds`` does)."""
    fits = [fitness_of(p, fitness) for p in swarm]
    flats = [flatten_weights(p.model) for p in swarm]
    dtype = getattr(torch, cfg.exchange)
    count = len(swarm)
    if cfg.rule == "elastic":
        finite = [i for i, f in enumerate(fits) if math.isfinite(f)]
        mean = torch.stack([flats[i] for i in finite]).sum(0) / len(finite)
        for i, p in enumerate(swarm):
            if i in finite:
                load_weights(p.model, rules.elastic_pull(flats[i], mean, pressure))
            else:
                p.reset(mean.clone())
        return {
            "fitness": fits,
            "leader": rules.elect_leader(torch.tensor(fits)),
            "reset": [i for i in range(count) if i not in finite],
        }
    leaders = []
    for i, p in enumerate(swarm):
        if cfg.topology == "all":
            seen = dict(enumerate(fits))
        else:
            ins = topology.in_neighbours(cfg.topology, i, count, round_, cfg.neighbors, cfg.seed)
            seen = {i: fits[i], **{j: fits[j] for j in ins}}
        leader = topology.local_leader(seen)
        leaders.append(leader)
        if leader is None:
            continue
        # what a real run receives: the leader's weights sent in the exchange dtype
        lead = flats[i] if leader == i else flats[leader].to(dtype).to(flats[i].dtype)
        if not math.isfinite(fits[i]):
            p.reset(lead)
        elif cfg.rule == "leader":
            load_weights(p.model, rules.leader_pull(flats[i], lead, pressure))
        elif cfg.rule == "pso":
            new = rules.pso_round(
                flats[i],
                fits[i],
                lead,
                p.pso,
                pressure=pressure,
                inertia=cfg.inertia,
                c1=cfg.c1,
                c2=cfg.c2,
                generator=p.generator,
            )
            load_weights(p.model, new)
    # a real run's rank 0 logs its own (local) leader; with `all` every particle has the same one
    return {
        "fitness": fits,
        "leader": leaders[0],
        "leaders": leaders,
        "reset": [i for i, f in enumerate(fits) if not math.isfinite(f)],
    }


def simulate(cfg: TrainConfig, particles: int) -> dict[str, Any]:
    """Run the swarm; writes ``config.toml``, ``metrics.jsonl``, ``summary.json``, ``final.pt``."""
    if cfg.strategy != "nosync" or cfg.rule not in ("leader", "pso", "elastic", "none"):
        raise UserError(
            "strategy: simulate runs the nosync strategy (rules leader, pso, elastic, none)"
        )
    start = time.perf_counter()
    torch.set_num_threads(cfg.threads or 1)
    data = load_dataset(cfg.dataset, cfg.data_dir or None, cfg.train_subset)
    train_idx, fit_idx = fitness_split(len(data.y_train), cfg.fitness_size, cfg.seed)
    x, y = data.x_train[train_idx], data.y_train[train_idx]
    fitness = loss_fitness(data.x_train[fit_idx], data.y_train[fit_idx])
    probe = Batches(len(y), cfg.batch_size, cfg.seed, 0, particles, shard=cfg.shard)
    total = cfg.steps or max(1, round(cfg.epochs * probe.steps_per_epoch))
    swarm = [Particle(cfg, i, particles, data, len(y), total) for i in range(particles)]
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.toml", cfg.to_toml())
    log = MetricsLog(out / "metrics.jsonl")
    every = cfg.eval_every or probe.steps_per_epoch
    leaders = []
    bar = tqdm(
        total=total,
        desc=f"simulate x{particles}",
        unit="step",
        disable=cfg.quiet,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    for step in range(total):
        for p in swarm:
            p.step(step, x, y)
        done = step + 1
        if done % cfg.period == 0:
            pressure = rules.pressure_at(cfg.schedule, cfg.pressure, done / total)
            record = sync_round(cfg, swarm, fitness, done // cfg.period, pressure)
            leaders.append(record["leader"])
            log.write({"type": "round", "step": done, "pressure": pressure, **record})
        if done % every == 0 or done == total:
            log.write(
                {
                    "type": "eval",
                    "step": done,
                    "samples_per_worker": done * cfg.batch_size,
                    **_evaluate(swarm, fitness, data, x, y),
                }
            )
        bar.update(1)
    bar.close()
    final = _evaluate(swarm, fitness, data, x, y)
    probs = torch.stack([predict_proba(p.model, data.x_test) for p in swarm])
    best = swarm[int(torch.tensor(final["fitness"]).nan_to_num(math.inf).argmin())]
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


def _evaluate(swarm: list[Particle], fitness: Any, data: Any, x: Tensor, y: Tensor) -> dict:
    """Per-particle accuracy and fitness; the selected (best-fitness) particle's accuracy."""
    test = [accuracy(p.model, data.x_test, data.y_test) for p in swarm]
    train = [accuracy(p.model, x[:2000], y[:2000]) for p in swarm]
    fits = [fitness_of(p, fitness) for p in swarm]
    best = int(torch.tensor(fits).nan_to_num(math.inf).argmin())
    weights = torch.stack([flatten_weights(p.model) for p in swarm])
    return {
        "test_accuracy": test,
        "train_accuracy": train,
        "fitness": fits,
        "selected_test_accuracy": test[best],
        "selected_train_accuracy": train[best],
        "spread": rules.mean_pairwise_distance(weights),
    }
