"""The docs match the code: command reference, --help texts, config.xml example, metrics
catalogue, the docs/ site's nav and links, the README's links, contrib/ units and cron.

docs/commands.md is every command's ``--help`` as printed at 100 columns, and
the complete example in docs/config.md is what ``netmetrix config init``
writes.  After changing a command or the example config, refresh both with::

    .venv/bin/python tests/test_docs.py

The site itself is built by ``make docs`` (``mkdocs build --strict``, part of
``make test``); the tests here check what mkdocs does not: that every page is
in the nav, that the README's links land, and that the pages say what the code does.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from netmetrix.cli import cli
from netmetrix.probe import METRIC_LABELS, METRICS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
COMMANDS = DOCS / "commands.md"
CONFIG_PAGE = DOCS / "config.md"
METRICS_PAGE = DOCS / "metrics.md"
MKDOCS = ROOT / "mkdocs.yml"
CONTRIB = ROOT / "contrib"
WIDTH = 100
CRON_RE = re.compile(r"(?P<when>(?:\S+\s+){5})(?P<user>[a-z_][a-z0-9_-]*)\s+(?P<command>.+)")
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "2>&1", "<"}
# [text](target): the links of a Markdown page (not images, not inside code spans)
LINK_RE = re.compile(r"(?<![!`])\[[^\]]*\]\(([^)\s]+)\)")
NAV_PAGE_RE = re.compile(r"^\s*-\s+(?:[^:\n]+:\s+)?(\S+\.md)\s*$", re.MULTILINE)
CONFIG_EXAMPLE_RE = re.compile(r"(## A complete example\n.*?```xml\n)(.*?)(```\n)", re.DOTALL)


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
    """docs/commands.md: every command's --help, generated."""
    parts = [
        "# Commands\n\n"
        "Every command's `--help`, as printed (generated: `.venv/bin/python tests/test_docs.py`\n"
        "refreshes this page, and a test fails when it is out of date). Every command takes\n"
        "`--help`; the options of `netmetrix` itself (`--config`, `-v`, `-q`, `--debug`)\n"
        "go before the command.\n"
    ]
    for path, _command in commands():
        title = " ".join(("netmetrix", *path))
        parts.append(f"\n## `{title}`\n\n```text\n{help_text(path).rstrip()}\n```\n")
    return "".join(parts)


def config_example() -> str:
    """What ``netmetrix config init`` writes."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory, "config.xml")
        result = CliRunner().invoke(cli, ["config", "init", str(path)], prog_name="netmetrix")
        assert result.exit_code == 0, result.output
        return path.read_text(encoding="utf-8")


def pages() -> list[Path]:
    """Every Markdown page of the site."""
    return sorted(DOCS.glob("*.md"))


def links(path: Path) -> list[str]:
    """The link targets of a Markdown page, outside fenced code blocks."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return LINK_RE.findall(text)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub and MkDocs both make it for the headings used here."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"\s+", "-", text)


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


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


def test_command_reference_matches_help() -> None:
    found = COMMANDS.read_text(encoding="utf-8")
    for path, _command in commands():
        assert f"## `{' '.join(('netmetrix', *path))}`" in found, path
    assert found == reference(), (
        "docs/commands.md is out of date: run `.venv/bin/python tests/test_docs.py`"
    )


def test_command_lines_parse() -> None:
    """Every `$ netmetrix ...` line in the README and docs/ is a command line the CLI accepts."""
    for path in (README, *pages()):
        lines = [
            line.strip()[2:]
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip().startswith("$ netmetrix ")
        ]
        assert path != README or len(lines) > 10
        for line in lines:
            code, output = parses(netmetrix_args(line))
            assert code == 0, f"{path.name}: `{line}` does not parse:\n{output}"


# ---------------------------------------------------------------- what the pages say


def test_config_page_shows_what_config_init_writes() -> None:
    match = CONFIG_EXAMPLE_RE.search(CONFIG_PAGE.read_text(encoding="utf-8"))
    assert match, "docs/config.md has no ```xml block under ## A complete example"
    assert match[2] == config_example(), (
        "docs/config.md's example is not what `config init` writes:"
        " run `.venv/bin/python tests/test_docs.py`"
    )


