"""Ansible inventories as a source of hosts and groups (#18): ``<inventory file="..."/>``.

Static inventories only, INI or YAML, as Ansible defines them: hosts with
``ansible_host``, ``ansible_port``, ``ansible_user``,
``ansible_ssh_private_key_file``, ``ansible_python_interpreter``,
``ansible_shell_executable`` (and netmetrix's own ``netmetrix_directory`` and
``netmetrix_probe``); groups,
``:children`` and ``all``; variables of ``all``, of groups (a child's over its
parent's) and of hosts (over every group's).  Other variables are Ansible's
business and are left alone.  What netmetrix cannot read the way Ansible
would (a dynamic inventory script, Jinja templating) is a ``file:line``
problem, never a silent skip.  Pure: text in, hosts and problems out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

VARS = {
    "ansible_host": "address",
    "ansible_ssh_host": "address",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_user": "user",
    "ansible_ssh_user": "user",
    "ansible_ssh_private_key_file": "key",
    "ansible_python_interpreter": "python",
    "netmetrix_directory": "directory",  # ours: where the probe lives (<host directory>)
    "netmetrix_probe": "probe",  # ours: python or sh (<host probe>, #18)
    "ansible_shell_executable": "shell",  # the shell that runs probe="sh"
}
_RANGE = re.compile(r"\[([0-9]+):([0-9]+)\]")
_NAME = re.compile(r"[A-Za-z0-9._-]+")


class InventoryError(ValueError):
    """Problems of one inventory file, each ``file:line: what``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True, slots=True, kw_only=True)
class InventoryHost:
    """One host of an inventory, its settings merged from every level of vars."""

    name: str
    line: int  # where the host is first named
    settings: Mapping[str, str] = field(default_factory=dict)  # address, port, user, key, python
    groups: tuple[str, ...] = ()  # every group it is in, ancestors included


@dataclass
class _Group:
    line: int
    hosts: dict[str, int] = field(default_factory=dict)  # name -> line
    vars: dict[str, str] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)


