"""The one exception type that means "the user asked for something we cannot do".

The CLI turns it into a single line on stderr and exit status 2; everything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input (a flag, a file, a config value): reported in one line, exit status 2."""
