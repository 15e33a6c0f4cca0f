"""Which attempt of a run this is, agreed by every rank through the launcher's store.

Each torch elastic agent counts its own restarts (``TORCHELASTIC_RESTART_COUNT``).  Across two
nodes the counts differ after a membership change: the node whose worker died restarts (count
1), the other only re-joins (count 0).  Keyed on that count, ranks used different store prefixes
(and hung in gloo's connectFullMesh) and disagreed on loading the checkpoint.

So global rank 0 of every attempt draws a generation number from a counter in the store that all
attempts share, decides the restart count once (its generation minus one, or its agent's count
if that is larger), and hands both to every other rank under a key made from that rank's own
fresh nonce, so that no rank can read a value left behind by an earlier attempt.  Every wait is
bounded by the run's timeout.  The process group's store prefix uses the generation; the
"is this a restart?" decision (``Control.restore``) and the reported restart count use
:func:`restarts`.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import torch.distributed as dist

_PREFIX = "nosync/generation"
_POLL = 0.05  # seconds between looks at the store while waiting for rank 0


@dataclass(frozen=True)
class Attempt:
    generation: int  # unique per attempt within one launcher store, the same on every rank
    restarts: int  # how many times the run was restarted before this attempt


_agreed: Attempt | None = None


def env_restarts() -> int:
    """This node's agent's own count; only meaningful on one node."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def restarts() -> int:
    """The restart count every rank agreed on (this node's count before agreement)."""
    return _agreed.restarts if _agreed else env_restarts()


def agree(store: dist.Store, rank: int, world: int, timeout: float) -> Attempt:
    """Agree with the other ranks on this attempt; raises ``TimeoutError`` after ``timeout`` s."""
    global _agreed
    deadline = time.monotonic() + timeout
    if rank == 0:
        generation = store.add(f"{_PREFIX}/counter", 1)
        found = Attempt(generation, max(generation - 1, env_restarts()))
        store.set(f"{_PREFIX}/current", str(generation))
        for other in range(1, world):
            key = f"{_PREFIX}/{generation}/join/{other}"
            _wait(store, key, deadline)
            nonce = store.get(key).decode()
            store.set(f"{_PREFIX}/welcome/{nonce}", f"{found.generation}:{found.restarts}")
    else:
        found = _join(store, rank, deadline)
    _agreed = found
    return found


def _join(store: dist.Store, rank: int, deadline: float) -> Attempt:
    """A non-zero rank: announce a fresh nonce under every generation rank 0 publishes until
    rank 0 answers under that nonce (an earlier attempt's rank 0 never will)."""
    nonce = uuid.uuid4().hex
    welcome = f"{_PREFIX}/welcome/{nonce}"
    joined = None
    _wait(store, f"{_PREFIX}/current", deadline)
    while True:
        current = store.get(f"{_PREFIX}/current").decode()
        if current != joined:
            store.set(f"{_PREFIX}/{current}/join/{rank}", nonce)
            joined = current
        if store.check([welcome]):
            generation, restarts_ = store.get(welcome).decode().split(":")
            return Attempt(int(generation), int(restarts_))
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for rank 0 to start this attempt")
        time.sleep(_POLL)


def _wait(store: dist.Store, key: str, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"timed out waiting for {key} in the store")
    try:
        store.wait([key], timedelta(seconds=left))
    except Exception as err:  # noqa: BLE001 - torch raises its own DistStoreError
        raise TimeoutError(f"timed out waiting for {key} in the store ({err})") from None
