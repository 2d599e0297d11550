"""Prometheus remote-write (#15): the wire format, config.xml, the durable queue, the sender.

The end-to-end tests run the real `netmetrix execute` and `watch` against the
sshd farm and a real Prometheus (Debian's, ``promserver``) with its
remote-write receiver on, and read the samples back through its query API.
What a real Prometheus cannot be made to do on demand (answer 503 or 429, hold
a request while another sender tries) is done by ``Receiver``, a real HTTP
server in a thread that answers as scripted and decodes what it gets.
"""

from __future__ import annotations

import http.server
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cramjam
import ports
import pytest
import smtpserver
from conftest import Background, Fleet, Run, sample
from hypothesis import given
from hypothesis import strategies as st
from promserver import PROMETHEUS, Prometheus

from netmetrix import pipeline, remote_write
from netmetrix.config import RemoteWriteConfig, effective_settings, load_config
from netmetrix.configxml import ConfigXml, Host, RemoteWrite, render
from netmetrix.errors import ConfigError
from netmetrix.model import HostRun, Sample
from netmetrix.promnames import EXPOSED
from netmetrix.remote_write import Series
from netmetrix.store import LatestRow, QueuedSample, Store
from netmetrix.web.exposition import sample_families

Cli = Callable[..., Run]
NOW = time.time()  # receivers refuse samples far in the past: the tests use real time
PASSWORD_ENV = "NMX_TEST_RW_PASSWORD"

needs_prometheus = pytest.mark.skipif(
    not PROMETHEUS.exists(), reason="needs Debian's prometheus (make system-deps)"
)


# ---------------------------------------------------------------- helpers


def run(host: str, ts: float, *samples: Sample, ok: bool = True) -> HostRun:
    return HostRun(host=host, address=host, ts=ts, ok=ok, samples=samples)


def record(store: Store, *runs: HostRun, remote_write: bool = True) -> pipeline.Recorded:
    return pipeline.record(store, runs, [], now=NOW, remote_write=remote_write)


def rw(url: str, **overrides: Any) -> RemoteWriteConfig:
    return RemoteWriteConfig(url=url, **overrides)


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    series: list[Series]


class Receiver:
    """A remote-write receiver that answers POSTs with ``answers`` in turn (then 200)
    and keeps each request's headers and decoded series.  ``hold``: the first request
    waits (bounded) for it to be set before answering."""

    def __init__(
        self, answers: Sequence[int | tuple[int, dict[str, str]]] = (), *, hold: Any = None
    ) -> None:
        self.answers = list(answers)
        self.received: list[Received] = []
        self.hold: threading.Event | None = hold
        self.arrived = threading.Event()  # the first request is in
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.handle(self)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/write"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        data = request.rfile.read(int(request.headers["Content-Length"]))
        series = remote_write.decode(bytes(cramjam.snappy.decompress_raw(data)))
        with self._lock:
            self.received.append(Received(dict(request.headers), series))
            answer = self.answers.pop(0) if self.answers else 200
        self.arrived.set()
        if self.hold is not None and len(self.received) == 1:
            self.hold.wait(60)
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        text = b"" if status < 300 else b"refused by the test receiver\n"
        request.send_header("Content-Length", str(len(text)))
        request.end_headers()
        request.wfile.write(text)

    def samples(self) -> list[tuple[tuple[tuple[str, str], ...], int, float]]:
        return [
            (one.labels, ts, value)
            for got in self.received
            for one in got.series
            for ts, value in one.samples
        ]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        yield opened


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """Make (not start) real Prometheus servers on free ports; each is stopped by PID."""
    made: list[Prometheus] = []

    def make(**kwargs: Any) -> Prometheus:
        server = Prometheus(tmp_path / f"prometheus{len(made)}", ports.free_port(), **kwargs)
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            server.stop()


# ---------------------------------------------------------------- the wire format


def test_a_write_request_is_the_protocols_bytes() -> None:
    """Field numbers and wire types of prompb's WriteRequest, spelled out by hand."""
    one = Series(labels=(("__name__", "up"), ("host", "a")), samples=((1000, 1.0),))
    label = bytes.fromhex("0a08") + b"__name__" + bytes.fromhex("1202") + b"up"
    host = bytes.fromhex("0a04") + b"host" + bytes.fromhex("1201") + b"a"
    # Sample: value (field 1, fixed64) 1.0, timestamp (field 2, varint) 1000
    point = bytes.fromhex("09000000000000f03f") + bytes.fromhex("10e807")
    series = (
        bytes([0x0A, len(label)])
        + label
        + bytes([0x0A, len(host)])
        + host
        + bytes([0x12, len(point)])
        + point
    )
    assert remote_write.encode([one]) == bytes([0x0A, len(series)]) + series


