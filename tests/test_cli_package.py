"""The shape of the CLI package: thin commands, no import back into it, no click in the core,
and no process-wide side effect for a program that calls ``main()`` in-process."""

from __future__ import annotations

import ast
import gc
import inspect
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Run
from test_docs import commands

from netmetrix.cli._common import GC_THRESHOLDS
from netmetrix.errors import ExitStatus

Cli = Callable[..., Run]
SRC = Path(__file__).resolve().parent.parent / "src" / "netmetrix"
MAX_BODY = 15  # lines of a command's body, its docstring aside
# Modules that must not pull in click or rich when imported (the core, below the CLI)
CORE = [
    *("netmetrix.format", "netmetrix.alerts", "netmetrix.store", "netmetrix.config"),
    *("netmetrix.notice", "netmetrix.pipeline", "netmetrix.model", "netmetrix.plot"),
    "netmetrix.collect",
]
NOT_SET_UP = """<netmetrix>
  <database>netmetrix.db</database>
  <hosts><host name="f4" address="192.0.2.4"/></hosts>
</netmetrix>
"""


def body_lines(function: Callable[..., object]) -> int:
    """Lines from the first statement after the docstring to the end of the function."""
    source = textwrap.dedent(inspect.getsource(inspect.unwrap(function)))
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef)
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    if not body:
        return 0
    return (body[-1].end_lineno or body[-1].lineno) - body[0].lineno + 1


COMMANDS = {" ".join(("netmetrix", *p)): c for p, c in commands() if c.callback is not None}


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_body_is_short(name: str) -> None:
    """Parse, call the library, render: the work is in library functions."""
    callback = COMMANDS[name].callback
    assert callback is not None
    assert body_lines(callback) <= MAX_BODY


def test_no_module_imports_back_into_the_cli_package() -> None:
    """Command modules share ``netmetrix.cli._common``; only the entry points import the
    package itself (``__init__``: the main group and ``main``)."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path in (SRC / "__main__.py", SRC / "cli" / "__init__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module is not None:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            if "netmetrix.cli" in names:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_neither_click_nor_rich(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'click', 'rich'}))"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert ran.stdout == "[]\n", ran.stderr


def test_main_in_process_leaves_the_garbage_collector_alone(tmp_path: Path, netmetrix: Cli) -> None:
    """``gc.freeze()`` and the GC thresholds are for a netmetrix process of its own, not for
    a program (here: pytest) that runs ``main([...])``: the objects of its own would never
    be collected again."""
    config = tmp_path / "config.xml"
    config.write_text(NOT_SET_UP)
    frozen, threshold = gc.get_freeze_count(), gc.get_threshold()
    ran = netmetrix("--config", config, "execute")  # no key stored: no host is dialled
    assert ran.code == ExitStatus.HOST_FAILED, ran.err
    assert "execute: 1 not set up in " in ran.err
    assert gc.get_freeze_count() == frozen
    assert gc.get_threshold() == threshold
    assert gc.isenabled()


def test_the_console_script_freezes_the_startup_objects(tmp_path: Path) -> None:
    """Run as the console script does (``main()``, arguments from sys.argv): no GC during
    the heavy imports, frozen once they are done, before the fleet runs, and the young
    generation collected less often (bench/RESULTS.md, #15: less GC time)."""
    config = tmp_path / "config.xml"
    config.write_text(NOT_SET_UP)
    code = (
        "import gc, sys\n"
        "from netmetrix.cli import main\n"
        "early = []  # collections once the heavy imports began, before the freeze\n"
        "def note(phase, info):\n"
        "    if phase == 'start' and 'netmetrix.collect' in sys.modules:\n"
        "        early.append(gc.get_freeze_count() == 0)\n"
        "gc.callbacks.append(note)\n"
        f"sys.argv = ['netmetrix', '--config', {str(config)!r}, 'execute']\n"
        "status = main()\n"
        "print(status, gc.get_freeze_count() > 0, gc.get_threshold(), gc.isenabled(),"
        " sum(early))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    # No collection during the heavy imports (their objects live as long as the process);
    # then the GC is on again, its young generations collected less often (fleet runs
    # leave asyncssh's cycles).
    assert ran.stdout == f"1 True {GC_THRESHOLDS} True 0\n", ran.stderr


# What `execute` on SQLite needs none of: migrations (the store is at head), the other
# database, output libraries (no terminal here), the web stack, the demo's mail server.
NOT_FOR_EXECUTE = (
    "alembic",
    "sqlalchemy.dialects.postgresql",
    "psycopg",
    "rich",
    "plotext",
    "starlette",
    "uvicorn",
    "jinja2",
    "prometheus_client",
    "aiosmtpd",
)


def test_execute_imports_only_what_it_needs(tmp_path: Path) -> None:
    """Start-up CPU is mostly imports (#15): `execute` on an SQLite store at head imports
    neither alembic nor PostgreSQL's dialect, rich, the web stack..."""
    config = tmp_path / "config.xml"
    config.write_text(NOT_SET_UP)
    code = (
        "import sys\n"
        "from netmetrix.cli import main\n"
        f"sys.argv = ['netmetrix', '--config', {str(config)!r}, 'execute']\n"
        "status = main()\n"
        f"print(status, sorted(m for m in {NOT_FOR_EXECUTE!r} if m in sys.modules))\n"
    )

    def run() -> str:
        ran = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
        )
        return ran.stdout

    assert "'alembic'" in run()  # a new store: its schema is made by the migrations
    assert run() == "1 []\n"  # at head
