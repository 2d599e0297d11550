"""Host selectors: which hosts ``-h`` and an alert rule's ``hosts=`` name (#18).

Pure: no I/O, no imports of the rest of netmetrix.  One grammar everywhere:

- ``web1``: the host of that name;
- ``web*``, ``db[12]``, ``f?``: the hosts whose names match the shell glob;
- ``@db``: the hosts of group ``db`` (config.xml's ``<group>``);
- ``role=db``: the hosts whose label ``role`` is ``db``;
- ``dc!=fra``: the hosts whose label ``dc`` is not ``fra`` (also those without ``dc``,
  as in Prometheus' matchers).

Host names hold no ``@``, ``=`` or ``!``, so the forms cannot be confused.  A
list of selectors is a union; the names come selector by selector, those of one
selector in the order of the hosts, each name once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

Kind = Literal["name", "glob", "group", "equal", "not_equal"]

GLOB_CHARS = frozenset("*?[")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
GROUP_NAME = re.compile(r"[A-Za-z0-9._-]+")
_SHOWN = 10  # known names listed in a "matches nothing" message


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What a selector looks at of one host."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()  # its own and its groups'
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Selector:
    """One parsed selector; ``text`` as the user wrote it."""

    text: str
    kind: Kind
    name: str  # host name, glob, group name or label name
    value: str = ""  # the label value of equal / not_equal

    def matches(self, target: Target) -> bool:
        if self.kind == "name":
            return target.name == self.name
        if self.kind == "glob":
            return fnmatchcase(target.name, self.name)
        if self.kind == "group":
            return self.name in target.groups
        value = dict(target.labels).get(self.name)
        return value == self.value if self.kind == "equal" else value != self.value


def parse(text: str) -> Selector:
    """``text`` as a Selector; ValueError naming the forms when it is none of them."""
    if text.startswith("@"):
        if not GROUP_NAME.fullmatch(text[1:]):
            raise ValueError(_bad(text, "a group name after @"))
        return Selector(text=text, kind="group", name=text[1:])
    if "=" in text:
        key, op, value = _split(text)
        if not LABEL_NAME.fullmatch(key) or not value:
            raise ValueError(_bad(text, "label=value or label!=value"))
        kind: Kind = "equal" if op == "=" else "not_equal"
        return Selector(text=text, kind=kind, name=key, value=value)
    if not text or "!" in text.replace("[!", "") or any(c.isspace() for c in text):
        raise ValueError(_bad(text, "a host name or glob"))
    form: Kind = "name" if GLOB_CHARS.isdisjoint(text) else "glob"
    return Selector(text=text, kind=form, name=text)


def _split(text: str) -> tuple[str, str, str]:
    key, _, value = text.partition("=")
    if key.endswith("!"):
        return key[:-1], "!=", value
    return key, "=", value


def _bad(text: str, expected: str) -> str:
    return (
        f'bad host selector "{text}": expected {expected}'
        " (forms: name, 'web*', @group, label=value, label!=value)"
    )


def select(
    texts: Sequence[str], targets: Sequence[Target], groups: Collection[str] = ()
) -> tuple[tuple[str, ...], list[str]]:
    """(the names of ``targets`` that ``texts`` select, one problem per text selecting none).

    ``groups`` are the groups that exist (a group may have no host): ``@x`` for
    another name is a did-you-mean problem, like a host name that matches nothing.
    """
    chosen: dict[str, None] = {}
    problems: list[str] = []
    for text in dict.fromkeys(texts):
        try:
            selector = parse(text)
        except ValueError as err:
            problems.append(str(err))
            continue
        found = [t.name for t in targets if selector.matches(t)]
        if found:
            chosen.update(dict.fromkeys(found))
        else:
            problems.append(nothing_matches(selector, targets, groups))
    return tuple(chosen), problems


def nothing_matches(selector: Selector, targets: Sequence[Target], groups: Collection[str]) -> str:
    """Why ``selector`` selects no host, with a did-you-mean where one is close."""
    names = [t.name for t in targets]
    if selector.kind == "name":
        return unknown_name("host", selector.name, names)
    if selector.kind == "glob":
        return f'no host matches "{selector.text}"; known hosts: {some(names)}'
    if selector.kind == "group":
        if selector.name in groups:
            return f'group "{selector.name}" has no hosts'
        return unknown_name("group", selector.name, groups)
    pairs = sorted({f"{k}={v}" for t in targets for k, v in t.labels})
    return f'no host matches "{selector.text}"; labels in use: {some(pairs)}'


def unknown_name(kind: str, name: str, known: Collection[str]) -> str:
    """``unknown host "f44", did you mean "f4"?``, or the known names when none is close."""
    near = difflib.get_close_matches(name, sorted(known), n=1)
    if near:
        return f'unknown {kind} "{name}", did you mean "{near[0]}"?'
    return f'unknown {kind} "{name}"; known {kind}s: {some(known)}'


def some(names: Collection[str]) -> str:
    """Up to ten of ``names``, sorted, and how many there are in all when more."""
    shown = sorted(names)[:_SHOWN]
    more = f", ... ({len(names)} in all)" if len(names) > _SHOWN else ""
    return ", ".join(shown) + more if shown else "(none)"


def split(raw: str) -> tuple[str, ...]:
    """The selectors of an attribute: separated by commas and/or white space."""
    return tuple(part for part in re.split(r"[,\s]+", raw) if part)


def check(texts: Iterable[str]) -> list[str]:
    """A problem per text that is not a selector (for config.xml's ``hosts=``)."""
    problems = []
    for text in texts:
        try:
            parse(text)
        except ValueError as err:
            problems.append(str(err))
    return problems
