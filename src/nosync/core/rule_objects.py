"""The rule objects: what a rule asks of the round, and how it moves a particle.

This module owns :class:`Rule` (the interface a round calls: :meth:`Rule.anchor`, the point
pulled toward, and :meth:`Rule.pull`, the new weights), the six built-in rules, each bound to
its entry of :mod:`nosync.core.catalog` (``class LeaderRule(Rule, info=RULES["leader"])``:
name, ``needs``, ``needs_fitness``, ``target``), and :class:`OuterMomentum`, which wraps any
pull toward a target into a step of a Nesterov outer optimizer (DiLoCo / SlowMo).  The
arithmetic is in :mod:`nosync.core.equations`; the names a rule is found by, in
:mod:`nosync.core.rules` (``REGISTRY``, ``make_rule``).

Nothing here knows about processes: a rule sees flat weight vectors (a particle's parameters and
floating-point buffers, concatenated) and :class:`Exchanged`, what the round fetched for it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from nosync.core import seeds
from nosync.core.catalog import RULES, RuleInfo, outer_rules
from nosync.core.equations import (
    easgd_update,
    elastic_pull,
    fitness_weights,
    leader_pull,
    nesterov_step,
    pso_update,
)
from nosync.core.options import RuleOptions, check_outer_lr, check_outer_momentum, check_temperature


class _Renamed:
    """A class attribute under its old name: reading it warns and gives the new one's value."""

    def __init__(self, new: str) -> None:
        self.new = new

    def __set_name__(self, owner: type, name: str) -> None:
        self.old = name

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        warnings.warn(
            f"Rule.{self.old} is deprecated; use Rule.{self.new}", DeprecationWarning, stacklevel=2
        )
        return getattr(owner if obj is None else obj, self.new)


@dataclass
class Exchanged:
    """What the round fetched for a rule, and the round's settings."""

    pressure: float
    fitness: float = math.inf  # this particle's (inf when not evaluated or diverged)
    leader: Tensor | None = None  # needs "leader": the leader's weights
    total: Tensor | None = None  # needs "sum": the sum of the live particles' contributions
    alive: int = 0  # needs "sum": how many particles contributed
    particle: int = 0  # this particle's index
    known: dict[int, float] = field(default_factory=dict)  # every known fitness (+inf: diverged)


