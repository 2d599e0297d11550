"""hosts, metrics, config and db commands, in every format, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import inspect
import io
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import pytest
import sshd
from conftest import Fleet, Run, line_of, sample

from netmetrix import pipeline
from netmetrix.cli import cli
from netmetrix.config import load_config
from netmetrix.configxml import SMTP, SSH, Alert, ConfigXml, Host, render
from netmetrix.example_config import EXAMPLE_CONFIG
from netmetrix.model import HostRun, Sample
from netmetrix.store import Store

Cli = Callable[..., Run]

T0 = 1795557294.757  # 2026-11-24T21:54:54.757Z
ISO0 = "2026-11-24T21:54:54.757Z"
ISO1 = "2026-11-24T21:53:54.757Z"  # T0 - 60

F4 = Host(name="f4", address="192.0.2.4", user="monitor")


def config_text(database: str, f4: Host = F4) -> str:
    """A config.xml with three hosts (f4 as given) and an SMTP login."""
    return render(
        ConfigXml(
            database=database,
            smtp=SMTP(user="mailer", password_env="NMX_TEST_SMTP_PASSWORD"),
            hosts=[f4, Host(name="f5"), Host(name="never", address="192.0.2.9")],
        )
    )


@dataclass
class Env:
    config: Path
    url: str
    run: Cli

    def __call__(self, *args: str) -> Run:
        return self.run("--config", self.config, *args)

    def store(self) -> Store:
        return Store.open(self.url)


def host_run(host: str, ts: float, *samples: Sample, ok: bool = True, **kw: Any) -> HostRun:
    address = "192.0.2.4" if host == "f4" else host
    return HostRun(
        host=host, address=address, ts=ts, ok=ok, probe_version="1.0", samples=samples, **kw
    )


def fill(store: Store, t0: float = T0) -> None:
    store.record_runs(
        [
            host_run(
                "f4",
                t0 - 60,
                sample("disk_percent", 38.25, mount="/"),
                sample("disk_percent", 71.0, mount="/var"),
                sample("load1", 0.5),
                collector="c2 (2/2)",
            ),
            host_run("f5", t0 - 60, sample("load1", 2.0), collector="c2 (2/2)"),
        ]
    )
    store.record_runs(
        [
            host_run(
                "f4",
                t0,
                sample("disk_percent", 38.5, mount="/"),
                sample("disk_percent", 72.0, mount="/var"),
                sample("load1", 1.25),
                collector="c1 (1/2)",
            ),
            # no collector named: the row keeps the last one (as runs before #15 did)
            HostRun(host="f5", address="f5", ts=t0, ok=False, error="timeout after 10s (connect)"),
        ]
    )


@pytest.fixture
def env(tmp_path: Path, store_url: str, netmetrix: Cli) -> Env:
    config = tmp_path / "config.xml"
    config.write_text(config_text(store_url))
    return Env(config=config, url=store_url, run=netmetrix)


@pytest.fixture
def filled(env: Env) -> Env:
    with env.store() as store:
        fill(store)
    return env


def ok(run: Run) -> str:
    assert (run.code, run.err) == (0, "")
    return run.out


def usage_error(run: Run) -> str:
    assert run.code == 2, run
    assert run.out == ""
    return run.err


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


# -- hosts ----------------------------------------------------------------------


def test_hosts_table(filled: Env) -> None:
    assert ok(filled("hosts")) == (
        "host   address    port  last_seen                 last_error"
        "                   probe_version  up  collector\n"
        f"f4     192.0.2.4  22    {ISO0}                               1.0            1"
        "   c1 (1/2)\n"
        f"f5     f5         22    {ISO1}  timeout after 10s (connect)  1.0            0"
        "   c2 (2/2)\n"
        "never  192.0.2.9  22\n"
    )


def test_hosts_json_and_csv(filled: Env) -> None:
    expected = [
        {
            "host": "f4",
            "address": "192.0.2.4",
            "port": 22,
            "last_seen": ISO0,
            "last_error": None,
            "probe_version": "1.0",
            "up": 1,
            "collector": "c1 (1/2)",
        },
        {
            "host": "f5",
            "address": "f5",
            "port": 22,
            "last_seen": ISO1,
            "last_error": "timeout after 10s (connect)",
            "probe_version": "1.0",
            "up": 0,
            "collector": "c2 (2/2)",
        },
        {
            "host": "never",
            "address": "192.0.2.9",
            "port": 22,
            "last_seen": None,
            "last_error": None,
            "probe_version": None,
            "up": None,
            "collector": None,
        },
    ]
    assert json.loads(ok(filled("hosts", "--format", "json"))) == expected
    assert csv_rows(ok(filled("hosts", "--format", "csv"))) == [
        ["host", "address", "port", "last_seen", "last_error", "probe_version", "up", "collector"],
        ["f4", "192.0.2.4", "22", ISO0, "", "1.0", "1", "c1 (1/2)"],
        ["f5", "f5", "22", ISO1, "timeout after 10s (connect)", "1.0", "0", "c2 (2/2)"],
        ["never", "192.0.2.9", "22", "", "", "", "", ""],
    ]


def test_hosts_before_any_run_lists_the_configured_hosts(env: Env) -> None:
    assert json.loads(ok(env("hosts", "--format", "json")))[1] == {
        "host": "f5",
        "address": "f5",
        "port": 22,
        "last_seen": None,
        "last_error": None,
        "probe_version": None,
        "up": None,
        "collector": None,
    }
    assert ok(env("hosts")).splitlines()[1:] == [
        "f4     192.0.2.4  22",
        "f5     f5         22",
        "never  192.0.2.9  22",
    ]


def test_hosts_port_is_config_xml_then_ssh_config_then_22(env: Env, isolated_home: Path) -> None:
    env.config.write_text(config_text(env.url, replace(F4, user=None, port=2200)))
    (isolated_home / ".ssh").mkdir()
    (isolated_home / ".ssh" / "config").write_text(
        "Host f4 f5\n  Port 2222\n"  # f4's port="2200" in config.xml wins
    )
    ports = {r["host"]: r["port"] for r in json.loads(ok(env("hosts", "--format", "json")))}
    assert ports == {"f4": 2200, "f5": 2222, "never": 22}
    (isolated_home / ".ssh" / "config").write_text("Host f5\n  Port nope\n")
    ports = {r["host"]: r["port"] for r in json.loads(ok(env("hosts", "--format", "json")))}
    assert ports == {"f4": 2200, "f5": None, "never": 22}  # f5 unknown: not made up


@pytest.mark.sshd
def test_hosts_shows_the_port_execute_uses(
    fleet: Fleet, netmetrix: Cli, test_user: sshd.User, user_dir: Path, isolated_home: Path
) -> None:
    port = fleet.farm.servers[1].port
    (isolated_home / ".ssh").mkdir()
    (isolated_home / ".ssh" / "config").write_text(
        f"Host farmhost\n  HostName 127.0.0.1\n  Port {port}\n  User {test_user.name}\n"
    )
    entry = fleet.host("farmhost", 1, directory=str(user_dir / "p"), python=test_user.python)
    for attr in ("address", "port", "user"):
        del entry[attr]  # all from ~/.ssh/config
    fleet.write()
    [row] = json.loads(ok(netmetrix("--config", fleet.config, "hosts", "--format", "json")))
    assert (row["address"], row["port"]) == ("farmhost", port)
    for verb in ("upload", "execute"):
        ran = netmetrix("--config", fleet.config, verb)
        assert ran.code == 0, ran.err
    [row] = json.loads(ok(netmetrix("--config", fleet.config, "hosts", "--format", "json")))
    assert (row["port"], row["up"]) == (port, 1)


# -- metrics latest ---------------------------------------------------------------


def test_latest_table(filled: Env) -> None:
    assert ok(filled("metrics", "latest", "-h", "f4")) == (
        "host  metric        labels      ts                        value\n"
        f"f4    disk_percent  mount=/     {ISO0}  38.5%\n"
        f"f4    disk_percent  mount=/var  {ISO0}  72.0%\n"
        f"f4    load1                     {ISO0}  1.25\n"
        f"f4    up                        {ISO0}  1\n"
    )


EXACT = {
    "cpu_percent": 74.93908382066277,
    "mem_total_bytes": 8373223424.0,
    "net_rx_bytes_per_sec": 1258291.2,
    "uptime_sec": 1234567.89,
    "probe_duration_sec": 0.0523,
    "load1": 0.84,
    "procs_total": 82.0,
}


def test_tables_show_units_and_raw_json_csv_keep_exact_values(env: Env) -> None:
    with env.store() as store:
        store.record_runs([host_run("f4", T0, *(sample(m, v) for m, v in EXACT.items()))])
    shown = {
        line.split()[1]: line.split(maxsplit=3)[3]
        for line in ok(env("metrics", "latest", "-h", "f4")).splitlines()[1:]
    }
    assert shown == {
        "cpu_percent": "74.9%",
        "load1": "0.84",
        "mem_total_bytes": "7.8 GiB",
        "net_rx_bytes_per_sec": "1.2 MiB/s",
        "probe_duration_sec": "52.3 ms",
        "procs_total": "82",
        "up": "1",
        "uptime_sec": "14d 6h",
    }
    raw = ok(env("metrics", "latest", "-h", "f4", "--raw")).splitlines()
    assert {line.split()[1]: line.split()[3] for line in raw[1:]} == {
        **{m: str(v) for m, v in EXACT.items()},
        "mem_total_bytes": "8373223424",
        "procs_total": "82",
        "up": "1",
    }
    by_metric = {
        r["metric"]: r["value"]
        for r in json.loads(ok(env("metrics", "latest", "--format", "json")))
    }
    assert by_metric == {**EXACT, "up": 1.0}
    for fmt in ("csv", "json"):  # --raw changes nothing there
        assert ok(env("metrics", "latest", "--format", fmt, "--raw")) == ok(
            env("metrics", "latest", "--format", fmt)
        )
    rows = csv_rows(
        ok(env("metrics", "history", "-h", "f4", "-m", "cpu_percent", "--format", "csv"))
    )
    assert rows[1][-1] == "74.93908382066277"
    table = ok(env("metrics", "history", "-h", "f4", "-m", "net_rx_bytes_per_sec"))
    assert table.splitlines()[1].endswith(f"{ISO0}  1.2 MiB/s")
    table = ok(env("metrics", "history", "-h", "f4", "-m", "net_rx_bytes_per_sec", "--raw"))
    assert table.splitlines()[1].endswith(f"{ISO0}  1258291.2")


def test_latest_json_is_the_documented_sample_shape(filled: Env) -> None:
    out = ok(
        filled("metrics", "latest", "--host", "f4", "--metric", "disk_percent", "--format", "json")
    )
    assert json.loads(out) == [
        {
            "host": "f4",
            "metric": "disk_percent",
            "labels": {"mount": "/"},
            "ts": ISO0,
            "value": 38.5,
        },
        {
            "host": "f4",
            "metric": "disk_percent",
            "labels": {"mount": "/var"},
            "ts": ISO0,
            "value": 72.0,
        },
    ]
    first = json.dumps(json.loads(out)[0])
    assert first == (
        '{"host": "f4", "metric": "disk_percent", "labels": {"mount": "/"}, '
        f'"ts": "{ISO0}", "value": 38.5}}'
    )


def test_latest_csv_with_several_hosts_and_metrics(filled: Env) -> None:
    out = ok(
        filled(
            "metrics",
            "latest",
            "-h",
            "f5",
            "-h",
            "f4",
            "-m",
            "up",
            "-m",
            "load1",
            "--format",
            "csv",
        )
    )
    assert csv_rows(out) == [
        ["host", "metric", "labels", "ts", "value"],
        ["f4", "load1", "", ISO0, "1.25"],
        ["f4", "up", "", ISO0, "1"],
        ["f5", "load1", "", ISO1, "2"],
        ["f5", "up", "", ISO0, "0"],
    ]


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("table", "host  metric  labels  ts  value\n"),
        ("json", "[]\n"),
        ("csv", "host,metric,labels,ts,value\n"),
    ],
)
def test_latest_empty_results(filled: Env, fmt: str, expected: str) -> None:
    # a configured host never run, and a known metric nobody has sent
    assert ok(filled("metrics", "latest", "-h", "never", "--format", fmt)) == expected
    assert ok(filled("metrics", "latest", "-m", "swap_percent", "--format", fmt)) == expected


def test_latest_on_an_empty_store(env: Env) -> None:
    assert ok(env("metrics", "latest", "--format", "json")) == "[]\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-h", "f44"], 'unknown host "f44", did you mean "f4"?\n'),
        (["-h", "zzz"], 'unknown host "zzz"; known hosts: f4, f5, never\n'),
        (["-m", "disk_prcent"], 'unknown metric "disk_prcent", did you mean "disk_percent"?\n'),
        (
            ["-h", "f4", "-h", "nope", "-m", "lod1"],
            'unknown host "nope"; known hosts: f4, f5, never\n'
            'unknown metric "lod1", did you mean "load1"?\n',
        ),
    ],
)
def test_latest_unknown_names_exit_2(filled: Env, args: list[str], message: str) -> None:
    assert usage_error(filled("metrics", "latest", *args)) == message


def test_a_host_no_longer_configured_is_still_known_from_the_store(filled: Env) -> None:
    with filled.store() as store:
        store.record_runs([host_run("retired", T0, sample("load1", 9.0))])
    out = ok(filled("metrics", "latest", "-h", "retired", "-m", "load1", "--format", "csv"))
    assert csv_rows(out)[1] == ["retired", "load1", "", ISO0, "9"]


# -- metrics history --------------------------------------------------------------


def test_history_table_of_one_series(filled: Env) -> None:
    out = ok(filled("metrics", "history", "-h", "f4", "-m", "disk_percent", "--labels", "mount=/"))
    assert out == (
        "host  metric        labels   ts                        value\n"
        f"f4    disk_percent  mount=/  {ISO1}  38.2%\n"
        f"f4    disk_percent  mount=/  {ISO0}  38.5%\n"
    )


def test_history_of_every_series_json_and_csv(filled: Env) -> None:
    args = ("metrics", "history", "--host", "f4", "--metric", "disk_percent")
    assert json.loads(ok(filled(*args, "--format", "json"))) == [
        {
            "host": "f4",
            "metric": "disk_percent",
            "labels": {"mount": "/"},
            "ts": ISO1,
            "value": 38.25,
        },
        {
            "host": "f4",
            "metric": "disk_percent",
            "labels": {"mount": "/var"},
            "ts": ISO1,
            "value": 71.0,
        },
        {
            "host": "f4",
            "metric": "disk_percent",
            "labels": {"mount": "/"},
            "ts": ISO0,
            "value": 38.5,
        },
        {
            "host": "f4",
            "metric": "disk_percent",
            "labels": {"mount": "/var"},
            "ts": ISO0,
            "value": 72.0,
        },
    ]
    assert csv_rows(ok(filled(*args, "--labels", "mount=/var", "--format", "csv"))) == [
        ["host", "metric", "labels", "ts", "value"],
        ["f4", "disk_percent", "mount=/var", ISO1, "71"],
        ["f4", "disk_percent", "mount=/var", ISO0, "72"],
    ]


@pytest.mark.parametrize(
    ("since", "until", "values"),
    [
        (ISO0, None, [1.25]),
        ("2026-11-24T21:53:54.757Z", "2026-11-24T21:53:54.757Z", [0.5]),  # both inclusive
        ("2026-11-24T21:53", "2026-11-24T21:54:54.756+00:00", [0.5]),  # no zone: UTC
        ("2026-11-24T22:54:54+01:00", None, [1.25]),
        ("2026-11-25", None, []),
    ],
)
def test_history_since_until_iso(
    filled: Env, since: str, until: str | None, values: list[float]
) -> None:
    args = ["metrics", "history", "-h", "f4", "-m", "load1", "--since", since, "--format", "json"]
    if until:
        args += ["--until", until]
    assert [row["value"] for row in json.loads(ok(filled(*args)))] == values


def test_history_since_a_duration_ago(env: Env) -> None:
    now = time.time()
    with env.store() as store:
        for ago in (7200, 1800, 60):
            store.record_runs([host_run("f4", now - ago, sample("load1", ago))])
    args = ("metrics", "history", "-h", "f4", "-m", "load1", "--format", "json")
    assert [r["value"] for r in json.loads(ok(env(*args, "--since", "1h")))] == [1800, 60]
    assert [r["value"] for r in json.loads(ok(env(*args, "--until", "10m")))] == [7200, 1800]
    assert [r["value"] for r in json.loads(ok(env(*args, "--since", "3h", "--until", "20m")))] == [
        7200,
        1800,
    ]
    assert [r["value"] for r in json.loads(ok(env(*args, "--since", "1d", "--until", "45m")))] == [
        7200
    ]


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_history_empty(filled: Env, fmt: str) -> None:
    out = ok(filled("metrics", "history", "-h", "never", "-m", "load1", "--format", fmt))
    assert (
        out
        == {
            "table": "host  metric  labels  ts  value\n",
            "json": "[]\n",
            "csv": "host,metric,labels,ts,value\n",
        }[fmt]
    )


def test_history_of_a_label_set_that_does_not_exist_names_the_ones_that_do(filled: Env) -> None:
    run = filled(
        "metrics",
        "history",
        "-h",
        "f4",
        "-m",
        "disk_percent",
        "--labels",
        "mount=/x",
        "--format",
        "json",
    )
    assert (run.code, run.out) == (0, "[]\n")
    assert run.err == (
        'note: host "f4" has no disk_percent series with labels mount=/x; '
        "its label sets: mount=/; mount=/var\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-h", "f4"], "Missing option '-m' / '--metric'"),
        (["-m", "load1"], "Missing option '-h' / '--host'"),
        (
            ["-h", "f*", "-h", "x*", "-m", "load1"],
            'no host matches "x*"; known hosts: f4, f5, never',
        ),
        (["-h", "f9", "-m", "load1"], 'unknown host "f9"; known hosts: f4, f5, never'),
        (["-h", "f4", "-m", "loadavg"], 'unknown metric "loadavg"'),
        (
            ["-h", "f4", "-m", "load1", "--since", "yesterday"],
            "Invalid value for '--since': 'yesterday' is neither",
        ),
        (["-h", "f4", "-m", "load1", "--until", "2026-02-30"], "Invalid value for '--until'"),
        (
            ["-h", "f4", "-m", "load1", "--labels", "mount"],
            "Invalid value for '--labels': 'mount': give name=value",
        ),
        (
            ["-h", "f4", "-m", "load1", "--since", "2026-11-25", "--until", "2026-11-24"],
            "--since 2026-11-25T00:00:00.000Z is after --until 2026-11-24T00:00:00.000Z",
        ),
        (
            ["-h", "f4", "-m", "load1", "--plot", "--format", "csv"],
            "--plot draws a chart: it cannot be combined with --format csv",
        ),
    ],
)
def test_history_bad_arguments_exit_2(filled: Env, args: list[str], message: str) -> None:
    assert message in usage_error(filled("metrics", "history", *args))


def test_history_plot_draws_a_chart(filled: Env) -> None:
    out = ok(filled("metrics", "history", "-h", "f4", "-m", "disk_percent", "--plot"))
    lines = out.splitlines()
    assert "f4 disk_percent (UTC, 2026-11-24)" in lines[0]  # one day: its date once
    assert "\x1b[" not in out  # no colour codes when stdout is not a terminal
    assert any("mount=/var" in line for line in lines)  # the legend names each series
    assert any(line.startswith("72.0┤") for line in lines)  # y axis spans the values
    assert any(line.startswith("38.2┤") for line in lines)
    ticks = lines[-1].split()  # x axis: UTC times from the first sample to the last
    assert (ticks[0], ticks[1], ticks[-1]) == ("21:53:54", "21:54:04", "21:54:54")
    assert len(lines) == 24
    assert max(len(line) for line in lines) <= 100


def _plotted_columns(chart: str) -> set[int]:
    """The columns inside the frame where the chart drew something."""
    inside = [line.split("│", 1)[1] if "│" in line else "" for line in chart.splitlines()]
    inside += [line.split("┤", 1)[1] for line in chart.splitlines() if "┤" in line]
    return {i for line in inside for i, char in enumerate(line) if char not in " │"}


def test_history_plot_keeps_seconds_apart(env: Env) -> None:
    minute = T0 - T0 % 60  # 2026-11-24T21:54:00Z: three samples inside one minute
    with env.store() as store:
        for offset, value in ((5.0, 1.0), (25.0, 5.0), (45.0, 9.0)):
            store.record_runs([host_run("f4", minute + offset, sample("load1", value))])
    chart = ok(env("metrics", "history", "-h", "f4", "-m", "load1", "--plot"))
    columns = _plotted_columns(chart)
    assert max(columns) - min(columns) > 60, chart  # a slope across the width, not one column
    assert chart.splitlines()[-1].split()[::3] == ["21:54:05", "21:54:25", "21:54:45"]


def test_history_plot_over_days_dates_every_tick(env: Env) -> None:
    with env.store() as store:
        for day in range(3):
            store.record_runs([host_run("f4", T0 + day * 86400, sample("load1", day))])
    chart = ok(env("metrics", "history", "-h", "f4", "-m", "load1", "--plot"))
    assert "f4 load1 (UTC)" in chart.splitlines()[0]
    ticks = chart.splitlines()[-1].split()
    assert ticks[:2] == ["2026-11-24", "21:54:54"]
    assert ticks[-2:] == ["2026-11-26", "21:54:54"]


def test_history_plot_with_nothing_to_plot(filled: Env) -> None:
    run = filled("metrics", "history", "-h", "never", "-m", "load1", "--plot")
    assert (run.code, run.out, run.err) == (0, "", "no samples in that range: nothing to plot\n")


# -- -h: names and globs, in every command -------------------------------------


@pytest.mark.parametrize(
    ("patterns", "names", "problems"),
    [
        (["web2", "web1", "web2"], ["web2", "web1"], []),  # as asked, each once
        (["web*"], ["web1", "web2", "web10"], []),  # a glob: in the known order
        (["db?", "web1*"], ["db1", "web1", "web10"], []),
        (["web[12]"], ["web1", "web2"], []),
        (["*"], ["web1", "web2", "db1", "web10", "Web3"], []),
        (["Web*"], ["Web3"], []),  # case matters, as in host names
        (["web*", "web1"], ["web1", "web2", "web10"], []),
        (["wbe1"], [], ['unknown host "wbe1", did you mean "web1"?']),
        (["x*"], [], ['no host matches "x*"; known hosts: Web3, db1, web1, web10, web2']),
        (
            ["web1", "mail*", "zz"],
            ["web1"],
            [
                'no host matches "mail*"; known hosts: Web3, db1, web1, web10, web2',
                'unknown host "zz"; known hosts: Web3, db1, web1, web10, web2',
            ],
        ),
    ],
)
def test_select_names(patterns: list[str], names: list[str], problems: list[str]) -> None:
    from netmetrix.config import select_names

    known = ["web1", "web2", "db1", "web10", "Web3"]
    assert select_names(patterns, known) == (tuple(names), problems)


def test_select_names_lists_at_most_ten_known_hosts() -> None:
    from netmetrix.config import select_names

    known = [f"h{i:02}" for i in range(12)]
    assert select_names(["x*"], known)[1] == [
        'no host matches "x*"; known hosts: h00, h01, h02, h03, h04, h05, h06, h07, h08, h09,'
        " ... (12 in all)"
    ]


def test_hosts_and_config_show_take_globs(filled: Env) -> None:
    assert [line.split()[0] for line in ok(filled("hosts", "-h", "f*")).splitlines()] == [
        "host",
        "f4",
        "f5",
    ]
    shown = {
        row["setting"].split(".")[1]
        for row in json.loads(ok(filled("config", "show", "-h", "f?", "--format", "json")))
    }
    assert shown == {"f4", "f5"}
    assert usage_error(filled("hosts", "-h", "f*", "-h", "db*")) == (
        'config.xml: no host matches "db*"; known hosts: f4, f5, never\n'
    )
    assert usage_error(filled("config", "show", "-h", "db*")) == (
        'config.xml: no host matches "db*"; known hosts: f4, f5, never\n'
    )


def test_metrics_take_globs_and_repeated_hosts(filled: Env) -> None:
    with filled.store() as store:  # a host no longer in config.xml is still known
        store.record_runs([host_run("retired", T0, sample("load1", 9.0))])
    latest = json.loads(
        ok(filled("metrics", "latest", "-h", "f*", "-m", "load1", "--format", "json"))
    )
    assert [(r["host"], r["value"]) for r in latest] == [("f4", 1.25), ("f5", 2.0)]
    latest = json.loads(
        ok(filled("metrics", "latest", "-h", "r*", "-m", "load1", "--format", "json"))
    )
    assert [(r["host"], r["value"]) for r in latest] == [("retired", 9.0)]
    history = ("metrics", "history", "-m", "load1", "--format", "json")
    both = json.loads(ok(filled(*history, "-h", "f4", "-h", "f5")))
    assert [(r["ts"], r["host"], r["value"]) for r in both] == [
        (ISO1, "f4", 0.5),  # interleaved by time, then host
        (ISO1, "f5", 2.0),
        (ISO0, "f4", 1.25),
    ]
    assert json.loads(ok(filled(*history, "-h", "f?"))) == both
    assert json.loads(ok(filled(*history, "-h", "f5", "-h", "f4", "-h", "f5"))) == both
    every = json.loads(ok(filled(*history, "-h", "*")))
    assert [r["host"] for r in every] == ["f4", "f5", "f4", "retired"]
    assert usage_error(filled("metrics", "latest", "-h", "g*", "-m", "lod1")) == (
        'no host matches "g*"; known hosts: f4, f5, never, retired\n'
        'unknown metric "lod1", did you mean "load1"?\n'
    )


def test_history_plot_of_several_hosts_names_each(filled: Env) -> None:
    out = ok(filled("metrics", "history", "-h", "f*", "-m", "load1", "--plot"))
    assert "f4,f5 load1 (UTC, 2026-11-24)" in out.splitlines()[0]
    assert any("f4" in line for line in out.splitlines()[1:])  # the legend
    assert any("f5" in line for line in out.splitlines()[1:])


def test_alerts_queries_take_globs(env: Env) -> None:
    from netmetrix.config import AlertRule

    rule = AlertRule(metric="load1", op=">", limit=20.0, email=("ops@example.com",))
    with env.store() as store:
        runs = [host_run(h, T0, sample("load1", 30.0)) for h in ("f4", "f5", "retired")]
        pipeline.record(store, runs, [rule], now=T0)

    def hosts_of(*args: str) -> list[str]:
        return [r["host"] for r in json.loads(ok(env("alerts", *args, "--format", "json")))]

    assert hosts_of("active", "-h", "f*") == ["f4", "f5"]
    assert hosts_of("history", "-h", "f*") == ["f5", "f4"]  # one time: newest row first
    assert sorted(hosts_of("history", "-h", "f4", "-h", "retired")) == ["f4", "retired"]
    subjects = [
        r["subject"]
        for r in json.loads(
            ok(env("alerts", "outbox", "-h", "f5", "-h", "re*", "--format", "json"))
        )
    ]
    assert subjects == ["ALERT [f5] load1 is 30>20", "ALERT [retired] load1 is 30>20"]
    assert len(json.loads(ok(env("alerts", "outbox", "--all", "--format", "json")))) == 3
    for command in ("active", "history", "outbox"):
        assert usage_error(env("alerts", command, "-h", "db*")) == (
            'no host matches "db*"; known hosts: f4, f5, never, retired\n'
        )


@pytest.mark.sshd
def test_upload_and_execute_take_globs(
    fleet: Fleet, netmetrix: Cli, test_user: sshd.User, user_dir: Path
) -> None:
    for name in ("web1", "web2", "db1"):
        fleet.host(
            name, 0, user=test_user.name, directory=str(user_dir / name), python=test_user.python
        )
    for verb in ("upload", "execute"):
        ran = netmetrix("--config", fleet.config, verb, "-h", "web*")
        assert ran.code == 0, ran.err
        assert ran.err.count("SUCCESS!") == 2
        assert "[db1]" not in ran.err
        assert f"{verb}: 2 ok in " in ran.err
    with Store.open(f"sqlite:///{fleet.database}") as store:
        assert store.host_names() == {"web1", "web2"}
    ran = netmetrix("--config", fleet.config, "execute", "-h", "web*", "-h", "mail*")
    assert (ran.code, ran.err) == (
        2,
        'config.xml: no host matches "mail*"; known hosts: db1, web1, web2\n',
    )


# -- alerts history --------------------------------------------------------------


def test_alerts_history_is_newest_first_across_runs(env: Env) -> None:
    from netmetrix.config import AlertRule

    rules = [
        AlertRule(metric="load1", op=">", limit=20.0, email=("ops@example.com",)),
        AlertRule(metric="load1", op=">", limit=25.0, email=("ops@example.com",)),
    ]
    # In one execute every host has its own time (when it answered), and a batch
    # is evaluated host by host: here f4 answered after f5 in both runs.
    with env.store() as store:
        for start, value in ((T0, 30.0), (T0 + 60, 5.0)):
            runs = [
                host_run("f4", start + 2, sample("load1", value)),
                host_run("f5", start + 1, sample("load1", value)),
            ]
            pipeline.record(store, runs, rules, now=start + 3)
    got = json.loads(ok(env("alerts", "history", "--format", "json")))
    assert [(row["ts"][11:19], row["host"], row["event"], row["rule"]) for row in got] == [
        ("21:55:56", "f4", "resolved", "load1 > 25"),  # one sample, two rules: newest id first
        ("21:55:56", "f4", "resolved", "load1 > 20"),
        ("21:55:55", "f5", "resolved", "load1 > 25"),
        ("21:55:55", "f5", "resolved", "load1 > 20"),
        ("21:54:56", "f4", "firing", "load1 > 25"),
        ("21:54:56", "f4", "firing", "load1 > 20"),
        ("21:54:55", "f5", "firing", "load1 > 25"),
        ("21:54:55", "f5", "firing", "load1 > 20"),
    ]
    newest = json.loads(ok(env("alerts", "history", "-n", "3", "--format", "json")))
    assert newest == got[:3]
    only_f5 = json.loads(ok(env("alerts", "history", "-h", "f5", "--format", "json")))
    assert only_f5 == [row for row in got if row["host"] == "f5"]


# -- config ---------------------------------------------------------------------


def test_config_init_writes_an_example_that_passes_check(
    tmp_path: Path, netmetrix: Cli, isolated_home: Path
) -> None:
    path = tmp_path / "etc" / "config.xml"
    path.parent.mkdir()
    (isolated_home / ".ssh").mkdir()
    sshd.keygen(isolated_home / ".ssh" / "netmetrix")  # the example's key=, as the README makes it
    run = netmetrix("config", "init", path)
    assert run.code == 0, run.err
    assert (
        run.out
        == f"{path}: written; edit its <hosts>, then run `netmetrix --config {path} config check`\n"
    )
    assert path.read_text() == EXAMPLE_CONFIG
    assert (
        netmetrix("--config", path, "config", "check").out
        == f"{path}: OK, 2 hosts, 3 alert rules\n"
    )
    config = load_config(path)
    assert [h.name for h in config.hosts] == ["web1", "db1"]
    assert config.database == f"sqlite:///{path.parent / 'netmetrix.db'}"
    assert not (path.parent / "netmetrix.db").exists()  # init and check touch no database


def test_config_init_defaults_to_the_config_option_and_keeps_an_existing_file(
    tmp_path: Path, netmetrix: Cli
) -> None:
    path = tmp_path / "mine.xml"
    assert netmetrix("--config", path, "config", "init").out == (
        f"{path}: written; edit its <hosts>, then run `netmetrix config check`\n"
    )
    path.write_text("<netmetrix/>")
    err = usage_error(netmetrix("--config", path, "config", "init"))
    assert err == f"{path}: already exists; keep it, or pass --force to overwrite it\n"
    assert path.read_text() == "<netmetrix/>"
    out = netmetrix("--config", path, "config", "init", "--force", "--format", "json").out
    assert json.loads(out) == [{"config": str(path), "hosts": 2, "alert_rules": 3}]
    assert path.read_text() == EXAMPLE_CONFIG
    out = netmetrix("config", "init", tmp_path / "x.xml", "--format", "csv").out
    assert csv_rows(out) == [
        ["config", "hosts", "alert_rules"],
        [str(tmp_path / "x.xml"), "2", "3"],
    ]


def test_config_init_into_a_missing_directory(tmp_path: Path, netmetrix: Cli) -> None:
    run = netmetrix("config", "init", tmp_path / "no" / "config.xml")
    assert run.code == 1
    assert (
        run.err
        == f"Error: {tmp_path / 'no' / 'config.xml'}: cannot write: No such file or directory\n"
    )


def test_config_check_formats(env: Env) -> None:
    (env.config.parent / "var").mkdir(exist_ok=True)  # else a note says SQLite's will be made
    assert ok(env("config", "check")) == f"{env.config}: OK, 3 hosts, 0 alert rules\n"
    assert json.loads(ok(env("config", "check", "--format", "json"))) == [
        {"config": str(env.config), "ok": True, "hosts": 3, "alert_rules": 0}
    ]
    assert csv_rows(ok(env("config", "check", "--format", "csv"))) == [
        ["config", "ok", "hosts", "alert_rules"],
        [str(env.config), "True", "3", "0"],
    ]


def test_config_check_singular(tmp_path: Path, netmetrix: Cli) -> None:
    path = tmp_path / "c.xml"
    path.write_text(
        render(
            ConfigXml(
                hosts=[Host(name="a")],
                alerts=[Alert(metric="up", op="==", limit=0, email="a@example.com")],
            )
        )
    )
    assert netmetrix("config", "check", path).out == f"{path}: OK, 1 host, 1 alert rule\n"


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_config_check_reports_every_problem_with_file_and_line(
    tmp_path: Path, netmetrix: Cli, fmt: str
) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(
        "<netmetrix>\n"
        "  <hosts>\n"
        '    <host name="f4" port="ssh"/>\n'
        '    <host name="f5" adress="x"/>\n'
        "  </hosts>\n"
        "</netmetrix>\n"
    )
    err = usage_error(netmetrix("config", "check", path, "--format", fmt))
    assert err == (
        f'{path}:3: <host name="f4">: port must be an integer 1-65535, got "ssh"\n'
        f'{path}:4: <host name="f5">: unknown attribute "adress", did you mean "address"?\n'
    )
    assert usage_error(netmetrix("config", "check", tmp_path / "none.xml")).startswith(
        f"{tmp_path / 'none.xml'}: no such file"
    )


def written_at(config: Path, host: str) -> str:
    """``config.xml:7``: where ``config show`` says a host's setting comes from."""
    element = f'<host name="{host}"'
    return f"{config.name}:{line_of(config, element)}"


