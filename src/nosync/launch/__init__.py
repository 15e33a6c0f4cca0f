"""Starting and stopping the ranks: the launcher (``launcher``: preflight, torch's elastic agent
on one machine, a worker under ``torchrun``), the run folder's lock (``runlock``), ranks that die
with their launcher (``lifeline``), Ctrl+C (``interrupts``) and loopback-only stores
(``loopback``).  ``from nosync.launch import launch`` still works (the names of the former
``nosync.launch`` module are loaded from ``launcher`` on first use)."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:  # a module of this package
        return importlib.import_module(f"{__name__}.{name}")
    return getattr(importlib.import_module(".launcher", __name__), name)
