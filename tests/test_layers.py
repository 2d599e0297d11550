"""The layers a newcomer can see (#12): what the core imports, and no import cycle.

The import graph is read from the source with ``ast``, every import counted
(module level, inside functions, under ``TYPE_CHECKING``), so an import
hidden in a function cannot close a cycle unseen.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

import netmetrix

SRC = Path(netmetrix.__file__).parent
PACKAGE = "netmetrix"

# Edges of a cycle that exists today and is being taken apart elsewhere. Each must
# still exist: delete it here once its cycle is gone.
ALLOWED_EDGES: set[tuple[str, str]] = set()  # none: keep it that way

# What importing a core module must never load: the CLI's libraries, SSH, the probe.
NOT_IN_THE_CORE = ("click", "rich", "asyncssh", "netmetrix.probe")

# What no module of the store may import, even inside a function: the store stores.
ABOVE_THE_STORE = (
    "netmetrix.alerts",
    "netmetrix.notice",
    "netmetrix.pipeline",
    "netmetrix.envelope",
    "netmetrix.probe",
    "netmetrix.config",
    "netmetrix.collect",
    "netmetrix.notify",
    "click",
    "rich",
)


def module_names(root: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file of every module under ``root`` (a package is its __init__)."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """What the module ``name`` imports: modules of ``known`` by their dotted name, and
    anything else by its top-level name.

    ``from package import module`` is an edge to that module only (Python imports the
    package first, but the package's own imports do not wait for it).
    """
    modules = set(known)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(_named(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(name, is_package, node.module, node.level)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in modules else _named(base, modules))
    found.discard(name)
    return found


def _absolute(name: str, is_package: bool, module: str | None, level: int) -> str:
    """The absolute module of ``from <level dots><module> import ...`` inside ``name``."""
    if level == 0:
        return module or ""
    parts = name.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _named(module: str, modules: set[str]) -> str:
    """``module`` itself when it is one of ours, else its top-level package."""
    return module if module in modules else module.split(".")[0]


def import_graph() -> dict[str, set[str]]:
    """Module -> the netmetrix modules it imports."""
    known = module_names()
    return {
        name: {dep for dep in imports_of(name, path, known) if dep in known}
        for name, path in known.items()
    }


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as [a, b, ..., a], or None; depth-first, in name order."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for dep in sorted(graph.get(node, ())):
            if dep in on_path:
                return [*path[path.index(dep) :], dep]
            if dep not in done and (cycle := visit(dep)) is not None:
                return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (cycle := visit(start)) is not None:
            return cycle
    return None


# -- the checks ---------------------------------------------------------------------


def test_no_import_cycle_among_netmetrix_modules() -> None:
    graph = import_graph()
    for source, target in ALLOWED_EDGES:
        assert target in graph.get(source, set()), (
            f"{source} no longer imports {target}: delete that edge from ALLOWED_EDGES"
        )
        graph[source].discard(target)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_of_the_store_imports_what_is_above_it() -> None:
    known = module_names()
    offenders = {
        name: sorted(imports_of(name, path, known).intersection(ABOVE_THE_STORE))
        for name, path in known.items()
        if name == "netmetrix.store" or name.startswith("netmetrix.store.")
    }
    assert len(offenders) > 5  # the package was found, with its modules
    assert {name: found for name, found in offenders.items() if found} == {}


@pytest.mark.parametrize("module", ["netmetrix.store", "netmetrix.alerts"])
def test_importing_a_core_module_loads_no_cli_ssh_or_probe(module: str) -> None:
    """A fresh interpreter: what this test process imported does not count."""
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert module in loaded
    unwanted = [name for name in loaded for x in NOT_IN_THE_CORE if _within(name, x)]
    assert unwanted == []


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


# -- the checker itself ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}, None),  # a diamond is fine
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
        ({"x": {"x"}}, ["x", "x"]),
    ],
)
def test_find_cycle(graph: dict[str, set[str]], cycle: list[str] | None) -> None:
    assert find_cycle(graph) == cycle


def test_imports_are_read_from_everywhere_in_a_module(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    for name in ("__init__", "a", "b", "c", "sub/__init__", "sub/d"):
        (pkg / f"{name}.py").write_text("")
    (pkg / "sub" / "d.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import click\n"
        "from pkg import a\n"
        "from pkg.sub import Thing\n"
        "from .. import b\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.c import C\n"
        "def later():\n"
        "    import sqlalchemy.dialects.postgresql\n"
    )
    known = module_names(pkg, "pkg")
    found = imports_of("pkg.sub.d", pkg / "sub" / "d.py", known)
    assert found == {"typing", "click", "pkg.a", "pkg.sub", "pkg.b", "pkg.c", "sqlalchemy"}


MAX_FUNCTION_LINES = 50  # docstring included; ruff keeps complexity <= 10
# Data, not logic: the demo's config is one builder call with every field spelled out.
LONG_BY_DESIGN = {("netmetrix.demo", "config_xml")}


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Every function of the package (migrations aside) longer than ``limit`` lines."""
    found = []
    for name, path in module_names().items():
        if ".migrations." in f"{name}.":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > limit and (name, node.name) not in LONG_BY_DESIGN:
                found.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_long() -> None:
    assert long_functions() == []


def test_long_functions_are_found() -> None:
    assert any("config_xml" not in f for f in long_functions(limit=20))
