"""<receivers> in config.xml and `notify=` on rules (#16); `config check` on them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Run
from test_config import HOSTS, doc, load, problems

from netmetrix import alerts
from netmetrix.receivers import Receiver, targets


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in tmp_path, so messages name ``config.xml`` as a user would type it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


RECEIVERS = (
    "<receivers>"
    '<email name="ops" to="ops@example.com,oncall@example.com"/>'
    '<webhook name="chat" url="https://chat.example.com/hooks/abc" format="slack"'
    ' secret_env="CHAT_SECRET" timeout="5"/>'
    '<alertmanager name="am" url="http://am1:9093 http://am2:9093/"/>'
    "</receivers>"
)


def test_receivers_and_notify_are_read(here: Path) -> None:
    config = load(
        doc(
            HOSTS,
            RECEIVERS,
            "<alerts>",
            '<alert metric="cpu_percent" op="&gt;" limit="20" notify="ops,chat,am"'
            ' email="me@example.com"/>',
            "</alerts>",
        )
    )
    assert config.receivers == (
        Receiver(name="ops", channel="email", to=("ops@example.com", "oncall@example.com"), line=3),
        Receiver(
            name="chat",
            channel="webhook",
            urls=("https://chat.example.com/hooks/abc",),
            format="slack",
            secret_env="CHAT_SECRET",
            timeout=5.0,
            line=3,
        ),
        Receiver(
            name="am", channel="alertmanager", urls=("http://am1:9093", "http://am2:9093/"), line=3
        ),
    )
    [rule] = config.alerts.rules
    assert (rule.email, rule.notify) == (("me@example.com",), ("ops", "chat", "am"))
    where = [
        (t.channel, t.receiver, t.recipient)
        for t in targets(rule, {r.name: r for r in config.receivers})
    ]
    assert where == [
        ("email", "", "me@example.com"),
        ("email", "ops", "ops@example.com"),
        ("email", "ops", "oncall@example.com"),
        ("webhook", "chat", "chat"),
        ("alertmanager", "am", "http://am1:9093"),
        ("alertmanager", "am", "http://am2:9093/"),
    ]
    # a resolve that is not mailed (resolved="false") still ends the Alertmanager alert
    quiet = [t.channel for t in targets(rule, {r.name: r for r in config.receivers}, mail=False)]
    assert quiet == ["alertmanager", "alertmanager"]


def test_a_rule_without_notify_keeps_its_state_id(here: Path) -> None:
    """Rules written before receivers keep their alert state across the upgrade."""
    config = load(
        doc(
            HOSTS,
            "<alerts>",
            '<alert metric="up" op="==" limit="0" email="a@example.com"/>',
            "</alerts>",
        )
    )
    [rule] = config.alerts.rules
    assert alerts.rule_id(rule) == "ec84096f1dddfab0"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param(
            [
                RECEIVERS,
                "<alerts>",
                '<alert metric="up" op="==" limit="0" notify="ops,chta"/>',
                "</alerts>",
            ],
            [
                'config.xml:5: <alert metric="up">: notify: unknown receiver "chta", did you mean'
                ' "chat"?',
            ],
            id="unknown-receiver",
        ),
        pytest.param(
            [
                "<receivers>",
                '<webhook name="chat" url="ftp://x/y"/>',
                '<alertmanager name="am" url="http://am1:9093 am2"/>',
                '<webhook name="chat" url="http://u:pw@x/y" format="teams"/>',
                '<email to="a@example.com"/>',
                "<pager/>",
                "</receivers>",
            ],
            [
                'config.xml:4: <webhook name="chat">: url must be an http:// or https:// URL like'
                ' https://hooks.example.com/alerts, got "ftp://x/y"',
                'config.xml:5: <alertmanager name="am">: url must be space-separated http:// or'
                ' https:// URLs like http://am1:9093 http://am2:9093, got "http://am1:9093 am2"',
                'config.xml:6: <webhook name="chat">: url: the URL contains a user or password;'
                " keep secrets out of the config file",
                'config.xml:6: <webhook name="chat">: format must be one of json, slack,'
                ' got "teams"',
                'config.xml:7: <email>: missing required attribute "name"',
                "config.xml:8: <receivers>: unknown element <pager>; allowed: <email>, <webhook>,"
                " <alertmanager>",
            ],
            id="bad-receivers",
        ),
        pytest.param(
            [
                "<receivers>",
                '<email name="ops" to="a@example.com"/>',
                '<webhook name="ops" url="http://x/y"/>',
                "</receivers>",
            ],
            ['config.xml:5: <receivers>: duplicate receiver name "ops", first at line 4'],
            id="duplicate-name",
        ),
    ],
)
def test_receiver_problems(here: Path, lines: list[str], expected: list[str]) -> None:
    assert problems(doc(HOSTS, *lines)) == expected


def test_config_check_names_an_unset_secret(
    here: Path, netmetrix: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    Path("config.xml").write_text(doc(HOSTS, RECEIVERS))
    monkeypatch.delenv("CHAT_SECRET", raising=False)
    result: Run = netmetrix("config", "check", "config.xml")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        'config.xml:3: <webhook name="chat">: secret_env: environment variable CHAT_SECRET'
        " is not set"
    ]
    monkeypatch.setenv("CHAT_SECRET", "x")
    assert netmetrix("config", "check", "config.xml").code == 0
