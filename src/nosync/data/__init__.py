"""Datasets a run trains on: the built-in ones, ``npz:`` files and your own, and the batch order
each particle sees (``datasets``).  ``from nosync.data import NAME`` still works for the names of
the former ``nosync.data`` module (loaded on first use, without importing torch before)."""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(importlib.import_module(".datasets", __name__), name)
