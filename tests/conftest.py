"""pytest's entry to the shared test code in ``support/`` (a package): its session fixtures, and a
marker for each test folder (``-m unit``, ``-m distributed``, ``-m e2e``); see tests/README.md."""

from __future__ import annotations

import pytest

pytest_plugins = ["support.fixtures"]
KINDS = ("unit", "distributed", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.parent.name
        if folder in KINDS:
            item.add_marker(getattr(pytest.mark, folder))
