"""Old spellings of settings, still read (one warning each) and written beside the new ones.

"Automatic" is ``None`` today; ``outer_lr 0``, ``outer_momentum -1`` and ``delay -1`` meant it
before.  ``--exchange`` / ``exchange`` is ``--wire-dtype`` / ``wire_dtype``.  ``config.py`` reads
every flag, file and saved configuration through :func:`upgrade`.  No torch here.
"""

from __future__ import annotations

import warnings
from typing import Any

from nosync.errors import DeprecatedSetting, UserError

AUTO = "auto"  # an automatic setting (None) in TOML and on the command line
RENAMED = {"exchange": "wire_dtype"}  # old flag and TOML key -> new
OLD_AUTOMATIC = {"outer_lr": 0.0, "outer_momentum": -1.0, "delay": -1}  # before None meant it


def upgrade(values: dict[str, Any], where: str = "", warn: bool = True) -> dict[str, Any]:
    """``values`` in today's spelling: a renamed key under its new name; an old automatic value
    (``delay = -1``) and ``"auto"`` as None.

    Each old spelling warns once (:class:`DeprecatedSetting`), naming the flag, or the key and
    ``where`` (a file).  Values that give both names of a setting, as nosync's own outputs do
    (``TrainConfig.to_dict``), do not warn; two names that disagree are an error.
    """
    values = dict(values)
    for old, new in RENAMED.items():
        if old not in values:
            continue
        value = values.pop(old)
        if new in values and values[new] != value:
            raise UserError(f"{new}: {old} = {value!r} and {new} = {values[new]!r} disagree")
        if warn and new not in values:
            _deprecated(
                where,
                f"key {old} is deprecated; use {new}",
                f"--{_flag(old)} is deprecated; use --{_flag(new)}",
            )
        values[new] = value
    for name, old_value in OLD_AUTOMATIC.items():
        value = values.get(name)
        if value == AUTO:
            values[name] = None
        elif _number(value) and value == old_value:
            values[name] = None
            if warn:
                _deprecated(
                    where,
                    f'{name} = {old_value:g} for automatic is deprecated; use "{AUTO}" (or leave '
                    "the key out)",
                    f"--{_flag(name)} {old_value:g} for automatic is deprecated; use "
                    f"--{_flag(name)} {AUTO} (or leave the flag out)",
                )
    return values


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _deprecated(where: str, in_file: str, as_flag: str) -> None:
    """One warning line: the command line prints :class:`DeprecatedSetting` as
    ``nosync: warning: ...``."""
    text = f"config: {where}: {in_file}" if where else as_flag
    warnings.warn(text, DeprecatedSetting, stacklevel=4)
