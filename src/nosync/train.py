"""One rank's training run: the whole loop on one screen.

The strategy decides what happens around ``optimizer.step`` (a sync round, a DDP all-reduce,
nothing); the monitor evaluates, logs and draws the progress bar.  Run it through ``launch.py``
(``nosync train``) or any torchrun-style launcher.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LambdaLR

from . import seeds, strategies
from .config import TrainConfig
from .control import Control
from .data import Batches, fitness_split, load_dataset
from .evaluate import TrainLoss, loss_fitness
from .models import build_model
from .monitor import Monitor
from .placement import Placement


def train(cfg: TrainConfig, place: Placement) -> dict[str, Any] | None:
    """Train this rank's share of the run; returns the summary on rank 0, None elsewhere."""
    wall_start = time.perf_counter()
    data = load_dataset(cfg.dataset, cfg.data_dir or None, cfg.train_subset)
    train_idx, fitness_idx = fitness_split(len(data.y_train), cfg.fitness_size, cfg.seed)
    x, y = data.x_train[train_idx], data.y_train[train_idx]
    held_out = loss_fitness(data.x_train[fitness_idx], data.y_train[fitness_idx])
    losses = TrainLoss()  # every step's loss: logged per round, and the train-loss fitness
    fitness = losses if cfg.fitness == "train-loss" else held_out
    init_seed = seeds.init(cfg.seed, place.particle, same=cfg.init == "same")
    model = build_model(cfg.model, data.input_shape, data.classes, init_seed)
    lr = cfg.lr * (place.ranks_per_particle if cfg.lr_scaling == "linear" else 1)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    batches = Batches(
        len(y),
        cfg.batch_size,
        cfg.seed,
        place.particle,
        place.particles,
        shard=cfg.shard,
        ranks_per_particle=place.ranks_per_particle,
        rank_in_particle=place.rank_in_particle,
    )
    total = cfg.steps or max(1, round(cfg.epochs * batches.steps_per_epoch))
    scheduler = lr_scheduler(optimizer, cfg, total, place.ranks_per_particle)
    strategy = strategies.build(cfg, model, optimizer, fitness, place, total, losses)
    control = Control(cfg, place, model, optimizer, scheduler, strategy, total)
    resumed = control.restore()
    monitor = Monitor(cfg, place, data, x, y, held_out, total, batches.steps_per_epoch, wall_start)
    monitor.begin(strategy, resumed)
    net, order, epoch = strategy.net, [], -1
    try:
        with strategy:
            while (step := strategy.step) < total:  # the strategy counts optimizer steps
                if step // batches.steps_per_epoch != epoch:
                    epoch = step // batches.steps_per_epoch
                    order = batches.epoch(epoch)
                idx = order[step % batches.steps_per_epoch]
                loss = F.cross_entropy(net(x[idx]), y[idx])
                losses.observe(loss)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()  # the strategy's hook counts it and runs a round every period
                if scheduler:
                    scheduler.step()
                monitor.after_step(strategy, model)
                control.after_step(monitor.state_dict)  # stop vote, checkpoint, fault injection
    finally:
        control.close()
        monitor.close()
    strategy.flush()  # an async round still in flight lands
    before = monitor.evaluate_swarm(model)  # every particle, their ensemble and weight average
    strategy.finalize()  # every rank now holds the selected model
    return monitor.finish(strategy, model, before)


WARMUP = 0.05  # of the steps, for learning rates scaled up for data-parallel particles


def lr_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total: int, ranks_per_particle: int
) -> LambdaLR | None:
    """Cosine decay to 0 over the run (``--lr-schedule cosine``), and for a learning rate scaled
    linearly with the ranks of a data-parallel particle a linear warm-up over the first 5 % of
    the steps (Goyal et al., "Accurate, Large Minibatch SGD", 2017, shortened to fit short
    runs)."""
    cosine = cfg.lr_schedule == "cosine"
    warmup = round(WARMUP * total) if ranks_per_particle > 1 and cfg.lr_scaling == "linear" else 0
    if not cosine and not warmup:
        return None

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
        return warm * (0.5 * (1 + math.cos(math.pi * step / total)) if cosine else 1.0)

    return LambdaLR(optimizer, factor)
