"""Old module paths (``nosync.swarm``, ``nosync.rules``, ...) from before the subpackages.

The flat layout's modules moved into ``core``, ``run``, ``launch`` and ``tools`` (see
``docs/architecture.md``).  For one release an import of an old path still works: a finder on
``sys.meta_path`` hands out the moved module itself (the same object, so ``monkeypatch`` and
``isinstance`` behave) and warns once with :class:`DeprecationWarning`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

MOVED = {
    **{f"nosync.{m}": f"nosync.core.{m}" for m in (
        "swarm", "round", "planner", "exchange", "transport", "rules", "placement", "selection",
        "weights", "records", "hooks", "seeds", "background", "topology", "evaluate",
    )},
    **{f"nosync.{m}": f"nosync.run.{m}" for m in (
        "config", "train", "build", "strategies", "control", "checkpoint", "monitor", "metrics",
        "loggers", "lr_schedule", "models", "devices", "export", "attempt",
    )},
    **{f"nosync.{m}": f"nosync.launch.{m}" for m in (
        "runlock", "lifeline", "interrupts", "loopback",
    )},
    **{f"nosync.{m}": f"nosync.tools.{m}" for m in ("compare", "simulate", "report")},
}  # fmt: skip


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the moved module is already loaded."""


def install() -> None:
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
