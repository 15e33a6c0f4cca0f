"""The Lightning integration's names: ``LightningSwarmStrategy``, and its old name kept for one
release (the run's own ``nosync.run.strategies.SwarmStrategy`` is another class)."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("lightning")


def test_the_old_name_swarmstrategy_warns_and_is_the_new_class() -> None:
    from nosync.integrations import lightning

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = lightning.LightningSwarmStrategy
    with pytest.warns(DeprecationWarning, match="LightningSwarmStrategy"):
        from nosync.integrations.lightning import SwarmStrategy  # type: ignore[attr-defined]
    assert SwarmStrategy is new
    with pytest.raises(AttributeError):
        lightning.NoSuchStrategy  # noqa: B018
