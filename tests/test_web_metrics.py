"""``/metrics`` (#14): promtool, prometheus_client's parsers and a real Prometheus server.

The end-to-end tests fill the store with a real upload and execute against the
sshd farm, serve it with the real `netmetrix serve` process, check the page
with `promtool check metrics` and have a real Prometheus (Debian's
/usr/bin/prometheus, its own temporary directory and port, stopped by PID)
scrape it; its query API must answer the values `metrics latest --format json`
prints.  The rest read a real store (SQLite and PostgreSQL) filled through the
pipeline, without SSH.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ports
import pytest
from conftest import Background, Fleet, Run, Served, wait_up
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from netmetrix import configxml, pipeline
from netmetrix.config import AlertRule, Config, load_config
from netmetrix.configxml import Web
from netmetrix.model import UP, HostRun
from netmetrix.model import Sample as ProbeSample
from netmetrix.probe import METRIC_LABELS, METRICS
from netmetrix.promnames import EXPOSED, Exposed
from netmetrix.store import Store
from netmetrix.web.app import Health
from netmetrix.web.exposition import FleetCollector, read_snapshot

Cli = Callable[..., Run]
PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")
BUDGET = 120.0  # seconds for Prometheus to start and scrape, on a loaded 2-core machine
T0 = 1_780_000_000.0
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"

needs_prometheus = pytest.mark.skipif(
    not (PROMETHEUS.exists() and PROMTOOL.exists()),
    reason="needs Debian's prometheus (make system-deps)",
)


# ---------------------------------------------------------------- helpers


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` on ``text`` (it lints names, HELP, TYPE and units)."""
    return subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def by_series(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], Sample]:
    """Every sample of a text exposition, by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in found, f"{key} twice"
            found[key] = sample
    return found


def expected_series(rows: list[dict[str, Any]]) -> dict[tuple[str, Any], float]:
    """What /metrics must show of `metrics latest --format json`'s rows."""
    found = {}
    for row in rows:
        how = EXPOSED[row["metric"]]
        labels = tuple(sorted({"host": row["host"], **row["labels"]}.items()))
        found[(how.full_name, labels)] = row["value"] * how.scale
    return found


def cli_latest(netmetrix: Cli, fleet: Fleet) -> list[dict[str, Any]]:
    ran = netmetrix("--config", fleet.config, "metrics", "latest", "--format", "json")
    assert ran.code == 0, ran.err
    rows: list[dict[str, Any]] = json.loads(ran.out)
    return rows


def render(config: Config, store: Store, health: Health | None = None) -> str:
    return generate_latest(FleetCollector(read_snapshot(config, store, health))).decode()


def config_of(tmp_path: Path, *hosts: str) -> Config:
    path = tmp_path / "config.xml"
    entries = [configxml.Host(name=name) for name in hosts]
    path.write_text(configxml.render(configxml.ConfigXml(hosts=entries)))
    return load_config(path)


def every_metric(value: float) -> tuple[ProbeSample, ...]:
    """One sample of every catalogue metric, with its labels."""
    return tuple(
        ProbeSample(
            metric=name,
            labels=tuple((label, f"{label}0") for label in METRIC_LABELS.get(name, ())),
            value=value,
        )
        for name, *_ in METRICS
    )


# ---------------------------------------------------------------- servers


@pytest.fixture
def collected(fleet: Fleet, netmetrix: Cli) -> Fleet:
    """Two farm hosts with one execute run stored."""
    fleet.host("m1", 0)
    fleet.host("m2", 1)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 0, ran.err
    return fleet


