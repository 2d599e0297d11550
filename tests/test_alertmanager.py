"""Alerts into a real Alertmanager (#16): fired over real sshd, resolved when the value recovers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ports
import pytest
from amserver import ALERTMANAGER, Alertmanager
from conftest import Fleet, Run, sample
from hookserver import hook_server
from test_alerting import dial_host
from test_notify import T0, record

from netmetrix import hooks
from netmetrix.config import load_config
from netmetrix.configxml import Alert, Receiver, Web
from netmetrix.store import Store

Cli = Callable[..., Run]

needs_alertmanager = pytest.mark.skipif(
    not ALERTMANAGER.exists(), reason="needs Debian's prometheus-alertmanager (make system-deps)"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Alertmanager]]:
    """Two Alertmanagers, as an HA pair would be (each one on its own: no gossip)."""
    made: list[Alertmanager] = []
    try:
        for i in range(2):
            root = tmp_path_factory.mktemp(f"alertmanager{i}")
            made.append(Alertmanager(root, ports.free_port()).start())
        yield made
    finally:
        for server in made:
            server.stop()


def ours(alerts: list[dict[str, Any]], host: str) -> list[dict[str, Any]]:
    """The alerts of ``host``: the module's servers are shared by its tests."""
    return sorted(
        (a for a in alerts if a["labels"].get("host") == host),
        key=lambda a: a["labels"]["alertname"],
    )


@pytest.mark.sshd
@needs_alertmanager
def test_an_alert_fires_into_every_alertmanager_and_resolves_there(
    fleet: Fleet, netmetrix: Cli, cluster: list[Alertmanager]
) -> None:
    dial = dial_host(fleet, "am-f1", 0, 38.5)
    fleet.write(
        web=Web(url="https://netmetrix.example.com/"),
        receivers=[Receiver(tag="alertmanager", name="am", url=" ".join(s.url for s in cluster))],
        alerts=[
            Alert(metric="load1", op=">", limit=20, notify="am", severity="critical"),
            Alert(metric="disk_percent", labels="mount=/", op=">=", limit=0, notify="am"),
        ],
    )
    assert netmetrix("--config", fleet.config, "upload").code == 0
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 0, ran.err

    for server in cluster:
        got = server.wait_for(lambda found: len(ours(found, "am-f1")) == 2, "two alerts")
        disk, load = ours(got, "am-f1")
        assert load["labels"] == {"alertname": "load1", "host": "am-f1", "severity": "critical"}
        assert load["annotations"] == {
            "summary": "ALERT [am-f1] load1 is 38.5>20",
            "description": "load1 on am-f1 is 38.5, past the limit > 20.",
        }
        assert load["generatorURL"] == "https://netmetrix.example.com/hosts/am-f1"
        assert load["status"]["state"] == "active"
        assert disk["labels"] == {
            "alertname": "disk_percent",
            "host": "am-f1",
            "mount": "/",
            "severity": "warning",
        }
        assert disk["annotations"]["summary"].startswith('ALERT [am-f1] disk_percent{mount="/"} is')

    dial.set(1.0)
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 0, ran.err
    for server in cluster:
        got = server.wait_for(lambda found: len(ours(found, "am-f1")) == 1, "load1 resolved")
        assert [a["labels"]["alertname"] for a in ours(got, "am-f1")] == ["disk_percent"]
    assert netmetrix("--config", fleet.config, "alerts", "outbox", "--format", "json").out == "[]\n"


def test_firing_alerts_are_posted_again_without_an_event(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alertmanager forgets an alert not re-posted within resolve_timeout: every pass
    re-posts what is firing, though no event is queued."""
    with hook_server() as server:
        config_path = tmp_path / "config.xml"
        config_path.write_text(
            "<netmetrix><hosts><host name='f4'/></hosts>"
            f"<receivers><alertmanager name='am' url='{server.url}'/></receivers>"
            "<alerts><alert metric='cpu_percent' op='&gt;' limit='20' notify='am'/>"
            "<alert metric='cpu_percent' op='&gt;' limit='90' email='a@example.com'/></alerts>"
            "</netmetrix>"
        )
        config = load_config(config_path)
        rules = list(config.alerts.rules)
        record(store, rules, T0, {"f4": [sample("cpu_percent", 38.5)]})
        record(store, rules, T0 + 60, {"f4": [sample("cpu_percent", 39.5)]})  # no new event

        done = hooks.refresh(store, config)

        assert (done.alerts, done.failed) == (1, ())
        [request] = server.requests
        assert request.path == "/api/v2/alerts"
        [alert] = request.json()
        assert alert["labels"] == {"alertname": "cpu_percent", "host": "f4", "severity": "warning"}
        assert alert["annotations"]["summary"] == "ALERT [f4] cpu_percent is 39.5>20"
        assert alert["startsAt"] == "2026-09-21T14:13:20.000Z"
        assert "endsAt" not in alert
        assert "generatorURL" not in alert  # no <web url>


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as s:
        yield s
