"""The house runs one way: core -> engines -> profiles -> deploy -> entry points.

Read statically from the source (every `import`, at module level or inside a function), so a lazy
import cannot hide an arrow pointing up. Each room's opening docstring must say its job.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "supervisor"

# Rank of each room: a module may import only from rooms of equal or lower rank.
RANKS = {"core": 0, "testing": 0, "engines": 1, "profiles": 2, "deploy": 3, "entry": 4}
PLATFORMS = ("modal", "sglang")


def room_of(module: str) -> str:
    parts = module.split(".")
    if module in ("supervisor.__main__", "modal_entry"):
        return "entry"
    if len(parts) > 1 and parts[1] in ("engines", "profiles", "deploy", "testing"):
        return parts[1]
    return "core"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    # Imports only for the type checker never run: they cannot form a cycle or an arrow.
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            # `from . import x` imports the submodule x
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if (ROOT / Path(*candidate.split("."))).with_suffix(".py").exists() or (
                    ROOT / Path(*candidate.split(".")) / "__init__.py"
                ).exists():
                    found.add(candidate)
    return found


def all_modules() -> dict[str, Path]:
    mods = {module_name(p): p for p in PKG.rglob("*.py")}
    mods["modal_entry"] = ROOT / "modal_entry.py"
    return mods


MODULES = all_modules()


def violations(name: str, targets: set[str]) -> list[str]:
    """Every upward arrow from module `name` to the modules it imports."""
    me, found = room_of(name), []
    for target in sorted(targets):
        top = target.split(".")[0]
        if top == "modal" and me != "entry":
            found.append(f"{name} imports the platform {target}; only entry points may")
        if top == "sglang" and me not in ("engines", "entry"):
            found.append(f"{name} imports {target}; only the SGLang edge (engines) may")
        if top not in ("supervisor", "modal_entry"):
            continue
        there = room_of(target)
        if RANKS[there] > RANKS[me] or (me == "testing" and there not in ("core", "testing")):
            found.append(f"{name} ({me}) imports {target} ({there}): an arrow pointing up")
    return found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name: str) -> None:
    assert violations(name, imports_of(MODULES[name])) == []


def test_the_rule_catches_upward_arrows() -> None:
    assert violations("supervisor._cli", {"supervisor.deploy.commands"})
    assert violations("supervisor.engines.sglang", {"supervisor.profiles"})
    assert violations("supervisor._supervisor", {"sglang"})
    assert violations("supervisor.deploy.lifecycle", {"modal"})
    assert violations("supervisor.testing.fake_sglang", {"supervisor.engines.sglang"})
    assert not violations("supervisor.deploy.lifecycle", {"supervisor.profiles", "anyio"})


def test_no_import_cycles_between_modules() -> None:
    graph = {
        name: {t for t in imports_of(path) if t in MODULES and t != name}
        for name, path in MODULES.items()
    }
    # A package's __init__ importing its own submodules is how a package works: not a cycle.
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_opens_with_a_docstring(name: str) -> None:
    tree = ast.parse(MODULES[name].read_text())
    doc = ast.get_docstring(tree)
    assert doc and len(doc) > 20, f"{name} has no opening docstring saying its job"


def _class_bases() -> dict[str, tuple[str, list[str]]]:
    """Every class defined in the package: `module.Class` -> (module, the base names it lists)."""
    found: dict[str, tuple[str, list[str]]] = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b).rpartition(".")[2] for b in node.bases]
                found[f"{name}.{node.name}"] = (name, bases)
    return found


def inheritance_depths(classes: dict[str, tuple[str, list[str]]]) -> dict[str, int]:
    """How many of the package's own classes stand above each class (exceptions left out:
    an exception tree is the one place a hierarchy is the point)."""
    by_short: dict[str, list[str]] = {}
    for qualified in classes:
        by_short.setdefault(qualified.rpartition(".")[2], []).append(qualified)
    exceptions = {"BaseException", "Exception", "ValueError", "RuntimeError", "OSError"}

    def is_exception(cls: str, seen: frozenset[str] = frozenset()) -> bool:
        for base in classes[cls][1]:
            if base in exceptions or base.endswith(("Error", "Exception")):
                return True
            for parent in by_short.get(base, []):
                if parent not in seen and is_exception(parent, seen | {cls}):
                    return True
        return False

    def depth(cls: str, seen: frozenset[str] = frozenset()) -> int:
        parents = [p for b in classes[cls][1] for p in by_short.get(b, []) if p not in seen]
        return max((1 + depth(p, seen | {cls}) for p in parents), default=0)

    return {c: depth(c) for c in classes if not is_exception(c)}


def test_no_class_stands_on_a_ladder_of_the_packages_own_classes() -> None:
    """Composition over inheritance: a class built from a ladder of base classes is read in MRO
    order across files. One level (a Protocol's implementation, a sink) is the most allowed."""
    deep = {c: d for c, d in inheritance_depths(_class_bases()).items() if d > 1}
    assert deep == {}


def test_the_ladder_rule_catches_a_ladder() -> None:
    classes = {
        "m.A": ("m", []),
        "m.B": ("m", ["A"]),
        "m.C": ("m", ["B"]),
        "m.E": ("m", ["ValueError"]),
        "m.F": ("m", ["E"]),
        "m.G": ("m", ["F"]),
    }
    assert inheritance_depths(classes) == {"m.A": 0, "m.B": 1, "m.C": 2}


def private_imports(name: str, targets: set[str]) -> list[str]:
    """Private core modules imported from outside the core: the rooms above it use the front
    door, `supervisor.lowlevel` and `supervisor.cli` only, so the core can move its furniture."""
    if room_of(name) == "core" or name.startswith("supervisor.testing.fake_sglang"):
        return []  # the fake is a program of its own; it imports nothing of the supervisor
    return [
        f"{name} imports the private {t}"
        for t in sorted(targets)
        if t.startswith("supervisor._") and t != "supervisor.__main__"
    ]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_upper_rooms_import_no_private_module(name: str) -> None:
    assert private_imports(name, imports_of(MODULES[name])) == []


def test_the_private_import_rule_catches_one() -> None:
    assert private_imports("supervisor.deploy.lifecycle", {"supervisor._supervisor"})
    assert not private_imports("supervisor.deploy.lifecycle", {"supervisor.lowlevel"})
    assert not private_imports("supervisor._cli", {"supervisor._supervisor"})


def test_the_front_door_is_small() -> None:
    """What running a server takes, and no more; the rest is `lowlevel` and `cli`."""
    import supervisor
    import supervisor.cli
    import supervisor.lowlevel

    assert len(supervisor.__all__) <= 45
    for module in (supervisor, supervisor.lowlevel, supervisor.cli):
        assert sorted(module.__all__) == sorted(set(module.__all__))
        for public in module.__all__:
            assert hasattr(module, public), f"{module.__name__}.{public}"
    assert not set(supervisor.__all__) & set(supervisor.lowlevel.__all__)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_holds_two_jobs_by_its_length(name: str) -> None:
    """A file past ~400 lines usually holds two jobs (the developers' guide)."""
    lines = MODULES[name].read_text().count("\n")
    assert lines <= 400, f"{name} has {lines} lines: split it by concern"
