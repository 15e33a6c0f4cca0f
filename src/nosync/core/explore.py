"""Per-particle hyperparameters and population based training's exploit/explore step.

Owns the decisions of ``--explore``, none of the tensors: the search space (``Space``, parsed from
``lr=0.005..0.5:log,weight_decay=0..0.001``), every particle's starting values (one stratum of
each range per particle), who copies whom (``choose``: the bottom quantile by fitness takes a
random particle of the top quantile; a diverged particle always does), the explore perturbation
(multiply by one of ``factors`` or, with probability ``resample``, draw again; clip to the range)
and the lineage (which values the winner's ancestors trained with, followed back through the
copies).  Jaderberg et al., "Population Based Training of Neural Networks", 2017; the defaults
follow Ray Tune's ``PopulationBasedTraining`` except the factors, 0.8/1.25 so that a step down
and a step up cancel.

Every draw comes from a generator seeded by ``(seed, round, particle)`` (``seeds.explore``), so
every rank that knows the same fitness values reaches the same decisions without sending them,
and a resumed run draws what the uninterrupted one would have drawn.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from nosync.core import seeds

NAMES = ("lr", "weight_decay", "momentum", "label_smoothing", "beta1", "beta2")
FACTORS = (0.8, 1.25)  # explore: multiply by one of these ...
RESAMPLE = 0.25  # ... or, with this probability, draw the value again from its range
QUANTILE = 0.25  # the bottom share of the ranking copies from the top share

_RANGE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*([^.:\s][^:]*?)\s*\.\.\s*([^:]+?)\s*(:log)?\s*$")


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter's range; ``log`` spreads and draws it uniformly in log space."""

    name: str
    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"explore: {self.name}'s range must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"explore: {self.name}={self.low}..{self.high} has LOW > HIGH")
        if self.log and self.low <= 0:
            raise ValueError(f"explore: {self.name}=...:log needs LOW > 0, got {self.low}")

    def at(self, u: float) -> float:
        """The value at fraction ``u`` of the range (of its logarithm with ``log``)."""
        if self.log:
            return math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        return self.low + u * (self.high - self.low)

    def clip(self, value: float) -> float:
        return min(self.high, max(self.low, value))

    def text(self) -> str:
        return f"{self.name}={self.low:g}..{self.high:g}{':log' if self.log else ''}"


@dataclass(frozen=True)
class Space:
    """The hyperparameters the particles search, in the order they were given."""

    dims: tuple[Dimension, ...]

    def __post_init__(self) -> None:
        names = [d.name for d in self.dims]
        if not names:
            raise ValueError("explore: name at least one hyperparameter, e.g. lr=0.005..0.5:log")
        if len(set(names)) != len(names):
            raise ValueError(f"explore: a hyperparameter is named twice in {', '.join(names)}")

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dims]

    @classmethod
    def parse(cls, text: str, names: Sequence[str] | None = NAMES) -> Space:
        """``"lr=0.005..0.5:log,weight_decay=0..0.001"``; ``names=None`` accepts any name (a
        user's callback applies what the optimizer does not know)."""
        return cls(tuple(_dimension(part, names) for part in text.split(",") if part.strip()))

    @classmethod
    def of(cls, spec: str | Mapping[str, object] | Space, names: Sequence[str] | None = NAMES):
        """A space from its text, a mapping ``{"lr": "0.005..0.5:log"}`` (the TOML table) or
        ``{"lr": (0.005, 0.5, "log")}``, or a space."""
        if isinstance(spec, Space):
            return spec
        if isinstance(spec, str):
            return cls.parse(spec, names)
        return cls.parse(",".join(f"{k}={_range_text(v)}" for k, v in spec.items()), names)

    def text(self) -> str:
        return ",".join(d.text() for d in self.dims)

    def initial(self, particles: int, seed: int) -> list[dict[str, float]]:
        """Every particle's starting values: each range cut into ``particles`` strata, particle
        ``i`` at the middle of one stratum per hyperparameter, the strata dealt out by a seeded
        permutation per hyperparameter (a Latin hypercube)."""
        values: list[dict[str, float]] = [{} for _ in range(particles)]
        for j, dim in enumerate(self.dims):
            g = seeds.generator(seeds.explore(seed, -1, j))
            order = torch.randperm(particles, generator=g).tolist()
            for i in range(particles):
                values[i][dim.name] = dim.at((order[i] + 0.5) / particles)
        return values

    def perturb(
        self,
        values: Mapping[str, float],
        g: torch.Generator,
        factors: Sequence[float] = FACTORS,
        resample: float = RESAMPLE,
    ) -> dict[str, float]:
        """Explore: each value multiplied by a factor drawn from ``factors`` or, with
        probability ``resample``, drawn again from its range; then clipped to the range."""
        out: dict[str, float] = {}
        for dim in self.dims:
            redraw, pick, u = torch.rand(3, generator=g, dtype=torch.float64).tolist()
            if redraw < resample:
                new = dim.at(u)
            else:
                new = values[dim.name] * factors[min(int(pick * len(factors)), len(factors) - 1)]
            out[dim.name] = dim.clip(new)
        return out


