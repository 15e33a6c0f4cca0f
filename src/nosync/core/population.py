"""``Swarm(explore=...)``: each particle's own hyperparameters, and the exploit step that moves a
losing particle onto a winner's weights, optimizer state and (perturbed) hyperparameters.

The decisions are :mod:`nosync.core.explore`'s pure functions; this module owns what they act
on.  Every head keeps the whole table of values (the same decisions on every rank, so nothing
but fitness and the copied state travels), applies its own row to the optimizer (``param_groups``:
``lr``, ``weight_decay``, ``momentum``, ``beta1``/``beta2``) or hands it to the user's
``apply`` callback (anything else, e.g. a dropout rate or label smoothing), and sends or receives
the state of an exploit point to point.

Two traps this module avoids, met by Ray Tune's PBT and by our own probe:

- the copied optimizer state carries the donor's ``lr``; the particle's *own new* values are
  applied after it is loaded, never before;
- ``Optimizer.load_state_dict`` keeps the source's tensors when device and dtype match, so two
  particles in one process (``simulate``) would share one momentum buffer.  The state travels as
  one flat float64 vector (exact for float32/bfloat16 values and step counts) copied into the
  receiver's own tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nosync.core import explore, topology
from nosync.core.explore import Event, Lineage, Space
from nosync.core.records import RoundRecord
from nosync.core.transport import Transport
from nosync.core.weights import flatten_weights, float_tensors, load_weights, unwrap

Apply = Callable[[int, Mapping[str, float]], None]  # (particle, its values) -> None
OPTIMIZER_NAMES = ("lr", "weight_decay", "momentum", "beta1", "beta2")

Slot = tuple[int, str, tuple[int, ...], torch.dtype]  # (param index, key, shape, dtype)


@dataclass(frozen=True)
class Explore:
    """What ``Swarm(explore=)`` takes: the space, how often to exploit and how.

    Args:
        space: the ranges, e.g. ``"lr=0.005..0.5:log,weight_decay=0..0.001"`` (see
            :class:`~nosync.core.explore.Space`).
        every: exploit every ``every`` rounds (0: never, not even a diverged particle: the
            particles keep their starting values, a sweep in one run).
        quantile: the bottom share that copies from the top share, in (0, 0.5].
        factors: explore multiplies a copied value by one of these ...
        resample: ... or, with this probability, draws it again from its range.
        apply: ``apply(particle, values)`` for names the optimizer does not hold (called after
            the optimizer's own names are written).
        scheduler: an lr scheduler whose ``base_lrs`` follow the particle's ``lr``.
    """

    space: Space | str | Mapping[str, object]
    every: int = 4
    quantile: float = explore.QUANTILE
    factors: tuple[float, ...] = explore.FACTORS
    resample: float = explore.RESAMPLE
    apply: Apply | None = None
    scheduler: Any = None

    def resolved(self) -> Space:
        names = None if self.apply is not None else OPTIMIZER_NAMES
        space = Space.of(self.space, names)
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 0:
            raise ValueError(f"explore: every must be an int >= 0, got {self.every!r}")
        explore.check_quantile(self.quantile)
        if not 0 <= self.resample <= 1 or not self.factors or min(self.factors) <= 0:
            raise ValueError("explore: resample must be in [0, 1] and the factors positive")
        return space


def apply_to_optimizer(
    optimizer: torch.optim.Optimizer, values: Mapping[str, float], scheduler: Any = None
) -> None:
    """Write the optimizer's own hyperparameters into every param group.  ``lr`` is the base
    rate: the group's current rate keeps its schedule's factor (``lr * new / old base``)."""
    for i, group in enumerate(optimizer.param_groups):
        for name, value in values.items():
            if name == "lr":
                old = group.get("initial_lr", None)
                old = old if old else (scheduler.base_lrs[i] if scheduler is not None else None)
                group["lr"] = value if not old else group["lr"] * value / old
                if "initial_lr" in group:
                    group["initial_lr"] = value
                if scheduler is not None:
                    scheduler.base_lrs[i] = value
            elif name in ("beta1", "beta2") or (name == "momentum" and "momentum" not in group):
                if "betas" not in group:
                    raise ValueError(f"explore: {type(optimizer).__name__} has no {name}")
                betas = list(group["betas"])
                betas[0 if name in ("beta1", "momentum") else 1] = value
                group["betas"] = tuple(betas)
            elif name in ("weight_decay", "momentum"):
                if name not in group:
                    raise ValueError(f"explore: {type(optimizer).__name__} has no {name}")
                group[name] = value


def state_slots(optimizer: torch.optim.Optimizer) -> list[Slot]:
    """The tensors of the optimizer's state, in a fixed order (the same on every particle)."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    slots: list[Slot] = []
    for i, p in enumerate(params):
        for key, value in sorted(optimizer.state.get(p, {}).items()):
            if isinstance(value, Tensor):
                slots.append((i, key, tuple(value.shape), value.dtype))
    return slots


def flatten_state(optimizer: torch.optim.Optimizer, device: torch.device) -> Tensor:
    """The optimizer state as one float64 vector (exact for its float32 values and counts)."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    parts = [
        optimizer.state[params[i]][key].detach().reshape(-1).to(device, torch.float64)
        for i, key, _, _ in state_slots(optimizer)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64, device=device)


def load_state(optimizer: torch.optim.Optimizer, flat: Tensor, slots: Sequence[Slot]) -> None:
    """Copy ``flat`` (a :func:`flatten_state` vector laid out as ``slots``) into the optimizer's
    own tensors, creating them where a reset cleared the state: by value, never shared."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    offset = 0
    for i, key, shape, dtype in slots:
        n = math.prod(shape)
        state = optimizer.state.setdefault(params[i], {})
        mine = state.get(key)
        if not isinstance(mine, Tensor) or tuple(mine.shape) != shape:
            mine = state[key] = torch.empty(shape, dtype=dtype, device=params[i].device)
        mine.copy_(flat[offset : offset + n].view(shape))
        offset += n
    if offset != flat.numel():
        raise RuntimeError(f"optimizer state of {flat.numel()} values does not fit {offset}")


class Population:
    """The hyperparameters of every particle and the exploit step, on one particle's head.

    ``exploit(number, step, fitness)`` runs on every head of the swarm at the same round
    (a collective); the other ranks of a data-parallel particle call :meth:`share` after it.
    """

    def __init__(
        self,
        config: Explore,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        transport: Transport,
        *,
        seed: int,
        topology_: str = "all",
        neighbors: int = 2,
    ) -> None:
        self.config, self.space = config, config.resolved()
        self.model, self.optimizer, self.transport = model, optimizer, transport
        self.seed, self.topology, self.neighbors = seed, topology_, neighbors
        values = self.space.initial(transport.particles, seed) if transport.is_head else []
        self.values = transport.share_in_particle([], values) if transport.hybrid else values
        self.lineage = Lineage([dict(v) for v in self.values])
        self._slots: list[Slot] | None = None
        self.apply_own()

    @property
    def particle(self) -> int:
        return max(self.transport.particle, 0)

    @property
    def mine(self) -> dict[str, float]:
        return self.values[self.particle]

    def due(self, number: int) -> bool:
        return self.config.every > 0 and number % self.config.every == 0

    def apply_own(self) -> None:
        """This particle's values into its optimizer (and the user's callback)."""
        mine = self.mine
        own = {k: v for k, v in mine.items() if k in OPTIMIZER_NAMES}
        rest = {k: v for k, v in mine.items() if k not in own}
        apply_to_optimizer(self.optimizer, own, self.config.scheduler)
        if self.config.apply is not None:
            self.config.apply(self.particle, dict(mine))
        elif rest:
            raise ValueError(f"explore: {', '.join(rest)} needs an apply= callback")

    def remember_layout(self) -> None:
        """The optimizer state's layout, once this particle has one (it stays the same; a
        diverged particle's state is cleared, and it must still take a donor's)."""
        if self._slots is None and self.optimizer.state:
            self._slots = state_slots(self.optimizer)

    def decide(self, number: int, fitness: Sequence[float]) -> dict[int, int]:
        """Who copies whom this round (every head reaches the same answer)."""
        known = {i: f for i, f in enumerate(fitness)}
        q = self.config.quantile
        if self.topology == "all":
            return explore.choose(known, q, self.seed, number)
        moves: dict[int, int] = {}
        n = self.transport.particles
        for i in range(n):  # within its own neighbourhood, as this round's topology draws it
            hood = topology.in_neighbours(self.topology, i, n, number, self.neighbors, self.seed)
            mine = explore.choose({j: known[j] for j in {i, *hood}}, q, self.seed, number)
            if i in mine:
                moves[i] = mine[i]
        return moves

    def land(
        self, record: RoundRecord, number: int, step: int, fitness_now: Callable[[], float]
    ) -> None:
        """After round ``number``'s pull landed (every rank): exploit on exploit rounds, and a
        diverged particle at once; the round's record gets every particle's values and the
        copies.  The other ranks of a data-parallel particle take their head's result."""
        events: list[Event] = []
        if self.transport.is_head:
            fitness = self._fitness(record, fitness_now)
            due = self.due(number)
            diverged = not all(math.isfinite(f) for f in fitness)
            if due or (diverged and self.config.every > 0):
                events = self.exploit(number, step, fitness, only_diverged=not due)
        if self.transport.hybrid:
            events = self._share(events)
        record["explore"] = {
            "values": self.table(),
            "exploits": [e.record() for e in events],
        }

    def _fitness(self, record: RoundRecord, fitness_now: Callable[[], float]) -> list[float]:
        """Every particle's fitness: the round's, when it knows the whole swarm's, else one
        small all-gather of each particle's fitness now."""
        known = record.get("fitness")
        if self.topology == "all" and known is not None and len(known) == len(self.values):
            return [math.inf if f is None else float(f) for f in known]
        device = next(self.model.parameters()).device
        mine = torch.tensor([fitness_now()], dtype=torch.float64, device=device)
        return [
            f if math.isfinite(f) else math.inf for f in self.transport.all_gather(mine).tolist()
        ]

    def _share(self, events: list[Event]) -> list[Event]:
        """Hybrid particles: the head's table, copies and (when this particle copied) its new
        weights and optimizer state go to the particle's other ranks."""
        me = self.transport.particle
        box = (self.values, [vars(e) for e in events], any(e.particle == me for e in events))
        values, shared, copied = self.transport.share_in_particle([], box)
        if not self.transport.is_head:
            self.values = [dict(v) for v in values]
            self.lineage.events.extend(Event(**e) for e in shared)
        if copied:
            self.remember_layout()
            device = next(self.model.parameters()).device
            flat = (
                self._payload(device)
                if self.transport.is_head
                else torch.empty(self._size(device), dtype=torch.float64, device=device)
            )
            self.transport.share_in_particle([flat], None)
            if not self.transport.is_head:
                self._load(flat)
                self.apply_own()
        return [Event(**e) for e in shared]

    def exploit(
        self, number: int, step: int, fitness: Sequence[float], only_diverged: bool = False
    ) -> list[Event]:
        """The exploit/explore step of round ``number``: decide, move the state of each copy,
        perturb the copier's values and apply them.  Returns this round's events.  Between
        exploit rounds ``only_diverged`` moves the diverged particles alone (at once)."""
        self.remember_layout()
        moves = self.decide(number, fitness)
        if only_diverged:
            moves = {i: d for i, d in moves.items() if not math.isfinite(fitness[i])}
        me, device = self.particle, next(self.model.parameters()).device
        send: dict[int, Tensor] = {}
        recv: dict[int, Tensor] = {}
        if me in moves.values():
            payload = self._payload(device)
            send = {loser: payload for loser, donor in moves.items() if donor == me}
        if me in moves:
            recv = {moves[me]: torch.empty(self._size(device), dtype=torch.float64, device=device)}
        self.transport.send_recv(send, recv)
        events = []
        for loser, donor in sorted(moves.items()):
            before = dict(self.values[donor])
            after = self.space.perturb(
                before, explore.draw(self.seed, number, loser), self.config.factors,
                self.config.resample,
            )  # fmt: skip
            events.append(Event(number, step, loser, donor, before, after))
        for event in events:
            self.values[event.particle] = dict(event.after)
        self.lineage.events.extend(events)
        if recv:
            self._load(next(iter(recv.values())))
            self.apply_own()  # after the donor's optimizer state, never before
        return events

    def _payload(self, device: torch.device) -> Tensor:
        self.remember_layout()
        parts = [flatten_weights(self.model).to(device, torch.float64)]
        parts.append(flatten_weights(self.model, integer=True).to(device, torch.float64))
        parts.append(flatten_state(self.optimizer, device))
        return torch.cat(parts)

    def _counts(self) -> tuple[int, int]:
        """How many float and integer weight values the payload starts with."""
        module = unwrap(self.model)
        floats = sum(t.numel() for t in float_tensors(module))
        ints = sum(b.numel() for b in module.buffers() if not b.is_floating_point())
        return floats, ints

    def _size(self, device: torch.device) -> int:
        if self._slots is None:
            raise RuntimeError("explore: the optimizer has no state to lay a donor's out by yet")
        return sum(self._counts()) + sum(math.prod(s[2]) for s in self._slots)

    def _load(self, flat: Tensor) -> None:
        """The donor's payload into this particle (load_weights casts to each tensor's dtype)."""
        floats, ints = self._counts()
        load_weights(self.model, flat[:floats])
        if ints:
            load_weights(self.model, flat[floats : floats + ints], integer=True)
        assert self._slots is not None
        load_state(self.optimizer, flat[floats + ints :], self._slots)

    def table(self) -> list[dict[str, float]]:
        """Every particle's values now (for the round record)."""
        return [dict(v) for v in self.values]

    def state_dict(self) -> dict[str, Any]:
        return {"values": self.table(), "lineage": self.lineage.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.values = [dict(v) for v in state["values"]]
        self.lineage = Lineage.from_state(state["lineage"])
        self.apply_own()