label_names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
a_series = st.builds(
    Series,
    labels=st.dictionaries(label_names, st.text(max_size=20)).map(
        lambda labels: tuple(sorted(labels.items()))
    ),
    samples=st.lists(
        st.tuples(st.integers(-(2**62), 2**62), st.floats(allow_nan=False)), max_size=5
    ).map(tuple),
)


@given(st.lists(a_series, max_size=5))
def test_the_request_body_decodes_to_what_was_encoded(series: list[Series]) -> None:
    data = remote_write.body(series)
    assert not data.startswith(b"\xff\x06\x00\x00sNaPpY")  # the block format, not framed
    assert remote_write.decode(bytes(cramjam.snappy.decompress_raw(data))) == series


def queued(rows: Sequence[tuple[str | None, str | None, str | None, int, float]]) -> list[Any]:
    return [QueuedSample(index, *row) for index, row in enumerate(rows, 1)]


def test_series_have_the_names_labels_and_units_of_metrics() -> None:
    rows = queued(
        [
            ("a", "cpu_percent", "{}", 2000, 50.0),
            ("a", "cpu_percent", "{}", 1000, 25.0),  # queued later, sampled earlier
            ("a", "cpu_percent", "{}", 2000, 99.0),  # the same millisecond again: first kept
            ("a", "disk_percent", '{"mount":"/"}', 1000, 10.0),
            ("b", "up", "{}", 1000, 0.0),
            ("b", "disk_read_bytes_per_sec", '{"device":"sda"}', 1000, 5.0),  # sorts first
            ("a", "not_a_metric_yet", "{}", 1000, 1.0),  # not in /metrics either
            (None, None, None, 1000, 1.0),  # its series was forgotten
        ]
    )
    assert remote_write.series_of(rows) == [
        Series(
            labels=(("__name__", "netmetrix_cpu_busy_ratio"), ("host", "a")),
            samples=((1000, 0.25), (2000, 0.5)),
        ),
        Series(
            labels=(("__name__", "netmetrix_disk_used_ratio"), ("host", "a"), ("mount", "/")),
            samples=((1000, 0.1),),
        ),
        Series(labels=(("__name__", "netmetrix_up"), ("host", "b")), samples=((1000, 0.0),)),
        Series(
            labels=(
                ("__name__", "netmetrix_disk_read_bytes_per_second"),
                ("device", "sda"),
                ("host", "b"),
            ),
            samples=((1000, 5.0),),
        ),
    ]


def test_series_are_the_series_of_the_metrics_page() -> None:
    """Every catalogue metric, pushed and scraped, gives the same names, labels, values."""
    rows = [
        LatestRow("h1", metric, json.dumps({"mount": "/"} if "disk" in metric else {}), 1000, 7.0)
        for metric in EXPOSED
    ]
    page = {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in sample_families(rows, EXPOSED)
        for s in family.samples
    }
    pushed = {
        (dict(one.labels)["__name__"], tuple(p for p in one.labels if p[0] != "__name__"), v)
        for one in remote_write.series_of(queued([(*row[:4], row.value) for row in rows]))
        for _, v in one.samples
    }
    assert pushed == page
    assert len(pushed) == len(EXPOSED)


def test_backoff_doubles_up_to_five_minutes() -> None:
    waits = [remote_write.backoff(n) for n in range(12)]
    assert waits == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert remote_write.backoff(10_000) == 300


def test_urls_in_messages_carry_no_secrets() -> None:
    shown = remote_write.display_url("https://u:pw@mimir.example.com:8443/api/v1/push?key=k")
    assert shown == "https://mimir.example.com:8443/api/v1/push"


# ---------------------------------------------------------------- config.xml


def config_file(tmp_path: Path, element: str) -> Path:
    path = tmp_path / "config.xml"
    path.write_text(f'<netmetrix>\n  {element}\n  <hosts><host name="a"/></hosts>\n</netmetrix>\n')
    return path


