"""netmetrix serve: the JSON API against the CLI's JSON, auth, TLS, exposure, stop (#14).

The store is filled by a real upload and execute against the sshd farm; the
server is the real `netmetrix serve` process on a free loopback port.
"""

from __future__ import annotations

import base64
import json
import signal
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ports
import pytest
import smtpserver
from conftest import Background, Fleet, Run, Served, wait_up

from netmetrix.configxml import Web
from netmetrix.web.auth import check_password, hash_password

pytestmark = pytest.mark.sshd
Cli = Callable[..., Run]


@pytest.fixture
def collected(fleet: Fleet, netmetrix: Cli) -> Fleet:
    """Two hosts with one execute run stored."""
    fleet.host("a1", 0)
    fleet.host("a2", 1)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    assert netmetrix("--config", fleet.config, "execute").code == 0
    return fleet


def cli_json(netmetrix: Cli, fleet: Fleet, *args: str) -> Any:
    ran = netmetrix("--config", fleet.config, *args, "--format", "json")
    assert ran.code == 0, ran.err
    return json.loads(ran.out)


def test_api_answers_what_the_cli_prints(
    collected: Fleet, netmetrix: Cli, serve: Callable[..., Served]
) -> None:
    served = serve()
    cases = [
        ("/api/v1/hosts", ["hosts"]),
        ("/api/v1/hosts?host=a*", ["hosts", "-h", "a*"]),
        ("/api/v1/latest", ["metrics", "latest"]),
        ("/api/v1/latest?host=a1&metric=up&metric=load1", ["metrics", "latest", "-h", "a1"]),
        ("/api/v1/history?host=a2&metric=cpu_percent", ["metrics", "history", "-h", "a2"]),
        ("/api/v1/alerts", ["alerts", "active"]),
        ("/api/v1/alerts/history", ["alerts", "history"]),
        ("/api/v1/alerts/outbox?all=1", ["alerts", "outbox", "--all"]),
    ]
    extra = {3: ["-m", "up", "-m", "load1"], 4: ["-m", "cpu_percent"]}
    for index, (path, args) in enumerate(cases):
        status, body, headers = served.get(path)
        assert (status, headers["content-type"]) == (200, "application/json"), (path, body)
        assert body == cli_json(netmetrix, collected, *args, *extra.get(index, [])), path
    assert len(served.get("/api/v1/latest?metric=up")[1]) == 2  # not a vacuous comparison


def test_api_latest_filters_by_labels(collected: Fleet, serve: Callable[..., Served]) -> None:
    status, body, _ = serve().get("/api/v1/latest?host=a1&metric=disk_percent&labels=mount=/")
    assert status == 200
    assert [(r["metric"], r["labels"]) for r in body] == [("disk_percent", {"mount": "/"})]


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/api/v1/latest?host=nope", 404, 'unknown host "nope"'),
        ("/api/v1/latest?metric=cpu_prcent", 404, 'unknown metric "cpu_prcent"'),
        ("/api/v1/history?host=a1", 400, "history takes exactly one metric"),
        ("/api/v1/history?host=a1&metric=up&since=yesterday", 400, "neither a duration"),
        ("/api/v1/history?host=a1&metric=up&since=1m&until=1h", 400, "since is after until"),
        ("/api/v1/latest?labels=mount", 400, "give name=value pairs"),
        ("/api/v1/alerts/history?limit=0", 400, "a whole number from 1 to 10000"),
        ("/api/v1/nothing", 404, None),
    ],
)
def test_api_errors_are_json_with_a_status(
    collected: Fleet, serve: Callable[..., Served], path: str, status: int, error: str | None
) -> None:
    got, body, _ = serve().get(path)
    assert got == status
    if error is not None:
        assert error in body["error"]


def test_every_response_carries_a_strict_content_security_policy(
    collected: Fleet, serve: Callable[..., Served]
) -> None:
    served = serve()
    for path in ("/healthz", "/api/v1/hosts", "/api/v1/nothing"):
        headers = served.get(path)[2]
        assert "script-src 'self'" in headers["content-security-policy"], path
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"


