"""How particles talk: every collective of a round, its timing and its byte count.

The round (``swarm.py``) never calls ``torch.distributed``; it asks a :class:`Transport` to
gather, sum, broadcast or send and receive point to point (:meth:`Transport.send_recv`; its old
name ``exchange`` is deprecated), and to hand a data-parallel particle's result from its first
rank to the others.  Two transports:

- :class:`DistTransport`: ``torch.distributed`` on the swarm's process group (gloo, NCCL).
- :class:`LocalWorld`: particles as threads of one process meeting at a barrier.  ``nosync
  simulate`` runs its swarm on it, and the round's unit tests use it instead of subprocesses.

Accounting: ``bytes`` is the payload a rank put into or took out of its collectives (not wire
bytes, which depend on the algorithm); ``seconds`` the wall time spent inside them, waiting for
slower ranks included.
"""

from __future__ import annotations

import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import Tensor


def nbytes(*tensors: Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def group_timeout(group: dist.ProcessGroup, device: torch.device) -> timedelta | None:
    """The timeout ``group``'s backend was made with (``init_process_group(timeout=)``, which
    ``nosync train`` sets from ``--timeout``), or ``None`` where the backend does not say.

    Groups the swarm makes itself inherit it: ``dist.new_group`` without ``timeout=`` would
    take torch's 30-minute default, and a hung rank would hold the others that long."""
    try:
        return group._get_backend(device).options._timeout
    except (AttributeError, RuntimeError, ValueError):
        return None


class Transport(ABC):
    """The collectives of one particle of the swarm (``particle`` of ``particles``)."""

    particle: int
    particles: int
    is_head = True  # this rank takes part in rounds (the first rank of its particle)
    hybrid = False  # a particle is several data-parallel ranks
    timeout: float | None = None  # seconds a collective may wait for the others (None: no bound)

    def __init__(self) -> None:
        self.seconds = 0.0
        self.bytes = 0

    @contextmanager
    def _counted(self, payload: int) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds += time.perf_counter() - start
        self.bytes += payload

    @abstractmethod
    def all_gather(self, t: Tensor) -> Tensor:
        """Every particle's ``t`` (same shape everywhere), concatenated in particle order."""

    @abstractmethod
    def all_reduce(self, t: Tensor) -> Tensor:
        """The sum of every particle's ``t``, as a new tensor (``t`` is left alone)."""

    @abstractmethod
    def broadcast(self, t: Tensor, src: int) -> Tensor:
        """Particle ``src``'s ``t``: sent from ``src``, received into ``t`` elsewhere."""

    @abstractmethod
    def send_recv(self, send: dict[int, Tensor], recv: dict[int, Tensor]) -> None:
        """Point to point: ``send[j]`` to particle ``j``; ``recv[j]`` filled from particle ``j``."""

    def exchange(self, send: dict[int, Tensor], recv: dict[int, Tensor]) -> None:
        """Deprecated name of :meth:`send_recv`."""
        warnings.warn(
            "Transport.exchange is deprecated; use Transport.send_recv",
            DeprecationWarning,
            stacklevel=2,
        )
        self.send_recv(send, recv)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A transport written before the rename implements ``exchange``: it is its
        ``send_recv`` (with a ``DeprecationWarning``)."""
        super().__init_subclass__(**kwargs)
        if "exchange" in cls.__dict__ and "send_recv" not in cls.__dict__:
            warnings.warn(
                f"{cls.__name__}.exchange is deprecated; implement send_recv",
                DeprecationWarning,
                stacklevel=2,
            )
            cls.send_recv = cls.__dict__["exchange"]  # type: ignore[method-assign]

    def share_in_particle(self, weights: list[Tensor], obj: Any) -> Any:
        """Hybrid particles: the first rank's ``weights`` (in place) and ``obj`` to the others."""
        return obj

    def twin(self) -> Transport:
        """The same particles on a channel of their own, for rounds that run in the background
        while the training thread uses the original (collective: every rank calls it)."""
        return self


class DistTransport(Transport):
    """``torch.distributed`` on ``group`` (the particles' first ranks) and, for data-parallel
    particles, ``particle_group`` (``None`` when a particle is one rank)."""

    def __init__(
        self,
        group: dist.ProcessGroup | None,
        particle_group: dist.ProcessGroup | None = None,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        self.particle_group = particle_group
        self.hybrid = particle_group is not None
        self.is_head = particle_group is None or dist.get_rank(particle_group) == 0
        self.group = (group if group is not None else dist.group.WORLD) if self.is_head else None
        if self.is_head and dist.get_rank(self.group) < 0:
            raise ValueError("group: this rank heads a particle but is not in the swarm group")
        self.particle = dist.get_rank(self.group) if self.is_head else -1  # learnt in a round
        self.particles = dist.get_world_size(self.group) if self.is_head else -1
        self.device = device or torch.device("cpu")
        # GPUs shared by several ranks: the group is gloo only, whose point-to-point messages
        # take CPU tensors; every collective then goes through a CPU copy (devices.py)
        self.staged = self.device.type != "cpu" and "nccl" not in str(dist.get_backend())
        limit = group_timeout(self.group or cast(dist.ProcessGroup, dist.group.WORLD), self.device)
        self.timeout = None if limit is None else limit.total_seconds()

    def _wire(self, t: Tensor) -> Tensor:
        """``t`` as the backend takes it: itself, or a CPU copy when staged."""
        return t.cpu() if self.staged else t

    def twin(self) -> DistTransport:
        flags: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(flags, self.is_head)
        heads = [rank for rank, head in enumerate(flags) if head]
        limit = None if self.timeout is None else timedelta(seconds=self.timeout)
        group = dist.new_group(
            heads, backend="gloo" if self.device.type == "cpu" else None, timeout=limit
        )
        return DistTransport(group, self.particle_group, self.device)

    def all_gather(self, t: Tensor) -> Tensor:
        w = self._wire(t)
        out = [torch.empty_like(w) for _ in range(self.particles)]
        with self._counted(nbytes(t)):
            dist.all_gather(out, w, group=self.group)
        return torch.cat(out).to(t.device)

    def all_reduce(self, t: Tensor) -> Tensor:
        w = self._wire(t).clone()
        with self._counted(nbytes(t)):
            dist.all_reduce(w, group=self.group)
        return w.to(t.device)

    def broadcast(self, t: Tensor, src: int) -> Tensor:
        w = self._wire(t)
        with self._counted(nbytes(t)):
            dist.broadcast(w, group_src=src, group=self.group)
        if w is not t:
            t.copy_(w)
        return t

    def send_recv(self, send: dict[int, Tensor], recv: dict[int, Tensor]) -> None:
        wired = {j: self._wire(t) for j, t in recv.items()}
        ops = [
            dist.P2POp(dist.isend, self._wire(t), group=self.group, group_peer=j)
            for j, t in send.items()
        ]
        ops += [dist.P2POp(dist.irecv, t, group=self.group, group_peer=j) for j, t in wired.items()]
        if not ops:
            return
        with self._counted(nbytes(*send.values(), *recv.values())):
            for work in dist.batch_isend_irecv(ops):
                work.wait()
        for j, t in recv.items():
            if wired[j] is not t:
                t.copy_(wired[j])

    def share_in_particle(self, weights: list[Tensor], obj: Any) -> Any:
        if self.particle_group is None:
            return obj
        head = dist.get_global_rank(self.particle_group, 0)
        box = [(obj, self.particle)]
        with self._counted(nbytes(*[w for w in weights if w.is_floating_point()])):
            for t in weights:
                if t.numel():
                    w = self._wire(t)
                    dist.broadcast(w, src=head, group=self.particle_group)
                    if w is not t:
                        t.copy_(w)
            dist.broadcast_object_list(box, src=head, group=self.particle_group)
        obj, self.particle = box[0]
        return obj


class LocalWorld:
    """A swarm of ``particles`` threads in one process; :meth:`endpoint` is one particle's
    transport.  Every collective is a meeting at a barrier: each particle posts its part, all
    read everything, and sums are taken in particle order (the same bits on every particle)."""

    def __init__(self, particles: int, timeout: float = 300.0) -> None:
        self.particles, self.timeout = particles, timeout
        self._barrier = threading.Barrier(particles, timeout=timeout)
        self._slots: list[Any] = [None] * particles

    def endpoint(self, particle: int) -> LocalTransport:
        return LocalTransport(self, particle)

    def meet(self, particle: int, value: Any) -> list[Any]:
        self._slots[particle] = value
        self._barrier.wait()
        everything = list(self._slots)
        self._barrier.wait()  # nobody overwrites a slot before everybody has read it
        return everything

    def abort(self) -> None:
        """A particle failed: release the others from the barrier (they raise)."""
        self._barrier.abort()


class LocalTransport(Transport):
    def __init__(self, world: LocalWorld, particle: int) -> None:
        super().__init__()
        self.world, self.particle, self.particles = world, particle, world.particles
        self.timeout = world.timeout

    def all_gather(self, t: Tensor) -> Tensor:
        with self._counted(nbytes(t)):
            parts = self.world.meet(self.particle, t.clone())
        return torch.cat(parts)

    def all_reduce(self, t: Tensor) -> Tensor:
        with self._counted(nbytes(t)):
            parts = self.world.meet(self.particle, t.clone())
        total = parts[0].clone()
        for part in parts[1:]:
            total += part
        return total

    def broadcast(self, t: Tensor, src: int) -> Tensor:
        with self._counted(nbytes(t)):
            parts = self.world.meet(self.particle, t.clone() if self.particle == src else None)
        if self.particle != src:
            t.copy_(parts[src])
        return t

    def send_recv(self, send: dict[int, Tensor], recv: dict[int, Tensor]) -> None:
        with self._counted(nbytes(*send.values(), *recv.values())):
            posted = self.world.meet(self.particle, {j: t.clone() for j, t in send.items()})
        for j, buf in recv.items():
            buf.copy_(posted[j][self.particle])
