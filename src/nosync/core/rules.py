"""The pull rules of a round: the equations as pure tensor functions, and one small object per
rule that says what the round must fetch for it and applies the equation.

Nothing here knows about processes: a rule sees flat weight vectors (a particle's parameters and
floating-point buffers, concatenated).  A rule declares

- ``needs_fitness``: whether the round evaluates and exchanges fitness for it;
- ``exchange``: what the round fetches: ``"leader"`` (the leader's weights), ``"sum"`` (the sum
  over the live particles of :meth:`Rule.contribution`; fitness-weighted for ``weighted``) or
  ``"none"``;
- ``target``: the name of the point it pulls toward, for the log;

and implements :meth:`Rule.anchor` (that point) and :meth:`Rule.pull` (the new weights).  A new
rule is one class here plus a line in ``REGISTRY``.  :class:`OuterMomentum` wraps any of the
pulls toward a target (``leader``, ``elastic``, ``weighted``) and turns the pull into a step of
a Nesterov outer optimizer (DiLoCo / SlowMo); :func:`make_rule` builds it from the options.

The NoSync paper (Isakov & Kinsy, ICANN 2018) is not available to us in full; ``leader_pull`` is a
reconstruction from its abstract and from its closest published relatives (Leader SGD, EASGD,
PSO-PS).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from nosync.core import seeds

RULES = ("leader", "pso", "elastic", "weighted", "none")  # the rules of `nosync train --rule`
SWARM_RULES = (*RULES, "easgd")  # `easgd` is a strategy of its own (it selects the centre)
SCHEDULES = ("constant", "linear")
PULL_RULES = ("leader", "elastic", "weighted")  # `own + p (target - own)`: outer momentum fits


# ---- the equations ------------------------------------------------------------------------------
def leader_pull(w: Tensor, leader: Tensor, pressure: float) -> Tensor:
    """NoSync (reconstruction): ``w <- w + p * (w_leader - w)``.

    ``torch.lerp`` is exact at both ends: p=0 returns ``w`` and p=1 returns ``w_leader``.
    """
    return torch.lerp(w, leader, pressure)


def elastic_pull(w: Tensor, mean: Tensor, pressure: float) -> Tensor:
    """EASGD-like pull toward the swarm mean: ``w <- w + p * (mean(w) - w)``; p=1 is averaging."""
    return torch.lerp(w, mean, pressure)


def fitness_weights(fitness: Tensor, temperature: float) -> Tensor:
    """``weighted``: ``softmax(-fitness / T)`` over the finite fitness values; a non-finite
    (diverged) particle gets weight 0.  Computed in float64 with the best fitness subtracted
    first, so that a small ``T`` cannot overflow: ``T -> 0`` puts all the weight on the best
    particle (the leader, when it is unique) and ``T -> inf`` spreads it evenly (the mean)."""
    f = fitness.double()
    finite = torch.isfinite(f)
    if not bool(finite.any()):
        return torch.zeros_like(f)
    best = f[finite].min()
    logits = torch.where(finite, -(f - best) / temperature, torch.full_like(f, -math.inf))
    return torch.softmax(logits, 0)


def nesterov_step(
    w: Tensor, target: Tensor, velocity: Tensor | None, lr: float, momentum: float
) -> tuple[Tensor, Tensor]:
    """Outer momentum: one step of Nesterov SGD on the pseudo-gradient toward ``target``.

    ``g = w - target``, ``v <- momentum * v + g`` (``v`` starts at 0), and
    ``w <- w - lr * (g + momentum * v)`` - exactly ``torch.optim.SGD(nesterov=True)`` with
    ``g`` as the gradient.  With ``momentum = 0`` it is the plain pull at pressure ``lr``:
    ``w + lr * (target - w)``.
    """
    g = w - target
    v = g.clone() if velocity is None else momentum * velocity + g
    return w - lr * (g + momentum * v), v


def pso_update(
    w: Tensor,
    velocity: Tensor,
    personal_best: Tensor,
    leader: Tensor,
    *,
    pressure: float,
    inertia: float,
    c1: float,
    c2: float,
    r1: Tensor,
    r2: Tensor,
) -> tuple[Tensor, Tensor]:
    """Particle-swarm step in weight space (PSO-PS style), applied once per round.

    ``v <- inertia*v + c1*r1*(w_best - w) + p*c2*r2*(w_leader - w)`` and ``w <- w + v``.
    The pressure ``p`` scales the social term so that a pressure schedule works for ``pso`` as
    it does for ``leader``; with ``c2 = 2`` and ``r2 ~ U(0, 1)`` the expected social pull equals
    the ``leader`` rule's.  ``r1`` and ``r2`` are fresh uniform draws (per coordinate) each round.
    """
    v = inertia * velocity + c1 * r1 * (personal_best - w) + pressure * c2 * r2 * (leader - w)
    return w + v, v


def easgd_update(
    w: Tensor, center: Tensor, diff_sum: Tensor, alpha: float
) -> tuple[Tensor, Tensor]:
    """Synchronous EASGD (Zhang, Choromanska & LeCun, NeurIPS 2015), one round.

    ``w <- w - alpha * (w - c)`` and ``c <- c + alpha * sum_j (w_j - c)``, both from the
    positions before the round (``diff_sum`` is the all-reduced ``sum_j (w_j - c)``): the
    workers are pulled toward the centre and the centre moves toward the workers.
    """
    return w - alpha * (w - center), center + alpha * diff_sum


def elect_leader(fitness: Tensor) -> int | None:
    """Index of the lowest finite fitness; ties go to the lowest index; None if none is finite."""
    finite = torch.isfinite(fitness)
    if not bool(finite.any()):
        return None
    masked = torch.where(finite, fitness, torch.full_like(fitness, math.inf))
    best = masked.min()
    return int(torch.nonzero(masked == best)[0].item())


def pressure_at(schedule: str, base: float, progress: float) -> float:
    """Pressure for a round at ``progress`` in [0, 1] of training.

    ``constant`` keeps ``base``; ``linear`` ramps from ``base`` to 1 at the end, so that the
    swarm ends as one model.
    """
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        return base
    if schedule == "linear":
        return base + (1.0 - base) * progress
    raise ValueError(f"schedule: unknown pressure schedule {schedule!r} (choose from {SCHEDULES})")


def mean_pairwise_distance(weights: Tensor) -> float:
    """Swarm spread: mean L2 distance over all pairs of rows of ``weights`` (particles x dims)."""
    if weights.shape[0] < 2:
        return 0.0
    return float(torch.pdist(weights.double()).mean())


# ---- rule objects -----------------------------------------------------------------------------
@dataclass
class Exchanged:
    """What the round fetched for a rule, and the round's settings."""

    pressure: float
    fitness: float = math.inf  # this particle's (inf when not evaluated or diverged)
    leader: Tensor | None = None  # exchange "leader": the leader's weights
    total: Tensor | None = None  # exchange "sum": the sum of the live particles' contributions
    alive: int = 0  # exchange "sum": how many particles contributed
    particle: int = 0  # this particle's index
    known: dict[int, float] = field(default_factory=dict)  # every known fitness (+inf: diverged)