class Prometheus:
    """A real Prometheus server scraping one target every second."""

    def __init__(self, root: Path, target: str, token_file: Path | None) -> None:
        self.port = ports.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = root / "prometheus.log"
        auth = f"    authorization:\n      credentials_file: {token_file}\n" if token_file else ""
        config = root / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: netmetrix\n"
            f"    static_configs:\n      - targets: ['{target}']\n{auth}"
        )
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=root,
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=30) as answer:
            return json.loads(answer.read())

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_for(self, expr: str, count: int) -> list[dict[str, Any]]:
        """Poll (bounded) until ``expr`` has ``count`` series: scrapes come every second."""
        deadline = time.monotonic() + BUDGET
        while True:
            try:
                found = self.query(expr)
                if len(found) >= count:
                    return found
            except OSError:
                found = []  # not listening yet
            assert self.process.poll() is None, f"prometheus ended:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, (
                f"{expr}: {len(found)} of {count} series after {BUDGET:.0f}s;"
                f" targets: {self._targets()}\n{self.log.read_text()}"
            )
            time.sleep(0.5)

    def target(self) -> dict[str, Any]:
        """The scrape target's state: health ("unknown", "up", "down"), lastError; {} while
        Prometheus has not discovered it yet."""
        targets = self.get("/api/v1/targets")["data"]["activeTargets"]
        assert len(targets) <= 1, targets
        return dict(targets[0]) if targets else {}

    def _targets(self) -> Any:
        try:
            return self.get("/api/v1/targets")["data"]["activeTargets"]
        except OSError as exc:
            return exc


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str, Path | None], Prometheus]]:
    started: list[Prometheus] = []

    def start(target: str, token_file: Path | None = None) -> Prometheus:
        root = tmp_path / f"prometheus{len(started)}"
        root.mkdir()
        server = Prometheus(root, target, token_file)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def target_of(served: Served) -> str:
    return served.base.removeprefix("http://")


# ---------------------------------------------------------------- end to end


@pytest.mark.sshd
@needs_prometheus
def test_metrics_pass_promtool_and_show_what_the_cli_shows(
    collected: Fleet, netmetrix: Cli, serve: Callable[[], Served]
) -> None:
    served = serve()
    status, text, headers = served.get("/metrics")
    assert (status, headers["content-type"]) == (200, TEXT_TYPE), text
    checked = promtool_check(text)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")

    found = by_series(text)
    rows = cli_latest(netmetrix, collected)
    assert {row["host"] for row in rows} == {"m1", "m2"}
    for key, value in expected_series(rows).items():
        assert key in found, key
        assert found[key].value == value, key
        assert found[key].timestamp is None, key  # Prometheus stamps the scrape itself
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["netmetrix_uptime_seconds"].type == "gauge"
    assert families["netmetrix_up"].documentation.startswith("1 when the host answered")
    states = {s.labels["state"]: s.value for s in families["netmetrix_hosts"].samples}
    assert states == {"up": 2.0, "down": 0.0, "unknown": 0.0}
    newest_up = max(row["ts"] for row in rows if row["metric"] == UP)
    last_run = families["netmetrix_last_run_timestamp_seconds"].samples[0].value
    assert time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(last_run)) == newest_up[:19]


