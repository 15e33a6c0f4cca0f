"""``Swarm``: the NoSync sync round on top of ``torch.distributed``.

Every rank trains its own copy of the model (a *particle*).  Every ``period`` optimizer steps the
particles compare their fitness (loss on a held-out set, lower is better), elect the leader (the
lowest finite fitness, ties to the lowest index) and move toward it by one of the pull rules in
``rules.py``.  Reconstructed from Isakov & Kinsy, "NoSync: Particle Swarm Inspired Distributed DNN
Training", ICANN 2018 (see the README for what is reconstruction).

Style follows torchft's ``LocalSGD``: a context manager that hooks ``optimizer.step`` and leaves
the user's loop alone.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from . import rules, topology

Fitness = Callable[[nn.Module], float]


class SwarmDivergedError(RuntimeError):
    """Every particle has a non-finite fitness: there is no leader to recover from."""


def particle_groups(
    ranks_per_particle: int, timeout: timedelta | None = None
) -> tuple[dist.ProcessGroup | None, dist.ProcessGroup | None]:
    """Split the default group into particles of ``ranks_per_particle`` consecutive ranks.

    Returns ``(swarm_group, particle_group)`` for this rank: the swarm group holds the first rank
    of every particle (``None`` on the other ranks) and the particle group is the data-parallel
    group of this rank's particle (``None`` when a particle is a single rank).  Every rank must
    call this, in the same order, as with any ``new_group``.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    if ranks_per_particle < 1 or world % ranks_per_particle:
        raise ValueError(
            f"ranks_per_particle: {ranks_per_particle} does not divide the world size {world}"
        )
    if ranks_per_particle == 1:
        return dist.group.WORLD, None
    k = ranks_per_particle
    particle_group = None
    for first in range(0, world, k):
        group = dist.new_group(list(range(first, first + k)), timeout=timeout)
        if first <= rank < first + k:
            particle_group = group
    swarm_group = dist.new_group(list(range(0, world, k)), timeout=timeout)
    return (swarm_group if rank % k == 0 else None), particle_group