def settings_of(out: str) -> dict[str, tuple[str, str]]:
    return {row["setting"]: (row["value"], row["source"]) for row in json.loads(out)}


def test_config_show_redacts_secrets_and_names_sources(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NMX_TEST_SMTP_PASSWORD", "hunter2-smtp")
    monkeypatch.setenv("PGPASSWORD", "hunter2-pg")
    out = ok(env("config", "show", "--format", "json"))
    assert "hunter2" not in out
    got = settings_of(out)
    assert got["smtp.password"] == ("$NMX_TEST_SMTP_PASSWORD (set)", "environment")
    assert got["smtp.user"] == ("mailer", "config.xml")
    assert got["smtp.port"] == ("25", "default")
    assert got["database"] == (env.url, "config.xml")
    if env.url.startswith("postgresql"):
        assert got["database.password"] == ("$PGPASSWORD (set)", "environment")
    assert got["ssh.connect_timeout"] == ("10s", "default")
    assert got["smtp.timeout"] == ("10s", "default")
    assert got["smtp.deadline"] == ("30s", "default")
    assert got["retention.days"] == ("30", "default")
    assert got["host.f4.address"] == ("192.0.2.4", written_at(env.config, "f4"))
    assert got["host.f4.user"] == ("monitor", written_at(env.config, "f4"))
    assert got["host.f4.port"] == ("22", "default")
    assert got["host.f5.address"] == ("f5", "default")
    assert got["host.f5.key"] == ("~/.ssh/id_* and ssh-agent", "default")
    monkeypatch.delenv("NMX_TEST_SMTP_PASSWORD")
    assert settings_of(ok(env("config", "show", "--format", "json")))["smtp.password"] == (
        "$NMX_TEST_SMTP_PASSWORD (not set)",
        "environment",
    )


def test_config_show_says_default_only_for_what_the_file_leaves_out(
    tmp_path: Path, netmetrix: Cli
) -> None:
    path = tmp_path / "config.xml"
    written_out = ConfigXml(  # values spelled out equal to the defaults, and some left out
        concurrency=50,
        ssh=SSH(connect_timeout=10),
        smtp=SMTP(port=25),
        retention_days=30,
        hosts=[Host(name="a", directory="/tmp", python="python3"), Host(name="b")],
    )
    path.write_text(render(written_out))
    got = settings_of(ok(netmetrix("--config", path, "config", "show", "--format", "json")))
    written = sorted(name for name, (_, source) in got.items() if source.startswith("config.xml"))
    assert written == [
        "concurrency",
        "host.a.directory",
        "host.a.python",
        "retention.days",
        "smtp.port",
        "ssh.connect_timeout",
    ]
    assert got["concurrency"] == ("50", "config.xml")
    assert got["ssh.connect_timeout"] == ("10s", "config.xml")
    assert got["ssh.command_timeout"] == ("30s", "default")
    assert got["script"] == ("client.py", "default")
    assert got["host.a.directory"] == ("/tmp", written_at(path, "a"))
    assert got["host.b.directory"][1] == "default"
    assert got["host.b.python"] == ("python3", "default")


RECEIVERS_AND_CHECKS = """\
<netmetrix>
  <hosts><host name="a"/></hosts>
  <receivers>
    <email name="ops" to="ops@example.com, oncall@example.com"/>
    <webhook name="chat" url="https://hooks.example.com/services/T0/B0/s3cr3t-path"
             format="slack" secret_env="NMX_TEST_HOOK_SECRET"/>
    <alertmanager name="am" url="http://am1:9093 http://am2:9093"/>
  </receivers>
  <checks>
    <check name="disk" command="/usr/lib/nagios/plugins/check_disk -w '20%' -p /" every="5m"
           hosts="web* b*"/>
    <textfile dir="/var/lib/node_exporter/textfile"/>
  </checks>
</netmetrix>
"""


def test_config_show_lists_receivers_without_secrets_and_checks_as_run(
    tmp_path: Path, netmetrix: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NMX_TEST_HOOK_SECRET", raising=False)
    path = tmp_path / "config.xml"
    path.write_text(RECEIVERS_AND_CHECKS)
    out = ok(netmetrix("--config", path, "config", "show", "--format", "json"))
    assert "s3cr3t" not in out  # a Slack URL's path is its secret
    got = settings_of(out)
    assert got["receiver.ops"] == ("email ops@example.com, oncall@example.com", "config.xml:4")
    assert got["receiver.chat"] == (
        "webhook (slack) https://hooks.example.com/..., signed with $NMX_TEST_HOOK_SECRET"
        " (not set)",
        "config.xml:5",
    )
    assert got["receiver.am"] == ("alertmanager http://am1:9093 http://am2:9093", "config.xml:7")
    assert got["check.disk"] == (
        "/usr/lib/nagios/plugins/check_disk -w 20% -p /, every 5m, on web* b*",
        "config.xml:10",
    )
    assert got["textfile.1"] == ("/var/lib/node_exporter/textfile", "config.xml:12")


DURATIONS = """\
<netmetrix>
  <ssh connect_timeout="{connect}" command_timeout="{command}"/>
  <smtp deadline="{deadline}"/>
  <hosts><host name="a"/></hosts>
  <alerts>
    <alert metric="load1" op="&gt;" limit="4" repeat="{repeat}" email="ops@example.com"/>
  </alerts>
</netmetrix>
"""


def test_config_show_says_durations_as_the_mail_does_and_config_xml_reads_them(
    tmp_path: Path, netmetrix: Cli
) -> None:
    from netmetrix import notice

    path = tmp_path / "config.xml"
    path.write_text(DURATIONS.format(connect="90", command="45", deadline="0.5m", repeat="36h"))
    got = settings_of(ok(netmetrix("--config", path, "config", "show", "--format", "json")))
    shown = {
        "connect": got["ssh.connect_timeout"][0],
        "command": got["ssh.command_timeout"][0],
        "deadline": got["smtp.deadline"][0],
        "repeat": got["alert.1"][0].split("repeat ")[1].split(",")[0],
    }
    assert shown == {"connect": "1.5m", "command": "45s", "deadline": "30s", "repeat": "1.5d"}
    before = load_config(path)
    assert "repeat every 1.5d" in notice.describe(before.alerts.rules[0])  # the mail's words
    path.write_text(DURATIONS.format(**shown))  # what config show says, written back
    after = load_config(path)
    assert (after.ssh, after.smtp, after.alerts.rules) == (
        before.ssh,
        before.smtp,
        before.alerts.rules,
    )


def test_config_show_applies_ssh_config_fallbacks(env: Env, isolated_home: Path) -> None:
    (isolated_home / ".ssh").mkdir()
    sshd.keygen(isolated_home / ".ssh" / "fleet_key")
    (isolated_home / ".ssh" / "config").write_text(
        "Host f5\n"
        "  HostName 10.9.8.7\n"
        "  Port 2222\n"
        "  User collector\n"
        "  IdentityFile ~/.ssh/fleet_key\n"
        "  ProxyJump bastion.example.com\n"
        "Host f4\n"
        "  User ignored-because-config-xml-says-monitor\n"
    )
    out = ok(env("config", "show", "-h", "f5", "-h", "f4"))
    f4 = written_at(env.config, "f4")
    assert out.splitlines() == [
        "setting             value                      source",
        "host.f5.address     10.9.8.7                   ~/.ssh/config",
        "host.f5.port        2222                       ~/.ssh/config",
        "host.f5.user        collector                  ~/.ssh/config",
        "host.f5.key         ~/.ssh/fleet_key           ~/.ssh/config",
        "host.f5.proxy_jump  bastion.example.com        ~/.ssh/config",
        "host.f5.directory   ~/.cache/netmetrix         default",
        "host.f5.python      python3                    default",
        f"host.f4.address     192.0.2.4                  {f4}",
        "host.f4.port        22                         default",
        f"host.f4.user        monitor                    {f4}",
        "host.f4.key         ~/.ssh/id_* and ssh-agent  default",
        "host.f4.directory   ~/.cache/netmetrix         default",
        "host.f4.python      python3                    default",
    ]


def test_config_show_csv_and_unknown_host(env: Env) -> None:
    rows = csv_rows(ok(env("config", "show", "--format", "csv")))
    assert rows[0] == ["setting", "value", "source"]
    assert ["host.never.address", "192.0.2.9", written_at(env.config, "never")] in rows
    assert usage_error(env("config", "show", "-h", "f6")) == (
        'config.xml: unknown host "f6"; known hosts: f4, f5, never\n'
    )


def test_config_show_reports_an_unreadable_key(env: Env, tmp_path: Path) -> None:
    env.config.write_text(config_text(env.url, replace(F4, user=None, key=f"{tmp_path}/nokey")))
    got = settings_of(ok(env("config", "show", "-h", "f4", "--format", "json")))
    assert got["host.f4.error"] == (
        f"cannot read private key {tmp_path}/nokey: No such file or directory",
        "ssh",
    )
    assert got["host.f4.key"] == (f"{tmp_path}/nokey", written_at(env.config, "f4"))


# -- db -------------------------------------------------------------------------


def test_db_info_formats(filled: Env) -> None:
    with filled.store() as store:
        head = store.schema_head()
        backend = store.engine.dialect.name
        collector_id = store.collector_id()
    assert re.fullmatch("[0-9a-f]{8}", collector_id)
    table = ok(filled("db", "info"))
    lines = table.splitlines()
    assert lines[0].split() == ["field", "value"]
    assert [line.split()[0] for line in lines[1:]] == [
        *("url", "backend", "collector_id", "schema_version", "schema_head"),
        *("series", "samples", "size_bytes", "oldest", "newest", "collectors"),
        "remote_write_backlog",
    ]
    # f4's last run by c1, f5's by c2 (its failed run after that named none)
    assert lines[-2].split(None, 1) == ["collectors", "c1 (1/2) 1 host, c2 (2/2) 1 host"]
    assert lines[-1].split() == ["remote_write_backlog", "0"]
    [row] = json.loads(ok(filled("db", "info", "--format", "json")))
    assert row["size_bytes"] > 0
    assert {k: v for k, v in row.items() if k != "size_bytes"} == {
        "url": filled.url,
        "backend": backend,
        "collector_id": collector_id,
        "schema_version": head,
        "schema_head": head,
        "series": 6,  # f4: 2 disk, load1, up; f5: load1, up
        "samples": 11,
        "oldest": ISO1,
        "newest": ISO0,
        "collectors": {"c1 (1/2)": 1, "c2 (2/2)": 1},
        "remote_write_backlog": 0,  # no <remote_write>: nothing queued
    }
    rows = csv_rows(ok(filled("db", "info", "--format", "csv")))
    assert rows[0] == list(row)
    collectors = "c1 (1/2) 1 host, c2 (2/2) 1 host"
    assert rows[1][5:] == ["6", "11", str(row["size_bytes"]), ISO1, ISO0, collectors, "0"]


def test_db_info_of_an_empty_store_and_before_any_schema(env: Env) -> None:
    [row] = json.loads(ok(env("db", "info", "--format", "json")))
    assert (row["schema_version"], row["series"], row["samples"], row["oldest"]) == (
        None,
        0,
        0,
        None,
    )
    assert row["collector_id"] is None  # db info never writes: the schema makes the id
    assert row["remote_write_backlog"] is None
    assert ok(env("db", "upgrade")).endswith(
        f": schema upgraded from none to {row['schema_head']}\n"
    )
    [row] = json.loads(ok(env("db", "info", "--format", "json")))
    assert (row["schema_version"], row["series"], row["newest"]) == (row["schema_head"], 0, None)
    assert re.fullmatch("[0-9a-f]{8}", row["collector_id"])
    assert row["remote_write_backlog"] == 0
    assert json.loads(ok(env("db", "info", "--format", "json")))[0] == row  # made once


def test_db_upgrade_formats(env: Env) -> None:
    head = Store.schema_head()
    assert json.loads(ok(env("db", "upgrade", "--format", "json"))) == [
        {"url": env.url, "from": None, "to": head}
    ]
    assert ok(env("db", "upgrade")) == f"{env.url}: schema already at {head}, the newest\n"
    assert csv_rows(ok(env("db", "upgrade", "--format", "csv"))) == [
        ["url", "from", "to"],
        [env.url, head, head],
    ]


def test_db_prune_formats(env: Env) -> None:
    now = time.time()
    with env.store() as store:
        fill(store, now - 3 * 86400)  # 11 samples, 3 days old
        fill(store, now)  # 11 fresh ones
    out = ok(env("db", "prune", "--older-than", "2d"))
    assert out.startswith("pruned 11 samples older than 20")
    [row] = json.loads(ok(env("db", "prune", "--older-than", "2d", "--format", "json")))
    assert (row["deleted"], row["batches"]) == (0, 0)
    assert abs(_parse_iso(row["cutoff"]) - (now - 2 * 86400)) < 60
    rows = csv_rows(ok(env("db", "prune", "--older-than", "30", "--format", "csv")))
    assert rows[0] == ["deleted", "cutoff", "batches"]
    assert rows[1][0] == "6"  # the fresh fill's samples of a minute ago; those of now stay
    [info] = json.loads(ok(env("db", "info", "--format", "json")))
    assert info["samples"] == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Missing option '--older-than'"),
        (["--older-than", "0"], "duration must be greater than 0"),
        (["--older-than", "30 days"], 'invalid duration "30 days"'),
        (["--older-than", "30d", "--format", "xml"], "Invalid value for '--format'"),
    ],
)
def test_db_prune_bad_arguments_exit_2(env: Env, args: list[str], message: str) -> None:
    assert message in usage_error(env("db", "prune", *args))


