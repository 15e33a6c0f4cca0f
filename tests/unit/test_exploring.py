"""``--explore`` in a run (``nosync.run.exploring``): each flag reaches the swarm's exploit step
and changes what it does, the TOML table form, and label smoothing that follows the values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from nosync import Swarm
from nosync.errors import UserError
from nosync.run.config import read_toml, resolve
from nosync.run.exploring import SmoothedLoss, explore_of, explores_smoothing

from support.helpers import bn_model, train_steps
from support.threads import in_threads

FLAGS = {"dataset": "digits", "explore": "lr=0.01..0.5:log"}


def _copies(**flags: Any) -> list[dict]:
    """The copies of the first exploit round of 4 particles with fitness 0.1 < ... < 0.4."""
    cfg = resolve({}, {**FLAGS, **flags})
    fitness = [0.1, 0.2, 0.3, 0.4]

    def particle(endpoint: Any, i: int) -> list[dict]:
        model = bn_model(seed=i)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        explore = explore_of(cfg, None, None)
        swarm = Swarm(model, opt, fitness=lambda m: fitness[i], period=2, transport=endpoint,
                      explore=explore)  # fmt: skip
        with swarm:
            train_steps(model, opt, 2 * cfg.exploit_every, seed=i)
        return [c for r in swarm.history for c in r["explore"]["exploits"]]

    out = in_threads(4, particle)
    assert not any(isinstance(o, BaseException) for o in out), out
    return out[0]


def test_exploit_every_sets_the_round_of_the_first_copy() -> None:
    assert _copies(exploit_every=1)  # round 1 copies
    assert len(_copies(exploit_every=2)) == 1  # rounds 1, 2: only round 2


def test_the_quantile_sets_how_many_copy() -> None:
    assert [c["particle"] for c in _copies(exploit_every=1)] == [3]  # ceil(0.25 * 4)
    assert [c["particle"] for c in _copies(exploit_every=1, exploit_quantile=0.5)] == [2, 3]


def test_factors_and_resample_set_the_perturbation() -> None:
    cfg = resolve({}, FLAGS)
    start = explore_of(cfg, None, None).resolved().initial(4, cfg.seed)  # what the swarm used
    copy = _copies(exploit_every=1, explore_factors="2", explore_resample=0.0)[0]
    assert copy["values"]["lr"] == pytest.approx(min(0.5, 2 * start[copy["donor"]]["lr"]))
    redrawn = _copies(exploit_every=1, explore_resample=1.0)[0]  # always a fresh draw
    assert redrawn["values"]["lr"] not in [v["lr"] * f for v in start for f in (0.8, 1.25)]


def test_explore_is_a_table_in_a_config_file(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[explore]\nlr = "0.005..0.5:log"\nweight_decay = [0, 0.001]\n')
    assert read_toml(str(good))["explore"] == "lr=0.005..0.5:log,weight_decay=0..0.001"
    bad = tmp_path / "bad.toml"
    bad.write_text("[explore]\ndropout = [0, 0.5]\n")
    with pytest.raises(UserError, match="explore: unknown hyperparameter 'dropout'"):
        read_toml(str(bad))


def test_label_smoothing_follows_each_particles_value() -> None:
    assert not explores_smoothing(resolve({}, FLAGS))
    cfg = resolve({}, {**FLAGS, "explore": "lr=0.01..0.5,label_smoothing=0..0.2"})
    assert explores_smoothing(cfg)
    loss = SmoothedLoss()
    explore = explore_of(cfg, None, loss)
    assert explore is not None and explore.apply is not None
    explore.apply(0, {"lr": 0.1, "label_smoothing": 0.15})
    assert loss.smoothing == 0.15
    out, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    expected = torch.nn.functional.cross_entropy(out, target, label_smoothing=0.15)
    assert torch.equal(loss(out, target), expected)