class Rule:
    """A pull rule.  Subclasses set the class attributes (or take them from their catalog
    entry, ``info=``) and implement :meth:`pull`.

    - ``needs``: what the round fetches: ``"leader"`` (the leader's weights), ``"sum"`` (the sum
      over the live particles of :meth:`contribution`) or ``"none"``;
    - ``needs_fitness``: whether the round evaluates and exchanges fitness for it;
    - ``target``: the name of the point it pulls toward, for the log.

    ``exchange``, the old name of ``needs``, still works for one release with a
    ``DeprecationWarning`` (read, or set by a subclass).
    """

    name: ClassVar[str]
    needs_fitness: ClassVar[bool] = True
    needs: ClassVar[str] = "leader"
    target: ClassVar[str | None] = "leader"
    info: ClassVar[RuleInfo | None] = None  # the catalog entry of a built-in rule
    exchange: ClassVar[Any] = _Renamed("needs")

    def __init_subclass__(cls, info: RuleInfo | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if info is not None:
            cls.info, cls.name, cls.needs = info, info.name, info.needs
            cls.needs_fitness, cls.target = info.needs_fitness, info.target
        if "exchange" in cls.__dict__:  # a rule written before the rename
            old = cls.__dict__["exchange"]
            delattr(cls, "exchange")
            warnings.warn(
                f"{cls.__name__}.exchange is deprecated; set needs = {old!r}",
                DeprecationWarning,
                stacklevel=2,
            )
            if "needs" not in cls.__dict__:
                cls.needs = old

    @classmethod
    def create(cls, options: RuleOptions) -> Rule:
        return cls()

    def prepare(self, own: Tensor, mean: Callable[[Tensor], Tensor]) -> None:
        """Needs ``sum``: called before :meth:`contribution`; ``mean`` averages over the
        live particles (a collective: every particle calls it the same number of times)."""

    def contribution(self, own: Tensor, got: Exchanged) -> Tensor:
        """Needs ``sum``: this particle's part of the sum (``got`` holds the fitness)."""
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


class LeaderRule(Rule, info=RULES["leader"]):
    """NoSync (reconstruction): :func:`leader_pull` toward the (local) leader's weights."""

    def pull(self, own: Tensor, anchor: Tensor, got: Exchanged) -> Tensor:
        return leader_pull(own, anchor, got.pressure)


class PSORule(Rule, info=RULES["pso"]):
    """:func:`pso_update`, with the particle's velocity, personal best and its own seeded
    generator for ``r1, r2`` (one draw per coordinate, every round)."""

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


class ElasticRule(Rule, info=RULES["elastic"]):
    """:func:`elastic_pull` toward the mean of the live particles; needs no fitness."""

    def anchor(self, own: Tensor, got: Exchanged) -> Tensor:
        assert got.total is not None
        return got.total / got.alive

    def pull(self, own: Tensor, anchor: Tensor, got: Exchanged) -> Tensor:
        return elastic_pull(own, anchor, got.pressure)

    def restart(self, anchor: Tensor, got: Exchanged) -> Tensor:
        return anchor.clone()


class WeightedRule(Rule, info=RULES["weighted"]):
    """Pull toward the fitness-weighted mean of the live particles,
    ``w <- w + p * (sum_j a_j w_j - w)`` with ``a = softmax(-fitness / T)``
    (:func:`fitness_weights`; diverged particles weigh 0).  ``T -> 0`` is the ``leader`` rule,
    ``T -> inf`` the ``elastic`` one.  Each particle contributes ``a_i w_i`` to one sum."""

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


class EASGDRule(Rule, info=RULES["easgd"]):
    """:func:`easgd_update` with the centre variable, the same on every particle; it starts as
    the swarm mean at the first round.  The pressure is EASGD's moving rate alpha."""

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


class NoneRule(Rule, info=RULES["none"]):
    """No pull at all: independent workers (the ensemble baseline); a round does no work."""

    def pull(self, own: Tensor, anchor: Tensor, got: Exchanged) -> Tensor:
        return own


class OuterMomentum(Rule):
    """Any pull toward a target (``leader``, ``elastic``, ``weighted``) as a step of a Nesterov
    outer optimizer on the pseudo-gradient ``g = own - anchor`` (:func:`nesterov_step`):

    ``v <- beta * v + g`` and ``own <- own - lr * (g + beta * v)``,

    with ``lr`` the outer learning rate, or the round's pressure ``p`` when none is given (so
    the pressure schedule still applies).  ``beta = 0`` with ``lr = p`` is exactly the plain
    pull ``own + p * (anchor - own)``; ``weighted`` with outer momentum is DiLoCo / SlowMo with
    fitness-weighted pseudo-gradients.  The wrapper keeps the inner rule's needs, fitness
    needs and anchor, so the round does not know it is there.  The velocity is this rule's
    state: checkpointed, and cleared when the particle diverged.
    """

    def __init__(self, inner: Rule, lr: float | None = None, momentum: float = 0.9) -> None:
        if inner.name not in outer_rules():
            raise ValueError(
                f"outer momentum works with the rules {', '.join(outer_rules())}, "
                f"not {inner.name!r}"
            )
        self.inner, self.lr = inner, None if lr is None else check_outer_lr(lr)
        self.momentum = check_outer_momentum(momentum)
        self.name = inner.name  # type: ignore[misc]
        self.needs_fitness, self.needs = inner.needs_fitness, inner.needs  # type: ignore[misc]
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
