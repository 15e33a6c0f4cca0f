"""Run a test function on N gloo ranks in fresh processes, with a timeout so a hang fails.

Children come from a forkserver that has imported torch once (fast and clean: the server never
ran a torch op, so no OpenMP threads are forked).  Each rank gets one thread.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import queue
import tempfile
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

_CTX = mp.get_context("forkserver")
_CTX.set_forkserver_preload(
    [
        "torch",
        "torch.distributed",
        "torch._dynamo",
        "torch.nn.parallel",
        "nosync",
        "nosync.run.train",
    ]
)


def _child(
    fn: Callable[..., Any], rank: int, world: int, store: str, results: Any, kw: dict
) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    try:
        dist.init_process_group(
            kw.pop("_backend", "gloo"),  # e.g. "cpu:gloo", the combined backend's syntax
            init_method=f"file://{store}",
            rank=rank,
            world_size=world,
            timeout=timedelta(seconds=kw.pop("_pg_timeout", 60)),
        )
        out = fn(rank, world, **kw)
        dist.destroy_process_group()
        results.put((rank, True, pickle.dumps(out)))  # plain pickle: no shared-memory fds
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test
        results.put((rank, False, traceback.format_exc()))


def run_ranks(fn: Callable[..., Any], world: int, timeout: float = 90, **kwargs: Any) -> list[Any]:
    """``fn(rank, world, **kwargs)`` on every rank; returns the results in rank order.

    Raises AssertionError with the failing rank's traceback, or on a hang after ``timeout``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        results = _CTX.Queue()
        procs = [
            _CTX.Process(target=_child, args=(fn, r, world, f"{tmp}/store", results, dict(kwargs)))
            for r in range(world)
        ]
        for p in procs:
            p.start()
        out: dict[int, Any] = {}
        errors = []
        try:
            for _ in range(world):
                rank, ok, value = results.get(timeout=timeout)
                if ok:
                    out[rank] = pickle.loads(value)
                else:
                    errors.append(f"rank {rank} failed:\n{value}")
                    break
        except queue.Empty:
            errors.append(f"ranks {sorted(set(range(world)) - set(out))} hung for {timeout} s")
        finally:
            for p in procs:
                p.join(timeout=5 if not errors else 0.1)
                if p.is_alive():
                    p.kill()
                    p.join()
        if errors:
            raise AssertionError("\n".join(errors))
        return [out[r] for r in range(world)]
