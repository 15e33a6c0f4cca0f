"""``Swarm``: the NoSync round around an ordinary PyTorch loop.

Every rank trains its own copy of the model (a *particle*).  Every ``period`` optimizer steps a
round runs (``round.py``), in three parts that live in their own modules:

1. **plan** (``planner.py``): the fitness exchange, the leader (lowest finite fitness, ties to
   the lowest index), the diverged particles to reset, the neighbourhood;
2. **exchange** (``exchange.py`` over ``transport.py``): whatever the rule needs - the leader's
   weights, a sum over the swarm, or nothing;
3. **rule** (``rules.py``): the new weights.

Reconstructed from Isakov & Kinsy, "NoSync: Particle Swarm Inspired Distributed DNN Training",
ICANN 2018 (see the README for what is reconstruction).  Style follows torchft's ``LocalSGD``: a
context manager that hooks ``optimizer.step`` and leaves the user's loop alone.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from nosync.core import placement, rules, selection, topology
from nosync.core.background import Background, Pending
from nosync.core.evaluate import TrainLoss, fitness_value
from nosync.core.exchange import Exchange
from nosync.core.hooks import COUNTS, StepHook
from nosync.core.planner import finite_or_none
from nosync.core.records import RoundRecord
from nosync.core.round import Outcome, Round, SwarmDivergedError
from nosync.core.rules import Rule, RuleOptions
from nosync.core.transport import DistTransport, Transport
from nosync.core.weights import flatten_weights, load_weights, unwrap

Fitness = Callable[[nn.Module], float]
__all__ = ["Swarm", "SwarmDivergedError", "flatten_weights", "load_weights", "particle_groups"]


def particle_groups(
    ranks_per_particle: int, timeout: timedelta | None = None
) -> tuple[dist.ProcessGroup | None, dist.ProcessGroup | None]:
    """``(swarm_group, particle_group)`` for hybrid particles; see :mod:`nosync.core.placement`."""
    return placement.particle_groups(ranks_per_particle, timeout)


class Swarm(StepHook):
    """Swarm training around an ordinary PyTorch loop.

    ``with Swarm(model, optimizer, fitness=fn, period=50, pressure=0.1):`` runs a round after
    every ``period``-th ``optimizer.step()``; ``finalize()`` leaves every rank holding the best
    particle.  ``rule`` is a name from ``rules.REGISTRY`` or a :class:`~nosync.core.rules.Rule`.

    Optimizer state (momentum, Adam moments) is deliberately left alone by an ordinary pull: it is
    the particle's own search direction, the pull is a perturbation of the position (as in EASGD
    and PSO), and copying the leader's state would collapse the trajectories.  A *diverged*
    particle (non-finite fitness or weights) is replaced by the leader's weights, integer buffers
    included, and its optimizer and rule state are cleared, because they are poisoned too.

    Hybrid (data-parallel) particles: pass ``group``/``particle_group`` from
    :func:`particle_groups`; the first rank of each particle takes part in the round and then
    hands the result to the others.  ``transport=`` replaces ``torch.distributed`` (for example a
    :class:`~nosync.core.transport.LocalWorld` endpoint: particles as threads of one process).

    Rounds come every ``period`` iterations, which every particle must count alike.  With a
    ``GradScaler`` pass ``scaler=``: iterations are counted at ``scaler.update()``, since
    ``scaler.step`` skips ``optimizer.step()`` after inf/NaN gradients; or pass
    ``count="manual"`` and call :meth:`step_done` once per iteration (see ``hooks.py``).
    ``temperature`` is the ``weighted`` rule's T; ``outer_momentum``/``outer_lr`` turn the pull
    of ``leader``, ``elastic`` or ``weighted`` into a Nesterov outer step
    (:class:`~nosync.core.rules.OuterMomentum`; ``outer_lr=None`` steps by the pressure).
    ``select`` is what ``finalize()`` returns: ``"best"`` (the best particle by fitness),
    ``"average"`` (the weight average) or ``"soup"`` (a greedy soup on the fitness set; see
    :mod:`nosync.core.selection`).  Averaged models with BatchNorm have their running statistics
    recomputed on ``bn_data``, a re-iterable of training batches (a list, a DataLoader).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        fitness: Fitness,
        period: int = 25,
        pressure: float = 0.3,
        rule: str | Rule = "leader",
        *,
        schedule: str = "constant",
        total_steps: int | None = None,
        group: dist.ProcessGroup | None = None,
        particle_group: dist.ProcessGroup | None = None,
        inertia: float = 0.5,
        c1: float = 0.5,
        c2: float = 2.0,
        seed: int = 0,
        topology: str = "all",
        neighbors: int = 2,
        exchange_dtype: torch.dtype = torch.float32,
        transport: Transport | None = None,
        mode: str = "blocking",
        delay: int | None = None,
        train_loss: TrainLoss | None = None,
        scaler: Any = None,
        count: str = "optimizer",
        temperature: float = 1.0,
        outer_lr: float | None = None,
        outer_momentum: float = 0.0,
        select: str = "best",
        bn_data: Iterable[Any] | None = None,
    ) -> None:
        kind = rule if isinstance(rule, Rule) else rules.REGISTRY.get(rule)
        if kind is None:
            raise ValueError(f"rule must be one of {', '.join(rules.REGISTRY)}, got {rule!r}")
        _check_args(model, optimizer, fitness, period, pressure, schedule, total_steps)
        _check_exchange(kind, topology, neighbors, exchange_dtype)
        delay = max(1, period // 5) if delay is None else delay
        _check_mode(mode, delay, period)
        _check_count(scaler, count)
        rules.check_temperature(temperature)
        rules.check_outer_momentum(outer_momentum)
        if outer_lr is not None:
            rules.check_outer_lr(outer_lr)
        _check_select(selection.check_select(select), model, fitness, train_loss, bn_data)
        self._device = next(unwrap(model).parameters()).device
        if transport is None:
            if not dist.is_available() or not dist.is_initialized():
                raise RuntimeError(
                    "Swarm needs torch.distributed: call dist.init_process_group() first "
                    "(torchrun or `nosync train` do it for you)"
                )
            transport = DistTransport(group, particle_group, self._device)
        if mode == "async":  # rounds run on a process group of their own
            transport = transport.twin()
        self.model, self.optimizer, self.fitness = model, optimizer, fitness
        self.scaler, self.count = scaler, count  # what counts an iteration (hooks.py)
        self.mode, self.delay, self.train_loss = mode, int(delay), train_loss
        self.period, self.pressure = int(period), float(pressure)
        self.schedule, self.total_steps = schedule, total_steps
        self.transport, self.topology = transport, topology
        self.is_head, self.particles = transport.is_head, transport.particles
        options = RuleOptions(
            max(transport.particle, 0), seed, float(inertia), float(c1), float(c2),
            temperature=float(temperature), outer_lr=outer_lr, outer_momentum=outer_momentum,
        )  # fmt: skip
        self.rule = rule if isinstance(rule, Rule) else rules.make_rule(kind.name, options)
        exchange = Exchange(transport, topology, neighbors, seed, exchange_dtype, self._device)
        self.round = Round(model, optimizer, self.rule, exchange)
        self.background = Background() if mode == "async" else None
        self._pending: Pending | None = None
        self._scratch: nn.Module | None = None  # evaluates a snapshot's fitness in the background
        self.step, self.rounds = 0, 0
        self.blocked_seconds = 0.0  # the training thread's time held up by rounds, so far
        self.history: list[RoundRecord] = []
        self.best_particle: int | None = None
        self.final_fitness: list[float | None] | None = None
        self.select, self.bn_data = select, bn_data
        self.ingredients: list[int] | None = None  # the particles ``finalize`` averaged
        self._awaiting = False  # the last record's distances come with the next round's message

    # ---- after every optimizer.step (while entered, see StepHook) --------------------------------
    def _after_step(self, *_: object) -> None:
        self.step += 1
        if self._pending is not None and self.step >= self._pending.apply_at:
            self._finish()
        if self.step % self.period == 0:
            self._start(background=self.mode == "async")
            if self._pending is not None and self._pending.apply_at <= self.step:
                self._finish()  # blocking, or async with no delay

    def skip(self) -> None:
        """Count an iteration this particle did not step the optimizer in (a straggler skipping
        a batch to keep pace): rounds are counted in iterations, so they stay aligned with the
        other particles, which stepped."""
        self._after_step()

    def current_pressure(self) -> float:
        progress = self.step / self.total_steps if self.total_steps else 0.0
        return rules.pressure_at(self.schedule, self.pressure, progress)

    # ---- the round: started, then applied ``delay`` steps later (0 when blocking) ---------------
    def sync(self) -> RoundRecord:
        """Run one whole round now, blocking (the hook runs them every ``period`` steps)."""
        self.flush()
        self._start(background=False)
        return self._finish()

    def flush(self) -> None:
        """Land the round in flight, if any, now (before checkpoints' end and ``finalize``)."""
        if self._pending is not None:
            self._finish()

    def _start(self, background: bool) -> None:
        start = time.perf_counter()
        self.rounds += 1
        delay = self.delay if background else 0
        pending = Pending(self.rounds, self.step, self.step + delay, start)
        aux = self.train_loss.take() if self.train_loss is not None else math.nan
        if self.is_head:
            own = flatten_weights(self.model)  # a snapshot: training may go on
            fitness = self._fitness_at(own, aux, background)
            args = (self.rounds, self.step, self.current_pressure(), own, fitness, aux)
            if background and self.background is not None:
                pending.future = self.background.submit(self._compute, *args)
            else:
                pending.outcome, pending.comm = self._compute(*args)
        pending.blocked = time.perf_counter() - start
        self.blocked_seconds += pending.blocked
        self._pending = pending

    def _compute(self, *args: Any) -> tuple[Outcome, tuple[float, int]]:
        """The round's plan, exchange and rule; its collectives' seconds and bytes."""
        seconds, nbytes = self.transport.seconds, self.transport.bytes
        outcome = self.round.compute(*args)
        return outcome, (self.transport.seconds - seconds, self.transport.bytes - nbytes)

    def _fitness_at(self, own: Tensor, aux: float, background: bool) -> Callable[[], float]:
        """This particle's fitness at the snapshot: the training loss (free, read now), the live
        model (blocking), or a scratch copy holding the snapshot (async)."""
        if self.fitness is self.train_loss or getattr(self.fitness, "cheap", False):
            value = (
                aux
                if self.fitness is self.train_loss
                else fitness_value(self.fitness, self.model, own)
            )
            return lambda: value if math.isfinite(value) else math.inf
        if not background:
            return lambda: fitness_value(self.fitness, self.model, own)
        if self._scratch is None:
            self._scratch = copy.deepcopy(unwrap(self.model))
        scratch = self._scratch

        def on_snapshot() -> float:
            load_weights(scratch, own)
            return fitness_value(self.fitness, scratch, own)

        return on_snapshot

    def _finish(self) -> RoundRecord:
        start, pending = time.perf_counter(), self._pending
        assert pending is not None
        self._pending = None
        if pending.future is not None:
            pending.outcome, pending.comm = self._wait(pending.future, pending.number)
        seconds, nbytes = self.transport.seconds, self.transport.bytes
        record = self.round.apply(pending.outcome, self.step - pending.step)
        outcome = pending.outcome
        if outcome is not None:  # the previous round's distances came with this one
            self._settle(outcome.previous)
            self._awaiting = outcome.awaits
        if self.train_loss is not None and self.particle in record["reset"]:
            self.train_loss.take()  # losses of the diverged weights do not count against the new
        record["seconds"] = time.perf_counter() - pending.started
        finishing = time.perf_counter() - start
        self.blocked_seconds += finishing
        record["blocked_seconds"] = pending.blocked + finishing
        record["comm_seconds"] = pending.comm[0] + self.transport.seconds - seconds
        record["comm_bytes"] = pending.comm[1] + self.transport.bytes - nbytes
        record["applied_step"] = self.step
        self.history.append(record)
        return record

    def _wait(self, future: Future, number: int) -> tuple[Outcome, tuple[float, int]]:
        """A background round's result, waited for no longer than the transport's timeout (a
        rank that stopped answering must not hold this one for torch's 30-minute default)."""
        try:
            return future.result(timeout=self.transport.timeout)
        except FutureTimeout:
            raise TimeoutError(
                f"round {number} timed out: no answer from another rank within "
                f"{self.transport.timeout:g} s"
            ) from None

    def _settle(self, distances: list[float | None] | None) -> None:
        if self._awaiting and distances is not None and self.history:
            self.history[-1]["distance"] = distances
        self._awaiting = False

    @property
    def settled(self) -> int:
        """How many records of ``history`` are final: all but the last while its distances are
        still to come (with the next round's message, or ``finalize``)."""
        return len(self.history) - int(self._awaiting)

    def settle(self) -> None:
        """The last round's distances now, in one small all-gather (every head calls it), for
        a caller that ends without ``finalize`` (``nosync simulate``)."""
        self.flush()
        if self._awaiting and self.is_head:
            carry = torch.tensor([self.round.carry], dtype=torch.float64, device=self._device)
            self._settle([finite_or_none(d) for d in self.transport.all_gather(carry).tolist()])

    # ---- the end ------------------------------------------------------------------------------
    def finalize(self) -> dict[str, Tensor]:
        """Every rank ends holding the selected model: the rule's own (EASGD's centre), else what
        ``select`` says (the best particle by fitness, the weight average, or the greedy soup);
        returns its weights.  A round in flight lands first."""
        self.flush()
        if self.is_head:
            own = flatten_weights(self.model)
            self.round.check_shapes()
            fit = fitness_value(self.fitness, self.model, own)
            mine = torch.tensor([fit, self.round.carry], dtype=torch.float64, device=self._device)
            rows = self.transport.all_gather(mine).view(-1, 2).cpu()  # + the last distances
            self._settle([finite_or_none(d) for d in rows[:, 1].tolist()])
            fits = rows[:, 0].contiguous()
            best = rules.elect_leader(fits)
            if best is None:
                raise SwarmDivergedError(f"every particle diverged (fitness {fits.tolist()})")
            self.final_fitness = [finite_or_none(f) for f in fits.tolist()]
            chosen = self.rule.selected_weights()
            if chosen is not None:
                load_weights(self.model, chosen)
            elif self.select != "best":
                self._select_many(own, fits.tolist())
            else:
                self.best_particle = best
                load_weights(self.model, self.transport.broadcast(own, best))
                ints = flatten_weights(self.model, integer=True)
                if ints.numel():
                    load_weights(self.model, self.transport.broadcast(ints, best), integer=True)
        if self.transport.hybrid:
            flat, ints = flatten_weights(self.model), flatten_weights(self.model, integer=True)
            box = (self.best_particle, self.final_fitness)
            self.best_particle, self.final_fitness = self.transport.share_in_particle(
                [flat, ints], box
            )
            load_weights(self.model, flat)
            load_weights(self.model, ints, integer=True)
        return {k: v.detach().clone() for k, v in unwrap(self.model).state_dict().items()}

    def _select_many(self, own: Tensor, fits: list[float]) -> None:
        """``average`` or ``soup``: the first particle computes it from everybody's weights (each
        candidate's BatchNorm statistics recomputed on ``bn_data``) and hands it to the others."""
        t = self.transport
        weights = t.all_gather(own).view(t.particles, -1)
        flat, ints = flatten_weights(self.model), flatten_weights(self.model, integer=True)
        mask = torch.zeros(t.particles, dtype=torch.float64, device=self._device)
        if t.particle == 0:
            data = self.bn_data
            flat, ints, ingredients = selection.select_weights(
                self.select,
                weights,
                [math.inf if f is None else f for f in fits],
                copy.deepcopy(unwrap(self.model)),
                lambda m: fitness_value(self.fitness, m, flatten_weights(m)),
                None if data is None else lambda: iter(data),
            )
            mask[ingredients] = 1.0
        load_weights(self.model, t.broadcast(flat, 0))
        if ints.numel():
            load_weights(self.model, t.broadcast(ints, 0), integer=True)
        self.ingredients = [i for i, m in enumerate(t.broadcast(mask, 0).tolist()) if m]

    # ---- state ----------------------------------------------------------------------------------
    @property
    def particle(self) -> int:
        """This particle's index (on the other ranks of a hybrid particle: after a round)."""
        return self.transport.particle

    @property
    def center(self) -> Tensor | None:
        """EASGD's centre variable (flat), once the first round has made it."""
        return self.rule.selected_weights()

    @property
    def comm_seconds(self) -> float:
        return self.transport.seconds

    @property
    def comm_bytes(self) -> int:
        return self.transport.bytes

    def state_dict(self) -> dict[str, Any]:
        """Everything the swarm needs to continue exactly: counters, rule state, history, the
        round in flight (waited for: it lands after the resume, at the step it would have) and
        the training-loss window."""
        pending = self._pending
        if pending is not None and pending.future is not None:
            pending.outcome, pending.comm = self._wait(pending.future, pending.number)
            pending.future = None
        return {
            "step": self.step,
            "rounds": self.rounds,
            "rule": self.rule.state_dict(),
            "history": self.history,
            "comm_seconds": self.transport.seconds,
            "comm_bytes": self.transport.bytes,
            "pending": None if pending is None else pending.state_dict(),
            "train_loss": None if self.train_loss is None else self.train_loss.state_dict(),
            "carry": self.round.carry,
            "awaiting": self._awaiting,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.rounds = int(state["step"]), int(state["rounds"])
        self.rule.load_state_dict(state["rule"])
        self.history = list(state["history"])
        self.transport.seconds, self.transport.bytes = state["comm_seconds"], state["comm_bytes"]
        self._pending = Pending.from_state(state["pending"]) if state.get("pending") else None
        if self.train_loss is not None and state.get("train_loss"):
            self.train_loss.load_state_dict(state["train_loss"])
        self.round.carry = float(state.get("carry", math.nan))
        self._awaiting = bool(state.get("awaiting", False))


def _check_count(scaler: Any, count: str) -> None:
    if count not in COUNTS:
        raise ValueError(f"count must be one of {', '.join(COUNTS)}, got {count!r}")
    if scaler is not None and not (callable(getattr(scaler, "update", None)) and count != "manual"):
        raise ValueError("scaler must be a GradScaler (with update()), and count 'optimizer'")


def _check_select(
    select: str, model: nn.Module, fitness: object, train_loss: object, bn_data: object
) -> None:
    if select == "soup" and (fitness is train_loss or getattr(fitness, "cheap", False)):
        raise ValueError("select='soup' needs a fitness that evaluates a model, not the train loss")
    if select != "best" and bn_data is None and selection.has_batchnorm(unwrap(model)):
        raise ValueError(
            f"select={select!r} on a model with BatchNorm needs bn_data= (training batches to "
            "recompute the averaged model's running statistics)"
        )


def _check_mode(mode: str, delay: object, period: int) -> None:
    if mode not in ("blocking", "async"):
        raise ValueError(f"mode must be 'blocking' or 'async', got {mode!r}")
    if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= period:
        raise ValueError(f"delay must be an int in [0, period={period}], got {delay!r}")


def _check_exchange(
    rule: Rule | type[Rule], topology_: str, neighbors: int, dtype: torch.dtype
) -> None:
    if topology_ not in topology.TOPOLOGIES:
        raise ValueError(
            f"topology must be one of {', '.join(topology.TOPOLOGIES)}, got {topology_!r}"
        )
    if topology_ != "all" and rule.exchange == "sum":
        raise ValueError(
            f"topology {topology_!r} works with rules that pull toward a leader, "
            f"not {rule.name!r} (which sums over the whole swarm)"
        )
    if isinstance(neighbors, bool) or not isinstance(neighbors, int) or neighbors < 1:
        raise ValueError(f"neighbors must be a positive int, got {neighbors!r}")
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"exchange_dtype must be float32, bfloat16 or float16, got {dtype}")


def _check_args(
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
    if schedule not in rules.SCHEDULES:
        raise ValueError(f"schedule: must be one of {', '.join(rules.SCHEDULES)}, got {schedule!r}")
    if schedule == "linear" and not total_steps:
        raise ValueError("total_steps is needed for the linear pressure schedule")
