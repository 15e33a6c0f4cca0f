"""The ``Swarm`` API's old spellings, kept for one release with a ``DeprecationWarning``.

This module owns mapping them onto the new ones, so that ``Swarm.__init__`` sees only its
documented, keyword-only arguments:

- ``fitness``, ``period``, ``pressure``, ``rule`` given by position after ``model, optimizer``;
- ``mode=`` (now ``round=``, the command line's ``--round``) and ``exchange_dtype=`` (now
  ``wire_dtype=``, the command line's ``--wire-dtype``);
- the flat rule options ``inertia=``, ``c1=``, ``c2=``, ``temperature=``, ``outer_lr=``,
  ``outer_momentum=`` (now grouped: ``options=RuleOptions(...)``).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from nosync.core.options import RuleOptions

POSITIONAL = ("fitness", "period", "pressure", "rule")  # the old order after model, optimizer
RENAMED = {"mode": "round", "exchange_dtype": "wire_dtype"}
RULE_OPTIONS = ("inertia", "c1", "c2", "temperature", "outer_lr", "outer_momentum")

Init = TypeVar("Init", bound=Callable[..., None])


def _warn(message: str) -> None:
    warnings.warn(message, DeprecationWarning, stacklevel=3)


def accepts_old_spellings(init: Init) -> Init:
    """``init`` (``Swarm.__init__``), also taking the old spellings above, each with a warning."""

    @functools.wraps(init)
    def wrapper(self: Any, model: Any, optimizer: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(POSITIONAL):
            raise TypeError(
                f"Swarm() takes model and optimizer by position, then at most "
                f"{', '.join(POSITIONAL)} (deprecated); got {2 + len(args)} positional arguments"
            )
        names = POSITIONAL[: len(args)]
        if names:
            _warn(
                f"Swarm: {', '.join(names)} by position is deprecated; pass "
                f"{', '.join(f'{n}=' for n in names)} by keyword"
            )
        for name, value in zip(names, args, strict=True):
            if name in kwargs:
                raise TypeError(f"Swarm() got multiple values for argument {name!r}")
            kwargs[name] = value
        for old, new in RENAMED.items():
            if old in kwargs:
                _warn(f"Swarm({old}=) is deprecated; use {new}=")
                if new in kwargs:
                    raise TypeError(f"Swarm() got both {old}= and {new}= (the same argument)")
                kwargs[new] = kwargs.pop(old)
        flat = {name: kwargs.pop(name) for name in RULE_OPTIONS if name in kwargs}
        if flat:
            _warn(
                f"Swarm({', '.join(f'{n}=' for n in flat)}) is deprecated; pass "
                f"options=RuleOptions({', '.join(f'{n}=...' for n in flat)})"
            )
            kwargs["options"] = dataclasses.replace(kwargs.get("options") or RuleOptions(), **flat)
        init(self, model, optimizer, **kwargs)

    return wrapper  # type: ignore[return-value]
