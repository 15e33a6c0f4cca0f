"""The documentation's checks that need no docs toolchain: the command-line page is what
``docs/gen_cli.py`` writes from the parser, and the README stays a front door (at most 10 kB)
whose API example is the tested example file's code and whose links lead somewhere.
``make docs`` builds the site itself, strictly (broken links are errors)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli", ROOT / "docs" / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_page_is_what_the_generator_writes() -> None:
    page = (ROOT / "docs" / "cli.md").read_text()
    assert page == _generator().render(), "docs/cli.md is out of date: run `make docs-cli`"


def test_cli_page_lists_every_training_flag() -> None:
    from nosync.run.config import FIELDS

    page = (ROOT / "docs" / "cli.md").read_text()
    missing = [n for n in FIELDS if f"`--{n.replace('_', '-')}`" not in page]
    assert not missing


def test_readme_is_at_most_10_kb() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size <= 10_000, f"README.md is {size} bytes; move detail to docs/"


def test_readme_api_example_is_the_example_files_body() -> None:
    """The README shows examples/swarm_torchrun.py's code as it is (the e2e tests run the file)."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```python\n") + len("```python\n")
    shown = readme[start : readme.index("```", start)]
    lines = (ROOT / "examples" / "swarm_torchrun.py").read_text().splitlines()
    body = "\n".join(line.removeprefix("    ") for line in lines) + "\n"
    assert "swarm.finalize()" in shown and shown in body


def test_readme_links_to_files_that_exist() -> None:
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert local, "the README links to no docs page"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing
