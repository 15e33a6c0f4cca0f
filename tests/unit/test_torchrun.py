"""``nosync train`` under an external torchrun: the shared preflight, the attempt every rank
agrees on, and elastic restarts across two torchrun nodes after a kill -9."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import torch.distributed as dist

from nosync.run import attempt


# ---- the attempt every rank agrees on ------------------------------------------------------------
def _agree_all(port: int, world: int, late_rank_0: bool) -> list[attempt.Attempt]:
    found: list[attempt.Attempt | None] = [None] * world

    def rank(r: int) -> None:
        client = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=30))
        found[r] = attempt.agree(client, r, world, timeout=30)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(world)]
    for t in threads[1:]:
        t.start()
    if late_rank_0:
        time.sleep(0.5)  # the other ranks first see the previous attempt's generation
    threads[0].start()
    for t in threads:
        t.join(timeout=60)
    assert all(f is not None for f in found)
    return found  # type: ignore[return-value]


def test_every_rank_agrees_on_the_attempt_whatever_its_node_counted(monkeypatch) -> None:
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")  # a node that only re-joined
    server = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    first = _agree_all(server.port, 3, late_rank_0=False)
    assert first == [attempt.Attempt(1, 0)] * 3
    second = _agree_all(server.port, 3, late_rank_0=True)  # stale values in the store
    assert second == [attempt.Attempt(2, 1)] * 3
    assert attempt.restarts() == 1


def test_agreement_waits_no_longer_than_the_timeout() -> None:
    server = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    with pytest.raises(TimeoutError, match="timed out"):
        attempt.agree(server, 0, 2, timeout=1)  # rank 1 never comes
