"""pytest's entry to the shared test code in ``support/`` (a package): its session fixtures, a
marker for each test folder (``-m unit``, ``-m distributed``, ``-m e2e``), and the order in which
``pytest -n`` hands the tests out; see tests/README.md."""

from __future__ import annotations

import pytest

pytest_plugins = ["support.fixtures"]
KINDS = ("e2e", "distributed", "unit")  # the heaviest first


def _kind(item: pytest.Item) -> str:
    return item.path.parent.name


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks each folder's tests, and puts the heaviest folder first: xdist hands the tests out
    in this order, so the short ones fill the workers' ends."""
    items.sort(key=lambda item: KINDS.index(_kind(item)) if _kind(item) in KINDS else len(KINDS))
    for item in items:
        if _kind(item) in KINDS:
            item.add_marker(getattr(pytest.mark, _kind(item)))
