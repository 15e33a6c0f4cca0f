"""``Swarm``: the NoSync round around an ordinary PyTorch loop.

Every rank trains its own copy of the model (a *particle*).  Every ``period`` optimizer steps a
round runs (``round.py``), in three parts that live in their own modules:

1. **plan** (``planner.py``): the fitness exchange, the leader (lowest finite fitness, ties to
   the lowest index), the diverged particles to reset, the neighbourhood;
2. **exchange** (``exchange.py`` over ``transport.py``): whatever the rule needs - the leader's
   weights, a sum over the swarm, or nothing;
3. **rule** (``rules.py``): the new weights.

This module owns the swarm's API: when rounds start and land (every ``period`` steps, ``sync``,
``flush``), ``finalize`` and the swarm's state.  A round's start, landing and record are in
``cycle.py``, the arguments' checks in ``checks.py``, their old spellings in ``legacy.py``, the
end's choice of a model in ``ending.py``, the log's distances in ``distances.py``.

Reconstructed from Isakov & Kinsy, "NoSync: Particle Swarm Inspired Distributed DNN Training",
ICANN 2018 (see the README for what is reconstruction).  Style follows torchft's ``LocalSGD``: a
context manager that hooks ``optimizer.step`` and leaves the user's loop alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from nosync.core import checks, ending, placement, rules, selection
from nosync.core.background import Background
from nosync.core.cycle import RoundCycle
from nosync.core.distances import Distances
from nosync.core.evaluate import SnapshotFitness, TrainLoss
from nosync.core.exchange import Exchange
from nosync.core.hooks import StepHook
from nosync.core.legacy import accepts_old_spellings
from nosync.core.options import RuleOptions
from nosync.core.population import Explore, Population
from nosync.core.records import RoundRecord
from nosync.core.round import Round, SwarmDivergedError
from nosync.core.rule_objects import Rule
from nosync.core.transport import DistTransport, Transport
from nosync.core.weights import flatten_weights, load_weights, unwrap

Fitness = Callable[[nn.Module], float]
__all__ = [
    "RuleOptions",
    "Swarm",
    "SwarmDivergedError",
    "flatten_weights",
    "load_weights",
    "particle_groups",
]


def particle_groups(
    ranks_per_particle: int, timeout: timedelta | None = None
) -> tuple[dist.ProcessGroup | None, dist.ProcessGroup | None]:
    """``(swarm_group, particle_group)`` for hybrid particles; see :mod:`nosync.core.placement`."""
    return placement.particle_groups(ranks_per_particle, timeout)


class Swarm(StepHook):
    """Swarm training around an ordinary PyTorch loop: every ``period`` optimizer steps, each
    particle (a rank, or a data-parallel group of ranks) is pulled toward the swarm's best.

    Entered as a context manager, it hooks ``optimizer.step`` and runs a round after every
    ``period``-th step; :meth:`finalize` leaves every rank holding the selected model.  An
    ordinary pull leaves the optimizer state alone (it is the particle's own search direction,
    as in EASGD and PSO); a *diverged* particle (non-finite fitness or weights) is replaced by
    the leader's weights, integer buffers included, and its optimizer and rule state cleared.
    Each rank needs its own data order: particles that see the same batches stay identical (the
    first round warns when they are).

    Args:
        model: this particle's ``nn.Module`` (plain, DDP-wrapped or compiled).
        optimizer: its ``torch.optim.Optimizer``; rounds count its ``step()`` calls.
        fitness: ``model -> float``, lower is better (e.g. :func:`nosync.loss_fitness` on
            held-out data, or a :class:`nosync.TrainLoss`, which is free).
        period: optimizer steps between rounds.
        pressure: pull strength ``p`` in [0, 1] (EASGD's moving rate for ``easgd``).
        rule: a name of ``nosync.REGISTRY`` (``"leader"``, ``"pso"``, ``"elastic"``,
            ``"weighted"``, ``"easgd"``, ``"none"``, or one a user registered) or a
            :class:`~nosync.Rule` object.
        schedule: ``"constant"`` pressure, or ``"linear"``: ramped to 1 at ``total_steps``.
        total_steps: the run's length in optimizer steps (needed by ``"linear"``).
        group: the swarm's process group (the particles' first ranks; default: the world).
        particle_group: a hybrid particle's data-parallel group (from
            :func:`particle_groups`); its first rank takes part in rounds and hands the result
            to the others.
        seed: seeds ``pso``'s draws and the ``random-k`` neighbourhoods.
        topology: whom a particle compares with: ``"all"``, ``"ring"`` or ``"random-k"``
            (the last two for rules that pull toward a leader).
        neighbors: ``random-k``'s k.
        wire_dtype: the dtype weights travel in (``float32``, ``bfloat16``, ``float16``;
            the command line's ``--wire-dtype``).
        transport: replaces ``torch.distributed`` (e.g. ``nosync.LocalWorld(P).endpoint(i)``:
            particles as threads of one process).
        round: ``"blocking"`` (a round runs inside ``optimizer.step()``) or ``"async"`` (in the
            background, on a process group of its own, landing ``delay`` steps later as a
            correction; the command line's ``--round``).
        delay: async rounds: steps from a round's start to its pull, in [0, period]
            (default ``period // 5``, at least 1).
        train_loss: the :class:`nosync.TrainLoss` the loop feeds (``observe(loss)``), logged
            with each round; pass it as ``fitness`` too to elect leaders by it.
        scaler: a ``GradScaler``: iterations are then counted at ``scaler.update()``, since
            ``scaler.step`` skips ``optimizer.step()`` after inf/NaN gradients.
        count: ``"optimizer"`` (count ``optimizer.step()``/``scaler.update()``) or
            ``"manual"`` (call :meth:`step_done` once per iteration; see ``hooks.py``).
        options: the rules' options, :class:`~nosync.core.options.RuleOptions` (``pso``'s
            ``inertia``, ``c1``, ``c2``; ``weighted``'s ``temperature``; ``outer_lr`` and
            ``outer_momentum``, which turn the pull of ``leader``, ``elastic`` or ``weighted``
            into a Nesterov outer step); its ``particle`` and ``seed`` are set by the swarm.
        select: what :meth:`finalize` returns: ``"best"`` (the best particle by fitness),
            ``"average"`` (the weight average) or ``"soup"`` (a greedy soup on the fitness).
        bn_data: re-iterable training batches (a list, a DataLoader) to recompute an averaged
            model's BatchNorm statistics (``"average"``/``"soup"`` on a model with BatchNorm).
        explore: population based training inside the swarm: each particle trains with its own
            hyperparameters, e.g. ``"lr=0.005..0.5:log"`` or an
            :class:`~nosync.core.population.Explore` (how often, which quantile, a callback for
            names the optimizer does not hold); every ``every`` rounds the worst particles take
            a top particle's weights, optimizer state and perturbed hyperparameters.

    Old spellings (``mode=``, ``exchange_dtype=``, the flat rule options, the arguments after
    ``optimizer`` by position) work for one release with a ``DeprecationWarning`` (``legacy.py``).

    Example::

        >>> # xdoctest: +SKIP("undefined variables")
        >>> import torch.distributed as dist
        >>> from nosync import RuleOptions, Swarm, loss_fitness
        >>> dist.init_process_group("gloo")  # one process per particle (torchrun)
        >>> model = nn.Linear(20, 2)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        >>> swarm = Swarm(model, optimizer, fitness=loss_fitness(x_val, y_val),
        >>>               period=25, pressure=0.3, rule="weighted",
        >>>               options=RuleOptions(temperature=0.1))
        >>> with swarm:
        >>>     for x, y in loader:
        >>>         optimizer.zero_grad()
        >>>         F.cross_entropy(model(x), y).backward()
        >>>         optimizer.step()  # a round after every 25th
        >>> best = swarm.finalize()  # every rank ends holding the best particle
    """

    @accepts_old_spellings
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        fitness: Fitness,
        period: int = 25,
        pressure: float = 0.3,
        rule: str | Rule = "leader",
        schedule: str = "constant",
        total_steps: int | None = None,
        group: dist.ProcessGroup | None = None,
        particle_group: dist.ProcessGroup | None = None,
        seed: int = 0,
        topology: str = "all",
        neighbors: int = 2,
        wire_dtype: torch.dtype = torch.float32,
        transport: Transport | None = None,
        round: str = "blocking",
        delay: int | None = None,
        train_loss: TrainLoss | None = None,
        scaler: Any = None,
        count: str = "optimizer",
        options: RuleOptions | None = None,
        select: str = "best",
        bn_data: Iterable[Any] | None = None,
        explore: Explore | str | Mapping[str, object] | None = None,
    ) -> None:
        kind = checks.rule_class(rule, rules.REGISTRY)
        checks.check_basics(model, optimizer, fitness, period, pressure, schedule, total_steps)
        checks.check_topology(kind, topology, neighbors)
        checks.check_wire_dtype(wire_dtype)
        delay = checks.check_round(round, delay, period)
        checks.check_count(scaler, count)
        options = (options or RuleOptions()).checked()
        checks.check_select(selection.check_select(select), model, fitness, train_loss, bn_data)
        self._device = next(unwrap(model).parameters()).device
        transport = _transport(transport, group, particle_group, self._device, round)
        self.model, self.optimizer, self.fitness = model, optimizer, fitness
        self.scaler, self.count = scaler, count  # what counts an iteration (hooks.py)
        self.delay, self.train_loss = int(delay), train_loss
        self.period, self.pressure = int(period), float(pressure)
        self.schedule, self.total_steps = schedule, total_steps
        self.transport, self.topology = transport, topology
        self.is_head, self.particles = transport.is_head, transport.particles
        options = options.bound(max(transport.particle, 0), seed)
        self.rule = rule if isinstance(rule, Rule) else rules.make_rule(kind.name, options)
        exchange = Exchange(transport, topology, neighbors, seed, wire_dtype, self._device)
        self.distances = Distances(transport, self._device)  # the log's, riding with messages
        self.round = Round(model, optimizer, self.rule, exchange, self.distances)
        self.background = Background() if round == "async" else None
        fitness_at = SnapshotFitness(fitness, model, train_loss)
        self.population = _population(explore, model, optimizer, transport, seed, topology,
                                      neighbors)  # fmt: skip
        self._cycle = RoundCycle(
            self.round, fitness_at, train_loss, self.delay, self.background, self.population
        )
        self.step = 0
        self.best_particle: int | None = None
        self.final_fitness: list[float | None] | None = None
        self.select, self.bn_data = select, bn_data
        self.ingredients: list[int] | None = None  # the particles ``finalize`` averaged

    # ---- after every optimizer.step (while entered, see StepHook) --------------------------------
    def _after_step(self, *_: object) -> None:
        self.step += 1
        if self._cycle.due(self.step):
            self._cycle.finish(self.step)
        if self.step % self.period == 0:
            background = self.background is not None
            self._cycle.start(self.step, self.current_pressure(), background)
            if self._cycle.due(self.step):
                self._cycle.finish(self.step)  # blocking, or async with no delay

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
        self._cycle.start(self.step, self.current_pressure(), background=False)
        return self._cycle.finish(self.step)

    def flush(self) -> None:
        """Land the round in flight, if any, now (before checkpoints' end and ``finalize``)."""
        if self._cycle.pending is not None:
            self._cycle.finish(self.step)

    @property
    def rounds(self) -> int:
        """Rounds started so far."""
        return self._cycle.started

    @property
    def history(self) -> list[RoundRecord]:
        """The records of the rounds that landed, oldest first."""
        return self._cycle.history

    @property
    def blocked_seconds(self) -> float:
        """The training thread's time held up by rounds, so far."""
        return self._cycle.blocked_seconds

    @property
    def settled(self) -> int:
        """How many records of ``history`` are final: all but the last while its distances are
        still to come (with the next round's message, or ``finalize``)."""
        return self.distances.settled(self.history)

    def settle(self) -> None:
        """The last round's distances now, in one small all-gather (every head calls it), for
        a caller that ends without ``finalize`` (``nosync simulate``)."""
        self.flush()
        self.distances.settle(self.history)

    # ---- the end ------------------------------------------------------------------------------
    def finalize(self) -> dict[str, Tensor]:
        """Every rank ends holding the selected model: the rule's own (EASGD's centre), else what
        ``select`` says (the best particle by fitness, the weight average, or the greedy soup).
        A round in flight lands first.

        Returns:
            the selected model's ``state_dict()`` (detached copies, the same on every rank),
            ready for ``torch.save`` or ``load_state_dict``; ``model`` holds it already.
        """
        self.flush()
        if self.is_head:
            self.round.check_shapes()
            end = ending.choose(
                self.model, self.transport, self.rule, self.fitness, self.select, self.bn_data,
                self.distances, self.history,
            )  # fmt: skip
            self.final_fitness, self.ingredients = end.final_fitness, end.ingredients
            if end.best_particle is not None:
                self.best_particle = end.best_particle
        if self.transport.hybrid:  # the head's model and its ending to the particle's others
            box = (self.best_particle, self.final_fitness)
            self.best_particle, self.final_fitness = ending.share(self.model, self.transport, box)
        return {k: v.detach().clone() for k, v in unwrap(self.model).state_dict().items()}

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
        """Everything the swarm needs to continue exactly: counters, rule state, the rounds'
        (history, the round in flight: waited for, it lands after the resume at the step it
        would have; the training-loss window; ``explore``'s values and lineage), distances."""
        rounds = self._cycle.state_dict()  # first: it waits for the round in flight, whose
        return {  # background thread may still be updating the rule's and distances' state
            "step": self.step,
            "rule": self.rule.state_dict(),
            "comm_seconds": self.transport.seconds,
            "comm_bytes": self.transport.bytes,
            **rounds,  # "rounds", "history", "pending", "train_loss", "population"
            **self.distances.state_dict(),  # "carry", "awaiting"
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.rule.load_state_dict(state["rule"])
        self.transport.seconds, self.transport.bytes = state["comm_seconds"], state["comm_bytes"]
        self._cycle.load_state_dict(state)
        self.distances.load_state_dict(state)


def _population(
    explore: Explore | str | Mapping[str, object] | None,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    transport: Transport,
    seed: int,
    topology: str,
    neighbors: int,
) -> Population | None:
    if explore is None:
        return None
    config = explore if isinstance(explore, Explore) else Explore(explore)
    return Population(config, unwrap(model), optimizer, transport, seed=seed, topology_=topology,
                      neighbors=neighbors)  # fmt: skip


def _transport(
    transport: Transport | None,
    group: dist.ProcessGroup | None,
    particle_group: dist.ProcessGroup | None,
    device: torch.device,
    round_: str,
) -> Transport:
    """The swarm's transport: the given one or ``torch.distributed``'s; async rounds run on a
    channel of their own (:meth:`Transport.twin`)."""
    if transport is None:
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "Swarm needs torch.distributed: call dist.init_process_group() first "
                "(torchrun or `nosync train` do it for you)"
            )
        transport = DistTransport(group, particle_group, device)
    return transport.twin() if round_ == "async" else transport
