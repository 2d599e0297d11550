"""Ansible inventories (#18): INI and YAML, groups, children, vars, overrides, errors, and a
new user's first run from an inventory of 3 hosts on real sshd servers."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sshd
from conftest import Fleet, Run

from netmetrix import configxml, inventory
from netmetrix.config import load_config
from netmetrix.errors import ConfigError
from netmetrix.store import Store

Cli = Callable[..., Run]

INI = """\
# the fleet
lone ansible_host=10.0.0.9
[web]
web[01:02] ansible_user=deploy
[db]
db1 ansible_host=192.0.2.5 ansible_port=2222
[db:vars]
ansible_user=postgres
ansible_python_interpreter=/usr/bin/python3.11
[eu:children]
web
db
[eu:vars]
ansible_user=eu
ansible_ssh_private_key_file=~/.ssh/eu
something_else=for ansible only
[all:vars]
ansible_port=22
"""

YAML = """\
all:
  vars:
    ansible_port: 22
  hosts:
    lone:
      ansible_host: 10.0.0.9
  children:
    eu:
      vars:
        ansible_user: eu
        ansible_ssh_private_key_file: ~/.ssh/eu
      children:
        web:
          hosts:
            web[01:02]:
              ansible_user: deploy
        db:
          vars:
            ansible_user: postgres
            ansible_python_interpreter: /usr/bin/python3.11
          hosts:
            db1:
              ansible_host: 192.0.2.5
              ansible_port: 2222