@dataclass(frozen=True)
class RuleOptions:
    """Everything a rule may be built from (each rule takes what it needs)."""

    particle: int = 0
    seed: int = 0
    inertia: float = 0.5
    c1: float = 0.5
    c2: float = 2.0
    temperature: float = 1.0  # weighted: T of softmax(-fitness / T)
    outer_lr: float | None = None  # outer momentum: the step (None: the round's pressure)
    outer_momentum: float = 0.0  # outer momentum: beta (0 and outer_lr None: no outer step)


class Rule:
    """A pull rule.  Subclasses set the class attributes and implement :meth:`pull`."""

    name: ClassVar[str]
    needs_fitness: ClassVar[bool] = True
    exchange: ClassVar[str] = "leader"
    target: ClassVar[str | None] = "leader"

    @classmethod
    def create(cls, options: RuleOptions) -> Rule:
        return cls()

    def prepare(self, own: Tensor, mean: Callable[[Tensor], Tensor]) -> None:
        """Exchange ``sum``: called before :meth:`contribution`; ``mean`` averages over the
        live particles (a collective: every particle calls it the same number of times)."""

    def contribution(self, own: Tensor, got: Exchanged) -> Tensor:
        """Exchange ``sum``: this particle's part of the sum (``got`` holds the fitness)."""
        return own

    def anchor(self, own: Tensor, got: Exchanged) -> Tensor:
        """The point pulled toward (the distance in the log is measured to it)."""
        assert got.leader is not None
        return got.leader

    def pull(self, own: Tensor, anchor: Tensor, got: Exchanged) -> Tensor:
        raise NotImplementedError

    def restart(self, anchor: Tensor, got: Exchanged) -> Tensor:
        """Where a diverged particle restarts (its rule state is then :meth:`reset`)."""
        return anchor

    def reset(self) -> None:
        """Forget this particle's memory (after it diverged)."""

    def selected_weights(self) -> Tensor | None:
        """The model the rule ends with when it is not the best particle (EASGD's centre)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class LeaderRule(Rule):
    """NoSync (reconstruction): :func:`leader_pull` toward the (local) leader's weights."""

    name = "leader"

    def pull(self, own: Tensor, anchor: Tensor, got: Exchanged) -> Tensor:
        return leader_pull(own, anchor, got.pressure)


