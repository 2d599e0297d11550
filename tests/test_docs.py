"""The docs match the code: README command reference, --help texts, the docs/ site, contrib/.

The README's "## Command reference" is every command's ``--help`` as printed
at 100 columns.  After changing a command, refresh it with::

    .venv/bin/python tests/test_docs.py
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from netmetrix.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MKDOCS = ROOT / "mkdocs.yml"
CONTRIB = ROOT / "contrib"
REFERENCE = "## Command reference"
WIDTH = 100
CRON_RE = re.compile(r"(?P<when>(?:\S+\s+){5})(?P<user>[a-z_][a-z0-9_-]*)\s+(?P<command>.+)")
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "2>&1", "<"}
NAV_PAGE_RE = re.compile(r"^\s*-\s+(?:[^:\n]+:\s+)?(\S+\.md)\s*$", re.MULTILINE)


def commands(
    command: click.Command = cli, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command in the click tree, the root first, subcommands by name."""
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from commands(command.commands[name], (*path, name))


def help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="netmetrix", terminal_width=WIDTH)
    assert result.exit_code == 0, result.output
    return result.output


def reference() -> str:
    """The README's command reference section, generated from --help."""
    parts = [
        f"{REFERENCE}\n\n"
        "Every command's `--help`, as printed (generated: `.venv/bin/python tests/test_docs.py`\n"
        "refreshes it, and a test fails when it is out of date). Every command takes\n"
        "`--help`; the options of `netmetrix` itself (`--config`, `-v`, `-q`, `--debug`)\n"
        "go before the command.\n"
    ]
    for path, _command in commands():
        title = " ".join(("netmetrix", *path))
        parts.append(f"\n### `{title}`\n\n```text\n{help_text(path).rstrip()}\n```\n")
    return "".join(parts)


def pages() -> list[Path]:
    """Every Markdown page of the site."""
    return sorted(DOCS.glob("*.md"))


def readme_reference(text: str) -> str:
    start = text.find(f"\n{REFERENCE}\n")
    if start < 0:
        return ""
    end = text.find("\n## ", start + 1)
    return text[start + 1 : end + 1 if end >= 0 else len(text)]


def parses(args: list[str]) -> tuple[int, str]:
    """Exit status and output of ``netmetrix ARGS --help``: 0 iff the command line parses."""
    result = CliRunner().invoke(cli, [*args, "--help"], prog_name="netmetrix", terminal_width=WIDTH)
    return result.exit_code, result.output


def netmetrix_args(command: str) -> list[str]:
    """The arguments after `netmetrix` in a shell command line, up to a pipe or redirect."""
    words = shlex.split(command, comments=True)
    start = next(i for i, w in enumerate(words) if Path(w).name == "netmetrix")
    args = []
    for word in words[start + 1 :]:
        if word in SHELL_OPERATORS:
            break
        args.append(word)
    return args


# ---------------------------------------------------------------- help


def test_every_command_has_a_summary_and_examples() -> None:
    for path, command in commands():
        name = " ".join(("netmetrix", *path))
        summary = command.get_short_help_str(limit=1000)
        assert summary, f"{name}: no help"
        assert summary.endswith("."), f"{name}: summary should be one sentence: {summary!r}"
        assert (command.help or "").splitlines()[0] == summary, f"{name}: summary not one line"
        shown = help_text(path)
        examples = re.search(r"\n  Examples:\n((?:    .*\n)+)", shown)
        assert examples, f"{name}: --help has no indented Examples block (use \\b):\n{shown}"
        for line in examples[1].splitlines():
            assert re.match(r"(\w+=\S* )*netmetrix ", line.strip()), f"{name}: example {line!r}"
            code, output = parses(netmetrix_args(line))
            assert code == 0, f"{name}: example {line.strip()!r} does not parse:\n{output}"


def test_readme_command_reference_matches_help() -> None:
    text = README.read_text(encoding="utf-8")
    found = readme_reference(text)
    assert found, f"README.md has no {REFERENCE!r} section"
    for path, _command in commands():
        assert f"### `{' '.join(('netmetrix', *path))}`" in found, path
    assert found == reference(), (
        "README.md's command reference is out of date: run `.venv/bin/python tests/test_docs.py`"
    )