def test_db_vacuum_formats(filled: Env) -> None:
    out = ok(filled("db", "vacuum"))
    assert out.startswith(f"vacuumed {filled.url}: ")
    assert " -> " in out
    [row] = json.loads(ok(filled("db", "vacuum", "--format", "json")))
    assert row["url"] == filled.url
    assert row["size_after"] > 0
    assert csv_rows(ok(filled("db", "vacuum", "--format", "csv")))[0] == [
        "url",
        "size_before",
        "size_after",
    ]
    assert len(json.loads(ok(filled("metrics", "latest", "--format", "json")))) == 6  # data intact


def test_commands_need_a_valid_config(tmp_path: Path, netmetrix: Cli) -> None:
    for args in (["hosts"], ["metrics", "latest"], ["db", "info"], ["config", "show"]):
        err = usage_error(netmetrix("--config", tmp_path / "none.xml", *args))
        assert err.startswith(f"{tmp_path / 'none.xml'}: no such file"), args


def _parse_iso(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text).timestamp()


# -- help -----------------------------------------------------------------------

QUERY_COMMANDS = [
    ["hosts"],
    ["metrics"],
    ["metrics", "latest"],
    ["metrics", "history"],
    ["config"],
    ["config", "init"],
    ["config", "check"],
    ["config", "show"],
    ["db"],
    ["db", "info"],
    ["db", "prune"],
    ["db", "vacuum"],
    ["db", "upgrade"],
]


