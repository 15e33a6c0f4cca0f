"""Datasets a run trains on: the built-in ones, ``npz:`` files and your own, and the batch order
each particle sees (``datasets``).  ``from nosync.data import NAME`` still works for the names of
the former ``nosync.data`` module (loaded on first use, without importing torch before)."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:  # a module of this package
        return importlib.import_module(f"{__name__}.{name}")
    return getattr(importlib.import_module(".datasets", __name__), name)
