"""One registry of rules: the torch-free catalog, the rule classes bound to it, and what reads it
(the ``--rule`` choices, the config's checks, the README's table)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from nosync.core import catalog, rules
from nosync.run import config
from nosync.run.config import TrainConfig, validate

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_catalog_and_the_registry_name_the_same_rules_with_the_same_needs() -> None:
    assert list(rules.REGISTRY) == list(catalog.RULES)
    for name, cls in rules.REGISTRY.items():
        info = catalog.RULES[name]
        assert cls.info is info
        assert (cls.name, cls.needs, cls.needs_fitness, cls.target) == (
            info.name,
            info.needs,
            info.needs_fitness,
            info.target,
        )
        assert info.needs in catalog.NEEDS


def test_outer_momentum_accepts_exactly_the_catalogs_outer_rules() -> None:
    for name in catalog.RULES:
        inner = rules.REGISTRY[name].create(rules.RuleOptions())
        if name in catalog.outer_rules():
            assert rules.OuterMomentum(inner, None, 0.5).needs == inner.needs
        else:
            with pytest.raises(ValueError, match="outer momentum works with"):
                rules.OuterMomentum(inner, None, 0.5)


def test_the_catalog_imports_without_torch() -> None:
    code = "import sys, nosync.core.catalog; print(any(m == 'torch' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_rule_flag_the_config_and_its_checks_read_the_catalog() -> None:
    field = config.TrainConfig.__dataclass_fields__["rule"]
    assert field.metadata["choices"] == catalog.choices() == rules.RULES
    assert "easgd" not in catalog.choices()  # a strategy of its own
    for rule in catalog.choices():
        cfg = TrainConfig(rule=rule, topology="ring", workers=4)
        if catalog.sums(rule):
            with pytest.raises(config.UserError, match="topology"):
                validate(cfg)
        else:
            validate(cfg)


def test_the_readmes_rule_list_is_the_catalogs_choices() -> None:
    text = " ".join(README.read_text().split())
    line = text[text.index("`--rule` is ") :].split(". ")[0]
    assert tuple(re.findall(r"`([\w-]+)`", line)[1:]) == catalog.choices(), line


@pytest.mark.parametrize("name", ["SWARM_RULES", "PULL_RULES"])
def test_the_old_name_lists_still_work_with_a_warning(name: str) -> None:
    with pytest.warns(DeprecationWarning, match=name):
        got = getattr(rules, name)
    expected = tuple(catalog.RULES) if name == "SWARM_RULES" else ("leader", "elastic", "weighted")
    assert got == expected