class Swarm:
    """Swarm training around an ordinary PyTorch loop.

    ``with Swarm(model, optimizer, fitness=fn, period=50, pressure=0.1):`` runs a sync round after
    every ``period``-th ``optimizer.step()``; ``finalize()`` leaves every rank holding the best
    particle.  Parameters and floating-point buffers (BatchNorm running statistics) follow the
    rule; integer buffers (``num_batches_tracked``) are copied with the weights only when a
    particle is replaced whole (a reset or ``finalize``).

    Optimizer state (momentum, Adam moments) is deliberately left alone by an ordinary pull: it is
    the particle's own search direction, the pull is a perturbation of the position (as in EASGD
    and PSO, where velocity survives the pull), and copying the leader's state would make the
    particles' trajectories collapse onto one.  A *diverged* particle (non-finite fitness or
    weights) is different: its state is poisoned, so it is replaced by the leader's weights and
    its optimizer state is cleared (``optimizer.state`` emptied, so it restarts as at step 0).

    Rounds are logged in ``history``: step, every particle's fitness, the leader, every
    particle's distance to the pull target before the pull (the leader for ``leader``/``pso``,
    the swarm mean for ``elastic``, none for ``none``), the pressure, the seconds the round took
    and the seconds and payload bytes spent in collectives on this rank.

    Hybrid (data-parallel) particles: pass ``group``/``particle_group`` from
    :func:`particle_groups`; the first rank of each particle takes part in the swarm and then
    broadcasts the result inside its particle, so the ranks of one particle stay identical.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        fitness: Fitness,
        period: int = 25,
        pressure: float = 0.3,
        rule: str = "leader",
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
    ) -> None:
        _check_args(model, optimizer, fitness, period, pressure, rule, schedule, total_steps)
        _check_exchange(rule, topology, neighbors, exchange_dtype)
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "Swarm needs torch.distributed: call dist.init_process_group() first "
                "(torchrun or `nosync train` do it for you)"
            )
        self.model, self.optimizer, self.fitness = model, optimizer, fitness
        self.period, self.pressure, self.rule = int(period), float(pressure), rule
        self.schedule, self.total_steps = schedule, total_steps
        self.inertia, self.c1, self.c2 = float(inertia), float(c1), float(c2)
        self.particle_group = particle_group
        self.is_head = particle_group is None or dist.get_rank(particle_group) == 0
        self.group = (group if group is not None else dist.group.WORLD) if self.is_head else None
        if self.is_head and self.group is not None and dist.get_rank(self.group) < 0:
            raise ValueError("group: this rank heads a particle but is not in the swarm group")
        self.particle = dist.get_rank(self.group) if self.is_head else -1
        self.particles = dist.get_world_size(self.group) if self.is_head else -1
        self.step = 0
        self.rounds = 0
        self.history: list[dict[str, Any]] = []
        self.comm_seconds = 0.0
        self.comm_bytes = 0
        self.best_particle: int | None = None
        self._pso_state = rules.PSOState()
        self._center: Tensor | None = None  # easgd's centre variable, the same on every rank
        self._generator = torch.Generator().manual_seed(seed * 1_000_003 + max(self.particle, 0))
        self.seed, self.topology, self.neighbors = seed, topology, neighbors
        self.exchange_dtype = exchange_dtype
        self._hook: Any = None
        self._checked = False
        self._device = next(_module(model).parameters()).device

    # ---- context manager: hook optimizer.step -------------------------------------------
    def __enter__(self) -> Swarm:
        self._hook = self.optimizer.register_step_post_hook(self._after_step)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _after_step(self, *_: object) -> None:
        self.step += 1
        if self.step % self.period == 0:
            self.sync()

    # ---- the sync round ------------------------------------------------------------------
    def current_pressure(self) -> float:
        progress = self.step / self.total_steps if self.total_steps else 0.0
        return rules.pressure_at(self.schedule, self.pressure, progress)

    def sync(self) -> dict[str, Any]:
        """Run one sync round now (the hook calls this every ``period`` steps)."""
        start = time.perf_counter()
        comm0 = (self.comm_seconds, self.comm_bytes)
        self.rounds += 1
        record = self._head_round() if self.is_head else {}
        record = self._share_in_particle(record)
        record["seconds"] = time.perf_counter() - start
        record["comm_seconds"] = self.comm_seconds - comm0[0]
        record["comm_bytes"] = self.comm_bytes - comm0[1]
        self.history.append(record)
        return record

    def _head_round(self) -> dict[str, Any]:
        flat = flatten_weights(self.model)
        if not self._checked:
            self._check_shapes()
        fit = self._own_fitness(flat)
        pressure = self.current_pressure()
        if self.topology == "all":
            fits = self._all_gather(torch.tensor([fit], dtype=torch.float64, device=self._device))
            leader = rules.elect_leader(fits.cpu())
            if leader is None:
                raise SwarmDivergedError(
                    f"every particle diverged at step {self.step} (fitness {fits.tolist()})"
                )
            known = dict(enumerate(fits.tolist()))
        else:
            known, leader = self._neighbourhood_fitness(fit)
        diverged = [i for i, f in sorted(known.items()) if not math.isfinite(f)]
        me_diverged = not math.isfinite(fit)
        target, new, own_distance = None, flat, math.nan
        if self.rule in ("leader", "pso", "none"):
            need = self.rule != "none" or me_diverged
            if self.topology == "all":
                lead = self._broadcast_leader(flat, leader) if need or diverged else None
            else:
                lead = self._neighbourhood_leader(flat, leader, need)
            if lead is not None and need:
                target = "leader" if self.rule != "none" else None
                if me_diverged:
                    new = lead
                elif self.rule == "leader":
                    new = rules.leader_pull(flat, lead, pressure)
                elif self.rule == "pso":
                    new = self._pso(flat, lead, fit, pressure)
                if target and not me_diverged:
                    own_distance = float(torch.linalg.vector_norm(flat - lead))
        elif self.rule == "easgd":
            new, own_distance = self._easgd(flat, diverged, pressure)
            target = "center"
        elif self.rule == "elastic":
            total = self._all_reduce(flat if not me_diverged else torch.zeros_like(flat))
            mean = total / (self.particles - len(diverged))
            new = mean.clone() if me_diverged else rules.elastic_pull(flat, mean, pressure)
            target = "mean"
            own_distance = math.nan if me_diverged else float(torch.linalg.vector_norm(flat - mean))
        if new is not flat:
            load_weights(self.model, new)
        if me_diverged and new is not flat:
            self.optimizer.state.clear()
            self._pso_state = rules.PSOState()
        distance = None
        if target is not None and self.topology == "all":
            distance = self._all_gather(
                torch.tensor([own_distance], dtype=torch.float64, device=self._device)
            ).tolist()
        elif target is not None:  # no global exchange in a neighbourhood: only our own
            distance = [
                own_distance if i == self.particle else math.nan for i in range(self.particles)
            ]
        return {
            "round": self.rounds,
            "step": self.step,
            "fitness": [_finite_or_none(known.get(i)) for i in range(self.particles)],
            "leader": leader,
            "distance": None if distance is None else [_finite_or_none(d) for d in distance],
            "target": target,
            "pressure": pressure,
            "reset": diverged
            if self.topology == "all"
            else [i for i in diverged if i == self.particle],
        }

    # ---- where the leader's weights come from ------------------------------------------------
    def _broadcast_leader(self, flat: Tensor, leader: int) -> Tensor:
        """The global leader's weights, sent in ``exchange_dtype``; the leader keeps its own."""
        if self.particle == leader:
            self._broadcast(flat.to(self.exchange_dtype), leader)
            return flat
        buf = torch.empty(flat.shape, dtype=self.exchange_dtype, device=flat.device)
        return self._broadcast(buf, leader).to(flat.dtype)

    def _neighbourhood_fitness(self, fit: float) -> tuple[dict[int, float], int | None]:
        """Fitness to the out-neighbours, from the in-neighbours; the local leader."""
        ins, outs = self._neighbours()
        got = self._p2p_scalars({j: fit for j in outs}, ins)
        known = {self.particle: fit, **got}
        return known, topology.local_leader(known)

    def _neighbourhood_leader(self, flat: Tensor, leader: int | None, need: bool) -> Tensor | None:
        """Tell each in-neighbour whether we want its weights; send ours to whoever wants them."""
        ins, outs = self._neighbours()
        flags = self._p2p_scalars({j: 1.0 if need and j == leader else 0.0 for j in ins}, outs)
        choosers = [j for j, flag in flags.items() if flag]
        want = leader if need and leader is not None and leader != self.particle else None
        ops, buf = [], None
        packed = flat.to(self.exchange_dtype)
        for j in choosers:
            ops.append(dist.P2POp(dist.isend, packed, group=self.group, group_peer=j))
        if want is not None:
            buf = torch.empty(flat.shape, dtype=self.exchange_dtype, device=flat.device)
            ops.append(dist.P2POp(dist.irecv, buf, group=self.group, group_peer=want))
        self._p2p(ops, packed.numel() * packed.element_size() * (len(choosers) + (buf is not None)))
        if leader is None:
            return None
        return flat if leader == self.particle else (None if buf is None else buf.to(flat.dtype))

    def _neighbours(self) -> tuple[list[int], list[int]]:
        args = (
            self.topology,
            self.particle,
            self.particles,
            self.rounds,
            self.neighbors,
            self.seed,
        )
        return topology.in_neighbours(*args), topology.out_neighbours(*args)

    def _p2p_scalars(self, send: dict[int, float], recv_from: list[int]) -> dict[int, float]:
        """One float64 to each particle in ``send``, one from each in ``recv_from``."""
        ops, bufs = [], {}
        for j, value in send.items():
            t = torch.tensor([value], dtype=torch.float64, device=self._device)
            ops.append(dist.P2POp(dist.isend, t, group=self.group, group_peer=j))
        for j in recv_from:
            bufs[j] = torch.empty(1, dtype=torch.float64, device=self._device)
            ops.append(dist.P2POp(dist.irecv, bufs[j], group=self.group, group_peer=j))
        self._p2p(ops, 8 * len(ops))
        return {j: float(b.item()) for j, b in bufs.items()}

    def _p2p(self, ops: list[dist.P2POp], nbytes: int) -> None:
        if not ops:
            return
        t0 = time.perf_counter()
        for work in dist.batch_isend_irecv(ops):
            work.wait()
        self.comm_seconds += time.perf_counter() - t0
        self.comm_bytes += nbytes

    def _own_fitness(self, flat: Tensor) -> float:
        if not bool(torch.isfinite(flat).all()):
            return math.inf
        value = self.fitness(self.model)
        try:
            value = float(value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"fitness must return a number, got {type(value).__name__}") from err
        return value if math.isfinite(value) else math.inf

    def _pso(self, flat: Tensor, lead: Tensor, fit: float, pressure: float) -> Tensor:
        return rules.pso_round(
            flat,
            fit,
            lead,
            self._pso_state,
            pressure=pressure,
            inertia=self.inertia,
            c1=self.c1,
            c2=self.c2,
            generator=self._generator,
        )

    def _easgd(self, flat: Tensor, diverged: list[int], alpha: float) -> tuple[Tensor, float]:
        """EASGD round; the centre starts as the swarm mean at the first round."""
        finite = self.particle not in diverged
        alive = self.particles - len(diverged)
        if self._center is None:
            self._center = self._all_reduce(flat if finite else torch.zeros_like(flat)) / alive
        center = self._center
        diff_sum = self._all_reduce(flat - center if finite else torch.zeros_like(flat))
        new, self._center = rules.easgd_update(flat, center, diff_sum, alpha)
        if not finite:
            return self._center.clone(), math.nan
        return new, float(torch.linalg.vector_norm(flat - center))

    def _share_in_particle(self, record: dict[str, Any]) -> dict[str, Any]:
        """Hybrid particles: the head's new weights and round record go to the other ranks."""
        if self.particle_group is None:
            return record
        head = dist.get_global_rank(self.particle_group, 0)
        flat = flatten_weights(self.model)
        t0 = time.perf_counter()
        dist.broadcast(flat, src=head, group=self.particle_group)
        box = [(record, self.particle)]
        dist.broadcast_object_list(box, src=head, group=self.particle_group)
        self._account(t0, flat)
        record, self.particle = dict(box[0][0]), box[0][1]
        if not self.is_head:
            load_weights(self.model, flat)
            if self.particle in record["reset"]:
                self.optimizer.state.clear()
        return record

    def _check_shapes(self) -> None:
        """Detect particles whose models differ before a collective of mismatched sizes hangs."""
        module = _module(self.model)
        sig = [(tuple(t.shape), str(t.dtype)) for t in _float_tensors(module)]
        desc = torch.tensor(
            [sum(t.numel() for t in _float_tensors(module)), zlib.crc32(repr(sig).encode())],
            dtype=torch.int64,
            device=self._device,
        )
        gathered = self._all_gather(desc).view(-1, 2).tolist()
        if any(g != gathered[0] for g in gathered):
            sizes = ", ".join(f"particle {i}: {g[0]} values" for i, g in enumerate(gathered))
            raise ValueError(f"model: the particles' models differ in shape ({sizes})")
        self._checked = True

    # ---- finalize ------------------------------------------------------------------------
    def finalize(self) -> dict[str, Tensor]:
        """Elect the best particle by fitness; every rank ends holding it; returns its weights.

        Under ``easgd`` the centre variable is the model, so every rank takes the centre.
        """
        if self.is_head:
            flat = flatten_weights(self.model)
            if not self._checked:
                self._check_shapes()
            fits = self._all_gather(
                torch.tensor([self._own_fitness(flat)], dtype=torch.float64, device=self._device)
            )
            best = rules.elect_leader(fits.cpu())
            if best is None:
                raise SwarmDivergedError(f"every particle diverged (fitness {fits.tolist()})")
            self.final_fitness = [f if math.isfinite(f) else None for f in fits.tolist()]
            if self.rule == "easgd" and self._center is not None:
                load_weights(self.model, self._center)
            else:
                self.best_particle = best
                load_weights(self.model, self._broadcast(flat, best))
                ints = flatten_weights(self.model, integer=True)
                if ints.numel():
                    load_weights(self.model, self._broadcast(ints, best), integer=True)
        if self.particle_group is not None:
            head = dist.get_global_rank(self.particle_group, 0)
            box = [(self.best_particle, getattr(self, "final_fitness", None))]
            dist.broadcast_object_list(box, src=head, group=self.particle_group)
            self.best_particle, self.final_fitness = box[0]
            for integer in (False, True):
                flat = flatten_weights(self.model, integer=integer)
                if flat.numel():
                    dist.broadcast(flat, src=head, group=self.particle_group)
                    load_weights(self.model, flat, integer=integer)
        return {k: v.detach().clone() for k, v in _module(self.model).state_dict().items()}

    # ---- checkpointing of the rule state ---------------------------------------------------
    @property
    def center(self) -> Tensor | None:
        """EASGD's centre variable (flat), once the first round has made it."""
        return self._center

    def state_dict(self) -> dict[str, Any]:
        """Everything the swarm needs to continue exactly: counters, rule state, RNG, history."""
        return {
            "step": self.step,
            "rounds": self.rounds,
            "velocity": self._pso_state.velocity,
            "center": self._center,
            "personal_best": self._pso_state.best,
            "personal_best_fitness": self._pso_state.best_fitness,
            "generator": self._generator.get_state(),
            "history": self.history,
            "comm_seconds": self.comm_seconds,
            "comm_bytes": self.comm_bytes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.rounds = int(state["step"]), int(state["rounds"])
        self._pso_state = rules.PSOState(
            state["velocity"], state["personal_best"], float(state["personal_best_fitness"])
        )
        self._center = state["center"]
        self._generator.set_state(state["generator"])
        self.history = list(state["history"])
        self.comm_seconds, self.comm_bytes = state["comm_seconds"], state["comm_bytes"]

    # ---- collectives, timed and counted ----------------------------------------------------
    def _account(self, t0: float, tensor: Tensor) -> None:
        self.comm_seconds += time.perf_counter() - t0
        self.comm_bytes += tensor.numel() * tensor.element_size()

    def _all_gather(self, tensor: Tensor) -> Tensor:
        out = [torch.empty_like(tensor) for _ in range(self.particles)]
        t0 = time.perf_counter()
        dist.all_gather(out, tensor, group=self.group)
        self._account(t0, tensor)
        return torch.cat(out)

    def _broadcast(self, tensor: Tensor, src_particle: int) -> Tensor:
        t0 = time.perf_counter()
        dist.broadcast(tensor, group_src=src_particle, group=self.group)
        self._account(t0, tensor)
        return tensor

    def _all_reduce(self, tensor: Tensor) -> Tensor:
        tensor = tensor.clone()
        t0 = time.perf_counter()
        dist.all_reduce(tensor, group=self.group)
        self._account(t0, tensor)
        return tensor


# ---- flat views of a model -------------------------------------------------------------------
def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _module(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _float_tensors(module: nn.Module) -> list[Tensor]:
    return [p for p in module.parameters()] + [b for b in module.buffers() if b.is_floating_point()]


def _int_tensors(module: nn.Module) -> list[Tensor]:
    return [b for b in module.buffers() if not b.is_floating_point()]


def flatten_weights(model: nn.Module, integer: bool = False) -> Tensor:
    """A particle's position: parameters and float buffers (or integer buffers) as a vector."""
    module = _module(model)
    tensors = _int_tensors(module) if integer else _float_tensors(module)
    if not tensors:
        return torch.empty(0, dtype=torch.int64 if integer else torch.float32)
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def load_weights(model: nn.Module, flat: Tensor, integer: bool = False) -> None:
    """Write a vector made by ``flatten_weights`` back into the model, in place."""
    module = _module(model)
    tensors = _int_tensors(module) if integer else _float_tensors(module)
    offset = 0
    with torch.no_grad():
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset : offset + n].view_as(t))
            offset += n


def _check_exchange(rule: str, topology_: str, neighbors: int, dtype: torch.dtype) -> None:
    if topology_ not in topology.TOPOLOGIES:
        raise ValueError(
            f"topology must be one of {', '.join(topology.TOPOLOGIES)}, got {topology_!r}"
        )
    if topology_ != "all" and rule not in ("leader", "pso", "none"):
        raise ValueError(
            f"topology {topology_!r} works with the leader, pso and none rules, "
            f"not {rule!r} (which averages over the whole swarm)"
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
    rule: object,
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
    if rule not in rules.SWARM_RULES:
        raise ValueError(f"rule must be one of {', '.join(rules.SWARM_RULES)}, got {rule!r}")
    if schedule not in rules.SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(rules.SCHEDULES)}, got {schedule!r}")
    if schedule == "linear" and not total_steps:
        raise ValueError("total_steps is needed for the linear pressure schedule")
