"""One rank's training run: the whole loop on one screen.

The strategy decides what happens around ``optimizer.step`` (a sync round, a DDP all-reduce,
nothing); the monitor evaluates, logs and draws the progress bar.  A run that diverged (no
particle left with finite weights) ends with a summary that says so, and no model.  Run it
through ``launch.py`` (``nosync train``) or any torchrun-style launcher.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from nosync.core.evaluate import TrainLoss
from nosync.core.placement import Placement
from nosync.data.datasets import Batches
from nosync.errors import Diverged
from nosync.run import build, devices, exploring, lr_schedule, strategies
from nosync.run.config import TrainConfig, load_schedule
from nosync.run.control import Control
from nosync.run.monitor import Monitor


@dataclass
class Run:
    """What one rank's loop works with, built by :func:`setup` in the order that keeps runs
    reproducible (every random draw happens where it always did)."""

    model: nn.Module
    net: nn.Module  # the strategy's model, or its torch.compile'd form
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR | None  # None: a constant learning rate
    strategy: strategies.Strategy
    control: Control
    monitor: Monitor
    losses: TrainLoss
    observe: bool  # losses.observe each step's loss
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    feed: Iterator[tuple[Tensor, Tensor]]
    total: int


def train(cfg: TrainConfig, place: Placement) -> dict[str, Any] | None:
    """Train this rank's share of the run; returns the summary on rank 0, None elsewhere."""
    run = setup(cfg, place)
    strategy, optimizer, monitor, control = run.strategy, run.optimizer, run.monitor, run.control
    diverged = None
    try:
        with strategy:
            while strategy.step < run.total:  # the strategy counts optimizer steps
                inputs, targets = next(run.feed)
                if control.should_skip():  # --stragglers skip: a slow rank keeps the pace
                    strategy.skip()
                else:
                    with devices.autocast(place.device, cfg.precision):  # --precision bf16
                        loss = run.loss_fn(run.net(inputs), targets)
                    if run.observe:
                        run.losses.observe(loss)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()  # the strategy's hook counts it, runs a round every period
                if run.scheduler:
                    run.scheduler.step()
                monitor.after_step(strategy, run.model)
                control.after_step(monitor.state_dict, monitor.eval_seconds)  # vote, checkpoint
    except Diverged as err:  # on every rank at the same step (the vote, or the swarm's round)
        diverged = err.step if err.step is not None else strategy.step
    finally:
        control.close()
        monitor.close()
    if diverged is not None:
        return monitor.diverged(strategy, diverged)
    try:
        strategy.flush()  # an async round still in flight lands
        before = monitor.evaluate_swarm(run.model)  # every particle, their ensemble, average
        strategy.finalize()  # every rank now holds the selected model
    except Diverged as err:  # no particle with a finite fitness at the end: nothing to select
        return monitor.diverged(strategy, err.step if err.step is not None else strategy.step)
    return monitor.finish(strategy, run.model, before)


def setup(cfg: TrainConfig, place: Placement) -> Run:
    """Data, model, optimizer, strategy, control and monitor; restored from the checkpoint when
    there is one, and the outputs opened."""
    wall_start = time.perf_counter()
    task = build.task(cfg, place.device)  # data (on the device), fitness set held out, loss
    model = build.model(cfg, task, place.particle)
    optimizer = build.optimizer(cfg, model, lr_schedule.base_lr(cfg, place.ranks_per_particle))
    held_out = task.fitness
    losses = TrainLoss()  # every step's loss: logged per round, and the train-loss fitness
    fitness = losses if cfg.fitness == "train-loss" else held_out
    batches = Batches(
        task.n,
        cfg.batch_size,
        cfg.seed,
        place.particle,
        place.particles,
        shard=cfg.shard,
        ranks_per_particle=place.ranks_per_particle,
        rank_in_particle=place.rank_in_particle,
    )
    total = cfg.steps or max(1, round(cfg.epochs * batches.steps_per_epoch))
    scheduler = lr_schedule.scheduler(optimizer, cfg, total, place.ranks_per_particle)
    bn_data = build.bn_batches(cfg, task)  # an averaged model's BatchNorm statistics
    loss_fn = build.train_loss(cfg, task, place.particle)  # --diversity, --explore: its own
    explore = exploring.explore_of(cfg, scheduler, loss_fn)  # each particle's own lr, ...
    strategy = strategies.build(
        strategies.Context(cfg, model, optimizer, fitness, place, total, losses, bn_data, explore)
    )
    control = Control(cfg, place, model, optimizer, scheduler, strategy, total)
    resumed = control.restore()
    if cfg.replay:  # --replay: the explore run's winner's schedule, by step
        exploring.Replay(load_schedule(cfg.replay), optimizer, scheduler, loss_fn,
                         strategy.step)  # fmt: skip
    monitor = Monitor(cfg, place, task, total, batches.steps_per_epoch, wall_start, bn_data)
    monitor.begin(strategy, resumed)
    return Run(  # (keyword order is call order: the original one)
        net=build.compiled(cfg, strategy.net),  # --compile: torch.compile
        loss_fn=loss_fn,
        feed=build.stream(cfg, task, batches, strategy.step, total),  # resumes mid-epoch
        observe=strategy.reads(losses),  # kept only where a round logs it or it is the fitness
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        strategy=strategy,
        control=control,
        monitor=monitor,
        losses=losses,
        total=total,
    )