def test_readme_command_lines_parse() -> None:
    """Every `$ netmetrix ...` line in the README is a command line the CLI accepts."""
    lines = [
        line.strip()[2:]
        for line in README.read_text(encoding="utf-8").splitlines()
        if line.strip().startswith("$ netmetrix ")
    ]
    assert len(lines) > 10
    for line in lines:
        code, output = parses(netmetrix_args(line))
        assert code == 0, f"README: `{line}` does not parse:\n{output}"


# ---------------------------------------------------------------- the docs/ site


def test_every_page_is_in_the_nav() -> None:
    nav = NAV_PAGE_RE.findall(MKDOCS.read_text(encoding="utf-8"))
    assert sorted(nav) == sorted(path.name for path in pages())
    assert len(nav) == len(set(nav)), "a page is twice in the nav"


def test_site_builds_strict_and_fails_on_a_broken_link(tmp_path: Path) -> None:
    """`make docs` fails on a link to a missing heading (mkdocs.yml's validation settings)."""
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(MKDOCS, tmp_path / "mkdocs.yml")
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", "out"]
    ok = subprocess.run(build, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out" / "index.html").is_file()
    with (tmp_path / "docs" / "index.md").open("a", encoding="utf-8") as page:
        page.write("\nSee [the plans](store-plans.md#no-such-heading).\n")
    broken = subprocess.run(build, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert broken.returncode != 0
    assert "does not contain an anchor '#no-such-heading'" in broken.stderr


# ---------------------------------------------------------------- contrib/


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string((CONTRIB / name).read_text(encoding="utf-8"), source=name)
    return parser


def test_systemd_service_runs_a_real_command() -> None:
    unit = _unit("netmetrix.service")
    assert unit["Service"]["Type"] == "oneshot"
    exec_start = unit["Service"]["ExecStart"]
    assert exec_start.split()[0].startswith("/"), "systemd needs an absolute path"
    args = netmetrix_args(exec_start)
    code, output = parses(args)
    assert code == 0, output
    assert output.startswith("Usage: netmetrix execute "), output
    assert f"ExecStart={exec_start}" in README.read_text(encoding="utf-8")


def test_systemd_timer_starts_the_service_every_minute() -> None:
    unit = _unit("netmetrix.timer")
    assert unit["Timer"]["OnCalendar"] == "*-*-* *:*:00"
    assert unit.get("Timer", "Unit", fallback="netmetrix.service") == "netmetrix.service"
    assert unit["Install"]["WantedBy"] == "timers.target"
    readme = README.read_text(encoding="utf-8")
    for section in unit.sections():
        for key, value in unit[section].items():
            assert f"{key}={value}" in readme, f"README lacks the timer's {key}={value}"


def test_cron_line_runs_a_real_command_every_minute() -> None:
    lines = [
        line
        for line in (CONTRIB / "netmetrix.cron").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(lines) == 1
    match = CRON_RE.fullmatch(lines[0])
    assert match, lines[0]
    assert match["when"].split() == ["*"] * 5
    code, output = parses(netmetrix_args(match["command"]))
    assert code == 0, output
    assert output.startswith("Usage: netmetrix execute "), output
    assert lines[0] in README.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("netmetrix -q execute 2>&1 | logger", ["-q", "execute"]),
        ("flock -n /x /usr/bin/netmetrix hosts # c", ["hosts"]),
    ],
)
def test_netmetrix_args(command: str, args: list[str]) -> None:
    assert netmetrix_args(command) == args


def _write_reference() -> None:
    text = README.read_text(encoding="utf-8")
    old = readme_reference(text)
    new = reference()
    text = text.replace(old, new) if old else text.rstrip("\n") + "\n\n" + new
    README.write_text(text, encoding="utf-8")
    print(f"{README}: command reference written", file=sys.stderr)


if __name__ == "__main__":
    _write_reference()
