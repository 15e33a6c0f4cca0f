"""The folders are the plan: the import direction between nosync's subpackages, read from the
code (every ``import`` and ``from ... import``, at module level or inside functions).

Layers, lowest first: ``errors`` < ``files`` < ``user`` < ``core`` < ``data`` < ``run`` <
``launch`` < ``tools`` < ``integrations`` < ``cli``.  A module imports only its own layer and
those below; ``core`` never sees a run, its configuration, the launcher or the tools; nothing
imports the command line; no two modules import each other, directly or round a longer cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
LAYERS = ["errors", "files", "user", "core", "data", "run", "launch", "tools", "integrations"]
LAYERS += ["cli"]
# modules of the package root that are not layers of their own
ROOT_MODULES = {"nosync", "nosync.__main__", "nosync._moved"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every nosync module ``path`` imports (``from a import b`` counts ``a.b`` if it is one)."""
    name, found = module_name(path), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}
    modules = {module_name(p) for p in SRC.rglob("*.py")}
    return {m for m in found if m in modules and m != name}


GRAPH = {module_name(p): imports(p) for p in sorted(SRC.rglob("*.py"))}


def layer(module: str) -> str | None:
    if module in ROOT_MODULES:
        return None
    return module.split(".")[1]


def test_every_module_belongs_to_a_layer() -> None:
    assert {layer(m) for m in GRAPH} - {None} <= set(LAYERS), sorted(GRAPH)


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if layer(m) is not None))
def test_a_module_imports_only_its_layer_and_those_below(module: str) -> None:
    mine = LAYERS.index(layer(module))
    above = {m for m in GRAPH[module] if layer(m) is not None and LAYERS.index(layer(m)) > mine}
    assert not above, f"{module} imports {sorted(above)}, above its layer {layer(module)!r}"


def test_core_imports_nothing_but_itself_and_errors() -> None:
    core = {m: GRAPH[m] for m in GRAPH if layer(m) == "core"}
    outside = {
        m: sorted(d for d in ds if layer(d) not in ("core", "errors")) for m, ds in core.items()
    }
    assert not any(outside.values()), {m: d for m, d in outside.items() if d}


def test_nothing_imports_the_command_line() -> None:
    users = [m for m, deps in GRAPH.items() if "nosync.cli" in deps and m != "nosync.__main__"]
    assert not users, users


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a package importing its own submodules is not one)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):  # a package's __init__ and its own modules
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles() -> None:
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_command_line_starts_without_torch() -> None:
    """``nosync``'s command line imports torch only once a command runs, so a Ctrl+C while it
    loads is one line (a package's lazy names must not pull torch in on the way)."""
    import subprocess
    import sys

    code = "import sys, nosync.cli; print(sorted(m for m in sys.modules if m.startswith('torch')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