def test_basic_auth_and_bearer_token(
    collected: Fleet, netmetrix: Cli, serve: Callable[..., Served], tmp_path: Path
) -> None:
    password_file = tmp_path / "web.hash"
    exe = Path(sys.executable).with_name("netmetrix")
    made = subprocess.run(
        [exe, "hash-password", "--output", password_file],
        input="s3cret\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert check_password("s3cret", password_file.read_text())
    token_file = tmp_path / "token"
    token_file.write_text("tok-123\n")
    collected.write(web=Web(user="ops", password_file=password_file, token_file=token_file))
    served = serve()

    def status(**headers: str) -> int:
        return served.get("/api/v1/hosts", headers)[0]

    basic = "Basic " + base64.b64encode(b"ops:s3cret").decode()
    wrong = "Basic " + base64.b64encode(b"ops:guess").decode()
    assert status() == 401
    assert served.get("/api/v1/hosts")[2]["www-authenticate"] == 'Basic realm="netmetrix"'
    assert status(Authorization=wrong) == 401
    assert status(Authorization="Bearer nope") == 401
    assert status(Authorization=basic) == 200
    assert status(Authorization="Bearer tok-123") == 200
    assert served.get("/healthz")[0] == 200  # load balancers carry no credentials


def test_serving_off_loopback_needs_credentials(collected: Fleet, netmetrix: Cli) -> None:
    ran = netmetrix("--config", collected.config, "serve", "--listen", "0.0.0.0:8470")
    assert ran.code == 2
    assert "set <web user= password_file=> or <web token_env=>" in ran.err
    assert "--no-auth" in ran.err


def test_a_missing_token_variable_is_a_config_error(
    collected: Fleet, netmetrix: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NMX_TEST_WEB_TOKEN", raising=False)
    collected.write(web=Web(token_env="NMX_TEST_WEB_TOKEN"))
    ran = netmetrix("--config", collected.config, "serve", "--listen", "127.0.0.1:1")
    assert ran.code == 2
    assert "config.xml: <web token_env>: $NMX_TEST_WEB_TOKEN is not set or empty" in ran.err


def test_https_with_the_configured_certificate(
    collected: Fleet, serve: Callable[..., Served], tmp_path: Path
) -> None:
    (tmp_path / "tls").mkdir()
    tls = smtpserver.make_tls(tmp_path / "tls")
    collected.write(web=Web(tls_cert=tls.cert, tls_key=tls.key))
    served = serve(tls=ssl.create_default_context(cafile=str(tls.ca)))
    status, body, _ = served.get("/api/v1/latest?metric=up")
    assert status == 200
    assert {row["host"] for row in body} == {"a1", "a2"}


def test_sigterm_stops_serve_with_status_0(collected: Fleet, serve: Callable[..., Served]) -> None:
    served = serve()
    served.process.process.send_signal(signal.SIGTERM)
    assert served.process.finish() == 0, served.process.err
    assert "serve: SIGTERM: stopping" in served.process.err


def test_password_hashes_are_salted_and_checked() -> None:
    first, second = hash_password("pw"), hash_password("pw")
    assert first != second  # a random salt each
    assert check_password("pw", first)
    assert check_password("pw", second)
    assert not check_password("pW", first)
    assert not check_password("pw", "md5$abc")
    assert not check_password("pw", "scrypt$x$y")


def test_watch_listen_serves_the_same_api_from_the_watch_process(
    collected: Fleet, netmetrix: Cli
) -> None:
    executed = {r["host"]: r["ts"] for r in cli_json(netmetrix, collected, "metrics", "latest")}
    port = ports.free_port()
    listen = f"127.0.0.1:{port}"
    watch = Background(collected.config, "watch", "--interval", "1s", "--listen", listen)
    try:
        served = Served(watch, f"http://127.0.0.1:{port}")
        wait_up(served)
        deadline = time.monotonic() + 60
        while True:  # the API shows the watch's ticks: `up` newer than the execute run's
            status, body, _ = served.get("/api/v1/latest?metric=up")
            newer = {r["host"] for r in body if r["value"] == 1.0 and r["ts"] > executed[r["host"]]}
            if status == 200 and newer == {"a1", "a2"}:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
        watch.process.send_signal(signal.SIGTERM)
        assert watch.finish() == 0, watch.err
        assert f"watch: serving http://127.0.0.1:{port}/" in watch.err
    finally:
        watch.stop()


def test_watch_listen_off_loopback_needs_credentials(collected: Fleet, netmetrix: Cli) -> None:
    ran = netmetrix("--config", collected.config, "watch", "--listen", "0.0.0.0:8470")
    assert ran.code == 2
    assert "--no-auth" in ran.err