@pytest.mark.parametrize("path", QUERY_COMMANDS, ids=" ".join)
def test_every_command_has_summary_paragraph_and_examples(path: list[str], netmetrix: Cli) -> None:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    doc = inspect.cleandoc(command.help or "")
    summary, paragraph, *rest = doc.split("\n\n")
    assert summary.strip().endswith(".")
    assert "\n" not in summary.strip()
    assert len(paragraph.split()) >= 10
    examples = "\n\n".join(rest)
    assert examples.lstrip().startswith("\b\nExamples:\n  netmetrix "), examples
    run = netmetrix(*path, "--help")
    assert run.code == 0
    assert "\n  Examples:\n    netmetrix " in run.out
    if not isinstance(command, click.Group):
        assert "--format [table|json|csv]" in run.out


@pytest.mark.parametrize("group", [[], ["metrics"], ["config"], ["db"], ["alerts"]], ids=str)
def test_a_group_without_arguments_prints_its_help_and_exits_0(
    group: list[str], netmetrix: Cli
) -> None:
    bare = netmetrix(*group)
    assert (bare.code, bare.err) == (0, "")
    assert bare.out == netmetrix(*group, "--help").out
    assert bare.out.startswith(f"Usage: netmetrix {' '.join(group)}".rstrip() + " [OPTIONS] ")
