"""The rule catalog: every built-in rule's name and what it asks of a round, without torch.

This module owns the names a configuration chooses from (the rules, what each needs, the
pressure schedules), so that ``nosync.run.config`` (the ``--rule`` choices and their checks),
the command line's help and the docs read them without importing torch.  The rule objects
(:mod:`nosync.core.rule_objects`) are bound to their entry here: a built-in ``Rule`` class takes
its ``name``, ``needs``, ``needs_fitness`` and ``target`` from :data:`RULES`, so that the two
cannot disagree.

A rule declares

- ``needs``: what the round fetches for it: ``"leader"`` (the leader's weights), ``"sum"`` (a
  sum over the live particles) or ``"none"``;
- ``needs_fitness``: whether the round evaluates and exchanges fitness for it;
- ``target``: the name of the point it pulls toward, for the log (``None``: no pull);
- ``choice``: whether it is a ``nosync train --rule`` choice (``easgd`` is a strategy of its
  own, ``--strategy easgd``, which selects the centre);
- ``outer``: whether outer momentum fits it (a pull ``own + p (target - own)`` toward a
  target, which :class:`~nosync.core.rule_objects.OuterMomentum` turns into a Nesterov step).

A rule a user registers in ``nosync.REGISTRY`` is a ``Swarm(rule=NAME)`` name; the command
line's ``--rule`` offers the built-in choices below (its worker processes import only nosync).
"""

from __future__ import annotations

from dataclasses import dataclass

NEEDS = ("leader", "sum", "none")
SCHEDULES = ("constant", "linear")


@dataclass(frozen=True)
class RuleInfo:
    """One rule's entry (see the module docstring for the fields)."""

    name: str
    needs: str
    needs_fitness: bool
    target: str | None
    choice: bool
    outer: bool
    summary: str


RULES: dict[str, RuleInfo] = {
    info.name: info
    for info in (
        RuleInfo("leader", "leader", True, "leader", True, True, "pull toward the leader"),
        RuleInfo("pso", "leader", True, "leader", True, False, "particle swarm step"),
        RuleInfo("elastic", "sum", False, "mean", True, True, "pull toward the swarm mean"),
        RuleInfo(
            "weighted", "sum", True, "weighted mean", True, True,
            "pull toward the fitness-weighted mean",
        ),
        RuleInfo("easgd", "sum", False, "center", False, False, "EASGD's centre variable"),
        RuleInfo("none", "none", False, None, True, False, "no pull (independent workers)"),
    )
}  # fmt: skip


def choices() -> tuple[str, ...]:
    """The ``nosync train --rule`` choices, in catalog order."""
    return tuple(name for name, info in RULES.items() if info.choice)


def outer_rules() -> tuple[str, ...]:
    """The rules outer momentum (``--outer-momentum``, ``--outer-lr``) works with."""
    return tuple(name for name, info in RULES.items() if info.outer)


def local_rules() -> tuple[str, ...]:
    """The ``--rule`` choices a neighbourhood topology (``ring``, ``random-k``) works with."""
    return tuple(name for name in choices() if not sums(name))


def sums(rule: str) -> bool:
    """Whether ``rule`` (a catalog name) sums over the whole swarm (no neighbourhoods then)."""
    info = RULES.get(rule)
    return info is not None and info.needs == "sum"
