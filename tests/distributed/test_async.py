"""Async rounds: the delayed correction, their equivalence with blocking rounds at delay 0,
exact resume with a round in flight, and their bad values."""

from __future__ import annotations

from typing import Any

import torch

PERIOD, DELAY, P = 4, 3, 0.3


def _twin_times_out(rank: int, world: int, done: str) -> dict[str, Any]:
    import os
    import time

    from nosync.core.transport import DistTransport

    twin = DistTransport(None).twin()  # the group an async round runs on
    result: dict[str, Any] = {"timeout": twin.timeout}
    if rank == 0:  # rank 1 never joins this collective, as a SIGSTOPped rank would not
        started = time.monotonic()
        try:
            twin.all_gather(torch.zeros(1))
        except RuntimeError as err:
            result["error"], result["failed_after"] = str(err), time.monotonic() - started
        open(done, "w").close()
    else:  # alive (its connections open) until rank 0 gave up: a timeout, not a lost peer
        deadline = time.monotonic() + 100
        while not os.path.exists(done) and time.monotonic() < deadline:
            time.sleep(0.05)
    return result


def test_the_async_rounds_group_inherits_the_run_timeout_not_torchs_30_minutes(tmp_path) -> None:
    from support.distributed import run_ranks

    results = run_ranks(_twin_times_out, 2, timeout=150, _pg_timeout=3, done=str(tmp_path / "d"))
    assert [r["timeout"] for r in results] == [3.0, 3.0]
    assert "timed out" in results[0]["error"].lower(), results[0]
    assert results[0]["failed_after"] < 60  # 3 s, not 1800 s