"""

EXPECTED = {
    "lone": {"address": "10.0.0.9", "port": "22"},
    # a host's own vars over its group's over the parent's over all's
    "web01": {"port": "22", "user": "deploy", "key": "~/.ssh/eu"},
    "web02": {"port": "22", "user": "deploy", "key": "~/.ssh/eu"},
    "db1": {
        "address": "192.0.2.5",
        "port": "2222",
        "user": "postgres",  # db's vars over its parent eu's
        "key": "~/.ssh/eu",
        "python": "/usr/bin/python3.11",
    },
}


@pytest.mark.parametrize(("text", "yaml"), [(INI, False), (YAML, True)])
def test_both_formats_read_the_same_fleet(text: str, yaml: bool) -> None:
    hosts = inventory.read(text, "inv", yaml=yaml)
    assert {h.name: dict(h.settings) for h in hosts} == EXPECTED
    groups = {h.name: set(h.groups) for h in hosts}
    assert groups["web01"] == {"all", "eu", "web"}
    assert groups["db1"] == {"all", "eu", "db"}
    assert groups["lone"] <= {"all", "ungrouped"}


def test_lines_name_where_each_host_is(tmp_path: Path) -> None:
    assert [(h.name, h.line) for h in inventory.read(INI, "i", yaml=False)] == [
        ("lone", 2),
        ("web01", 4),
        ("web02", 4),
        ("db1", 6),
    ]
    assert inventory.read(YAML, "i", yaml=True)[0].line == 5


@pytest.mark.parametrize(
    ("text", "yaml", "problem"),
    [
        (
            "[web]\nweb1 ansible_host={{ lookup('env', 'X') }}\n",
            False,
            "inv:2: Jinja templating is not supported, got \"web1 ansible_host={{ lookup('env',"
            " 'X') }}\"",
        ),
        (
            "all:\n  hosts:\n    web1:\n      ansible_user: '{{ user }}'\n",
            True,
            "inv:4: ansible_user: Jinja templating is not supported, got '{{ user }}'",
        ),
        (
            "#!/usr/bin/env python3\nprint('{}')\n",
            False,
            "inv:1: dynamic inventory scripts are not supported: write its output to a file",
        ),
        ("all:\n  hosts: [\n", True, "inv:3: not valid YAML: expected the node content"),
        ("[web:nonsense]\n", False, "inv:1: [web:nonsense]: unknown section kind :nonsense"),
        ("[web]\nweb/1\n", False, "inv:2: host 'web/1': a name of letters, digits, '.', '_', '-'"),
    ],
)
def test_unsupported_constructs_are_file_line_errors(text: str, yaml: bool, problem: str) -> None:
    with pytest.raises(inventory.InventoryError) as caught:
        inventory.read(text, "inv", yaml=yaml)
    assert caught.value.problems[0].startswith(problem)


def test_the_format_is_told_by_extension_or_content() -> None:
    assert inventory.is_yaml("hosts.yml", "")
    assert not inventory.is_yaml("hosts.ini", "all:\n")
    assert inventory.is_yaml("hosts", "---\nall:\n")
    assert not inventory.is_yaml("hosts", "# c\n[web]\nweb1\n")


# ---------------------------------------------------------------- config.xml


def config_with(tmp_path: Path, text: str, body: str, name: str = "inventory.ini") -> Path:
    (tmp_path / name).write_text(text)
    path = tmp_path / "config.xml"
    path.write_text(f'<netmetrix>\n  <inventory file="{name}"/>\n{body}</netmetrix>\n')
    return path


def test_config_xml_overrides_the_inventory(tmp_path: Path) -> None:
    body = (
        '  <hosts>\n    <host name="db1" user="monitor" labels="role=db"/>\n'
        '    <group name="core" hosts="db1 lone"/>\n  </hosts>\n'
    )
    config = load_config(config_with(tmp_path, INI, body))
    hosts = {h.name: h for h in config.hosts}
    assert list(hosts) == ["db1", "lone", "web01", "web02"]
    db1 = hosts["db1"]
    # config.xml's user wins; the rest comes from the inventory
    assert (db1.user, db1.address, db1.port, db1.python) == (
        "monitor",
        "192.0.2.5",
        2222,
        "/usr/bin/python3.11",
    )
    assert db1.key == Path("~/.ssh/eu").expanduser()
    assert db1.source == "inventory.ini:6"
    assert set(db1.groups) == {"all", "eu", "db", "core"}
    assert [h.name for h in config.select(["@eu"])] == ["db1", "web01", "web02"]
    assert [h.name for h in config.select(["@core"])] == ["db1", "lone"]


def test_an_inventory_alone_needs_no_host_line(tmp_path: Path) -> None:
    config = load_config(config_with(tmp_path, YAML, "", name="hosts.yml"))
    assert [h.name for h in config.hosts] == ["lone", "web01", "web02", "db1"]


def test_config_show_names_where_each_value_came_from(tmp_path: Path, netmetrix: Cli) -> None:
    body = '  <hosts>\n    <host name="db1" user="monitor"/>\n  </hosts>\n'
    path = config_with(tmp_path, INI, body)
    ran = netmetrix("--config", path, "config", "show", "-h", "db1", "--format", "json")
    assert ran.code == 0, ran.err
    sources = {row["setting"]: row["source"] for row in json.loads(ran.out)}
    assert sources["host.db1.inventory"] == "inventory.ini:6"
    assert sources["host.db1.address"] == "inventory.ini:6"
    assert sources["host.db1.port"] == "inventory.ini:6"
    assert sources["host.db1.user"] == "config.xml:4"
    assert sources["host.db1.python"] == "inventory.ini:6"


def test_a_bad_inventory_value_names_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config_with(tmp_path, "[web]\nweb1 ansible_port=ssh\n", "")
    with pytest.raises(ConfigError) as caught:
        load_config(Path("config.xml"))
    assert str(caught.value) == (
        'inventory.ini:2: host web1: port must be an integer 1-65535, got "ssh"'
    )


def test_a_missing_inventory_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("config.xml").write_text('<netmetrix>\n<inventory file="nope.ini"/>\n</netmetrix>\n')
    with pytest.raises(ConfigError) as caught:
        load_config(Path("config.xml"))
    assert str(caught.value).startswith(
        f"config.xml:2: <inventory>: file: cannot read {tmp_path}/nope.ini: No such file"
    )


# ---------------------------------------------------------------- a new user's first run


@pytest.mark.sshd
def test_a_new_user_with_an_inventory_of_three_hosts(
    fleet: Fleet, netmetrix: Cli, test_user: sshd.User, user_dir: Path
) -> None:
    """trust --yes, check, upload, execute -h @web: no <host> line written."""
    one, two = fleet.farm.servers[0].port, fleet.farm.servers[1].port
    key = fleet.farm.client_key
    (fleet.root / "inventory.ini").write_text(
        "[web]\n"
        f"web1 ansible_port={one} netmetrix_directory={fleet.root}/remote/web1\n"
        f"web2 ansible_port={two} netmetrix_directory={fleet.root}/remote/web2\n"
        "[db]\n"
        f"db1 ansible_port={one} ansible_user={test_user.name}"
        f" ansible_python_interpreter={test_user.python} netmetrix_directory={user_dir}/db1\n"
        "[all:vars]\n"
        f"ansible_host=127.0.0.1\nansible_user=root\nansible_ssh_private_key_file={key}\n"
        f"ansible_python_interpreter={sys.executable}\n"
    )
    fleet.known_hosts.unlink()
    fleet.config.write_text(
        configxml.render(
            configxml.ConfigXml(
                ssh=configxml.SSH(known_hosts="known_hosts", connect_timeout=20),
                inventories=["inventory.ini"],
            )
        )
    )
    assert "<host " not in fleet.config.read_text()
    config = fleet.config
    trusted = netmetrix("--config", config, "trust", "--yes")
    assert trusted.code == 0, trusted.err
    assert netmetrix("--config", config, "check").code == 1  # no probe yet
    uploaded = netmetrix("--config", config, "upload")
    assert uploaded.code == 0, uploaded.err
    checked = netmetrix("--config", config, "check", "--format", "json")
    assert checked.code == 0, checked.out
    assert {row["host"] for row in json.loads(checked.out) if row["ready"]} == {
        "web1",
        "web2",
        "db1",
    }
    ran = netmetrix("--config", config, "execute", "-h", "@web")
    assert ran.code == 0, ran.err
    with Store.open(f"sqlite:///{fleet.database}") as store:
        assert {row.host for row in store.latest_rows((), ("up",))} == {"web1", "web2"}


def test_several_inventories_add_up(tmp_path: Path) -> None:
    (tmp_path / "a.ini").write_text("[web]\nweb1 ansible_port=2201\n")
    (tmp_path / "b.yml").write_text(
        "all:\n  children:\n    web:\n      hosts:\n        web1:\n          ansible_port: 9\n"
        "        web2:\n"
    )
    path = tmp_path / "config.xml"
    path.write_text('<netmetrix><inventory file="a.ini"/><inventory file="b.yml"/></netmetrix>')
    config = load_config(path)
    # the first inventory naming a host gives it; a group is the union of its members
    assert [(h.name, h.port, h.source) for h in config.hosts] == [
        ("web1", 2201, "a.ini:2"),
        ("web2", None, "b.yml:7"),
    ]
    assert [h.name for h in config.select(["@web"])] == ["web1", "web2"]
