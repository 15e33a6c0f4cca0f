"""The rules by name: ``REGISTRY`` (name -> ``Rule`` class) and :func:`make_rule`.

This module owns finding a rule by its name, and is the rules' one import point: it re-exports
what the rules are made of, each owned by a module of its own:

- :mod:`nosync.core.catalog`: every built-in rule's name and needs, without torch (what the
  configuration and the command line read);
- :mod:`nosync.core.equations`: the equations, as pure tensor functions;
- :mod:`nosync.core.rule_objects`: :class:`Rule`, the built-in rules and :class:`OuterMomentum`;
- :mod:`nosync.core.options`: :class:`RuleOptions` and the checks of their values.

A new built-in rule is its catalog entry plus one class bound to it (``info=RULES[name]``) and
its line in ``REGISTRY``; a user's rule is a ``Rule`` subclass added to ``REGISTRY``
(``nosync.REGISTRY["mine"] = MyRule``), which makes it a ``Swarm(rule="mine")`` name.
``tests/unit/test_catalog.py`` checks that the catalog and ``REGISTRY`` agree.

``RULES`` (the ``nosync train --rule`` choices) is read from the catalog; ``SWARM_RULES`` and
``PULL_RULES`` are deprecated (``catalog.RULES`` and ``catalog.outer_rules()``).
"""

from __future__ import annotations

import warnings
from typing import Any

from nosync.core import catalog
from nosync.core.catalog import SCHEDULES
from nosync.core.equations import (
    easgd_update,
    elastic_pull,
    elect_leader,
    fitness_weights,
    leader_pull,
    mean_pairwise_distance,
    nesterov_step,
    pressure_at,
    pso_update,
)
from nosync.core.options import (
    RuleOptions,
    check_outer_lr,
    check_outer_momentum,
    check_temperature,
)
from nosync.core.rule_objects import (
    EASGDRule,
    ElasticRule,
    Exchanged,
    LeaderRule,
    NoneRule,
    OuterMomentum,
    PSORule,
    Rule,
    WeightedRule,
)

__all__ = [
    "REGISTRY",
    "RULES",
    "SCHEDULES",
    "EASGDRule",
    "ElasticRule",
    "Exchanged",
    "LeaderRule",
    "NoneRule",
    "OuterMomentum",
    "PSORule",
    "Rule",
    "RuleOptions",
    "WeightedRule",
    "check_outer_lr",
    "check_outer_momentum",
    "check_temperature",
    "easgd_update",
    "elastic_pull",
    "elect_leader",
    "fitness_weights",
    "leader_pull",
    "make_rule",
    "mean_pairwise_distance",
    "nesterov_step",
    "pressure_at",
    "pso_update",
]

RULES = catalog.choices()  # the rules of `nosync train --rule`

REGISTRY: dict[str, type[Rule]] = {
    rule.name: rule
    for rule in (LeaderRule, PSORule, ElasticRule, WeightedRule, EASGDRule, NoneRule)
}

_DEPRECATED = {
    "SWARM_RULES": ("nosync.core.catalog.RULES", lambda: tuple(catalog.RULES)),
    "PULL_RULES": ("nosync.core.catalog.outer_rules()", catalog.outer_rules),
}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        new, value = _DEPRECATED[name]
        warnings.warn(
            f"nosync.core.rules.{name} is deprecated; use {new}", DeprecationWarning, stacklevel=2
        )
        return value()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_rule(name: str, options: RuleOptions) -> Rule:
    """The rule ``name``, wrapped in :class:`OuterMomentum` when the options ask for an outer
    step (a momentum above 0, or an outer learning rate)."""
    if name not in REGISTRY:
        raise ValueError(f"rule must be one of {', '.join(REGISTRY)}, got {name!r}")
    rule = REGISTRY[name].create(options)
    if options.outer_momentum or options.outer_lr is not None:
        return OuterMomentum(rule, options.outer_lr, options.outer_momentum)
    return rule
