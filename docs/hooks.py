"""MkDocs hook: the code's docstrings use Sphinx roles (``:class:`~nosync.core.rules.Rule```),
which mkdocstrings renders as Markdown, role and all; show them as plain code names instead
(``Rule``, or the full path without ``~``)."""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):<code>(~?)([\w.]+)</code>")


def _name(match: re.Match[str]) -> str:
    tilde, path = match.groups()
    return f"<code>{path.rsplit('.', 1)[-1] if tilde else path}</code>"


def on_page_content(html: str, **_: Any) -> str:
    return _ROLE.sub(_name, html)
