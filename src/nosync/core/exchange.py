"""What a round fetches over a :class:`~nosync.core.transport.Transport`, by topology.

- :meth:`Exchange.fitness`: every particle's fitness (``all``) or the in-neighbours' (``ring``,
  ``random-k``, point to point), turned into a :class:`~nosync.core.planner.Plan`;
- :meth:`Exchange.leader_weights`: the (local) leader's weights, sent in the wire dtype
  (``Swarm(wire_dtype=)``; the leader keeps its exact weights);
- :meth:`Exchange.live_sum`: a sum over the live particles, which finds out who diverged only
  when the sum says somebody did (rules without fitness pay nothing for it otherwise).

Two of these messages carry a passenger for :class:`~nosync.core.distances.Distances` (the
log's distances, which ride with the next round's message): :meth:`Exchange.fitness` one float
per particle beside the fitness, :meth:`Exchange.live_sum` extra slots summed with the weights.
"""

from __future__ import annotations

import math
import zlib

import torch
from torch import Tensor, nn

from nosync.core import planner
from nosync.core.planner import Neighbourhood, Plan
from nosync.core.transport import Transport
from nosync.core.weights import flatten_weights

F64 = torch.float64


class Exchange:
    def __init__(
        self,
        transport: Transport,
        topology: str,
        neighbors: int,
        seed: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.transport, self.topology = transport, topology
        self.neighbors, self.seed = neighbors, seed
        self.dtype, self.device = dtype, device

    @property
    def everyone(self) -> bool:
        return self.topology == "all"

    def neighbourhood(self, round_: int) -> Neighbourhood:
        t = self.transport
        return planner.neighbourhood(
            self.topology, t.particle, t.particles, round_, self.neighbors, self.seed
        )

    def _scalar(self, value: float) -> Tensor:
        return torch.tensor([value], dtype=F64, device=self.device)

    def fitness(
        self,
        fit: float,
        hood: Neighbourhood | None,
        aux: float = math.nan,
        carried: float = math.nan,
    ) -> tuple[Plan, list[float | None] | None]:
        """Every known particle's fitness, with two signals riding along in the same message:
        ``aux`` (the mean training loss, for the log) and ``carried`` (this particle's distance
        at the previous round).  Returns the plan and every particle's carried value (``all``
        only; ``None`` in a neighbourhood, which carries nothing)."""
        t = self.transport
        mine = torch.tensor([fit, aux, carried], dtype=F64, device=self.device)
        if hood is None:
            rows = dict(enumerate(t.all_gather(mine).view(-1, 3).tolist()))
        else:
            got = {j: torch.empty(3, dtype=F64, device=self.device) for j in hood.ins}
            t.send_recv({j: mine for j in hood.outs}, got)
            rows = {t.particle: [fit, aux, carried], **{j: v.tolist() for j, v in got.items()}}
        known = {i: row[0] for i, row in rows.items()}
        extra = {i: row[1] for i, row in rows.items()}
        plan = planner.plan(t.particle, t.particles, known, everyone=hood is None, aux=extra)
        if hood is not None:
            return plan, None
        return plan, [planner.finite_or_none(rows[i][2]) for i in range(t.particles)]

    def health(self, own: Tensor) -> Plan:
        """Who diverged (non-finite weights), for rules that exchange no fitness."""
        t = self.transport
        fit = 0.0 if bool(torch.isfinite(own).all()) else math.inf
        known = dict(enumerate(t.all_gather(self._scalar(fit)).tolist()))
        return planner.plan(t.particle, t.particles, known, everyone=True)

    def leader_weights(
        self, model: nn.Module, own: Tensor, plan: Plan, hood: Neighbourhood | None
    ) -> tuple[Tensor | None, Tensor | None]:
        """The (local) leader's weights, and its integer buffers (``num_batches_tracked``) when a
        particle that takes them is reset this round (``None`` otherwise)."""
        if hood is not None:
            return self._neighbour_leader(model, own, plan, hood)
        assert plan.leader is not None
        if self.transport.particle == plan.leader:
            self.transport.broadcast(own.to(self.dtype), plan.leader)
            lead = own
        else:
            buf = torch.empty(own.shape, dtype=self.dtype, device=own.device)
            lead = self.transport.broadcast(buf, plan.leader).to(own.dtype)
        ints = flatten_weights(model, integer=True)
        if not plan.diverged or not ints.numel():  # every particle knows who diverged
            return lead, None
        return lead, self.transport.broadcast(ints, plan.leader)

    def _neighbour_leader(
        self, model: nn.Module, own: Tensor, plan: Plan, hood: Neighbourhood
    ) -> tuple[Tensor | None, Tensor | None]:
        """Tell each in-neighbour whether we want its weights (2: and its integer buffers, we
        diverged); send ours to whoever wants them."""
        me, leader = self.transport.particle, plan.leader
        flags = {j: torch.empty(1, dtype=F64, device=self.device) for j in hood.outs}
        ask = 2.0 if plan.me_diverged else 1.0
        asks = {j: self._scalar(ask if j == leader else 0.0) for j in hood.ins}
        self.transport.send_recv(asks, flags)
        packed = own.to(self.dtype)
        send = {j: packed for j, flag in flags.items() if flag.item()}
        want = leader if leader is not None and leader != me else None
        recv = {} if want is None else {want: torch.empty_like(own, dtype=self.dtype)}
        self.transport.send_recv(send, recv)
        ints = flatten_weights(model, integer=True)
        got_ints = {want: torch.empty_like(ints)} if want is not None and ask == 2.0 else {}
        if ints.numel():  # a third, usually empty, exchange: integer buffers for resets
            self.transport.send_recv(
                {j: ints for j, f in flags.items() if f.item() == 2.0}, got_ints
            )
        if leader is None:
            return None, None
        lead = own if leader == me else recv[leader].to(own.dtype)
        return lead, got_ints.get(leader) if ints.numel() else None

    def live_sum(
        self, t: Tensor, own: Tensor, plan: Plan, extra: Tensor | None = None
    ) -> tuple[Tensor, Plan, Tensor | None]:
        """The sum of ``t`` over the particles that have not diverged (they add zeros), and the
        sum of ``extra`` (finite slots sent by every particle,
        :meth:`~nosync.core.distances.Distances.slots`) in the same message.

        Without fitness nobody knows who diverged; a non-finite sum (the same on every rank)
        tells, and only then the particles exchange who they are and sum again.
        """
        sent = torch.zeros_like(t) if plan.me_diverged else t
        if extra is not None:
            sent = torch.cat([sent.reshape(-1), extra.to(sent.dtype)])
        total = self.transport.all_reduce(sent)
        total, summed = (total, None) if extra is None else (total[: t.numel()], total[t.numel() :])
        total = total.view_as(t)
        if plan.known or bool(torch.isfinite(total).all()):
            return total, plan, summed
        return self.live_sum(t, own, self.health(own), extra)

    def check_same_shapes(self, tensors: list[Tensor], own: Tensor | None = None) -> bool:
        """Fail on every particle, before a collective of mismatched sizes hangs, when the
        particles' models differ.  With ``own`` (a position), a checksum of it rides along in
        the same message; returns whether every particle of several is at that same position
        (False without ``own``)."""
        sig = [(tuple(t.shape), str(t.dtype)) for t in tensors]
        sums = [math.nan, math.nan] if own is None else _checksum(own)
        shape = [sum(t.numel() for t in tensors), zlib.crc32(repr(sig).encode())]  # exact in F64
        desc = torch.tensor([*shape, *sums], dtype=F64, device=self.device)
        gathered = self.transport.all_gather(desc).view(-1, 4).tolist()
        if any(g[:2] != gathered[0][:2] for g in gathered):
            sizes = ", ".join(f"particle {i}: {g[0]:.0f} values" for i, g in enumerate(gathered))
            raise ValueError(f"model: the particles' models differ in shape ({sizes})")
        return len(gathered) > 1 and all(g[2:] == gathered[0][2:] for g in gathered)  # NaN: False


def _checksum(own: Tensor) -> list[float]:
    """Two sums that tell positions apart (equal positions give equal sums, bit for bit)."""
    return [float(torch.sum(own, dtype=F64)), float(torch.linalg.vector_norm(own, dtype=F64))]