def _range_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and len(value) in (2, 3):
        log = len(value) == 3 and value[2] in ("log", True)
        if len(value) == 3 and not log and value[2] not in ("linear", False):
            raise ValueError(f"explore: the third item of a range is 'log', got {value[2]!r}")
        return f"{value[0]}..{value[1]}{':log' if log else ''}"
    raise ValueError(f"explore: a range is 'LOW..HIGH[:log]' or [LOW, HIGH, 'log'], got {value!r}")


def _dimension(part: str, names: Sequence[str] | None) -> Dimension:
    m = _RANGE.match(part)
    if m is None:
        raise ValueError(f"explore: {part.strip()!r} is not NAME=LOW..HIGH with an optional :log")
    name, low, high, log = m.groups()
    if names is not None and name not in names:
        known = ", ".join(names)
        raise ValueError(f"explore: unknown hyperparameter {name!r}; choose from {known}")
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        raise ValueError(f"explore: {part.strip()!r}: LOW and HIGH must be numbers") from None
    return Dimension(name, lo, hi, bool(log))


def check_quantile(value: float) -> float:
    if not 0 < value <= 0.5:
        raise ValueError(f"exploit quantile must be in (0, 0.5], got {value}")
    return value


def ranked(fitness: Mapping[int, float]) -> list[int]:
    """Particles best first (lowest fitness); non-finite last; ties to the lower index."""
    return sorted(fitness, key=lambda i: (not math.isfinite(fitness[i]), fitness[i], i))


def choose(fitness: Mapping[int, float], quantile: float, seed: int, round_: int) -> dict[int, int]:
    """Who copies whom among the particles in ``fitness`` (a swarm or one neighbourhood):
    ``ceil(quantile * n)`` particles at the bottom (at most half, at least one when n >= 2)
    each take a random particle of as many at the top; a diverged particle (non-finite fitness)
    always copies, even above the bottom quantile.  Nobody copies a diverged particle."""
    order = ranked(fitness)
    n = len(order)
    finite = [i for i in order if math.isfinite(fitness[i])]
    if n < 2 or not finite:
        return {}
    k = min(max(1, math.ceil(quantile * n)), n // 2)
    top = finite[: max(1, min(k, len(finite)))]
    losers = set(order[n - k :]) | {i for i in order if not math.isfinite(fitness[i])}
    moves: dict[int, int] = {}
    for loser in sorted(losers - set(top)):
        g = seeds.generator(seeds.explore(seed, round_, loser))
        moves[loser] = top[int(torch.randint(len(top), (1,), generator=g))]
    return moves


def draw(seed: int, round_: int, particle: int) -> torch.Generator:
    """The generator of ``particle``'s explore step in ``round_`` (its donor's is another)."""
    return seeds.generator(seeds.explore(seed, round_, particle, stream=1))


@dataclass
class Event:
    """One exploit: ``particle`` took ``donor``'s weights and state at ``round``, then explored
    from the donor's ``before`` to its own ``after``."""

    round: int
    step: int
    particle: int
    donor: int
    before: dict[str, float]
    after: dict[str, float]

    def record(self) -> dict[str, object]:
        return {"particle": self.particle, "donor": self.donor, "values": self.after}


@dataclass
class Lineage:
    """What every particle trained with, from which step, through the copies (for the summary's
    winner schedule and ``--replay``)."""

    start: list[dict[str, float]]
    events: list[Event] = field(default_factory=list)

    def schedule(self, particle: int) -> list[dict[str, object]]:
        """``[{"step": s, "values": {...}}, ...]``: the values ``particle``'s ancestors trained
        with, from step 0, switching at each copy on its line of descent."""
        steps: list[dict[str, object]] = []
        current, until = particle, math.inf
        for event in reversed(self.events):  # a copy takes the donor's state from before the
            if event.particle == current and event.step < until:  # round, so go strictly back
                steps.append({"step": event.step, "values": dict(event.after)})
                current, until = event.donor, event.step
        steps.append({"step": 0, "values": dict(self.start[current])})
        return list(reversed(steps))

    def state_dict(self) -> dict[str, object]:
        return {"start": self.start, "events": [vars(e) for e in self.events]}

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> Lineage:
        events = [Event(**e) for e in state["events"]]  # type: ignore[attr-defined]
        return cls([dict(v) for v in state["start"]], events)  # type: ignore[attr-defined]
