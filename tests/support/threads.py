"""Particles as threads of one process (a ``LocalWorld``), for in-process tests of the round."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from nosync import LocalWorld


def in_threads(particles: int, fn: Callable[[Any, int], Any]) -> list[Any]:
    """``fn(endpoint, i)`` for every particle, each in its own thread; results in order."""
    world = LocalWorld(particles, timeout=30)
    out: list[Any] = [None] * particles

    def work(i: int) -> None:
        try:
            out[i] = fn(world.endpoint(i), i)
        except BaseException as err:  # noqa: BLE001 - returned to the test
            out[i] = err
            world.abort()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(particles)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out
