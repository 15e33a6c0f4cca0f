"""``nosync simulate --particles P``: a swarm of P particles in one process.

For studying *statistical* efficiency (steps per particle to a target accuracy) with far more
particles than there are machines.  Every particle is an ordinary :class:`~nosync.core.swarm.Swarm`
with the same data order, initialisation, optimizer, fitness, rule and neighbourhoods as in a
real run; they run as threads of this process and meet for their rounds on a
:class:`~nosync.core.transport.LocalWorld` instead of a process group, so the round is the real one,
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from nosync.core import rules
from nosync.core.evaluate import TrainLoss, accuracy, accuracy_of, fitness_value, predict_proba
from nosync.core.transport import LocalWorld
from nosync.core.weights import flatten_weights
from nosync.data.datasets import Batches
from nosync.errors import Diverged, UserError
from nosync.files import atomic_write_text
from nosync.run import build, loggers, lr_schedule
from nosync.run.build import Task
from nosync.run.checkpoint import atomic_torch_save
from nosync.run.config import TrainConfig
from nosync.run.export import save_safetensors
from nosync.run.metrics import MetricsLog, clean_json
from nosync.run.strategies import swarm_of


class Particle:
    """One particle: model, optimizer, schedule, data order and its ``Swarm``."""

    def __init__(self, cfg: TrainConfig, index: int, world: LocalWorld, task: Task) -> None:
        self.index, self.fitness = index, task.fitness
        self.loss = build.train_loss(cfg, task, index)  # --diversity: its own smoothing
        self.model = build.model(cfg, task, index)
        self.optimizer = build.optimizer(cfg, self.model, lr_schedule.base_lr(cfg, 1))
        self.batches = Batches(
            task.n, cfg.batch_size, cfg.seed, index, world.particles, shard=cfg.shard
        )
        self.total = cfg.steps or max(1, round(cfg.epochs * self.batches.steps_per_epoch))
        self.feed = build.stream(cfg, task, self.batches, 0, self.total)
        self.scheduler = lr_schedule.scheduler(self.optimizer, cfg, self.total, 1)
        self.losses = TrainLoss()  # logged per round, and the train-loss fitness
        fitness = self.losses if cfg.fitness == "train-loss" else task.fitness
        self.swarm = swarm_of(
            cfg,
            self.model,
            self.optimizer,
            fitness,
            self.total,
            train_loss=self.losses,
            transport=world.endpoint(index),
            bn_data=build.bn_batches(cfg, task),
        )

    def train(self, until: int) -> None:
        """Train to step ``until``; the swarm's hook runs the rounds (meeting the others)."""
        with self.swarm:
            while self.swarm.step < until:
                inputs, targets = next(self.feed)
                loss = self.loss(self.model(inputs), targets)
                self.losses.observe(loss)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                if self.scheduler:
                    self.scheduler.step()

    def fitness_now(self) -> float:
        return fitness_value(self.fitness, self.model, flatten_weights(self.model))


def run_together(world: LocalWorld, swarm: list[Particle], until: int) -> None:
    """Every particle trains to ``until`` in its own thread; the first failure is raised."""
    together(world, swarm, lambda p: p.train(until))


