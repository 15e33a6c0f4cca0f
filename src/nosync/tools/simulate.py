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

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from tqdm import tqdm

from nosync.core import rules
from nosync.core.evaluate import TrainLoss, accuracy, accuracy_of, fitness_value, predict_proba
from nosync.core.transport import LocalWorld
from nosync.core.weights import flatten_weights
from nosync.data.datasets import Batches
from nosync.errors import Diverged, UserError
from nosync.run import build, exploring, loggers, lr_schedule
from nosync.run.build import Task
from nosync.run.config import TrainConfig
from nosync.run.metrics import SUMMARY_KEYS
from nosync.run.outputs import Outputs
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
            explore=exploring.explore_of(cfg, self.scheduler, self.loss),
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


SIMULATED_KEYS = tuple(
    k
    for k in SUMMARY_KEYS
    # no network, no restarts, and the threads share one machine: not measured here
    if k not in ("train_samples_per_second", "comm_bytes", "comm_seconds", "restarts")
)


def simulate(cfg: TrainConfig, particles: int) -> dict[str, Any]:
    """Run the swarm; writes ``config.toml``, ``metrics.jsonl``, ``summary.json`` and the final
    model (the best particle) through the run's own :class:`~nosync.run.outputs.Outputs`."""
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
    outputs = Outputs(cfg, swarm[0].total)
    outputs.open()
    try:
        final = _train(cfg, world, swarm, task, outputs)
    except Diverged as err:  # every particle at once: there is no leader to recover from
        step = err.step if err.step is not None else max(p.swarm.step for p in swarm)
        summary = {
            **_run_keys(cfg, swarm),
            "diverged": {"step": step},
            "test_accuracy": None,
            "worker_test_accuracy": None,
            "ensemble_test_accuracy": None,
            **_rounds_and_time(swarm, start),
        }
        outputs.diverged(summary, step, SIMULATED_KEYS)
        return summary
    probs = torch.stack([predict_proba(p.model, task.data.x_test) for p in swarm])
    best = swarm[final["best_particle"]]
    summary = {
        **_run_keys(cfg, swarm),
        "test_accuracy": final["selected_test_accuracy"],
        "worker_test_accuracy": final["test_accuracy"],
        "ensemble_test_accuracy": accuracy_of(probs.mean(0), task.data.y_test),
        "best_particle": best.index,
        "final_fitness": final["fitness"],
        "explore": exploring.summary_of(best.swarm.population, best.index),
        **_rounds_and_time(swarm, start),
    }
    outputs.finished(summary, best.model, SIMULATED_KEYS)
    return summary


def _train(
    cfg: TrainConfig, world: LocalWorld, swarm: list[Particle], task: Task, outputs: Outputs
) -> dict[str, Any]:
    """Train every particle to the end, logging the rounds and an evaluation every
    ``--eval-every`` steps (else every epoch); the final evaluation."""
    total, every = swarm[0].total, cfg.eval_every or swarm[0].batches.steps_per_epoch
    bar = tqdm(
        total=total,
        desc=f"simulate x{len(swarm)}",
        unit="step",
        disable=cfg.quiet,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    logged = 0
    try:
        for until in [*range(every, total, every), total]:
            run_together(world, swarm, until)
            logged = _log_rounds(swarm, outputs, logged)
            evaluation = _evaluate(swarm, task)
            record = {"type": "eval", "step": until, "samples_per_worker": until * cfg.batch_size}
            outputs.write(record | evaluation)
            bar.update(until - bar.n)
        # an async round still in flight lands, as in a real run, and the last distances arrive
        together(world, swarm, lambda p: p.swarm.settle())
        _log_rounds(swarm, outputs, logged)
        return _evaluate(swarm, task, final=True)
    finally:
        bar.close()


def _log_rounds(swarm: list[Particle], outputs: Outputs, logged: int) -> int:
    """Log the rounds from ``logged`` on whose records are final (a round's distances come
    with the next round), with every particle's leader; how many are logged now."""
    settled = swarm[0].swarm.settled
    for i, record in enumerate(swarm[0].swarm.history[logged:settled], start=logged):
        leaders = [p.swarm.history[i]["leader"] for p in swarm]
        outputs.write({"type": "round", **record, "leaders": leaders})
    return settled


def _run_keys(cfg: TrainConfig, swarm: list[Particle]) -> dict[str, Any]:
    """What a simulated run's summary says of the run itself (finished or diverged)."""
    return {
        "strategy": "simulate",
        "rule": cfg.rule,
        "topology": cfg.topology,
        "particles": len(swarm),
        "workers": len(swarm),
        "steps": swarm[0].total,
    }


def _rounds_and_time(swarm: list[Particle], start: float) -> dict[str, Any]:
    """Its rounds' leaders and its wall time (finished or diverged)."""
    leaders = [r["leader"] for r in swarm[0].swarm.history]
    return {
        "leaders": leaders,
        "sync_rounds": len(leaders),
        "wall_seconds": time.perf_counter() - start,
    }


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
