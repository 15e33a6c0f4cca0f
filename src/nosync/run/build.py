"""What a particle trains: its data, model, optimizer, loss and batches.

``nosync train`` (one rank) and ``nosync simulate`` (particles as threads) build their particles
here and nowhere else, so that built-in and user pieces (``--model/--dataset/--loss
MODULE:CALLABLE``, ``--optimizer``) behave the same in both.  :func:`check` runs once before any
worker starts (``launch.preflight``, ``compare``): it imports and calls the user's pieces and
pushes two samples through the model and the loss, so bad input fails early in one line.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from nosync import user
from nosync.core import seeds
from nosync.core.evaluate import Loss, loss_fitness
from nosync.data.datasets import (
    Batches,
    Dataset,
    StepSampler,
    check_finite,
    fitness_split,
    load_dataset,
    stack,
)
from nosync.errors import UserError
from nosync.run import devices
from nosync.run.config import TrainConfig
from nosync.run.exploring import SmoothedLoss, explores_smoothing
from nosync.run.models import build_model

TRAIN_EVAL_EXAMPLES = 2000  # training accuracy (for the generalisation gap) on a fixed subset


@dataclass
class Task:
    """What every particle of a run shares: the data (test set as tensors), the training part
    with the fitness set held out (tensors ``x``/``y``, or a map-style ``samples``), the loss, the
    fitness and a fixed training subset for train accuracy."""

    data: Dataset
    x: Tensor | None
    y: Tensor | None
    samples: Any  # map-style training part (user datasets), else None
    loss: Loss
    fitness: Callable[[nn.Module], float]
    x_eval: Tensor
    y_eval: Tensor
    device: torch.device = devices.CPU  # the model's; ``x``/``y`` live there when they fit

    @property
    def n(self) -> int:
        return len(self.y) if self.y is not None else len(self.samples)


def task(cfg: TrainConfig, device: torch.device = devices.CPU) -> Task:
    """Load the data, hold the fitness set out (``data.fitness_split``) and pick the loss.  On
    a GPU the evaluation and fitness sets move there once, and the training tensors too when
    they fit (else they are pinned, and each batch is copied without blocking)."""
    data = float64_if_asked(load_dataset(cfg.dataset, cfg.data_dir or None, cfg.train_subset))
    train_idx, fit_idx = fitness_split(data.n_train, cfg.fitness_size, cfg.seed)
    custom = user.make_loss(cfg.loss) if user.is_spec(cfg.loss) else None
    x: Tensor | None
    y: Tensor | None
    if data.train_set is None:
        assert data.x_train is not None and data.y_train is not None  # in memory, no train_set
        x, y = data.x_train[train_idx], data.y_train[train_idx]
        x_fit, y_fit = data.x_train[fit_idx], data.y_train[fit_idx]
        samples, x_eval, y_eval = None, x[:TRAIN_EVAL_EXAMPLES], y[:TRAIN_EVAL_EXAMPLES]
    else:
        x = y = None
        samples = Subset(data.train_set, train_idx.tolist())
        x_fit, y_fit = stack(data.train_set, fit_idx.tolist(), cfg.dataset)
        x_eval, y_eval = stack(samples, range(min(TRAIN_EVAL_EXAMPLES, len(samples))), cfg.dataset)
        # what is held as tensors of a map-style training set (the whole set is not scanned)
        check_finite(x_fit, cfg.dataset, "the fitness set (training samples)")
        check_finite(x_eval, cfg.dataset, "the train-accuracy subset")
    if device.type != "cpu":
        data = replace(data, x_test=data.x_test.to(device), y_test=data.y_test.to(device))
        x_fit, y_fit, x_eval, y_eval = (t.to(device) for t in (x_fit, y_fit, x_eval, y_eval))
        if x is not None and y is not None:
            fit = devices.fits(x.nbytes + y.nbytes, device)
            x, y = (x.to(device), y.to(device)) if fit else (x.pin_memory(), y.pin_memory())
    return Task(
        data=data,
        x=x,
        y=y,
        samples=samples,
        loss=F.cross_entropy if custom is None else custom,
        fitness=loss_fitness(x_fit, y_fit, custom),
        x_eval=x_eval,
        y_eval=y_eval,
        device=device,
    )


FLOAT64_ENV = "NOSYNC_FLOAT64"


def float64_if_asked(data: Dataset) -> Dataset:
    """Test-only: with ``NOSYNC_FLOAT64=1`` this process builds its models in float64 (the
    default dtype) and the in-memory images follow, so that a run's weights hardly depend on the
    CPU's kernels (tests/e2e/test_golden.py compares such runs with stored weights on any machine).
    Rounds still send ``--wire-dtype`` (float32 at most)."""
    if os.environ.get(FLOAT64_ENV) != "1":
        return data
    torch.set_default_dtype(torch.float64)
    x_train = None if data.x_train is None else data.x_train.double()
    return replace(data, x_train=x_train, x_test=data.x_test.double())


def model(cfg: TrainConfig, task: Task, particle: int) -> nn.Module:
    """A particle's model, initialised from its seed (``--init same``: one seed for all).  With
    a user piece in play, two samples go through it first (:func:`check_fit`)."""
    seed = seeds.init(cfg.seed, particle, same=cfg.init == "same")
    shape, classes = task.data.input_shape, task.data.classes
    if not user.is_spec(cfg.model):
        net = build_model(cfg.model, shape, classes, seed)
    else:
        torch.manual_seed(seed)
        net = user.make_model(cfg.model, shape, classes)
    net = net.to(task.device)
    if any(user.is_spec(v) for v in (cfg.model, cfg.dataset, cfg.loss)):
        check_fit(task, net, cfg)
    return net


DIVERSITY_SMOOTHING = 0.1  # --diversity: label smoothing drawn from U[0, 0.1] per particle


def label_smoothing(cfg: TrainConfig, particle: int) -> float:
    """A particle's label smoothing: 0, or under ``--diversity`` its own seeded draw."""
    if not cfg.diversity:
        return 0.0
    g = seeds.generator(seeds.diversity(cfg.seed, particle))
    return DIVERSITY_SMOOTHING * float(torch.rand(1, generator=g, dtype=torch.float64))