def together(world: LocalWorld, swarm: list[Particle], work_on: Callable[[Particle], Any]) -> None:
    """``work_on(particle)`` for every particle, each in its own thread (so that their
    collectives meet); the first failure is raised."""
    errors: list[BaseException] = []

    def work(p: Particle) -> None:
        try:
            work_on(p)
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
    if cfg.select != "best":
        raise UserError(f"select: simulate reports the best particle, not the {cfg.select}")
    start = time.perf_counter()
    torch.set_num_threads(cfg.threads or 1)
    loggers.check(cfg)
    task = build.task(cfg)
    world = LocalWorld(particles, timeout=cfg.timeout)
    swarm = [Particle(cfg, i, world, task) for i in range(particles)]
    total, steps_per_epoch = swarm[0].total, swarm[0].batches.steps_per_epoch
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.toml", cfg.to_toml())
    log = loggers.attach(MetricsLog(out / "metrics.jsonl"), cfg, total, ranks_per_particle=1)
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

    def log_rounds() -> None:
        nonlocal logged
        settled = swarm[0].swarm.settled  # a round's distances come with the next round
        for i, record in enumerate(swarm[0].swarm.history[logged:settled], start=logged):
            leaders = [p.swarm.history[i]["leader"] for p in swarm]
            log.write({"type": "round", **record, "leaders": leaders})
        logged = settled

    try:
        for until in [*range(every, total, every), total]:
            run_together(world, swarm, until)
            log_rounds()
            log.write(
                {
                    "type": "eval",
                    "step": until,
                    "samples_per_worker": until * cfg.batch_size,
                    **_evaluate(swarm, task),
                }
            )
            bar.update(until - bar.n)
        # an async round still in flight lands, as in a real run, and the last distances arrive
        together(world, swarm, lambda p: p.swarm.settle())
        log_rounds()
        final = _evaluate(swarm, task, final=True)
    except Diverged as err:  # every particle at once: there is no leader to recover from
        step = err.step if err.step is not None else max(p.swarm.step for p in swarm)
        return _diverged(cfg, particles, swarm, log, step, start)
    finally:
        bar.close()
    data = task.data
    probs = torch.stack([predict_proba(p.model, data.x_test) for p in swarm])
    best = swarm[final["best_particle"]]
    leaders = [r["leader"] for r in swarm[0].swarm.history]
    summary = {
        **_run_keys(cfg, particles, total),
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
    save_safetensors(best.model.state_dict(), cfg.to_dict(), out / "final.safetensors")
    atomic_write_text(out / "summary.json", json.dumps(clean_json(summary), indent=2) + "\n")
    return summary


def _run_keys(cfg: TrainConfig, particles: int, steps: int) -> dict[str, Any]:
    """What a simulated run's summary says of the run itself (finished or diverged)."""
    return {
        "strategy": "simulate",
        "rule": cfg.rule,
        "topology": cfg.topology,
        "particles": particles,
        "workers": particles,
        "steps": steps,
    }


def _diverged(
    cfg: TrainConfig, particles: int, swarm: list[Particle], log: Any, step: int, start: float
) -> dict[str, Any]:
    """The summary of a swarm that diverged at ``step`` (as a real run's: ``"diverged"``, no
    accuracy and no final model)."""
    leaders = [r["leader"] for r in swarm[0].swarm.history]
    summary = {
        **_run_keys(cfg, particles, swarm[0].total),
        "diverged": {"step": step},
        "test_accuracy": None,
        "worker_test_accuracy": None,
        "ensemble_test_accuracy": None,
        "leaders": leaders,
        "sync_rounds": len(leaders),
        "wall_seconds": time.perf_counter() - start,
    }
    log.write({"type": "diverged", "step": step})
    log.close()
    atomic_write_text(
        Path(cfg.out) / "summary.json", json.dumps(clean_json(summary), indent=2) + "\n"
    )
    return summary


def _evaluate(swarm: list[Particle], task: Task, final: bool = False) -> dict[str, Any]:
    """Per-particle accuracy and (held-out) fitness; the selected particle's accuracy, selected
    by held-out fitness while training (as the monitor does) and, at the end, by the swarm's own
    fitness (as ``Swarm.finalize`` does: the training loss under ``--fitness train-loss``)."""
    test = [accuracy(p.model, task.data.x_test, task.data.y_test) for p in swarm]
    train = [accuracy(p.model, task.x_eval, task.y_eval) for p in swarm]
    fits = [p.fitness_now() for p in swarm]
    chosen_by = fits
    if final:
        chosen_by = [
            fitness_value(p.swarm.fitness, p.model, flatten_weights(p.model)) for p in swarm
        ]
    best = rules.elect_leader(torch.tensor(chosen_by, dtype=torch.float64))
    if best is None and final:  # the swarm's own finalize would find no leader either
        raise Diverged("every particle diverged", max(p.swarm.step for p in swarm))
    best = best or 0
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