@pytest.mark.sshd
def test_openmetrics_when_asked_and_gzip_when_accepted(
    collected: Fleet, serve: Callable[[], Served]
) -> None:
    served = serve()
    _, text, _ = served.get("/metrics")
    status, body, headers = served.get("/metrics", {"Accept": OPENMETRICS})
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(body)}  # the strict parser
    assert families["netmetrix_uptime_seconds"].unit == "seconds"
    assert families["netmetrix_mem_used_ratio"].unit == "ratio"
    plain = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in by_series(text).values()}
    opened = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families.values()
        for s in family.samples
    }
    assert opened == plain

    request = urllib.request.Request(served.base + "/metrics", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.headers["content-encoding"] == "gzip"
        assert gzip.decompress(answer.read()).decode() == text


@pytest.mark.sshd
@needs_prometheus
def test_prometheus_scrapes_the_values_the_cli_prints(
    collected: Fleet,
    netmetrix: Cli,
    serve: Callable[[], Served],
    prometheus: Callable[..., Prometheus],
) -> None:
    served = serve()
    rows = cli_latest(netmetrix, collected)
    expected = expected_series(rows)
    server = prometheus(target_of(served))
    # every series netmetrix has of these hosts, as Prometheus stored them
    scraped = server.wait_for('{__name__=~"netmetrix_.+", host!=""}', len(expected))
    got = {}
    for series in scraped:
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        assert (labels.pop("job"), labels.pop("instance")) == ("netmetrix", target_of(served))
        if name == "netmetrix_host_last_seen_timestamp_seconds":
            continue
        got[(name, tuple(sorted(labels.items())))] = float(series["value"][1])
    assert got == expected
    for name in ("netmetrix_load1", "netmetrix_disk_used_bytes", "netmetrix_up"):
        assert any(key[0] == name for key in got), name
    target = server.target()
    assert (target["health"], target["lastError"]) == ("up", "")


@pytest.mark.sshd
@needs_prometheus
def test_prometheus_scrapes_with_a_bearer_token_file(
    collected: Fleet,
    serve: Callable[[], Served],
    prometheus: Callable[..., Prometheus],
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("scrape-tok-42\n")
    token_file.chmod(0o600)
    collected.write(web=Web(token_file=token_file))
    served = serve()
    assert served.get("/metrics")[0] == 401
    assert served.get("/metrics", {"Authorization": "Bearer wrong"})[0] == 401
    assert served.get("/metrics", {"Authorization": "Bearer scrape-tok-42"})[0] == 200

    server = prometheus(target_of(served), token_file)
    ups = server.wait_for("netmetrix_up", 2)
    assert {(s["metric"]["host"], s["value"][1]) for s in ups} == {("m1", "1"), ("m2", "1")}

    refused = prometheus(target_of(served), None)  # the same target, without the token
    deadline = time.monotonic() + BUDGET
    while True:
        try:
            target = refused.target()
            if target.get("health", "unknown") != "unknown":
                break
        except OSError:
            target = {}  # not listening yet
        assert time.monotonic() < deadline, f"never scraped: {target}"
        time.sleep(0.5)
    assert target["health"] == "down"
    assert "401" in target["lastError"]


@pytest.mark.sshd
@needs_prometheus
def test_watch_listen_reports_its_ticks(collected: Fleet) -> None:
    """Under watch --listen the collector's health comes from the ticks themselves."""
    port = ports.free_port()
    started = time.time()
    listen = f"127.0.0.1:{port}"
    watch = Background(collected.config, "watch", "--interval", "2s", "--listen", listen)
    try:
        served = Served(watch, f"http://127.0.0.1:{port}")
        wait_up(served)
        deadline = time.monotonic() + BUDGET
        while True:  # until a tick where both hosts answered (a loaded tick may miss one)
            status, text, _ = served.get("/metrics")
            found = by_series(text) if status == 200 else {}
            outcomes = {
                labels[0][1]: s.value
                for (name, labels), s in found.items()
                if name == "netmetrix_last_run_hosts"
            }
            if outcomes.get("ok") == 2:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
        assert 0 < found[("netmetrix_last_run_duration_seconds", ())].value < BUDGET
        assert started < found[("netmetrix_last_run_timestamp_seconds", ())].value < time.time()
        assert promtool_check(text).returncode == 0
    finally:
        watch.stop()


# ---------------------------------------------------------------- the mapping table


def test_every_catalogue_metric_is_mapped_to_a_conventional_name() -> None:
    assert set(EXPOSED) == {name for name, *_ in METRICS} | {UP}
    names = [how.full_name for how in EXPOSED.values()]
    assert len(set(names)) == len(names)
    for metric, how in EXPOSED.items():
        assert how.full_name.startswith("netmetrix_"), metric
        assert how.full_name.endswith(how.unit), metric  # OpenMetrics: the unit ends the name
        unit = {name: unit for name, unit, *_ in METRICS}.get(metric, "")
        want = {"seconds": "seconds", "bytes": "bytes", "bytes/s": "bytes_per_second"}
        if unit in want:
            assert (how.unit, how.scale) == (want[unit], 1.0), metric
        if unit == "percent":
            assert (how.unit, how.scale) == ("ratio", 0.01), metric
    assert EXPOSED["uptime_sec"].full_name == "netmetrix_uptime_seconds"
    assert EXPOSED[UP].full_name == "netmetrix_up"


@needs_prometheus
def test_every_mapped_metric_passes_promtool(tmp_path: Path, store_url: str) -> None:
    config = config_of(tmp_path, "h1")
    with Store.open(store_url) as store:
        run = HostRun(host="h1", address="h1", ts=T0, ok=True, samples=every_metric(50.0))
        store.record_runs([run])
        text = render(config, store)
    checked = promtool_check(text)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
    found = by_series(text)
    for metric, how in EXPOSED.items():
        labels = {"host": "h1", **{k: f"{k}0" for k in METRIC_LABELS.get(metric, ())}}
        value = found[(how.full_name, tuple(sorted(labels.items())))].value
        assert value == (1.0 if metric == UP else 50.0 * how.scale), metric


def test_a_counter_is_exposed_as_a_counter(tmp_path: Path) -> None:
    config = config_of(tmp_path, "h1")
    table = {"procs_total": Exposed(name="forks"), "load1": Exposed(name="ticks", type="counter")}
    with Store.open(f"sqlite:///{tmp_path}/nmx.db") as store:
        store.record_runs(
            [HostRun(host="h1", address="h1", ts=T0, ok=True, samples=every_metric(7))]
        )
        text = generate_latest(FleetCollector(read_snapshot(config, store, None), table)).decode()
    assert "# TYPE netmetrix_ticks_total counter\n" in text
    assert 'netmetrix_ticks_total{host="h1"} 7.0\n' in text
    assert "# TYPE netmetrix_forks gauge\n" in text
    assert Exposed(name="ticks", type="counter").full_name == "netmetrix_ticks_total"


# ---------------------------------------------------------------- what is exposed


def test_only_each_configured_hosts_last_answer_is_exposed(tmp_path: Path, store_url: str) -> None:
    config = config_of(tmp_path, "fine", "down", "never")
    data = ProbeSample(metric="disk_percent", labels=(("mount", "/data"),), value=10.0)
    root = ProbeSample(metric="disk_percent", labels=(("mount", "/"),), value=20.0)
    load = ProbeSample(metric="load1", labels=(), value=0.5)
    with Store.open(store_url) as store:
        store.record_runs(
            [
                HostRun(host="fine", address="fine", ts=T0, ok=True, samples=(data, root, load)),
                HostRun(host="down", address="down", ts=T0, ok=True, samples=(root, load)),
                HostRun(host="gone", address="gone", ts=T0, ok=True, samples=(root, load)),
            ]
        )
        store.record_runs(
            [
                # /data was unmounted since: its last sample is older than this answer
                HostRun(host="fine", address="fine", ts=T0 + 60, ok=True, samples=(root, load)),
                HostRun(host="down", address="down", ts=T0 + 60, ok=False, error="timeout"),
            ]
        )
        text = render(config, store)
    found = by_series(text)
    series = {(name, labels) for name, labels in found if ("host", "fine") in labels}
    assert series == {
        ("netmetrix_up", (("host", "fine"),)),
        ("netmetrix_load1", (("host", "fine"),)),
        ("netmetrix_disk_used_ratio", (("host", "fine"), ("mount", "/"))),
        ("netmetrix_host_last_seen_timestamp_seconds", (("host", "fine"),)),
    }
    down = {name: s.value for (name, labels), s in found.items() if ("host", "down") in labels}
    # down now: up 0 and when it last answered, none of its old values
    assert down == {"netmetrix_up": 0.0, "netmetrix_host_last_seen_timestamp_seconds": T0}
    assert "gone" not in text  # removed from config.xml: no longer monitored
    states = {labels[0][1]: s.value for (n, labels), s in found.items() if n == "netmetrix_hosts"}
    assert states == {"up": 1.0, "down": 1.0, "unknown": 1.0}
    assert found[("netmetrix_last_run_timestamp_seconds", ())].value == T0 + 60
    assert ("netmetrix_last_run_duration_seconds", ()) not in found  # serve cannot know it


def test_the_collectors_health_and_outbox(tmp_path: Path, store_url: str) -> None:
    config = config_of(tmp_path, "h1", "h2")
    rule = AlertRule(metric="load1", op=">", limit=1.0, email=("a@example.com", "b@example.com"))
    hot = (ProbeSample(metric="load1", labels=(), value=5.0),)
    with Store.open(store_url) as store:
        runs = [HostRun(host=h, address=h, ts=T0, ok=True, samples=hot) for h in ("h1", "h2")]
        pipeline.record(store, runs, [rule], now=T0)  # four mails: two hosts, two addresses
        first = store.outbox()[0]
        assert store.claim_mail([first.id], "tok", now=T0, lease=60)
        assert store.mail_failed([first.id], "tok", now=T0, error="550", permanent=True)
        health = Health(last_run=T0 + 5, last_duration=1.25, outcomes={"ok": 1, "timeout": 1})
        found = by_series(render(config, store, health))
    values = {(name, labels): s.value for (name, labels), s in found.items()}
    assert values[("netmetrix_outbox_mails", (("state", "pending"),))] == 3
    assert values[("netmetrix_outbox_mails", (("state", "failed"),))] == 1
    assert values[("netmetrix_last_run_timestamp_seconds", ())] == T0 + 5
    assert values[("netmetrix_last_run_duration_seconds", ())] == 1.25
    assert values[("netmetrix_last_run_hosts", (("outcome", "ok"),))] == 1
    assert values[("netmetrix_last_run_hosts", (("outcome", "timeout"),))] == 1


@needs_prometheus
def test_hostile_label_values_are_escaped(tmp_path: Path) -> None:
    config = config_of(tmp_path, "h1")
    mount = '/mnt/a"b\\c\nd{e}'
    disk = ProbeSample(metric="disk_percent", labels=(("mount", mount),), value=1.0)
    with Store.open(f"sqlite:///{tmp_path}/nmx.db") as store:
        store.record_runs([HostRun(host="h1", address="h1", ts=T0, ok=True, samples=(disk,))])
        text = render(config, store)
    [sample] = [s for s in by_series(text).values() if s.name == "netmetrix_disk_used_ratio"]
    assert sample.labels == {"host": "h1", "mount": mount}  # parsed back whole
    assert promtool_check(text).returncode == 0


# ---------------------------------------------------------------- the docs

METRICS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"


def test_the_docs_show_the_mapping_and_the_collectors_metrics(tmp_path: Path) -> None:
    """docs/metrics.md's table is EXPOSED, and it names every metric of the collector's."""
    page = METRICS_PAGE.read_text(encoding="utf-8")
    rows = {}
    for line in page.split("## Prometheus", 1)[1].splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("netmetrix_"):
            rows[cells[0]] = cells[1:]
    assert rows == {
        metric: [how.full_name, how.type, "as stored" if how.scale == 1 else "/ 100"]
        for metric, how in EXPOSED.items()
    }
    config = config_of(tmp_path, "h1")
    with Store.open(f"sqlite:///{tmp_path}/nmx.db") as store:
        store.record_runs([HostRun(host="h1", address="h1", ts=T0, ok=True)])
        health = Health(last_run=T0, last_duration=1.0, outcomes={"ok": 1})
        text = render(config, store, health)
    own = {f.name for f in text_string_to_metric_families(text)} - {"netmetrix_up"}
    assert own == {
        "netmetrix_last_run_timestamp_seconds",
        "netmetrix_last_run_duration_seconds",
        "netmetrix_last_run_hosts",
        "netmetrix_hosts",
        "netmetrix_host_last_seen_timestamp_seconds",
        "netmetrix_outbox_mails",
    }
    for name in own:
        assert f"| `{name}` |" in page, name


# ---------------------------------------------------------------- the benchmark


def test_the_metrics_benchmark_runs() -> None:
    """bench/metrics_bench.py end to end on a tiny fleet (no timing asserted)."""
    script = METRICS_PAGE.parent.parent / "bench" / "metrics_bench.py"
    args = ["--hosts", "20", "--runs", "2", "--repeat", "2", "--budget", "1e9"]
    done = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("store: 20 hosts x 25 series, 2 runs each, filled in ")
    assert [line.split(":")[0] for line in lines[1:]] == [
        "render (store read + text exposition)",
        "render, CPU time of this process",
        "HTTP GET /metrics",
        "HTTP GET /metrics, Accept-Encoding",
        "goal",
    ]
    assert lines[-1].endswith(", met")
