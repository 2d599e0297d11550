"""The config.xml builder: what it writes, and that config.py reads back what it was given."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netmetrix import config as config_module
from netmetrix import configxml
from netmetrix.config import (
    AlertRule,
    AlertsConfig,
    Config,
    Encryption,
    HostConfig,
    HostKeyPolicy,
    Operator,
    RetentionConfig,
    SecurityConfig,
    Severity,
    SMTPConfig,
    SmtpSecurity,
    SSHConfig,
    load_config,
)
from netmetrix.configxml import SMTP, SSH, Alert, ConfigXml, Host, render
from netmetrix.example_config import EXAMPLE_CONFIG
from netmetrix.probe import METRIC_LABELS, METRICS

DATA = Path(__file__).parent / "data" / "config"
T = TypeVar("T")


def test_the_example_is_what_config_init_always_wrote() -> None:
    """Byte for byte the hand-written example the builder replaced (its comments teach)."""
    assert (DATA / "example.xml").read_text() == EXAMPLE_CONFIG


def test_the_example_s_commented_checks_work_once_uncommented(tmp_path: Path) -> None:
    start = EXAMPLE_CONFIG.index("       <checks>")
    end = EXAMPLE_CONFIG.index("</checks>", start) + len("</checks>")
    block = EXAMPLE_CONFIG[start:end]
    uncommented = block.replace("       ", "  ", 1).replace("\n       ", "\n  ")
    text = EXAMPLE_CONFIG.replace(block, "-->\n" + uncommented + "\n  <!--")
    path = tmp_path / "config.xml"
    path.write_text(text)
    config = load_config(path)
    [disk] = config.checks.checks
    assert disk.name == "disk"
    assert disk.argv[0] == "/usr/lib/nagios/plugins/check_disk"
    assert config.checks.textfiles[0].dir == "/var/lib/node_exporter/textfile"


def test_only_the_given_fields_are_written() -> None:
    assert render(ConfigXml(hosts=[Host(name="f4")])) == (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<netmetrix>\n"
        "  <hosts>\n"
        '    <host name="f4"/>\n'
        "  </hosts>\n"
        "</netmetrix>\n"
    )


def test_a_long_element_wraps_at_its_attribute_groups() -> None:
    text = render(
        ConfigXml(
            ssh=SSH(connect_timeout=5),
            hosts=[
                Host(name="a", port=22, key="/k", python="python3"),  # fits: one line
                Host(name="b", address="192.0.2.1", user="u", key="/" + "k" * 60, python="p"),
            ],
            alerts=[Alert(metric="up", op="==", limit=0, email="ops@example.com", comment="Down")],
            digest_over=3,
        )
    )
    assert text.splitlines()[1:] == [
        "<netmetrix>",
        '  <ssh connect_timeout="5"/>',
        "",
        "  <hosts>",
        '    <host name="a" port="22" key="/k" python="python3"/>',
        '    <host name="b" address="192.0.2.1" user="u"',
        f'          key="/{"k" * 60}"',
        '          python="p"/>',
        "  </hosts>",
        "",
        '  <alerts digest_over="3">',
        "    <!-- Down -->",
        '    <alert metric="up" op="==" limit="0" email="ops@example.com"/>',
        "  </alerts>",
        "</netmetrix>",
    ]


def test_values_are_escaped_so_the_file_stays_well_formed(tmp_path: Path) -> None:
    url = "postgresql://db.example.com/nmx?sslmode=require&application_name=a<b>"
    path = tmp_path / "config.xml"
    path.write_text(
        render(
            ConfigXml(
                database=url,
                smtp=SMTP(user='o\'brien "mail" & co'),
                hosts=[Host(name="f4", user="o'brien&<x>")],
            )
        )
    )
    config = load_config(path)
    assert config.database == url
    assert config.smtp.user == 'o\'brien "mail" & co'
    assert config.hosts[0].user == "o'brien&<x>"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ConfigXml(comment="see --help"), 'an XML comment cannot contain "--" or end with "-"'),
        (
            ConfigXml(
                hosts=[Host(name="a")],
                alerts=[Alert(metric="up", op="==", limit=0, email=("a@x.org", "b,c@x.org"))],
            ),
            "a comma-separated list cannot hold ('a@x.org', 'b,c@x.org')",
        ),
    ],
)
def test_what_config_xml_cannot_hold_is_refused(config: ConfigXml, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        render(config)
    assert str(caught.value).startswith(message)


def test_the_builder_writes_every_attribute_config_py_reads() -> None:
    def names(groups: tuple[tuple[str, ...], ...]) -> set[str]:
        return {name for group in groups for name in group}

    assert names(configxml._HOST_GROUPS) == set(config_module._HOST_ATTRS)
    assert names(configxml._ALERT_GROUPS) == set(config_module._ALERT_ATTRS)
    assert names(configxml._SSH_GROUPS) == set(config_module._SSH_ATTRS)
    assert names(configxml._SMTP_GROUPS) == set(config_module._SMTP_ATTRS)


# ---------------------------------------------------------------- round trip
#
# Hypothesis draws the values config.py should load (its own dataclasses), the test
# writes them with the builder (defaults left out half the time) and reads them back.

# Characters XML 1.0 can carry, without whitespace (config.py strips values' edges).
VISIBLE = st.characters(blacklist_categories=("Cs", "Cc", "Cn", "Co", "Zs", "Zl", "Zp"))
ANY_TEXT = st.text(VISIBLE, min_size=1, max_size=12)
NAME = st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True)
SAFE = r"[A-Za-z0-9_.+@%:,=-]"
DIRECTORY = st.from_regex(rf"(?:/|~/)(?:{SAFE}|/){{0,20}}", fullmatch=True)
PYTHON = st.from_regex(rf"/(?:{SAFE}|/){{0,20}}|[A-Za-z0-9_]{SAFE}{{0,10}}", fullmatch=True)
# Absolute and already normal (no ".", "..", "//"), so the loaded Path is the same.
ABSOLUTE = st.from_regex(r"(?:/[A-Za-z0-9_&'\"<>-][A-Za-z0-9_&'\"<>.-]{0,8}){1,3}", fullmatch=True)
EMAIL = st.from_regex(
    r"[A-Za-z0-9._%+&'-]{1,10}@[a-z0-9](?:[a-z0-9.-]{0,8}[a-z0-9])?", fullmatch=True
)
ENV_NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
LABEL_VALUE = st.text(
    st.characters(
        blacklist_categories=("Cs", "Cc", "Cn", "Co", "Zl", "Zp"), blacklist_characters=","
    ),
    min_size=1,
    max_size=12,
).filter(lambda value: value == value.strip())
FINITE = st.floats(allow_nan=False, allow_infinity=False)
SECONDS = st.floats(min_value=0, max_value=3600, exclude_min=True)
# The database as loaded -> as written (relative paths are config.py's own tests).
RAW_DATABASE = {
    "sqlite:////var/lib/x&y.db": "/var/lib/x&y.db",
    "postgresql://db.example.com/nmx?a=1&b=<2>": "postgresql://db.example.com/nmx?a=1&b=<2>",
}


@st.composite
def host_configs(draw: st.DrawFn) -> list[HostConfig]:
    names = draw(st.lists(NAME, min_size=1, max_size=4, unique_by=str.lower))
    return [
        HostConfig(
            name=name,
            address=draw(st.none() | st.from_regex(r"[A-Za-z0-9._:%\[\]-]{1,15}", fullmatch=True)),
            port=draw(st.none() | st.integers(1, 65535)),
            user=draw(st.none() | ANY_TEXT),
            key=draw(st.none() | ABSOLUTE.map(Path)),
            # each its own directory: two hosts sharing remote files are refused
            directory=f"{draw(DIRECTORY).rstrip('/')}/h{index}",
            python=draw(st.sampled_from(["python3"]) | PYTHON),
        )
        for index, name in enumerate(names)
    ]


@st.composite
def alert_rules(draw: st.DrawFn, host_names: list[str]) -> AlertRule:
    metric = draw(st.sampled_from(["up", *(name for name, *_ in METRICS)]))
    keys = METRIC_LABELS.get(metric, ())
    op = draw(st.sampled_from(get_args(Operator)))
    limit = draw(FINITE)
    clear = None
    if op in (">", ">=") and draw(st.booleans()):  # clear lies where the rule does not fire
        clear = draw(st.floats(max_value=limit, allow_nan=False, allow_infinity=False))
    elif op in ("<", "<=") and draw(st.booleans()):
        clear = draw(st.floats(min_value=limit, allow_nan=False, allow_infinity=False))
    patterns = st.lists(st.sampled_from([*host_names, "*", "db-*", "web[12]"]), unique=True)
    return AlertRule(
        metric=metric,
        op=op,
        limit=limit,
        email=tuple(draw(st.lists(EMAIL, min_size=1, max_size=3, unique=True))),
        labels=tuple((key, draw(LABEL_VALUE)) for key in keys if draw(st.booleans())),
        hosts=tuple(draw(patterns)),
        for_count=draw(st.integers(1, 100_000)),
        repeat=draw(st.none() | st.floats(min_value=0, max_value=365 * 86400, exclude_min=True)),
        resolved=draw(st.booleans()),
        severity=draw(st.sampled_from(get_args(Severity))),
        clear=clear,
    )


@st.composite
def configs(draw: st.DrawFn) -> Config:
    """A Config as load_config makes it, but for ``path``."""
    hosts = draw(host_configs())
    return Config(
        path=Path("/"),
        script=draw(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,10}", fullmatch=True)),
        concurrency=draw(st.integers(1, 10000)),
        database=draw(st.sampled_from(sorted(RAW_DATABASE))),
        ssh=SSHConfig(
            known_hosts=draw(ABSOLUTE.map(Path)),
            host_key_policy=draw(st.sampled_from(get_args(HostKeyPolicy))),
            connect_timeout=draw(SECONDS),
            command_timeout=draw(SECONDS),
        ),
        smtp=SMTPConfig(
            host=draw(NAME),
            port=draw(st.integers(1, 65535)),
            security=draw(st.sampled_from(get_args(SmtpSecurity))),
            sender=draw(EMAIL),
            user=draw(st.just("") | ANY_TEXT),
            password_env=draw(ENV_NAME),
            timeout=draw(SECONDS),
            deadline=draw(SECONDS),
        ),
        security=SecurityConfig(encryption=draw(st.sampled_from(get_args(Encryption)))),
        retention=RetentionConfig(days=draw(st.integers(1, 36500))),
        hosts=tuple(hosts),
        alerts=AlertsConfig(
            digest_over=draw(st.integers(0, 1_000_000)),
            rules=tuple(draw(st.lists(alert_rules([h.name for h in hosts]), max_size=4))),
        ),
    )


def spelled(config: Config, leave_out: Callable[[], bool]) -> ConfigXml:
    """``config`` for the builder; a value equal to its default is left out if ``leave_out()``."""

    def opt(value: T, default: T) -> T | None:
        return None if value == default and leave_out() else value

    ssh, smtp = config.ssh, config.smtp
    ssh0, smtp0, host0 = SSHConfig(known_hosts=Path()), SMTPConfig(), HostConfig(name="")
    rule0 = AlertRule(metric="", op=">", limit=0, email=())
    return ConfigXml(
        script=opt(config.script, "client.py"),
        concurrency=opt(config.concurrency, 50),
        database=RAW_DATABASE[config.database],
        ssh=SSH(
            known_hosts=ssh.known_hosts,
            host_key_policy=opt(ssh.host_key_policy, ssh0.host_key_policy),
            connect_timeout=opt(ssh.connect_timeout, ssh0.connect_timeout),
            command_timeout=opt(ssh.command_timeout, ssh0.command_timeout),
        ),
        smtp=SMTP(
            host=opt(smtp.host, smtp0.host),
            port=opt(smtp.port, smtp0.port),
            security=opt(smtp.security, smtp0.security),
            sender=opt(smtp.sender, smtp0.sender),
            user=opt(smtp.user, smtp0.user),
            password_env=opt(smtp.password_env, smtp0.password_env),
            timeout=opt(smtp.timeout, smtp0.timeout),
            deadline=opt(smtp.deadline, smtp0.deadline),
        ),
        encryption=opt(config.security.encryption, SecurityConfig().encryption),
        retention_days=opt(config.retention.days, RetentionConfig().days),
        hosts=[
            Host(
                name=h.name,
                address=h.address,
                port=h.port,
                user=h.user,
                key=h.key,
                directory=h.directory,
                python=opt(h.python, host0.python),
            )
            for h in config.hosts
        ],
        alerts=[
            Alert(
                metric=r.metric,
                op=r.op,
                limit=r.limit,
                email=r.email,
                labels=r.labels or None,
                for_count=opt(r.for_count, rule0.for_count),
                clear=r.clear,
                hosts=r.hosts or None,
                repeat=r.repeat,
                resolved=opt(r.resolved, rule0.resolved),
                severity=opt(r.severity, rule0.severity),
            )
            for r in config.alerts.rules
        ],
        digest_over=opt(config.alerts.digest_over, AlertsConfig().digest_over),
    )


def without_lines(config: Config) -> Config:
    """``config`` with the line numbers of its hosts and rules zeroed (the test draws none)."""
    return replace(
        config,
        hosts=tuple(replace(h, line=0) for h in config.hosts),
        alerts=replace(config.alerts, rules=tuple(replace(r, line=0) for r in config.alerts.rules)),
    )


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("configxml") / "config.xml"


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(), st.data())
def test_load_config_reads_back_what_the_builder_wrote(
    scratch: Path, config: Config, data: st.DataObject
) -> None:
    xml = spelled(config, lambda: data.draw(st.booleans(), "left out"))
    scratch.write_text(render(xml))
    assert without_lines(load_config(scratch)) == replace(config, path=scratch)
