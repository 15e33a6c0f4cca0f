"""One name per idea in the core, and the old names kept for one release with a warning:
``Rule.exchange`` (now ``needs``), ``Transport.exchange`` (now ``send_recv``), ``Swarm``'s
``mode=``/``exchange_dtype=`` (now ``round=``/``wire_dtype=``), its flat rule options (now
``options=RuleOptions(...)``) and its arguments after ``optimizer`` by position."""

from __future__ import annotations

import inspect
import re
import warnings

import pytest
import torch
from torch import Tensor, nn

import nosync
from nosync import LocalWorld, Rule, RuleOptions, Swarm
from nosync.core.rules import ElasticRule, Exchanged
from nosync.core.transport import LocalTransport


def one_particle() -> tuple[nn.Module, torch.optim.Optimizer, LocalTransport]:
    model = nn.Linear(3, 2)
    return model, torch.optim.SGD(model.parameters(), lr=0.1), LocalWorld(1).endpoint(0)


def test_swarms_arguments_after_the_optimizer_are_keyword_only_and_documented() -> None:
    params = list(inspect.signature(Swarm.__init__).parameters.values())[1:]
    assert [p.name for p in params[:2]] == ["model", "optimizer"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[2:])
    doc = inspect.getdoc(Swarm) or ""
    args = doc.split("Args:")[1].split("\n\n")[0]
    documented = set(re.findall(r"^    (\w+):", args, re.MULTILINE))
    assert documented == {p.name for p in params}
    assert "Example::" in doc


def test_the_new_spellings_emit_no_warning() -> None:
    model, opt, endpoint = one_particle()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        swarm = Swarm(
            model, opt, fitness=lambda m: 0.0, rule="pso", round="async", delay=1,
            wire_dtype=torch.float16, options=RuleOptions(inertia=0.7), transport=endpoint,
        )  # fmt: skip
    assert swarm.background is not None and swarm.round.exchange.dtype == torch.float16
    assert swarm.rule.inertia == 0.7  # type: ignore[attr-defined]


def test_the_old_spellings_still_work_with_a_warning() -> None:
    model, opt, endpoint = one_particle()

    def fitness(m: nn.Module) -> float:
        return 0.0

    with pytest.warns(DeprecationWarning) as caught:
        swarm = Swarm(
            model, opt, fitness, 5, 0.5, "pso", mode="async", delay=1,
            exchange_dtype=torch.bfloat16, inertia=0.7, c2=1.5, transport=endpoint,
        )  # fmt: skip
    messages = " ".join(str(w.message) for w in caught)
    for old in ("fitness, period, pressure, rule by position", "mode=", "exchange_dtype="):
        assert old in messages
    assert "options=RuleOptions(inertia=..., c2=...)" in messages
    assert (swarm.fitness, swarm.period, swarm.pressure, swarm.rule.name) == (
        fitness,
        5,
        0.5,
        "pso",
    )
    assert swarm.background is not None and swarm.round.exchange.dtype == torch.bfloat16
    assert (swarm.rule.inertia, swarm.rule.c1, swarm.rule.c2) == (0.7, 0.5, 1.5)  # type: ignore[attr-defined]


def test_an_argument_given_twice_is_a_type_error() -> None:
    model, opt, endpoint = one_particle()
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="multiple values"):
        Swarm(model, opt, lambda m: 0.0, fitness=lambda m: 1.0, transport=endpoint)
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="mode= and round="):
        Swarm(model, opt, fitness=lambda m: 0.0, mode="async", round="async", transport=endpoint)


def test_rule_exchange_is_the_deprecated_name_of_needs() -> None:
    with pytest.warns(DeprecationWarning, match="Rule.exchange is deprecated"):
        assert ElasticRule().exchange == "sum"
    with pytest.warns(DeprecationWarning, match="exchange is deprecated; set needs = 'sum'"):

        class OldStyle(Rule):
            name = "old-style"
            exchange = "sum"
            needs_fitness = False

            def pull(self, own: Tensor, anchor: Tensor, got: Exchanged) -> Tensor:
                return own

    assert OldStyle.needs == "sum" and OldStyle().needs == "sum"
    with pytest.warns(DeprecationWarning):
        assert OldStyle().exchange == "sum"


def test_a_user_rule_that_still_sets_exchange_runs_a_round_as_before() -> None:
    with pytest.warns(DeprecationWarning):

        class ToTheMean(Rule):
            name = "to-the-mean"
            exchange = "sum"
            needs_fitness = False
            target = "mean"

            def anchor(self, own: Tensor, got: Exchanged) -> Tensor:
                assert got.total is not None
                return got.total / got.alive

            def pull(self, own: Tensor, anchor: Tensor, got: Exchanged) -> Tensor:
                return anchor

    model, opt, endpoint = one_particle()
    before = [p.detach().clone() for p in model.parameters()]
    swarm = Swarm(model, opt, fitness=lambda m: 0.0, rule=ToTheMean(), transport=endpoint)
    assert swarm.sync()["target"] == "mean"  # the sum was fetched: one particle is its mean
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_transport_exchange_is_the_deprecated_name_of_send_recv() -> None:
    endpoint = LocalWorld(1).endpoint(0)
    got = {0: torch.zeros(2)}
    with pytest.warns(DeprecationWarning, match="Transport.exchange is deprecated"):
        endpoint.exchange({0: torch.ones(2)}, got)
    assert torch.equal(got[0], torch.ones(2))


def test_a_transport_written_before_the_rename_still_sends() -> None:
    with pytest.warns(DeprecationWarning, match="implement send_recv"):

        class OldTransport(LocalTransport):
            def exchange(self, send: dict[int, Tensor], recv: dict[int, Tensor]) -> None:
                for j, t in recv.items():
                    t.copy_(send[j] * 2)

    endpoint = OldTransport(LocalWorld(1), 0)
    got = {0: torch.zeros(2)}
    endpoint.send_recv({0: torch.ones(2)}, got)
    assert torch.equal(got[0], 2 * torch.ones(2))


def test_the_public_api_keeps_its_names_and_adds_rule_options() -> None:
    for name in ("REGISTRY", "RULES", "Rule", "Swarm", "LocalWorld", "TrainLoss", "RuleOptions"):
        assert name in nosync.__all__ and getattr(nosync, name) is not None
    assert nosync.RuleOptions is RuleOptions


def test_dir_of_the_package_lists_the_public_api() -> None:
    """``dir(nosync)`` (and tab completion) shows what ``__all__`` exports and the version, not
    the module's own helpers; every name it lists is there."""
    shown = dir(nosync)
    assert shown == sorted([*nosync.__all__, "__version__"])
    assert set(nosync.__all__) == set(nosync._EXPORTS)
    assert not {"Any", "annotations", "importlib", "_moved"} & set(shown)
    assert all(getattr(nosync, name) is not None for name in shown)