def table_names(path: Path) -> set[str]:
    """The names in backquotes in the first column of a page's tables: `host`, `<ssh>`..."""
    cells = re.findall(r"^\| ([^|]+) \|", path.read_text(encoding="utf-8"), flags=re.M)
    code = " ".join(re.findall(r"`([^`]+)`", " ".join(cells)))
    return set(re.findall(r"<\w+>|\w+", code))


def test_config_page_describes_every_element_and_attribute() -> None:
    """Every element and attribute config.xml takes has a table row (<alert>'s in alerts.md)."""
    from netmetrix import config

    in_config, in_alerts = table_names(CONFIG_PAGE), table_names(DOCS / "alerts.md")
    for element in config._ROOT_CHILDREN:
        assert f"<{element}>" in in_config, f"<{element}> has no row in docs/config.md"
    example = re.sub(r"<!--.*?-->|<\?.*?\?>", "", config_example(), flags=re.S)
    written = set(re.findall(r"\s([a-z_]+)=\"", example))
    attributes = {*config._SSH_ATTRS, *config._SMTP_ATTRS, *config._HOST_ATTRS, *written}
    assert attributes - set(config._ALERT_ATTRS) - in_config == set()
    assert set(config._ALERT_ATTRS) - in_alerts == set()


def test_metrics_page_matches_the_catalogue() -> None:
    """docs/metrics.md has one row per metric the probe reports: labels, unit, kind, help."""
    rows = {}
    for line in METRICS_PAGE.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"`\w+`", cells[0]):
            rows[cells[0].strip("`")] = cells[1:]
    assert list(rows) == [name for name, *_ in METRICS] + ["up"]
    for name, unit, kind, text in METRICS:
        labels = ", ".join(f"`{label}`" for label in METRIC_LABELS.get(name, ()))
        assert rows[name] == [labels, unit, kind, text], name


# ---------------------------------------------------------------- the site and the README


def test_every_page_is_in_the_nav() -> None:
    nav = NAV_PAGE_RE.findall(MKDOCS.read_text(encoding="utf-8"))
    assert sorted(nav) == sorted(path.name for path in pages())
    assert len(nav) == len(set(nav)), "a page is twice in the nav"


def test_readme_links_land() -> None:
    """Every relative link in the README names a file that exists, and a heading there."""
    targets = links(README)
    assert any(target.startswith("docs/") for target in targets)
    for target in targets:
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        path = ROOT / file if file else README
        assert path.exists(), f"README.md links to {file}, which does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"README.md links to {target}: no such heading"


def test_readme_points_to_every_page() -> None:
    """The README's way into the reference: a link to every page of the site."""
    linked = {target.partition("#")[0] for target in links(README)}
    for path in pages():
        assert f"docs/{path.name}" in linked, f"README.md has no link to docs/{path.name}"


def test_site_builds_strict_and_fails_on_a_broken_link(tmp_path: Path) -> None:
    """`make docs` fails on a link to a missing heading (mkdocs.yml's validation settings)."""
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(MKDOCS, tmp_path / "mkdocs.yml")
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", "out"]
    ok = subprocess.run(build, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out" / "commands.html").is_file()
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


def _write_generated() -> None:
    COMMANDS.write_text(reference(), encoding="utf-8")
    print(f"{COMMANDS}: command reference written", file=sys.stderr)
    text = CONFIG_PAGE.read_text(encoding="utf-8")
    CONFIG_PAGE.write_text(
        CONFIG_EXAMPLE_RE.sub(lambda m: m[1] + config_example() + m[3], text, count=1),
        encoding="utf-8",
    )
    print(f"{CONFIG_PAGE}: config init example written", file=sys.stderr)


if __name__ == "__main__":
    _write_generated()


def test_systemd_watch_service_runs_watch_hardened() -> None:
    unit = _unit("netmetrix-watch.service")
    service = unit["Service"]
    exec_start = service["ExecStart"]
    assert exec_start.split()[0].startswith("/"), "systemd needs an absolute path"
    code, output = parses(netmetrix_args(exec_start))
    assert code == 0, output
    assert output.startswith("Usage: netmetrix watch "), output
    assert service["Restart"] == "on-failure"
    assert (service["NoNewPrivileges"], service["ProtectSystem"], service["UMask"]) == (
        "yes",
        "strict",
        "0077",
    )
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    text = (CONTRIB / "netmetrix-watch.service").read_text(encoding="utf-8")
    assert f"```ini\n{text}```" in README.read_text(encoding="utf-8")  # shown verbatim
