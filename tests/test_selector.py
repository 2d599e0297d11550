"""Host selectors (#18): the grammar, did-you-mean, a property test against a reference,
groups and labels in config.xml, alert rules' hosts=, ``-h`` on the CLI, /metrics labels."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Run
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from netmetrix import configxml, selector
from netmetrix.config import load_config
from netmetrix.configxml import Alert, ConfigXml, Group, Host
from netmetrix.errors import ConfigError, UsageError
from netmetrix.model import HostRun
from netmetrix.model import Sample as ProbeSample
from netmetrix.selector import Target
from netmetrix.store import Store
from netmetrix.web.exposition import FleetCollector, read_snapshot

Cli = Callable[..., Run]
T0 = 1_780_000_000.0

FLEET = [
    Target(name="web1", labels=(("dc", "fra"), ("role", "web")), groups=("web",)),
    Target(name="web2", labels=(("dc", "ams"), ("role", "web")), groups=("web",)),
    Target(name="db1", labels=(("dc", "fra"), ("role", "db")), groups=("db",)),
    Target(name="pg-1", labels=(("role", "db"),), groups=("db",)),
    Target(name="lone"),
]
GROUPS = {"web", "db", "empty"}


# ---------------------------------------------------------------- grammar


@pytest.mark.parametrize(
    ("text", "kind", "name", "value"),
    [
        ("web1", "name", "web1", ""),
        ("web*", "glob", "web*", ""),
        ("db[12]", "glob", "db[12]", ""),
        ("db[!2]", "glob", "db[!2]", ""),
        ("@db", "group", "db", ""),
        ("role=db", "equal", "role", "db"),
        ("dc!=fra", "not_equal", "dc", "fra"),
        ("path=/a=b", "equal", "path", "/a=b"),
    ],
)
def test_each_form_parses(text: str, kind: str, name: str, value: str) -> None:
    parsed = selector.parse(text)
    assert (parsed.kind, parsed.name, parsed.value, parsed.text) == (kind, name, value, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@", "a group name after @"),
        ("@a b", "a group name after @"),
        ("=db", "label=value or label!=value"),
        ("role=", "label=value or label!=value"),
        ("1x=y", "label=value or label!=value"),
        ("web!", "a host name or glob"),
        ("", "a host name or glob"),
    ],
)
def test_a_malformed_selector_names_the_forms(text: str, expected: str) -> None:
    with pytest.raises(ValueError) as caught:
        selector.parse(text)
    assert str(caught.value) == (
        f'bad host selector "{text}": expected {expected}'
        " (forms: name, 'web*', @group, label=value, label!=value)"
    )


@pytest.mark.parametrize(
    ("texts", "names", "problems"),
    [
        (["web1"], ["web1"], []),
        (["web*"], ["web1", "web2"], []),
        (["@db"], ["db1", "pg-1"], []),
        (["role=db"], ["db1", "pg-1"], []),
        (["dc!=fra"], ["web2", "pg-1", "lone"], []),  # no dc label: not fra
        # a union, in the order asked, each name once
        (["lone", "@web", "web1", "dc=fra"], ["lone", "web1", "web2", "db1"], []),
        (["wbe1"], [], ['unknown host "wbe1", did you mean "web1"?']),
        (["zzz"], [], ['unknown host "zzz"; known hosts: db1, lone, pg-1, web1, web2']),
        (["x*"], [], ['no host matches "x*"; known hosts: db1, lone, pg-1, web1, web2']),
        (["@dbs"], [], ['unknown group "dbs", did you mean "db"?']),
        (["@empty"], [], ['group "empty" has no hosts']),
        (
            ["role=cache"],
            [],
            ['no host matches "role=cache"; labels in use: dc=ams, dc=fra, role=db, role=web'],
        ),
        (
            ["web1", "wbe2", "@x"],
            ["web1"],
            [
                'unknown host "wbe2", did you mean "web2"?',
                'unknown group "x"; known groups: db, empty, web',
            ],
        ),
    ],
)
def test_select(texts: list[str], names: list[str], problems: list[str]) -> None:
    assert selector.select(texts, FLEET, GROUPS) == (tuple(names), problems)


# ---------------------------------------------------------------- property


def reference(texts: list[str], targets: list[Target]) -> set[str]:
    """The union, written the obvious way with regular expressions for globs."""

    def one(text: str, target: Target) -> bool:
        labels = dict(target.labels)
        if text.startswith("@"):
            return text[1:] in target.groups
        if "!=" in text:
            key, value = text.split("!=", 1)
            return labels.get(key) != value
        if "=" in text:
            key, value = text.split("=", 1)
            return labels.get(key) == value
        pattern = "".join("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in text)
        return re.fullmatch(pattern, target.name) is not None

    return {t.name for t in targets if any(one(text, t) for text in texts)}


NAMES = st.text(alphabet="abc12-", min_size=1, max_size=4)
LABEL_KEYS = st.sampled_from(["role", "dc"])
LABEL_VALUES = st.sampled_from(["db", "web", "fra"])
GROUP = st.sampled_from(["g1", "g2", "g3"])
TARGETS = st.lists(
    st.builds(
        lambda name, labels, groups: Target(
            name=name, labels=tuple(sorted(labels.items())), groups=tuple(sorted(groups))
        ),
        NAMES,
        st.dictionaries(LABEL_KEYS, LABEL_VALUES, max_size=2),
        st.sets(GROUP, max_size=2),
    ),
    max_size=8,
    unique_by=lambda t: t.name,
)
SELECTORS = st.one_of(
    NAMES,
    st.builds(lambda a, b: a + b, st.text(alphabet="abc12-", max_size=2), st.sampled_from("*?")),
    st.builds(lambda g: "@" + g, GROUP),
    st.builds(lambda k, v: f"{k}={v}", LABEL_KEYS, LABEL_VALUES),
    st.builds(lambda k, v: f"{k}!={v}", LABEL_KEYS, LABEL_VALUES),
)


@given(texts=st.lists(SELECTORS, min_size=1, max_size=4), targets=TARGETS)
def test_select_agrees_with_a_reference(texts: list[str], targets: list[Target]) -> None:
    names, problems = selector.select(texts, targets, {"g1", "g2", "g3"})
    assert set(names) == reference(texts, targets)
    assert len(names) == len(set(names))
    # one problem exactly for each distinct selector that selects nothing
    empty = {text for text in texts if not reference([text], targets)}
    assert len(problems) == len(empty)


# ---------------------------------------------------------------- config.xml


def write(tmp_path: Path, config: ConfigXml) -> Path:
    path = tmp_path / "config.xml"
    path.write_text(configxml.render(config))
    return path


GROUPED = ConfigXml(
    hosts=[
        Host(name="db1", labels="dc=fra,tier=own"),
        Host(name="pg-1", labels="role=db"),
        Host(name="web1", labels="dc=ams"),
    ],
    groups=[
        Group(name="db", hosts=("db*", "pg-*"), labels="tier=data,role=database"),
        Group(name="eu", hosts="db1 web1", labels="region=eu"),
    ],
    alerts=[
        Alert(metric="up", op="==", limit=0, email="a@x.org", hosts="@db"),
        Alert(metric="up", op="==", limit=0, email="a@x.org", hosts="dc=fra,web1"),
        Alert(metric="up", op="==", limit=0, email="a@x.org", hosts="nomatch*"),
        Alert(metric="up", op="==", limit=0, email="a@x.org"),
    ],
)


def test_a_hosts_labels_are_its_groups_and_its_own(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GROUPED))
    found = {h.name: (dict(h.labels), h.groups) for h in config.hosts}
    assert found == {
        # its own tier=own wins over the group's tier=data
        "db1": ({"dc": "fra", "tier": "own", "role": "database", "region": "eu"}, ("db", "eu")),
        # its own role=db wins over the group's role=database
        "pg-1": ({"role": "db", "tier": "data"}, ("db",)),
        "web1": ({"dc": "ams", "region": "eu"}, ("eu",)),
    }
    assert [g.name for g in config.groups] == ["db", "eu"]
    assert [h.name for h in config.select(["@eu", "role=db"])] == ["db1", "web1", "pg-1"]


def test_alert_rules_hosts_take_selectors(tmp_path: Path) -> None:
    rules = load_config(write(tmp_path, GROUPED)).alerts.rules
    assert [r.selected for r in rules] == [
        frozenset({"db1", "pg-1"}),
        frozenset({"db1", "web1"}),
        frozenset(),  # a glob may match hosts added later: allowed, reported at run time
        None,
    ]
    assert rules[0].hosts == ("@db",)


def test_an_alert_rule_watches_the_hosts_it_selects(tmp_path: Path) -> None:
    from netmetrix.alerts import _watches

    rule = load_config(write(tmp_path, GROUPED)).alerts.rules[0]
    assert [h for h in ("db1", "pg-1", "web1") if _watches(rule, h)] == ["db1", "pg-1"]


@pytest.mark.parametrize(
    ("xml", "problem"),
    [
        (
            '<host name="a" labels="host=x"/>',
            ':2: <host name="a">: labels must be comma-separated name=value pairs'
            ' (role=db,dc=fra); not "host", no leading "__", got "host=x"',
        ),
        (
            '<host name="a"/><group name="g" hosts="b"/>',
            ':2: <group name="g">: hosts: unknown host "b"; known hosts: a',
        ),
        (
            '<host name="a"/><group name="g" hosts="a"/><group name="g" hosts="a"/>',
            ':2: <group name="g">: duplicate group name, first at line 2',
        ),
        (
            '<host name="a"/><group name="g" hosts="@x"/>',
            ':2: <group name="g">: hosts must be host names or globs separated by spaces'
            ' (db* pg-*), got "@x"',
        ),
        (
            '<host name="a"/><group hosts="a"/>',
            ':2: <group>: missing required attribute "name"',
        ),
    ],
)
def test_group_and_label_mistakes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xml: str, problem: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = Path("config.xml")
    path.write_text(f"<netmetrix>\n<hosts>{xml}</hosts></netmetrix>\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"config.xml{problem}" in str(caught.value).splitlines()


@pytest.mark.parametrize(
    ("hosts", "problem"),
    [
        ("@dbs", 'hosts: unknown group "dbs", did you mean "db"?'),
        ("db2", 'hosts: unknown host "db2", did you mean "db1"?'),
        (
            "role=",
            "hosts must be comma-separated host selectors: names, globs, @group,"
            ' label=value, label!=value (db-*,web1,@db,role=db), got "role="',
        ),
    ],
)
def test_alert_hosts_mistakes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hosts: str, problem: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = Path("config.xml")
    path.write_text(
        '<netmetrix>\n<hosts><host name="db1"/><group name="db" hosts="db*"/></hosts>\n'
        f'<alerts><alert metric="up" op="==" limit="0" email="a@x.org" hosts="{hosts}"/>'
        "</alerts></netmetrix>\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f'config.xml:3: <alert metric="up">: {problem}'


def test_select_names_the_config_file_in_problems(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GROUPED))
    with pytest.raises(UsageError) as caught:
        config.select(["@dbb", "tier=x"])
    assert str(caught.value) == (
        'config.xml: unknown group "dbb", did you mean "db"?\n'
        'config.xml: no host matches "tier=x"; labels in use: dc=ams, dc=fra, region=eu,'
        " role=database, role=db, tier=data, tier=own"
    )


# ---------------------------------------------------------------- the CLI


def test_dash_h_takes_selectors_on_the_command_line(tmp_path: Path, netmetrix: Cli) -> None:
    path = write(tmp_path, GROUPED)
    ran = netmetrix(
        "--config", path, "config", "show", "-h", "@eu", "-h", "dc!=ams", "--format", "json"
    )
    assert ran.code == 0, ran.err
    shown = {row["setting"] for row in json.loads(ran.out)}
    hosts = {s.split(".")[1] for s in shown if s.startswith("host.")}
    assert hosts == {"db1", "web1", "pg-1"}
    assert {"host.db1.labels", "host.db1.groups"} <= shown


def test_dash_h_did_you_mean_on_a_group(tmp_path: Path, netmetrix: Cli) -> None:
    path = write(tmp_path, GROUPED)
    ran = netmetrix("--config", path, "config", "show", "-h", "@dbs")
    assert ran.code == 2
    assert 'unknown group "dbs", did you mean "db"?' in ran.err


# ---------------------------------------------------------------- /metrics


def test_host_labels_are_target_labels_in_metrics(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GROUPED))
    disk = ProbeSample(metric="disk_percent", labels=(("mount", "/"),), value=50.0)
    with Store.open(f"sqlite:///{tmp_path}/nmx.db") as store:
        store.record_runs([HostRun(host="pg-1", address="pg-1", ts=T0, ok=True, samples=(disk,))])
        text = generate_latest(FleetCollector(read_snapshot(config, store, None))).decode()
        # the store keeps the series' own labels only: the host's are added when exposed
        stored = store.latest_rows(("pg-1",), ("disk_percent",))
        assert [json.loads(row.labels) for row in stored] == [{"mount": "/"}]
    found = {
        sample.name: sample.labels
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("host") == "pg-1"
    }
    target = {"host": "pg-1", "role": "db", "tier": "data"}
    assert found["netmetrix_disk_used_ratio"] == {**target, "mount": "/"}
    assert found["netmetrix_up"] == target
    assert found["netmetrix_host_last_seen_timestamp_seconds"] == target


def test_host_labels_go_with_remote_write_series() -> None:
    from netmetrix import remote_write
    from netmetrix.store.rwqueue import QueuedSample

    rows = [
        QueuedSample(1, "pg-1", "disk_percent", '{"mount":"/"}', 1000, 50.0),
        QueuedSample(2, "lone", "up", "{}", 1000, 1.0),
    ]
    labels = {"pg-1": (("mount", "clash"), ("role", "db"))}
    [pg, lone] = remote_write.series_of(rows, labels)
    # the series' own label wins a clash, as on /metrics
    assert pg.labels == (
        ("__name__", "netmetrix_disk_used_ratio"),
        ("host", "pg-1"),
        ("mount", "/"),
        ("role", "db"),
    )
    assert lone.labels == (("__name__", "netmetrix_up"), ("host", "lone"))