class PSORule(Rule):
    """:func:`pso_update`, with the particle's velocity, personal best and its own seeded
    generator for ``r1, r2`` (one draw per coordinate, every round)."""

    name = "pso"

    def __init__(self, options: RuleOptions) -> None:
        self.inertia, self.c1, self.c2 = options.inertia, options.c1, options.c2
        self.generator = seeds.generator(seeds.pso(options.seed, options.particle))
        self.reset()

    @classmethod
    def create(cls, options: RuleOptions) -> Rule:
        return cls(options)

    def reset(self) -> None:
        self.velocity: Tensor | None = None
        self.best: Tensor | None = None
        self.best_fitness = math.inf

    def pull(self, own: Tensor, anchor: Tensor, got: Exchanged) -> Tensor:
        if self.best is None or got.fitness < self.best_fitness:
            self.best, self.best_fitness = own.clone(), got.fitness
        if self.velocity is None:
            self.velocity = torch.zeros_like(own)
        r1 = torch.rand(own.shape, generator=self.generator, dtype=own.dtype).to(own.device)
        r2 = torch.rand(own.shape, generator=self.generator, dtype=own.dtype).to(own.device)
        new, self.velocity = pso_update(
            own,
            self.velocity,
            self.best,
            anchor,
            pressure=got.pressure,
            inertia=self.inertia,
            c1=self.c1,
            c2=self.c2,
            r1=r1,
            r2=r2,
        )
        return new

    def state_dict(self) -> dict[str, Any]:
        return {
            "velocity": self.velocity,
            "best": self.best,
            "best_fitness": self.best_fitness,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.velocity, self.best = state["velocity"], state["best"]
        self.best_fitness = float(state["best_fitness"])
        self.generator.set_state(state["generator"])


class ElasticRule(Rule):
    """:func:`elastic_pull` toward the mean of the live particles; needs no fitness."""

    name = "elastic"
    needs_fitness = False
    exchange = "sum"
    target = "mean"

    def anchor(self, own: Tensor, got: Exchanged) -> Tensor:
        assert got.total is not None
        return got.total / got.alive

    def pull(self, own: Tensor, anchor: Tensor, got: Exchanged) -> Tensor:
        return elastic_pull(own, anchor, got.pressure)

    def restart(self, anchor: Tensor, got: Exchanged) -> Tensor:
        return anchor.clone()


class WeightedRule(Rule):
    """Pull toward the fitness-weighted mean of the live particles,
    ``w <- w + p * (sum_j a_j w_j - w)`` with ``a = softmax(-fitness / T)``
    (:func:`fitness_weights`; diverged particles weigh 0).  ``T -> 0`` is the ``leader`` rule,
    ``T -> inf`` the ``elastic`` one.  Each particle contributes ``a_i w_i`` to one sum."""

    name = "weighted"
    exchange = "sum"
    target = "weighted mean"

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = check_temperature(temperature)

    @classmethod
    def create(cls, options: RuleOptions) -> Rule:
        return cls(options.temperature)

    def weights(self, got: Exchanged) -> Tensor:
        ids = sorted(got.known)
        return fitness_weights(torch.tensor([got.known[i] for i in ids]), self.temperature)

    def contribution(self, own: Tensor, got: Exchanged) -> Tensor:
        share = float(self.weights(got)[sorted(got.known).index(got.particle)])
        return own * share

    def anchor(self, own: Tensor, got: Exchanged) -> Tensor:
        assert got.total is not None
        return got.total

    def pull(self, own: Tensor, anchor: Tensor, got: Exchanged) -> Tensor:
        return torch.lerp(own, anchor, got.pressure)

    def restart(self, anchor: Tensor, got: Exchanged) -> Tensor:
        return anchor.clone()


class EASGDRule(Rule):
    """:func:`easgd_update` with the centre variable, the same on every particle; it starts as
    the swarm mean at the first round.  The pressure is EASGD's moving rate alpha."""

    name = "easgd"
    needs_fitness = False
    exchange = "sum"
    target = "center"

    def __init__(self) -> None:
        self.center: Tensor | None = None

    def prepare(self, own: Tensor, mean: Callable[[Tensor], Tensor]) -> None:
        if self.center is None:
            self.center = mean(own)

    def contribution(self, own: Tensor, got: Exchanged) -> Tensor:
        assert self.center is not None
        return own - self.center

    def anchor(self, own: Tensor, got: Exchanged) -> Tensor:
        assert self.center is not None
        return self.center

    def pull(self, own: Tensor, anchor: Tensor, got: Exchanged) -> Tensor:
        assert got.total is not None
        new, self.center = easgd_update(own, anchor, got.total, got.pressure)
        return new

    def restart(self, anchor: Tensor, got: Exchanged) -> Tensor:
        self.pull(anchor, anchor, got)  # the centre moves as on every particle
        assert self.center is not None
        return self.center.clone()

    def selected_weights(self) -> Tensor | None:
        return self.center

    def state_dict(self) -> dict[str, Any]:
        return {"center": self.center}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.center = state["center"]


class NoneRule(Rule):
    """No pull at all: independent workers (the ensemble baseline); a round does no work."""

    name = "none"
    needs_fitness = False
    exchange = "none"
    target = None

    def pull(self, own: Tensor, anchor: Tensor, got: Exchanged) -> Tensor:
        return own


class OuterMomentum(Rule):
    """Any pull toward a target (``leader``, ``elastic``, ``weighted``) as a step of a Nesterov
    outer optimizer on the pseudo-gradient ``g = own - anchor`` (:func:`nesterov_step`):

    ``v <- beta * v + g`` and ``own <- own - lr * (g + beta * v)``,

    with ``lr`` the outer learning rate, or the round's pressure ``p`` when none is given (so
    the pressure schedule still applies).  ``beta = 0`` with ``lr = p`` is exactly the plain
    pull ``own + p * (anchor - own)``; ``weighted`` with outer momentum is DiLoCo / SlowMo with
    fitness-weighted pseudo-gradients.  The wrapper keeps the inner rule's exchange, fitness
    needs and anchor, so the round does not know it is there.  The velocity is this rule's
    state: checkpointed, and cleared when the particle diverged.
    """

    def __init__(self, inner: Rule, lr: float | None = None, momentum: float = 0.9) -> None:
        if inner.name not in PULL_RULES:
            raise ValueError(
                f"outer momentum works with the rules {', '.join(PULL_RULES)}, not {inner.name!r}"
            )
        self.inner, self.lr = inner, None if lr is None else check_outer_lr(lr)
        self.momentum = check_outer_momentum(momentum)
        self.name = inner.name  # type: ignore[misc]
        self.needs_fitness, self.exchange = inner.needs_fitness, inner.exchange  # type: ignore[misc]
        self.target = inner.target  # type: ignore[misc]
        self.velocity: Tensor | None = None

    def prepare(self, own: Tensor, mean: Callable[[Tensor], Tensor]) -> None:
        self.inner.prepare(own, mean)

    def contribution(self, own: Tensor, got: Exchanged) -> Tensor:
        return self.inner.contribution(own, got)

    def anchor(self, own: Tensor, got: Exchanged) -> Tensor:
        return self.inner.anchor(own, got)

    def pull(self, own: Tensor, anchor: Tensor, got: Exchanged) -> Tensor:
        lr = got.pressure if self.lr is None else self.lr
        new, self.velocity = nesterov_step(own, anchor, self.velocity, lr, self.momentum)
        return new

    def restart(self, anchor: Tensor, got: Exchanged) -> Tensor:
        return self.inner.restart(anchor, got)

    def reset(self) -> None:
        self.velocity = None
        self.inner.reset()

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "velocity": self.velocity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        self.velocity = state["velocity"]


def check_temperature(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"temperature must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {value}")
    return float(value)


def check_outer_lr(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"outer_lr must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"outer_lr must be a finite number > 0, got {value}")
    return float(value)


def check_outer_momentum(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"outer_momentum must be a number, got {type(value).__name__}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"outer_momentum must be in [0, 1), got {value}")
    return float(value)


REGISTRY: dict[str, type[Rule]] = {
    rule.name: rule
    for rule in (LeaderRule, PSORule, ElasticRule, WeightedRule, EASGDRule, NoneRule)
}


def make_rule(name: str, options: RuleOptions) -> Rule:
    """The rule ``name``, wrapped in :class:`OuterMomentum` when the options ask for an outer
    step (a momentum above 0, or an outer learning rate)."""
    if name not in REGISTRY:
        raise ValueError(f"rule must be one of {', '.join(REGISTRY)}, got {name!r}")
    rule = REGISTRY[name].create(options)
    if options.outer_momentum or options.outer_lr is not None:
        return OuterMomentum(rule, options.outer_lr, options.outer_momentum)
    return rule
