"""The exception types the command line reports in one line instead of a traceback.

:class:`UserError` means "the user asked for something we cannot do" (exit status 2);
:class:`Diverged` means the training itself blew up (see ``cli.DIVERGED``).  Everything else is
a bug and keeps its traceback.  :class:`DeprecatedSetting` (a warning, not an error) is one line
too.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input (a flag, a file, a config value): reported in one line, exit status 2."""


class Diverged(RuntimeError):
    """Training diverged: every particle's weights or fitness are NaN or infinite, so there is
    nothing to recover from (resuming only diverges again).  ``step``: where it was found."""

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step


class DeprecatedSetting(DeprecationWarning):
    """An old spelling of a flag or a TOML key, which still works: the command line prints it as
    one ``nosync: warning:`` line."""