def test_a_minimal_remote_write_takes_the_defaults(tmp_path: Path) -> None:
    url = "https://prometheus.example.com/api/v1/write"
    config = load_config(config_file(tmp_path, f'<remote_write url="{url}"/>'))
    assert config.remote_write == RemoteWriteConfig(url=url)
    assert (config.remote_write.timeout, config.remote_write.batch) == (10.0, 5000)
    assert config.remote_write.max_backlog == 1_000_000
    assert load_config(config_file(tmp_path, "")).remote_write is None


def test_remote_write_round_trips_through_configxml(tmp_path: Path) -> None:
    written = RemoteWrite(
        url="https://m.example.com/api/v1/push?tenant=a&x=1",
        username="nmx",
        password_env=PASSWORD_ENV,
        ca_file="ca.pem",
        timeout="5s",
        deadline="1m",
        batch=100,
        max_backlog=50_000,
    )
    path = tmp_path / "config.xml"
    path.write_text(render(ConfigXml(hosts=[Host(name="a")], remote_write=written)))
    assert load_config(path).remote_write == RemoteWriteConfig(
        url="https://m.example.com/api/v1/push?tenant=a&x=1",
        username="nmx",
        password_env=PASSWORD_ENV,
        ca_file=tmp_path / "ca.pem",
        timeout=5.0,
        deadline=60.0,
        batch=100,
        max_backlog=50_000,
    )


