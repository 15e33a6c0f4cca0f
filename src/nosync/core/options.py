"""The rules' options and their checks: what a rule may be built from, and what is a valid value.

This module owns :class:`RuleOptions` (``Swarm(..., options=RuleOptions(...))``: the PSO
coefficients, the ``weighted`` rule's temperature, the outer step) and the checks that turn a
bad value into a ``TypeError``/``ValueError`` naming it, before a rule is built.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RuleOptions:
    """Everything a rule may be built from (each rule takes what it needs).

    Args:
        particle: this particle's index (``Swarm`` sets it from its transport).
        seed: seeds ``pso``'s random draws (``Swarm`` sets it from its ``seed``).
        inertia: ``pso``: the velocity's inertia.
        c1: ``pso``: the pull toward the particle's own best.
        c2: ``pso``: the pull toward the leader (scaled by the pressure).
        temperature: ``weighted``: T of ``softmax(-fitness / T)``, > 0.
        outer_lr: outer momentum: the step (``None``: the round's pressure).
        outer_momentum: outer momentum: beta in [0, 1) (0 with ``outer_lr=None``: no outer
            step, the plain pull).
    """

    particle: int = 0
    seed: int = 0
    inertia: float = 0.5
    c1: float = 0.5
    c2: float = 2.0
    temperature: float = 1.0
    outer_lr: float | None = None
    outer_momentum: float = 0.0

    def checked(self) -> RuleOptions:
        """These options, or a ``TypeError``/``ValueError`` naming the first bad one."""
        check_temperature(self.temperature)
        check_outer_momentum(self.outer_momentum)
        if self.outer_lr is not None:
            check_outer_lr(self.outer_lr)
        return self

    def bound(self, particle: int, seed: int) -> RuleOptions:
        """These options for particle ``particle`` of a swarm seeded ``seed``."""
        return dataclasses.replace(
            self, particle=particle, seed=seed, inertia=float(self.inertia), c1=float(self.c1),
            c2=float(self.c2), temperature=float(self.temperature),
        )  # fmt: skip


def check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def check_temperature(value: object) -> float:
    number = check_number("temperature", value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {value}")
    return number


def check_outer_lr(value: object) -> float:
    number = check_number("outer_lr", value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"outer_lr must be a finite number > 0, got {value}")
    return number


def check_outer_momentum(value: object) -> float:
    number = check_number("outer_momentum", value)
    if not 0.0 <= number < 1.0:
        raise ValueError(f"outer_momentum must be in [0, 1), got {value}")
    return number