@dataclass
class _Inventory:
    shown: str
    groups: dict[str, _Group] = field(default_factory=dict)
    host_vars: dict[str, dict[str, str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def group(self, name: str, line: int) -> _Group:
        return self.groups.setdefault(name, _Group(line=line))

    def problem(self, line: int, what: str) -> None:
        self.problems.append(f"{self.shown}:{line}: {what}")

    def value(self, line: int, key: str, raw: Any) -> str | None:
        text = "" if raw is None else str(raw)
        if "{{" in text or "{%" in text:
            self.problem(line, f"{key}: Jinja templating is not supported, got {text!r}")
            return None
        return text


def read(text: str, shown: str, *, yaml: bool) -> list[InventoryHost]:
    """The hosts of an inventory's ``text``; InventoryError listing every problem."""
    inv = _Inventory(shown=shown)
    if text.startswith("#!"):
        inv.problem(1, "dynamic inventory scripts are not supported: write its output to a file")
    elif yaml:
        _read_yaml(inv, text)
    else:
        _read_ini(inv, text)
    hosts = _resolve(inv)
    if inv.problems:
        raise InventoryError(inv.problems)
    return hosts


def is_yaml(name: str, text: str) -> bool:
    """YAML by its extension, or INI; a file without one is YAML if it starts like YAML."""
    if name.endswith((".yml", ".yaml")):
        return True
    if name.endswith((".ini", ".cfg")):
        return False
    first = next(
        (x.strip() for x in text.splitlines() if x.strip() and x.strip()[0] not in "#;"), ""
    )
    return first.startswith("---") or (first.endswith(":") and not first.startswith("["))


# ---------------------------------------------------------------- INI


def _read_ini(inv: _Inventory, text: str) -> None:
    section, kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section, _, kind = line[1:-1].partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children"):
                inv.problem(number, f"[{line[1:-1]}]: unknown section kind :{kind}")
            inv.group(section, number)
            continue
        if kind == "vars":
            key, sep, value = (part.strip() for part in line.partition("="))
            if not sep:
                inv.problem(number, f"[{section}:vars]: expected name=value, got {line!r}")
            elif (text_value := inv.value(number, key, _unquote(value))) is not None:
                inv.groups[section].vars[key] = text_value
        elif kind == "children":
            inv.groups[section].children.append(line.split()[0])
            inv.group(line.split()[0], number)
        else:
            _ini_host(inv, section, number, line)


def _ini_host(inv: _Inventory, section: str, number: int, line: str) -> None:
    if "{{" in line or "{%" in line:
        inv.problem(number, f"Jinja templating is not supported, got {line!r}")
        return
    name, *pairs = _split_words(line)
    own: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            inv.problem(number, f"host {name}: expected name=value, got {pair!r}")
        elif (text_value := inv.value(number, key, _unquote(value))) is not None:
            own[key] = text_value
    for one in _expand(inv, number, name):
        inv.group(section, number).hosts.setdefault(one, number)
        inv.host_vars.setdefault(one, {}).update(own)


def _split_words(line: str) -> list[str]:
    """Words of an INI host line: split on spaces outside quotes, comments dropped."""
    words = re.findall(r"""(?:[^\s"'#]+|"[^"]*"|'[^']*')+|#.*""", line)
    return [w for w in words if not w.startswith("#")]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _expand(inv: _Inventory, number: int, pattern: str) -> Iterator[str]:
    """``web[01:03]`` is web01, web02, web03 (Ansible's numeric ranges; leading zeros kept)."""
    found = _RANGE.search(pattern)
    if found is None:
        if not _NAME.fullmatch(pattern):
            inv.problem(number, f"host {pattern!r}: a name of letters, digits, '.', '_', '-'")
            return
        yield pattern
        return
    low, high = found.group(1), found.group(2)
    width = len(low) if low.startswith("0") else 0
    for n in range(int(low), int(high) + 1):
        yield from _expand(
            inv, number, pattern[: found.start()] + f"{n:0{width}d}" + pattern[found.end() :]
        )


# ---------------------------------------------------------------- YAML


def _read_yaml(inv: _Inventory, text: str) -> None:
    import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        inv.problem(mark.line + 1 if mark else 1, f"not valid YAML: {getattr(err, 'problem', err)}")
        return
    if root is None:
        return
    if not isinstance(root, yaml.MappingNode):
        inv.problem(root.start_mark.line + 1, "expected a mapping of groups (all:, web:, ...)")
        return
    for key, value in root.value:
        _yaml_group(inv, key.value, key.start_mark.line + 1, value)


def _yaml_group(inv: _Inventory, name: str, line: int, node: Any) -> None:
    import yaml

    group = inv.group(name, line)
    if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return
    if not isinstance(node, yaml.MappingNode):
        inv.problem(line, f"group {name}: expected hosts:, vars: or children:")
        return
    for key, value in node.value:
        at = key.start_mark.line + 1
        entries = value.value if isinstance(value, yaml.MappingNode) else []
        if key.value == "hosts":
            for host, host_node in entries:
                _yaml_host(inv, group, host.value, host.start_mark.line + 1, host_node)
        elif key.value == "vars":
            group.vars.update(_yaml_vars(inv, entries))
        elif key.value == "children":
            for child, child_node in entries:
                group.children.append(child.value)
                _yaml_group(inv, child.value, child.start_mark.line + 1, child_node)
        else:
            inv.problem(at, f"group {name}: unknown key {key.value!r} (hosts, vars, children)")


def _yaml_host(inv: _Inventory, group: _Group, name: str, line: int, node: Any) -> None:
    import yaml

    entries = node.value if isinstance(node, yaml.MappingNode) else []
    own = _yaml_vars(inv, entries)
    for one in _expand(inv, line, name):
        group.hosts.setdefault(one, line)
        inv.host_vars.setdefault(one, {}).update(own)


def _yaml_vars(inv: _Inventory, entries: list[Any]) -> dict[str, str]:
    found = {}
    for key, value in entries:
        raw = getattr(value, "value", "")
        if (text := inv.value(key.start_mark.line + 1, key.value, raw)) is not None:
            found[key.value] = text
    return found


# ---------------------------------------------------------------- merging


def _resolve(inv: _Inventory) -> list[InventoryHost]:
    """Every host with its groups (ancestors included) and its variables merged."""
    parents: dict[str, set[str]] = {}
    for name, group in inv.groups.items():
        for child in group.children:
            parents.setdefault(child, set()).add(name)
    hosts: dict[str, int] = {}
    for group in inv.groups.values():
        for host, line in group.hosts.items():
            hosts.setdefault(host, line)
    found = []
    for host, line in sorted(hosts.items(), key=lambda item: item[1]):
        direct = [g for g, group in inv.groups.items() if host in group.hosts]
        every = _ancestors(direct, parents)
        ordered = sorted(every - {"all"}, key=lambda g: _depth(g, parents))
        merged = dict(inv.groups["all"].vars) if "all" in inv.groups else {}
        for g in ordered:
            merged.update(inv.groups[g].vars)
        merged.update(inv.host_vars.get(host, {}))
        settings = {VARS[k]: v for k, v in merged.items() if k in VARS}
        groups = tuple(sorted(every | {"all"}))
        found.append(InventoryHost(name=host, line=line, settings=settings, groups=groups))
    return found


def _ancestors(direct: list[str], parents: Mapping[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(direct)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(parents.get(name, ()))
    return seen


def _depth(name: str, parents: Mapping[str, set[str]], limit: int = 50) -> int:
    """How deep a group is below ``all`` (a child's vars win over its parent's)."""
    above = parents.get(name, set()) - {"all"}
    if not above or limit == 0:
        return 1
    return 1 + max(_depth(p, parents, limit - 1) for p in above)
