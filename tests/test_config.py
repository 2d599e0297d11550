"""config.xml loading: values, defaults, and one exact line per problem."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netmetrix.config import (
    AlertRule,
    AlertsConfig,
    Config,
    HostConfig,
    RetentionConfig,
    SecurityConfig,
    SMTPConfig,
    SSHConfig,
    load_config,
    parse_duration,
)
from netmetrix.configxml import ConfigXml, Host, render
from netmetrix.errors import ConfigError, UsageError

DATA = Path(__file__).parent / "data" / "config"
HOSTS = '<hosts><host name="f4"/></hosts>'


def doc(*lines: str) -> str:
    """A config whose root is line 1, so ``lines[i]`` is on line ``i + 2``."""
    return "\n".join(["<netmetrix>", *lines, "</netmetrix>", ""])


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in tmp_path, so messages name ``config.xml`` as a user would type it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def problems(text: str, name: str = "config.xml") -> list[str]:
    """The problems ``text`` has as ./``name`` (the file is written first)."""
    Path(name).write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(Path(name))
    assert str(caught.value) == "\n".join(caught.value.problems)
    return list(caught.value.problems)


def load(text: str) -> Config:
    Path("config.xml").write_text(text)
    return load_config(Path("config.xml"))


# ---------------------------------------------------------------- valid files


def test_design_example_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = load_config(DATA / "design.xml")
    assert config == Config(
        path=DATA / "design.xml",
        script="client.py",
        concurrency=50,
        database=f"sqlite:///{DATA / 'netmetrix.db'}",
        ssh=SSHConfig(
            known_hosts=DATA / "known_hosts",
            host_key_policy="strict",
            connect_timeout=10.0,
            command_timeout=30.0,
        ),
        smtp=SMTPConfig(
            host="localhost",
            port=25,
            security="none",
            sender="netmetrix@localhost",
            user="",
            password_env="SMTP_PASSWORD",
        ),
        security=SecurityConfig(encryption="preferred"),
        retention=RetentionConfig(days=30),
        hosts=(
            HostConfig(
                name="f4",
                address="192.0.2.4",
                port=22,
                user="monitor",
                key=tmp_path / ".ssh" / "id_ed25519",
                directory="/tmp",
                python="python3",
                line=12,
            ),
        ),
        alerts=AlertsConfig(
            digest_over=10,
            rules=(
                AlertRule(
                    metric="cpu_percent", op=">", limit=20.0, email=("ops@example.com",), line=16
                ),
                AlertRule(
                    metric="disk_percent",
                    labels=(("mount", "/"),),
                    op=">=",
                    limit=90.0,
                    for_count=3,
                    repeat=4 * 3600.0,
                    severity="critical",
                    email=("ops@example.com", "oncall@example.com"),
                    line=17,
                ),
                AlertRule(
                    metric="up",
                    op="==",
                    limit=0.0,
                    hosts=("db-*",),
                    email=("dba@example.com",),
                    line=19,
                ),
            ),
        ),
    )
    assert config.hosts[0].target == "192.0.2.4"


def test_defaults(here: Path) -> None:
    config = load(doc(HOSTS))
    assert config == Config(
        path=here / "config.xml",
        database=f"sqlite:///{here / 'netmetrix.db'}",
        ssh=SSHConfig(known_hosts=here / "known_hosts"),
        hosts=(HostConfig(name="f4", line=2),),
    )
    host = config.hosts[0]
    assert (host.address, host.port, host.user, host.key) == (None, None, None, None)
    assert host.target == "f4"


def test_every_optional_value(here: Path) -> None:
    config = load(
        doc(
            "<script>probe-1.py</script>",
            "<concurrency>10000</concurrency>",
            '<ssh host_key_policy="accept-new" connect_timeout="1.5m" command_timeout="1h"/>',
            '<smtp host="mail.example.com" port="465" security="tls" sender="nm@example.com"',
            '      user="nm" password_env="NM_SMTP"/>',
            '<security encryption="required"/>',
            '<retention days="400"/>',
            "<hosts>",
            '  <host name="db-1" python="/opt/py/bin/python3.11" directory="/var/lib/nm"/>',
            '  <host name="web.1" address="2001:db8::1" user="svc@corp"/>',
            "</hosts>",
            '<alerts digest_over="0">',
            '  <alert metric="net_rx_bytes_per_sec" op="&lt;=" limit="-0.5" clear="1e1"',
            '         email="a@b" hosts="db-1, web?1" labels="interface=eth0" for="2" repeat="90"',
            '         resolved="No" severity="info"/>',
            "</alerts>",
        )
    )
    assert config.script == "probe-1.py"
    assert config.concurrency == 10000
    assert config.ssh == SSHConfig(
        known_hosts=here / "known_hosts",
        host_key_policy="accept-new",
        connect_timeout=90.0,
        command_timeout=3600.0,
    )
    assert config.smtp == SMTPConfig(
        host="mail.example.com",
        port=465,
        security="tls",
        sender="nm@example.com",
        user="nm",
        password_env="NM_SMTP",
    )
    assert config.security.encryption == "required"
    assert config.retention.days == 400
    assert config.hosts == (
        HostConfig(name="db-1", python="/opt/py/bin/python3.11", directory="/var/lib/nm", line=10),
        HostConfig(name="web.1", address="2001:db8::1", user="svc@corp", line=11),
    )
    assert config.alerts == AlertsConfig(
        digest_over=0,
        rules=(
            AlertRule(
                metric="net_rx_bytes_per_sec",
                op="<=",
                limit=-0.5,
                clear=10.0,
                email=("a@b",),
                hosts=("db-1", "web?1"),
                labels=(("interface", "eth0"),),
                for_count=2,
                repeat=90.0,
                resolved=False,
                severity="info",
                line=14,
            ),
        ),
    )


def test_relative_paths_resolve_against_the_config_directory(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(here / "home"))
    (here / "etc").mkdir()
    (here / "etc" / "config.xml").write_text(
        doc(
            "<database>data/nm.db</database>",
            '<ssh known_hosts="../keys/known_hosts"/>',
            "<hosts>",
            '  <host name="a" key="keys/id_a"/>',
            '  <host name="b" key="~/.ssh/id_b"/>',
            '  <host name="c" key="/abs/id_c"/>',
            "</hosts>",
        )
    )
    config = load_config(Path("etc/config.xml"))
    assert config.path == here / "etc" / "config.xml"
    assert config.path.is_absolute()
    assert config.database == f"sqlite:///{here}/etc/data/nm.db"
    assert config.database.startswith("sqlite:////")
    assert config.ssh.known_hosts == here / "keys" / "known_hosts"
    keys = [h.key for h in config.hosts]
    assert keys == [here / "etc/keys/id_a", here / "home/.ssh/id_b", Path("/abs/id_c")]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://monitor@db.example.com:5432/netmetrix",
        "sqlite:////var/lib/netmetrix/nm.db",
        "sqlite://",
    ],
)
def test_database_url_is_kept_as_is(here: Path, url: str) -> None:
    assert load(doc(f"<database>{url}</database>", HOSTS)).database == url


def test_select(here: Path) -> None:
    config = load(doc('<hosts><host name="b"/><host name="a"/><host name="c"/></hosts>'))
    assert config.select(()) == config.hosts
    assert [h.name for h in config.select(("c", "a", "c"))] == ["c", "a"]
    with pytest.raises(UsageError) as caught:
        config.select(("a", "zz", "f9"))
    assert str(caught.value) == (
        'config.xml: unknown host "zz"; known hosts: a, b, c\n'
        'config.xml: unknown host "f9"; known hosts: a, b, c'
    )


# ---------------------------------------------------------------- one problem each


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            doc("<hosts>", '  <host name="f4" port="abc"/>', "</hosts>"),
            'config.xml:3: <host name="f4">: port must be an integer 1-65535, got "abc"',
            id="bad-port",
        ),
        pytest.param(
            doc(HOSTS, "<concurency>5</concurency>"),
            "config.xml:3: <netmetrix>: unknown element <concurency>, did you mean <concurrency>?",
            id="unknown-element-suggested",
        ),
        pytest.param(
            doc(HOSTS, "<flavour>red</flavour>"),
            "config.xml:3: <netmetrix>: unknown element <flavour>; allowed: <script>,"
            " <concurrency>, <database>, <ssh>, <smtp>, <security>, <retention>, <watch>, <web>,"
            " <collector>, <remote_write>, <hosts>, <receivers>, <alerts>, <checks>, <inventory>",
            id="unknown-element-listed",
        ),
        pytest.param(
            doc("<hosts>", '  <hots name="f4"/>', "</hosts>"),
            'config.xml:2: <hosts>: no hosts configured; add <host name="..."/>\n'
            "config.xml:3: <hosts>: unknown element <hots>, did you mean <host>?",
            id="unknown-element-in-hosts",
        ),
        pytest.param(
            doc("<hosts>", '  <host name="f4"><port>22</port></host>', "</hosts>"),
            'config.xml:3: <host name="f4">: unknown element <port>;'
            " <host> takes no child elements",
            id="child-of-leaf",
        ),
        pytest.param(
            doc("<hosts>", '  <host name="f4" prot="22"/>', "</hosts>"),
            'config.xml:3: <host name="f4">: unknown attribute "prot", did you mean "port"?',
            id="unknown-attribute-suggested",
        ),
        pytest.param(
            doc(HOSTS, '<ssh colour="red"/>'),
            'config.xml:3: <ssh>: unknown attribute "colour"; allowed: command_timeout,'
            " connect_timeout, host_key_policy, known_hosts",
            id="unknown-attribute-listed",
        ),
        pytest.param(
            doc(HOSTS, '<script lang="py">client.py</script>'),
            'config.xml:3: <script>: unknown attribute "lang"; <script> takes no attributes',
            id="attribute-on-text-element",
        ),
        pytest.param(
            doc(HOSTS, '<smtp user="nm" password="hunter2"/>'),
            'config.xml:3: <smtp>: attribute "password" is not allowed: secrets never go in'
            ' the config file (name an environment variable with password_env="...")',
            id="password-attribute",
        ),
        pytest.param(
            doc(
                "<hosts>",
                '  <host name="f4"/>',
                '  <host name="f5"/>',
                '  <host name="f4"/>',
                "</hosts>",
            ),
            'config.xml:5: <host name="f4">: duplicate host name, first at line 3',
            id="duplicate-host-name",
        ),
        pytest.param(
            doc("<concurrency>5</concurrency>", HOSTS, "<concurrency>6</concurrency>"),
            "config.xml:4: <netmetrix>: duplicate <concurrency>, first at line 2",
            id="duplicate-singleton",
        ),
        pytest.param(
            doc("<hosts>", '  <host address="192.0.2.4"/>', "</hosts>"),
            'config.xml:3: <host>: missing required attribute "name"',
            id="missing-name",
        ),
        pytest.param(
            doc("<hosts>", '  <host name="f 4"/>', "</hosts>"),
            'config.xml:3: <host name="f 4">: name must be a name of letters, digits,'
            ' ".", "_", "-", got "f 4"',
            id="bad-host-name",
        ),
        pytest.param(
            doc(HOSTS, "<netmetrix/>"),
            "config.xml:3: <netmetrix>: unknown element <netmetrix>; allowed: <script>,"
            " <concurrency>, <database>, <ssh>, <smtp>, <security>, <retention>, <watch>, <web>,"
            " <collector>, <remote_write>, <hosts>, <receivers>, <alerts>, <checks>, <inventory>",
            id="nested-root",
        ),
        pytest.param(
            doc(),
            'config.xml:1: <netmetrix>: no hosts configured; add <hosts><host name="..."/></hosts>',
            id="no-hosts-section",
        ),
        pytest.param(
            doc("<hosts>", "</hosts>"),
            'config.xml:2: <hosts>: no hosts configured; add <host name="..."/>',
            id="empty-hosts",
        ),
        pytest.param(
            doc(HOSTS, "<concurrency>  </concurrency>"),
            "config.xml:3: <concurrency>: missing text, expected an integer 1-10000",
            id="missing-text",
        ),
        pytest.param(
            doc(HOSTS, "<concurrency>0</concurrency>"),
            'config.xml:3: <concurrency>: must be an integer 1-10000, got "0"',
            id="concurrency-range",
        ),
        pytest.param(
            doc(HOSTS, "<ssh>strict</ssh>"),
            'config.xml:3: <ssh>: unexpected text "strict"',
            id="unexpected-text",
        ),
        pytest.param(
            doc("<hosts>oops", '  <host name="f4"/>', "</hosts>"),
            'config.xml:2: <hosts>: unexpected text "oops"',
            id="unexpected-text-in-container",
        ),
        pytest.param(
            doc(HOSTS, "<script>bin/client.py</script>"),
            'config.xml:3: <script>: must be a plain file name of letters, digits, ".", "_",'
            ' "+", "-" (no "/"), got "bin/client.py"',
            id="script-with-slash",
        ),
        pytest.param(
            doc(HOSTS, '<ssh connect_timeout="10x"/>'),
            "config.xml:3: <ssh>: connect_timeout must be a duration > 0 and <= 1h: seconds,"
            ' or with s, m, h or d ("30s", "4h"), got "10x"',
            id="bad-duration",
        ),
        pytest.param(
            doc(HOSTS, '<ssh command_timeout="0s"/>'),
            "config.xml:3: <ssh>: command_timeout must be a duration > 0 and <= 1h: seconds,"
            ' or with s, m, h or d ("30s", "4h"), got "0s"',
            id="zero-duration",
        ),
        pytest.param(
            doc(HOSTS, '<ssh host_key_policy="no"/>'),
            'config.xml:3: <ssh>: host_key_policy must be one of strict, accept-new, got "no"',
            id="bad-policy",
        ),
        pytest.param(
            doc(HOSTS, '<smtp port="0" security="ssl"/>'),
            'config.xml:3: <smtp>: port must be an integer 1-65535, got "0"\n'
            'config.xml:3: <smtp>: security must be one of none, starttls, tls, got "ssl"',
            id="bad-smtp",
        ),
        pytest.param(
            doc(HOSTS, '<smtp password_env="SMTP-PASSWORD"/>'),
            "config.xml:3: <smtp>: password_env must be an environment variable name,"
            ' got "SMTP-PASSWORD"',
            id="bad-password-env",
        ),
        pytest.param(
            doc(HOSTS, '<retention days="0"/>'),
            'config.xml:3: <retention>: days must be an integer 1-36500, got "0"',
            id="bad-retention",
        ),
        pytest.param(
            doc(HOSTS, '<security encryption="always"/>'),
            'config.xml:3: <security>: encryption must be one of preferred, required, got "always"',
            id="bad-encryption",
        ),
        pytest.param(
            doc(HOSTS, "<database>postgresql://nm:s3cret@db/nm</database>"),
            "config.xml:3: <database>: the URL contains a password; keep secrets out of the"
            " config file (PostgreSQL reads PGPASSWORD or ~/.pgpass)",
            id="password-in-database-url",
        ),
        pytest.param(
            doc("<hosts>", '  <host name="f4" directory="tmp"/>', "</hosts>"),
            'config.xml:3: <host name="f4">: directory must be an absolute path ("/...")'
            ' or one in the login\'s home ("~/..."), without spaces or shell metacharacters,'
            ' got "tmp"',
            id="relative-directory",
        ),
        pytest.param(
            doc("<hosts>", '  <host name="f4" directory="~nmx/probe"/>', "</hosts>"),
            'config.xml:3: <host name="f4">: directory must be an absolute path ("/...")'
            ' or one in the login\'s home ("~/..."), without spaces or shell metacharacters,'
            ' got "~nmx/probe"',
            id="other-users-home-directory",
        ),
        pytest.param(
            doc("<hosts>", '  <host name="f4" python="python3; rm -rf /"/>', "</hosts>"),
            'config.xml:3: <host name="f4">: python must be a command name or an absolute'
            ' path, without spaces or shell metacharacters, got "python3; rm -rf /"',
            id="python-metacharacters",
        ),
        pytest.param(
            doc("<hosts>", '  <host name="f4" address="a b"/>', "</hosts>"),
            'config.xml:3: <host name="f4">: address must be a host name or IP address, got "a b"',
            id="bad-address",
        ),
        pytest.param(
            doc(
                HOSTS,
                "<alerts>",
                '<alert metric="cpu_percent" op="=&gt;" limit="1" email="a@b"/>',
                "</alerts>",
            ),
            'config.xml:4: <alert metric="cpu_percent">: op must be one of >, >=, <, <=,'
            ' ==, !=, got "=>"',
            id="bad-op",
        ),
        pytest.param(
            doc(
                HOSTS,
                "<alerts>",
                '<alert metric="cpu_percent" op="&gt;" limit="1" email="ops@x.com, ops at x"/>',
                "</alerts>",
            ),
            'config.xml:4: <alert metric="cpu_percent">: email must be one or more'
            ' comma-separated addresses like ops@example.com, got "ops@x.com, ops at x"',
            id="bad-email",
        ),
        pytest.param(
            doc(
                HOSTS,
                "<alerts>",
                '<alert metric="cpu_percent" op="&gt;" limit="20" clear="25" email="a@b"/>',
                "</alerts>",
            ),
            'config.xml:4: <alert metric="cpu_percent">: clear must be <= limit 20 for op ">",'
            ' got "25"',
            id="clear-above-greater-than",
        ),
        pytest.param(
            doc(
                HOSTS,
                "<alerts>",
                '<alert metric="mem_available_bytes" op="&lt;" limit="1e9" clear="5e8"'
                ' email="a@b"/>',
                "</alerts>",
            ),
            'config.xml:4: <alert metric="mem_available_bytes">: clear must be >= limit 1e+09'
            ' for op "<", got "5e8"',
            id="clear-below-less-than",
        ),
        pytest.param(
            doc(
                HOSTS,
                "<alerts>",
                '<alert metric="up" op="==" limit="0" clear="1" email="a@b"/>',
                "</alerts>",
            ),
            'config.xml:4: <alert metric="up">: clear is only allowed with op >, >=, < or <=,'
            ' not "=="',
            id="clear-with-equality",
        ),
        pytest.param(
            doc(HOSTS, "<alerts>", '<alert op="&gt;" limit="1"/>', "</alerts>"),
            'config.xml:4: <alert>: missing required attribute "metric"\n'
            'config.xml:4: <alert>: missing required attribute "email" or "notify" (who is told)',
            id="alert-missing-attributes",
        ),
        pytest.param(
            doc(
                HOSTS,
                "<alerts>",
                '<alert metric="cpu-percent" op="&gt;" limit="high" email="a@b"'
                ' labels="mount" for="0" repeat="-1h" resolved="maybe" severity="urgent"/>',
                "</alerts>",
            ),
            "\n".join(
                'config.xml:4: <alert metric="cpu-percent">: ' + what
                for what in [
                    'metric must be a metric name like cpu_percent, got "cpu-percent"',
                    'limit must be a number, got "high"',
                    "labels must be comma-separated name=value pairs (mount=/,device=sda),"
                    ' got "mount"',
                    'for must be an integer 1-100000, got "0"',
                    "repeat must be a duration > 0 and <= 365d: seconds, or with s, m, h or d"
                    ' ("30s", "4h"), got "-1h"',
                    'resolved must be true or false (yes/no, 1/0), got "maybe"',
                    'severity must be one of info, warning, critical, got "urgent"',
                ]
            ),
            id="bad-alert-values",
        ),
        pytest.param(
            doc(
                '<hosts><host name="db-1"/></hosts>',
                "<alerts>",
                '<alert metric="up" op="==" limit="0" hosts="db1,web-*" email="a@b"/>',
                "</alerts>",
            ),
            'config.xml:4: <alert metric="up">: hosts: unknown host "db1", did you mean "db-1"?',
            id="alert-unknown-host",
        ),
        pytest.param(
            doc(HOSTS, '<alerts digest_over="many"/>'),
            'config.xml:3: <alerts>: digest_over must be an integer 0-1000000, got "many"',
            id="bad-digest-over",
        ),
    ],
)
def test_one_problem(here: Path, text: str, expected: str) -> None:
    assert problems(text) == expected.split("\n")


def test_wrong_root(here: Path) -> None:
    assert problems("<config>\n</config>\n") == [
        "config.xml:1: <config>: the root element must be <netmetrix>"
    ]


def test_every_problem_is_reported_in_line_order(here: Path) -> None:
    text = doc(
        "<concurrency>lots</concurrency>",
        '<ssh known_host="kh" connect_timeout="soon"/>',
        "<hosts>",
        '  <host name="f4" port="abc"/>',
        '  <host name="f5" port="70000" user="a b"/>',
        '  <host name="f4"/>',
        "</hosts>",
        '<alerts><alert metric="cpu_percent" op="~" limit="1" email="x"/></alerts>',
        "<hostz/>",
    )
    assert problems(text) == [
        'config.xml:2: <concurrency>: must be an integer 1-10000, got "lots"',
        'config.xml:3: <ssh>: unknown attribute "known_host", did you mean "known_hosts"?',
        "config.xml:3: <ssh>: connect_timeout must be a duration > 0 and <= 1h: seconds, or with"
        ' s, m, h or d ("30s", "4h"), got "soon"',
        'config.xml:5: <host name="f4">: port must be an integer 1-65535, got "abc"',
        'config.xml:6: <host name="f5">: port must be an integer 1-65535, got "70000"',
        'config.xml:6: <host name="f5">: user must be a user name without spaces, got "a b"',
        'config.xml:7: <host name="f4">: duplicate host name, first at line 5',
        'config.xml:9: <alert metric="cpu_percent">: op must be one of >, >=, <, <=, ==, !=,'
        ' got "~"',
        'config.xml:9: <alert metric="cpu_percent">: email must be one or more comma-separated'
        ' addresses like ops@example.com, got "x"',
        "config.xml:10: <netmetrix>: unknown element <hostz>, did you mean <hosts>?",
    ]


def test_message_names_the_file_as_given(here: Path) -> None:
    (here / "etc").mkdir()
    assert problems(doc(), name="etc/nm.xml") == [
        'etc/nm.xml:1: <netmetrix>: no hosts configured; add <hosts><host name="..."/></hosts>'
    ]


def test_values_are_shown_on_one_line(here: Path) -> None:
    text = doc("<hosts>", '  <host name="f4" user="a&#10;b" port="' + "9" * 80 + '"/>', "</hosts>")
    assert problems(text) == [
        f'config.xml:3: <host name="f4">: port must be an integer 1-65535, got "{"9" * 57}..."',
        'config.xml:3: <host name="f4">: user must be a user name without spaces, got "a\\nb"',
    ]


# ---------------------------------------------------------------- unsafe or broken XML


def test_billion_laughs_is_refused(here: Path) -> None:
    shutil.copy(DATA / "billion_laughs.xml", "config.xml")
    with pytest.raises(ConfigError) as caught:
        load_config(Path("config.xml"))
    assert caught.value.problems == (
        "config.xml:2: unsafe XML refused: DOCTYPE, entity declarations and external"
        " entities are not allowed",
    )


@pytest.mark.parametrize(
    "text",
    [
        (DATA / "external_entity.xml").read_text(),
        '<?xml version="1.0"?>\n<!DOCTYPE netmetrix SYSTEM "http://192.0.2.1/evil.dtd">\n'
        + doc(HOSTS),
    ],
    ids=["external-entity", "external-dtd"],
)
def test_external_entities_are_refused(here: Path, text: str) -> None:
    assert problems(text) == [
        "config.xml:2: unsafe XML refused: DOCTYPE, entity declarations and external"
        " entities are not allowed"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            doc("<hosts>", '  <host name="f4">', "</hosts>"),
            "4: not well-formed XML: mismatched tag",
        ),
        ("<netmetrix>\n  <script>&nope;</script>\n", "2: not well-formed XML: undefined entity"),
        ("", "1: not well-formed XML: no element found"),
        (doc(HOSTS) + "<netmetrix/>\n", "4: not well-formed XML: junk after document element"),
    ],
    ids=["mismatched", "undefined-entity", "empty", "two-roots"],
)
def test_malformed_xml_names_the_line(here: Path, text: str, expected: str) -> None:
    assert problems(text) == [f"config.xml:{expected}"]


def test_missing_file(here: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(Path("config.xml"))
    assert caught.value.problems == (
        "config.xml: no such file (use --config FILE or set NETMETRIX_CONFIG)",
    )


def test_directory_instead_of_file(here: Path) -> None:
    (here / "config.xml").mkdir()
    with pytest.raises(ConfigError) as caught:
        load_config(Path("config.xml"))
    assert caught.value.problems == ("config.xml: is a directory, not a config file",)


def test_unreadable_file(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    (here / "config.xml").write_text(doc(HOSTS))
    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ConfigError) as caught:
        load_config(Path("config.xml"))
    assert caught.value.problems == ("config.xml: cannot read: permission denied",)


def test_other_read_errors_give_the_reason(here: Path) -> None:
    (here / "file").write_text("")
    with pytest.raises(ConfigError) as caught:
        load_config(Path("file/config.xml"))
    assert caught.value.problems == ("file/config.xml: cannot read: Not a directory",)


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("30s", 30.0),
        ("1.5m", 90.0),
        ("4h", 14400.0),
        ("2d", 172800.0),
        (" .5 ", 0.5),
        ("1e3", 1000.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "",
            'invalid duration "": give seconds, or a number with s, m, h or d'
            ' (e.g. "30", "30s", "1.5m", "4h", "2d")',
        ),
        (
            "4 hours",
            'invalid duration "4 hours": give seconds, or a number with s, m, h or d'
            ' (e.g. "30", "30s", "1.5m", "4h", "2d")',
        ),
        (
            "-1s",
            'invalid duration "-1s": give seconds, or a number with s, m, h or d'
            ' (e.g. "30", "30s", "1.5m", "4h", "2d")',
        ),
        ("0", 'duration must be greater than 0 and at most 100 years, got "0"'),
        ("1e999d", 'duration must be greater than 0 and at most 100 years, got "1e999d"'),
        ("36501d", 'duration must be greater than 0 and at most 100 years, got "36501d"'),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == message


UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@given(
    st.floats(min_value=1e-9, max_value=36000, allow_nan=False, allow_infinity=False),
    st.sampled_from(sorted(UNITS)),
)
def test_parse_duration_round_trips(value: float, unit: str) -> None:
    assert parse_duration(f"{value!r}{unit}") == value * UNITS[unit]


@given(st.integers(min_value=1, max_value=36500), st.sampled_from(sorted(UNITS)))
def test_parse_duration_integers(value: int, unit: str) -> None:
    assert parse_duration(f"{value}{unit}") == value * UNITS[unit]


@given(st.text())
def test_parse_duration_never_crashes(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError:
        return  # the message is checked in test_parse_duration_rejects
    assert 0 < seconds < float("inf")


# ---------------------------------------------------------------- generated ports

SCRATCH = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@SCRATCH
@given(st.integers(min_value=1, max_value=65535))
def test_valid_ports_load(tmp_path: Path, port: int) -> None:
    path = tmp_path / "config.xml"
    path.write_text(doc("<hosts>", f'  <host name="f4" port="{port}"/>', "</hosts>"))
    assert load_config(path).hosts[0].port == port


@SCRATCH
@given(st.integers().filter(lambda port: not 1 <= port <= 65535))
def test_out_of_range_ports_give_one_problem(tmp_path: Path, port: int) -> None:
    path = tmp_path / "config.xml"
    path.write_text(doc("<hosts>", f'  <host name="f4" port="{port}"/>', "</hosts>"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == (
        f'{path}:3: <host name="f4">: port must be an integer 1-65535, got "{port}"',
    )


# ---------------------------------------------------------------- number ranges (#10)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '<retention days="999999999999"/>',
            '<retention>: days must be an integer 1-36500, got "999999999999"',
        ),
        ('<retention days="0"/>', '<retention>: days must be an integer 1-36500, got "0"'),
        ("<concurrency>10001</concurrency>", "<concurrency>: must be an integer 1-10000"),
        (
            '<ssh connect_timeout="2h"/>',
            "<ssh>: connect_timeout must be a duration > 0 and <= 1h: seconds, or with s, m, h"
            ' or d ("30s", "4h"), got "2h"',
        ),
        (
            '<ssh command_timeout="99999999999999"/>',
            "<ssh>: command_timeout must be a duration > 0 and <= 1h: seconds, or with s, m, h"
            ' or d ("30s", "4h"), got "99999999999999"',
        ),
        (
            '<alerts digest_over="1000000000000"><alert metric="up" op="==" limit="0"'
            ' email="a@b.c"/></alerts>',
            '<alerts>: digest_over must be an integer 0-1000000, got "1000000000000"',
        ),
        (
            '<alerts><alert metric="up" op="==" limit="0" email="a@b.c"'
            ' for="1000000000000"/></alerts>',
            '<alert metric="up">: for must be an integer 1-100000, got "1000000000000"',
        ),
        (
            '<alerts><alert metric="up" op="==" limit="0" email="a@b.c" repeat="400d"/></alerts>',
            '<alert metric="up">: repeat must be a duration > 0 and <= 365d: seconds, or with s,'
            ' m, h or d ("30s", "4h"), got "400d"',
        ),
        (
            '<alerts><alert metric="up" op="==" limit="1e999" email="a@b.c"/></alerts>',
            '<alert metric="up">: limit must be a number, got "1e999"',
        ),
    ],
)
def test_numbers_out_of_range_are_config_errors(here: Path, line: str, expected: str) -> None:
    """Every number has a range, checked before a host is touched (a huge retention
    used to pass `config check` and then end every execute in OverflowError)."""
    found = problems(doc(HOSTS, line))
    assert len(found) == 1
    assert found[0].startswith("config.xml:3: ")
    assert expected in found[0]


def test_config_check_exits_2_on_a_number_out_of_range(
    here: Path, netmetrix: Callable[..., Run]
) -> None:
    Path("config.xml").write_text(doc(HOSTS, '<retention days="999999999999"/>'))
    run = netmetrix("config", "check")
    assert run.code == 2
    assert run.err == (
        'config.xml:3: <retention>: days must be an integer 1-36500, got "999999999999"\n'
    )


# ---------------------------------------------------------------- rule metrics (#11)


@pytest.mark.parametrize(
    ("alert", "expected"),
    [
        (
            'metric="cpu_pct"',
            '<alert metric="cpu_pct">: metric: unknown metric "cpu_pct",'
            ' did you mean "cpu_percent"?',
        ),
        ('metric="upp"', '<alert metric="upp">: metric: unknown metric "upp", did you mean "up"?'),
        (
            'metric="disk_percent" labels="mountpoint=/"',
            '<alert metric="disk_percent">: labels: disk_percent has no label "mountpoint",'
            ' did you mean "mount"?',
        ),
        (
            'metric="net_rx_bytes_per_sec" labels="host=a"',
            '<alert metric="net_rx_bytes_per_sec">: labels: net_rx_bytes_per_sec has no label'
            ' "host"; it has interface',
        ),
        (
            'metric="cpu_percent" labels="mount=/"',
            '<alert metric="cpu_percent">: labels: cpu_percent has no labels, got "mount"',
        ),
    ],
)
def test_rules_name_known_metrics_and_labels(here: Path, alert: str, expected: str) -> None:
    """A misspelled metric or label key used to pass `config check` and never fire."""
    found = problems(
        doc(HOSTS, f'<alerts><alert {alert} op="&gt;" limit="1" email="a@b.c"/></alerts>')
    )
    assert found == [f"config.xml:3: {expected}"]


def test_an_unknown_metric_without_a_near_name_lists_the_known_ones(here: Path) -> None:
    [found] = problems(
        doc(HOSTS, '<alerts><alert metric="zzz" op="&gt;" limit="1" email="a@b.c"/></alerts>')
    )
    assert found.startswith(
        'config.xml:3: <alert metric="zzz">: metric: unknown metric "zzz"; known metrics: up,'
        " uptime_sec, cpu_percent,"
    )


def test_every_catalogued_metric_and_label_is_accepted(here: Path) -> None:
    from netmetrix.probe import METRIC_LABELS, METRICS

    rules = [
        f'<alert metric="{name}" op="&gt;" limit="1" email="a@b.c"'
        + "".join(f' labels="{key}=x"' for key in METRIC_LABELS.get(name, ())[:1])
        + "/>"
        for name, *_ in METRICS
    ]
    config = load(doc(HOSTS, "<alerts>", *rules, "</alerts>"))
    assert len(config.alerts.rules) == len(METRICS)


# ---------------------------------------------------------------- <watch> (#13)


def test_watch_interval_defaults_to_ten_seconds(tmp_path: Path) -> None:
    path = tmp_path / "config.xml"
    path.write_text(render(ConfigXml(hosts=[Host(name="f4")])))
    assert load_config(path).watch.interval == 10.0


@pytest.mark.parametrize(("raw", "seconds"), [("1s", 1.0), ("2.5", 2.5), ("1h", 3600.0)])
def test_watch_interval_is_read(tmp_path: Path, raw: str, seconds: float) -> None:
    path = tmp_path / "config.xml"
    path.write_text(render(ConfigXml(watch_interval=raw, hosts=[Host(name="f4")])))
    assert load_config(path).watch.interval == seconds


@pytest.mark.parametrize("raw", ["0.5s", "2h", "soon"])
def test_watch_interval_out_of_range_is_refused(tmp_path: Path, raw: str) -> None:
    path = tmp_path / "config.xml"
    path.write_text(render(ConfigXml(watch_interval=raw, hosts=[Host(name="f4")])))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f'{path}:3: <watch>: interval must be a duration from 1s to 1h ("10s", "1m"), got "{raw}"'
    )