@pytest.mark.parametrize(
    ("element", "problem"),
    [
        (
            '<remote_write url="ftp://p.example.com/write"/>',
            "url must be an http:// or https:// URL like"
            ' https://prometheus.example.com/api/v1/write, got "ftp://p.example.com/write"',
        ),
        (
            '<remote_write url="http:///api/v1/write"/>',
            "url must be an http:// or https:// URL like"
            ' https://prometheus.example.com/api/v1/write, got "http:///api/v1/write"',
        ),
        (
            '<remote_write url="https://p.example.com:port/write"/>',
            "url must be an http:// or https:// URL like"
            ' https://prometheus.example.com/api/v1/write, got "https://p.example.com:port/write"',
        ),
        (
            '<remote_write url="https://nmx:s3cret@p.example.com/write"/>',
            "url: the URL contains a user or password; keep secrets out of the config file"
            " (username= with password_env= or password_file=)",
        ),
        ("<remote_write/>", 'missing required attribute "url"'),
        (
            '<remote_write url="http://p/w" password="x"/>',
            'attribute "password" is not allowed: secrets never go in the config file'
            ' (name an environment variable with password_env="...")',
        ),
        (
            '<remote_write url="http://p/w" username="nmx"/>',
            "username and password_env (or password_file) go together (basic auth needs both)",
        ),
        (
            '<remote_write url="http://p/w" token_env="T" token_file="t"/>',
            "give token_env or token_file, not both",
        ),
        (
            '<remote_write url="http://p/w" username="u" password_env="P" token_env="T"/>',
            "basic auth (username) and a bearer token (token_env, token_file) exclude each other",
        ),
        (
            '<remote_write url="http://p/w" batch="0"/>',
            'batch must be an integer 1-100000, got "0"',
        ),
        (
            '<remote_write url="http://p/w" max_backlog="lots"/>',
            'max_backlog must be an integer 1-1000000000, got "lots"',
        ),
        (
            '<remote_write url="http://p/w" timeout="2h"/>',
            'timeout must be a duration > 0 and at most 3600 s ("10s", "1m"), got "2h"',
        ),
    ],
)
def test_remote_write_problems_name_the_file_and_field(
    tmp_path: Path, element: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(config_file(tmp_path, element))
    assert str(raised.value) == f"{tmp_path}/config.xml:2: <remote_write>: {problem}"
    assert "s3cret" not in str(raised.value)


def test_one_remote_write_only(tmp_path: Path) -> None:
    path = tmp_path / "config.xml"
    path.write_text(
        '<netmetrix>\n  <remote_write url="http://a/w"/>\n  <remote_write url="http://b/w"/>\n'
        '  <hosts><host name="a"/></hosts>\n</netmetrix>\n'
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value) == f"{path}:3: <netmetrix>: duplicate <remote_write>, first at line 2"


def test_config_show_names_where_secrets_come_from_never_the_secrets(tmp_path: Path) -> None:
    element = f'<remote_write url="https://p/w" username="nmx" password_env="{PASSWORD_ENV}"/>'
    config = load_config(config_file(tmp_path, element))
    shown = {
        s.setting: (s.value, s.source)
        for s in effective_settings(config, {PASSWORD_ENV: "s3cret"})
        if s.setting.startswith("remote_write.")
    }
    assert shown == {
        "remote_write.url": ("https://p/w", "config.xml"),
        "remote_write.username": ("nmx", "config.xml"),
        "remote_write.password": (f"${PASSWORD_ENV} (set)", "environment"),
        "remote_write.timeout": ("10s", "default"),
        "remote_write.deadline": ("30s", "default"),
        "remote_write.batch": ("5000", "default"),
        "remote_write.max_backlog": ("1000000", "default"),
    }


# ---------------------------------------------------------------- the queue


def write_then_fail(store: Store, failing: HostRun) -> None:
    with store.transaction("a run that fails") as tx:
        assert tx.write_runs([failing], EXPOSED).forwarded == 2
        raise RuntimeError("rolled back")


def test_samples_are_queued_in_the_transaction_that_stores_them(store: Store) -> None:
    recorded = record(store, run("a", NOW, sample("load1", 0.5), sample("cpu_percent", 3.0)))
    assert (recorded.samples, recorded.forwarded) == (3, 3)  # up too
    assert record(store, run("a", NOW + 1, sample("load1", 0.6)), remote_write=False).forwarded == 0
    assert store.remote_write_backlog() == 3
    failing = run("a", NOW + 2, sample("load1", 0.7))
    with pytest.raises(RuntimeError, match="rolled back"):
        write_then_fail(store, failing)
    assert store.remote_write_backlog() == 3  # neither stored nor queued
    assert [(r.host, r.metric, r.ts_ms) for r in store.remote_write_oldest(10)] == [
        ("a", "up", round(NOW * 1000)),
        ("a", "load1", round(NOW * 1000)),
        ("a", "cpu_percent", round(NOW * 1000)),
    ]


def test_one_sender_holds_the_lease_until_it_runs_out(store: Store) -> None:
    assert store.take_remote_write_lease("one", now=NOW, lease=30)
    assert not store.take_remote_write_lease("two", now=NOW + 29, lease=30)
    assert store.take_remote_write_lease("one", now=NOW + 29, lease=30)  # renewed
    assert not store.take_remote_write_lease("two", now=NOW + 58, lease=30)
    assert store.take_remote_write_lease("two", now=NOW + 60, lease=30)  # ran out
    store.release_remote_write_lease("one")  # no longer its: nothing happens
    assert not store.take_remote_write_lease("three", now=NOW + 61, lease=30)
    store.release_remote_write_lease("two")
    assert store.take_remote_write_lease("three", now=NOW + 61, lease=30)


def test_two_senders_never_send_the_same_samples(store: Store) -> None:
    for i in range(5):
        record(store, run(f"h{i}", NOW, sample("load1", float(i))))
    hold = threading.Event()
    with Receiver(hold=hold) as receiver:
        config = rw(receiver.url, batch=4)
        first: list[remote_write.Pushed] = []
        sender = threading.Thread(target=lambda: first.append(remote_write.send(store, config)))
        sender.start()
        assert receiver.arrived.wait(60)  # the first sender's first batch is in flight
        second = remote_write.send(store, config)
        hold.set()
        sender.join(60)
    assert (second.busy, second.sent) == (True, 0)
    assert (first[0].sent, first[0].backlog) == (10, 0)
    assert [sum(len(one.samples) for one in got.series) for got in receiver.received] == [4, 4, 2]
    assert len(set(receiver.samples())) == len(receiver.samples()) == 10  # each sample once


def test_batches_go_oldest_first_and_the_queue_empties(store: Store) -> None:
    for tick in range(3):
        record(store, run("a", NOW + tick, sample("load1", float(tick))))
    with Receiver() as receiver:
        pushed = remote_write.send(store, rw(receiver.url, batch=2))
    assert (pushed.sent, pushed.backlog, pushed.problems("execute")) == (6, 0, [])
    assert [len(got.series[0].samples) for got in receiver.received] == [1, 1, 1]
    sent = [(dict(labels)["__name__"], ts) for labels, ts, _ in receiver.samples()]
    ms = [round((NOW + tick) * 1000) for tick in range(3)]
    assert sent == [
        ("netmetrix_up", ms[0]),
        ("netmetrix_load1", ms[0]),
        ("netmetrix_up", ms[1]),
        ("netmetrix_load1", ms[1]),
        ("netmetrix_up", ms[2]),
        ("netmetrix_load1", ms[2]),
    ]
    headers = receiver.received[0].headers
    assert headers["Content-Encoding"] == "snappy"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert headers["User-Agent"].startswith("netmetrix/")
    assert "Authorization" not in headers


def test_a_5xx_keeps_the_batch_for_the_next_pass(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    record(store, run("a", NOW, sample("load1", 0.5)))
    with Receiver([503, (429, {"Retry-After": "7"})]) as receiver:
        first = remote_write.send(store, rw(receiver.url))
        second = remote_write.send(store, rw(receiver.url))
        third = remote_write.send(store, rw(receiver.url))
    assert (first.sent, first.backlog, first.failed) == (0, 2, True)
    assert first.error == "HTTP 503 Service Unavailable: refused by the test receiver"
    assert (second.error, second.retry_after) == (
        "HTTP 429 Too Many Requests: refused by the test receiver",
        7.0,
    )
    assert (third.sent, third.backlog, third.failed) == (2, 0, False)
    assert [got.series for got in receiver.received[1:]] == [receiver.received[0].series] * 2
    assert first.problems("execute") == [
        f"execute: remote-write: 2 samples still queued for {receiver.url}"
        " (HTTP 503 Service Unavailable: refused by the test receiver);"
        " the next execute or watch sends them"
    ]
    assert f"remote-write: {receiver.url}: HTTP 503" in caplog.text


@pytest.mark.parametrize("status", [400, 422])
def test_a_4xx_drops_the_batch_with_an_error_and_goes_on(
    store: Store, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    record(store, run("a", NOW, sample("load1", 0.5)))
    record(store, run("a", NOW + 1, sample("load1", 0.6)))
    with Receiver([status]) as receiver:
        pushed = remote_write.send(store, rw(receiver.url, batch=2))
    assert (pushed.sent, pushed.dropped, pushed.backlog, pushed.failed) == (2, 2, 0, False)
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.getMessage().startswith(
        f"remote-write: {receiver.url} refused 2 samples for good: HTTP {status}"
    )
    assert error.getMessage().endswith("; dropped")


@pytest.mark.parametrize("status", [401, 403, 404, 413])
def test_a_refused_request_keeps_its_samples(store: Store, status: int) -> None:
    """The receiver refuses us (a token, a URL, a size), not the samples: keep them."""
    record(store, run("a", NOW, sample("load1", 0.5)))
    with Receiver([status]) as receiver:
        pushed = remote_write.send(store, rw(receiver.url))
    assert (pushed.sent, pushed.dropped, pushed.backlog) == (0, 0, 2)
    assert pushed.error is not None
    assert pushed.error.startswith(f"HTTP {status} ")
    assert pushed.error.endswith("(lower <remote_write batch>)") == (status == 413)


def test_a_bearer_token_from_a_file_is_sent_and_never_logged(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t0ken-s3cret\n")
    record(store, run("a", NOW, sample("load1", 0.5)))
    caplog.set_level(logging.DEBUG)
    with Receiver([401]) as receiver:
        config = rw(receiver.url, token_file=token_file)
        refused = remote_write.send(store, config)
        pushed = remote_write.send(store, config)
    assert [got.headers["Authorization"] for got in receiver.received] == [
        "Bearer t0ken-s3cret"
    ] * 2
    assert (refused.backlog, pushed.sent) == (2, 2)
    assert "t0ken" not in caplog.text


def test_a_missing_secret_keeps_the_samples_and_says_which(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    record(store, run("a", NOW, sample("load1", 0.5)))
    with Receiver() as receiver:
        pushed = remote_write.send(
            store, rw(receiver.url, username="nmx", password_env=PASSWORD_ENV)
        )
    assert receiver.received == []
    assert (pushed.backlog, pushed.error) == (
        2,
        f"the environment variable {PASSWORD_ENV} (<remote_write password_env>) is not set",
    )


def test_a_backlog_over_the_limit_drops_the_oldest_with_a_warning(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    for tick in range(4):
        record(store, run("a", NOW + tick, sample("load1", float(tick))))
    down = f"http://127.0.0.1:{ports.free_port()}/api/v1/write"  # nobody listens
    pushed = remote_write.send(store, rw(down, max_backlog=3))
    assert (pushed.trimmed, pushed.backlog) == (5, 3)
    assert pushed.error is not None
    assert pushed.error.startswith(f"cannot reach {down}: ")
    kept = store.remote_write_oldest(10)
    assert [(r.metric, r.ts_ms) for r in kept] == [
        ("load1", round((NOW + 2) * 1000)),
        ("up", round((NOW + 3) * 1000)),
        ("load1", round((NOW + 3) * 1000)),
    ]
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING and "max_" in r.msg]
    assert warning.getMessage() == (
        f"remote-write: more than max_backlog=3 samples queued for {down}: dropped the 5 oldest"
    )


def test_samples_of_a_forgotten_host_are_dropped_not_sent(store: Store) -> None:
    record(store, run("gone", NOW, sample("load1", 0.5)), run("kept", NOW, sample("load1", 0.7)))
    pipeline.forget(store, ["gone"], [], configured=[], now=NOW)
    with Receiver() as receiver:
        pushed = remote_write.send(store, rw(receiver.url))
    assert (pushed.sent, pushed.backlog) == (2, 0)
    assert {dict(labels)["host"] for labels, _, _ in receiver.samples()} == {"kept"}


def test_db_info_of_an_older_schema_shows_no_backlog(tmp_path: Path) -> None:
    """db info does not upgrade: a store from before the queue must not break it."""
    from alembic import command
    from sqlalchemy import create_engine

    from netmetrix.store import admin, alembic_config

    url = f"sqlite:///{tmp_path}/old.db"
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
    engine.dispose()
    with Store.open(url, upgrade=False) as old:
        found = admin.info(old)
    assert (found.schema_version, found.remote_write_backlog) == ("0004", None)


# ---------------------------------------------------------------- real Prometheus


@pytest.fixture
def farm_hosts(fleet: Fleet, netmetrix: Cli) -> Fleet:
    fleet.host("m1", 0)
    fleet.host("m2", 1)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    return fleet


def db_backlog(netmetrix: Cli, fleet: Fleet) -> int:
    ran = netmetrix("--config", fleet.config, "db", "info", "--format", "json")
    assert ran.code == 0, ran.err
    backlog: int = json.loads(ran.out)[0]["remote_write_backlog"]
    return backlog


def stored_series(fleet: Fleet) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    """What Prometheus must hold: every stored sample, as /metrics names and scales it."""
    expected: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
    with Store.open(f"sqlite:///{fleet.database}") as store:
        for host in ("m1", "m2"):
            for metric in store.metric_names():
                for got in store.history(host, metric):
                    how = EXPOSED[metric]
                    labels = {"__name__": how.full_name, "host": host, **got.labels}
                    key = tuple(sorted(labels.items()))
                    expected.setdefault(key, []).append(
                        (round(got.ts * 1000), got.value * how.scale)
                    )
    return expected


@pytest.mark.sshd
@needs_prometheus
def test_execute_pushes_what_it_stores_to_prometheus(
    farm_hosts: Fleet, netmetrix: Cli, prometheus: Callable[..., Prometheus]
) -> None:
    server = prometheus().start()
    farm_hosts.write(remote_write=RemoteWrite(url=server.write_url))

    ran = netmetrix("--config", farm_hosts.config, "execute")

    assert ran.code == 0, ran.err
    expected = stored_series(farm_hosts)
    assert len(expected) > 20  # both hosts, every metric
    sent = f"remote-write: {len(expected)} samples sent to {server.write_url}"
    assert sent in ran.err
    assert "still queued" not in ran.err
    assert server.samples('{__name__=~"netmetrix_.+"}[1h]') == expected
    assert db_backlog(netmetrix, farm_hosts) == 0


@pytest.mark.sshd
@needs_prometheus
def test_a_down_receiver_keeps_the_backlog_and_a_later_run_sends_it(
    farm_hosts: Fleet, netmetrix: Cli, prometheus: Callable[..., Prometheus]
) -> None:
    server = prometheus()  # made, not started: nobody listens on its port yet
    farm_hosts.write(remote_write=RemoteWrite(url=server.write_url, timeout="5s"))

    first = netmetrix("--config", farm_hosts.config, "execute")

    assert first.code == 0, first.err  # the hosts are fine; the samples wait
    backlog = db_backlog(netmetrix, farm_hosts)
    assert backlog > 20
    assert (
        f"execute: remote-write: {backlog} samples still queued for {server.write_url}"
        f" (cannot reach {server.write_url}: Connection refused);"
        " the next execute or watch sends them"
    ) in first.err.splitlines()

    server.start()
    second = netmetrix("--config", farm_hosts.config, "execute")

    assert second.code == 0, second.err
    assert db_backlog(netmetrix, farm_hosts) == 0
    expected = stored_series(farm_hosts)
    assert {len(samples) for samples in expected.values()} == {2}  # two runs
    assert server.samples('{__name__=~"netmetrix_.+"}[1h]') == expected


@needs_prometheus
def test_prometheus_refuses_samples_out_of_its_bounds_for_good(
    store: Store, prometheus: Callable[..., Prometheus], caplog: pytest.LogCaptureFixture
) -> None:
    server = prometheus().start()
    config = rw(server.write_url)
    record(store, run("a", NOW, sample("load1", 0.5)))
    assert remote_write.send(store, config).sent == 2
    record(store, run("a", NOW - 3 * 3600, sample("load1", 0.1)))  # hours before its head

    pushed = remote_write.send(store, config)

    assert (pushed.sent, pushed.dropped, pushed.backlog) == (0, 2, 0)
    assert f"remote-write: {server.write_url} refused 2 samples for good: HTTP 400" in caplog.text
    assert server.samples('netmetrix_load1{host="a"}[1h]') == {
        (("__name__", "netmetrix_load1"), ("host", "a")): [(round(NOW * 1000), 0.5)]
    }


@needs_prometheus
def test_https_with_a_private_ca_and_basic_auth(
    store: Store,
    prometheus: Callable[..., Prometheus],
    smtp_tls: smtpserver.TLSFiles,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tls = (smtp_tls.ca, smtp_tls.cert, smtp_tls.key)
    server = prometheus(tls=tls, users={"nmx": "s3cret-pw"}).start()
    record(store, run("a", NOW, sample("load1", 0.5)))
    login = {"username": "nmx", "password_env": PASSWORD_ENV}
    monkeypatch.setenv(PASSWORD_ENV, "wrong-pw")

    untrusted = remote_write.send(store, rw(server.write_url, **login))
    refused = remote_write.send(store, rw(server.write_url, ca_file=smtp_tls.ca, **login))
    monkeypatch.setenv(PASSWORD_ENV, "s3cret-pw")
    pushed = remote_write.send(store, rw(server.write_url, ca_file=smtp_tls.ca, **login))

    assert untrusted.error is not None
    assert "TLS certificate not trusted" in untrusted.error
    assert (refused.error or "").startswith("HTTP 401 Unauthorized")
    assert (untrusted.backlog, refused.backlog) == (2, 2)  # kept, not dropped
    assert (pushed.sent, pushed.backlog) == (2, 0)
    assert server.samples('netmetrix_load1{host="a"}[1h]') == {
        (("__name__", "netmetrix_load1"), ("host", "a")): [(round(NOW * 1000), 0.5)]
    }
    assert "pw" not in caplog.text


@pytest.mark.sshd
@needs_prometheus
def test_watch_pushes_in_the_background_backs_off_and_stops_cleanly(
    farm_hosts: Fleet, prometheus: Callable[..., Prometheus]
) -> None:
    server = prometheus()  # started once watch has failed to reach it
    farm_hosts.write(remote_write=RemoteWrite(url=server.write_url, timeout="5s"))
    watch = Background(farm_hosts.config, "watch", "--interval", "1s")
    try:
        watch.wait_for(f"remote-write: {server.write_url}: cannot reach")
        server.start()
        found = server.wait_for(
            'count_over_time(netmetrix_up{host="m1"}[1h])',
            lambda result: result and float(result[0]["value"][1]) >= 3,
            "three ticks pushed",
        )
        watch.process.send_signal(signal.SIGTERM)
        assert watch.finish(budget=60) == 0, watch.err
    finally:
        watch.stop()
    assert found
    assert "remote-write: " in watch.err
    assert "takes samples again" in watch.err
    assert "Traceback" not in watch.err
    # what was stored before Prometheus started was sent too: the first tick is there
    with Store.open(f"sqlite:///{farm_hosts.database}") as store:
        first = store.history("m1", "up")[0]
    pushed = server.samples('netmetrix_up{host="m1"}[1h]')
    [(_key, values)] = pushed.items()
    assert values[0][0] == round(first.ts * 1000)
