"""The checks of ``Swarm``'s arguments: a bad value is a ``TypeError``/``ValueError`` that names
it, raised before anything is built or any collective runs.

This module owns what a valid ``Swarm`` call is (the rule options' checks are
:meth:`~nosync.core.options.RuleOptions.checked`); ``Swarm.__init__`` calls each check once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nosync.core import selection, topology
from nosync.core.catalog import SCHEDULES
from nosync.core.hooks import COUNTS
from nosync.core.rule_objects import Rule
from nosync.core.weights import unwrap

ROUNDS = ("blocking", "async")


def check_count(scaler: Any, count: str) -> None:
    if count not in COUNTS:
        raise ValueError(f"count must be one of {', '.join(COUNTS)}, got {count!r}")
    if scaler is not None and not (callable(getattr(scaler, "update", None)) and count != "manual"):
        raise ValueError("scaler must be a GradScaler (with update()), and count 'optimizer'")


def check_select(
    select: str, model: nn.Module, fitness: object, train_loss: object, bn_data: object
) -> None:
    if select == "soup" and (fitness is train_loss or getattr(fitness, "cheap", False)):
        raise ValueError("select='soup' needs a fitness that evaluates a model, not the train loss")
    if select != "best" and bn_data is None and selection.has_batchnorm(unwrap(model)):
        raise ValueError(
            f"select={select!r} on a model with BatchNorm needs bn_data= (training batches to "
            "recompute the averaged model's running statistics)"
        )


def rule_class(rule: str | Rule, registry: Mapping[str, type[Rule]]) -> Rule | type[Rule]:
    """The rule object itself, or the class ``rule`` names in ``registry``."""
    kind = rule if isinstance(rule, Rule) else registry.get(rule)
    if kind is None:
        raise ValueError(f"rule must be one of {', '.join(registry)}, got {rule!r}")
    return kind


def check_round(round_: str, delay: int | None, period: int) -> int:
    """The delay of async rounds (default: ``period // 5``, at least 1)."""
    delay = max(1, period // 5) if delay is None else delay
    if round_ not in ROUNDS:
        raise ValueError(f"round must be 'blocking' or 'async', got {round_!r}")
    if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= period:
        raise ValueError(f"delay must be an int in [0, period={period}], got {delay!r}")
    return delay


def check_topology(rule: Rule | type[Rule], topology_: str, neighbors: int) -> None:
    if topology_ not in topology.TOPOLOGIES:
        raise ValueError(
            f"topology must be one of {', '.join(topology.TOPOLOGIES)}, got {topology_!r}"
        )
    if topology_ != "all" and rule.needs == "sum":
        raise ValueError(
            f"topology {topology_!r} works with rules that pull toward a leader, "
            f"not {rule.name!r} (which sums over the whole swarm)"
        )
    if isinstance(neighbors, bool) or not isinstance(neighbors, int) or neighbors < 1:
        raise ValueError(f"neighbors must be a positive int, got {neighbors!r}")


def check_wire_dtype(dtype: torch.dtype) -> None:
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"wire_dtype must be float32, bfloat16 or float16, got {dtype}")


def check_basics(
    model: object,
    optimizer: object,
    fitness: object,
    period: object,
    pressure: object,
    schedule: object,
    total_steps: object,
) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    if not callable(fitness):
        raise TypeError("fitness must be a callable model -> float")
    if isinstance(period, bool) or not isinstance(period, int):
        raise TypeError(f"period must be an int, got {type(period).__name__}")
    if period < 1:
        raise ValueError(f"period must be at least 1, got {period}")
    if isinstance(pressure, bool) or not isinstance(pressure, (int, float)):
        raise TypeError(f"pressure must be a number, got {type(pressure).__name__}")
    if not 0.0 <= float(pressure) <= 1.0:
        raise ValueError(f"pressure must be in [0, 1], got {pressure}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == "linear" and not total_steps:
        raise ValueError("total_steps is needed for the linear pressure schedule")