def train_loss(cfg: TrainConfig, task: Task, particle: int) -> Loss:
    """The loss a particle trains on: the task's, or under ``--diversity`` cross-entropy with
    the particle's own label smoothing (the fitness stays the plain loss, the same for all)."""
    if explores_smoothing(cfg):  # the explore step sets each particle's own
        return SmoothedLoss()
    smoothing = label_smoothing(cfg, particle)
    if not smoothing:
        return task.loss
    return lambda out, target: F.cross_entropy(out, target, label_smoothing=smoothing)


def bn_batches(cfg: TrainConfig, task: Task) -> list[Tensor]:
    """Training inputs (the fixed train-accuracy subset) in batches, for recomputing an
    averaged model's BatchNorm statistics (``--select average|soup``)."""
    return list(task.x_eval.split(cfg.batch_size))


def optimizer(cfg: TrainConfig, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """``--optimizer sgd`` (momentum, weight decay), ``adam`` or ``adamw`` (betas, eps)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.optimizer]
    return kind(
        model.parameters(),
        lr=lr,
        betas=betas(cfg.betas),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
    )


def compiled(cfg: TrainConfig, net: nn.Module) -> nn.Module:
    """``--compile``: the forward pass through ``torch.compile`` (the swarm keeps reading and
    writing the weights of the module inside: ``weights.unwrap``)."""
    return torch.compile(net) if cfg.compile else net  # type: ignore[return-value]


def betas(text: str) -> tuple[float, float]:
    """``"0.9,0.999"`` -> (0.9, 0.999) (``config.validate`` checked the form)."""
    b1, b2 = (float(t) for t in text.split(","))
    return b1, b2


def stream(
    cfg: TrainConfig, task: Task, batches: Batches, start: int, total: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """``(inputs, targets)`` of every step from ``start`` to ``total``.  In-memory tensors are
    indexed directly (the fast path: a DataLoader costs more per batch, see
    benchmarks/RESULTS.md); a map-style dataset goes through a ``DataLoader`` with the seeded
    order as its batch sampler, ``--loader-workers`` processes and pinned memory on CUDA."""
    dev = task.device
    if task.samples is None:
        x, y = task.x, task.y
        assert x is not None and y is not None  # in memory when there are no samples
        if x.device == dev:  # on the device already (or a CPU run)
            return ((x[idx], y[idx]) for idx in batches.stream(start, total))
        pinned = ((x[i].pin_memory(), y[i].pin_memory()) for i in batches.stream(start, total))
        return (_to(dev, *pair) for pair in pinned)
    fork = cfg.loader_workers > 0 and "fork" in multiprocessing.get_all_start_methods()
    loader = DataLoader(
        task.samples,
        batch_sampler=StepSampler(batches, start, total),
        num_workers=cfg.loader_workers,
        pin_memory=dev.type == "cuda",
        # forked loader workers inherit the user's modules (a file-path module has no importable
        # name, and ranks run under a forkserver, whose children would have to re-import it)
        multiprocessing_context="fork" if fork else None,
    )
    pairs = (_pair(batch, cfg.dataset) for batch in loader)
    return pairs if dev.type == "cpu" else (_to(dev, *pair) for pair in pairs)


def _to(device: torch.device, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """A batch from pinned memory to the device, without waiting for the copy."""
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _pair(batch: Any, spec: str) -> tuple[Tensor, Tensor]:
    if not (isinstance(batch, tuple | list) and len(batch) == 2):
        raise UserError(f"dataset: {spec}: items must be (input, label) pairs")
    return batch[0], batch[1]


def check(cfg: TrainConfig) -> Task:
    """Before any worker starts: load everything once and push two samples through the model
    and the loss, so that a user piece that does not fit fails in one line naming its flag."""
    t = task(cfg)
    net = model(cfg, t, 0)
    # what an optimizer needs, checked without building one (the first optimizer imports
    # torch._dynamo: seconds the launcher would spend on every run)
    if not any(p.requires_grad for p in net.parameters()):
        raise UserError(f"model: {cfg.model} has no trainable parameters")
    return t


@torch.no_grad()
def check_fit(task: Task, net: nn.Module, cfg: TrainConfig) -> None:
    """Two training samples through ``net`` (eval mode, RNG untouched) and the loss."""
    if task.samples is None and task.x is not None and task.y is not None:
        x, y = task.x[:2], task.y[:2]
    else:  # a map-style set: its first samples, stacked for the train-accuracy subset
        x, y = task.x_eval[:2], task.y_eval[:2]
    x, y = x.to(task.device), y.to(task.device)
    with torch.random.fork_rng(devices=[]):
        was_training = net.training
        net.eval()
        try:
            out = net(x)
        except Exception as err:  # noqa: BLE001 - the shapes do not fit; say which flags
            raise UserError(
                f"dataset: samples of shape {tuple(x.shape[1:])} do not fit --model "
                f"{cfg.model}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            ) from None
        finally:
            net.train(was_training)
        if not isinstance(out, Tensor) or out.ndim != 2 or len(out) != len(x):
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise UserError(
                f"model: {cfg.model} gives {shape} for a batch of {len(x)}; "
                "it must return (batch, classes) scores"
            )
        classes = task.data.classes
        if out.shape[1] != classes:  # accuracy is an argmax over the scores: one per class
            raise UserError(
                f"model: {cfg.model} gives {out.shape[1]} scores per sample but --dataset "
                f"{cfg.dataset} has {classes} classes; it must return (batch, {classes}) scores"
            )
        try:
            value = task.loss(out, y)
        except Exception as err:  # noqa: BLE001
            raise UserError(
                f"loss: {cfg.loss} failed on the model's output: {type(err).__name__}: {err}"
            ) from None
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise UserError(f"loss: {cfg.loss} must return a scalar tensor, got {value!r:.60}")
