"""What every command module shares: settings, ``-h``, host selection, the store, parameters.

Imported by every module of the package; it imports none of them (nor the
package's ``__init__``).  Which hosts a pattern names is decided in one place,
``select_hosts`` (names, shell globs, ``@group``, label matchers:
``netmetrix.selector``), for every command, with one did-you-mean message.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from netmetrix.config import (
    Config,
    HostConfig,
    load_config,
    parse_duration,
    parse_when,
    parse_workers,
)
from netmetrix.errors import UsageError
from netmetrix.render import render
from netmetrix.selector import Target, select
from netmetrix.shard import Shard, parse_shard, take

if TYPE_CHECKING:
    from netmetrix.store import Store


@dataclass(frozen=True, slots=True)
class Settings:
    """The options of ``netmetrix`` itself, handed to every command (``ctx.obj``)."""

    config_path: Path
    debug: bool
    owns_process: bool = False  # run by the console script: this process runs one command

    def load(self) -> Config:
        return load_config(self.config_path)


# The cyclic GC's thresholds during a run (Python's default: 700, 10, 10).  Every SSH
# connection leaves reference cycles of its own (asyncssh's connection and process
# objects, asyncio's transport): about 80 objects per host, with the buffers and cipher
# contexts they hold, that only the GC frees.  Collected every 700 allocations, the hosts in
# flight are rescanned and promoted again and again (10,000 simulated hosts: 7.2 s of GC,
# 40 full collections).  A young generation of 50,000 cut that to 2.3 s, but garbage
# promoted past it then waited for full collections that no longer came: peak RSS
# 151 MB instead of 126 MB.  10,000 young, the middle generation every 3 and a full
# collection every 5 of those: 3.7 s of GC, 137 MB (#15).
GC_THRESHOLDS = (10_000, 3, 5)
T = TypeVar("T")


def imports_begin(settings: Settings) -> None:
    """Before a command's heavy imports: no cyclic GC until ``imports_done``, which must follow.

    What the imports (SQLAlchemy, asyncssh) and the config create lives as long
    as the process, so collecting it is wasted work: 65-75 ms of `execute`'s
    start-up CPU (#15).  Only for a process of our own: a program that calls
    ``main()`` keeps its GC as it is.
    """
    if settings.owns_process:
        gc.disable()


def imports_done(settings: Settings) -> None:
    """The heavy imports are done: the cyclic GC again, tuned for a fleet run.

    The imported objects live as long as the process: frozen, the GC no longer
    rescans them (bench/RESULTS.md: GC time at 200 hosts fell from 57 ms to
    30 ms), and the young generations are collected less often (``GC_THRESHOLDS``).
    """
    if settings.owns_process:
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        gc.enable()


# ---------------------------------------------------------------- hosts


def host_option(*, required: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-h/--host SELECTOR`` (repeatable: a union) as ``hosts``.

    Not ``required``: none given means every host.  ``required``: at least one
    (``-h '*'`` for all).
    """
    every = "-h '*' for every host." if required else "Default: every host."
    return click.option(
        "-h",
        "--host",
        "hosts",
        multiple=True,
        required=required,
        metavar="SELECTOR",
        help="Only these hosts: a name, a shell glob ('web*', quoted), @group, label=value"
        f" or label!=value; repeatable, the union. {every}",
    )


@dataclass(frozen=True, slots=True)
class Selection:
    """The hosts ``-h`` selected."""

    names: tuple[str, ...]  # in the order asked; () when no -h was given: no filter
    hosts: tuple[HostConfig, ...]  # config.xml's hosts among them (all of them without -h)


def select_hosts(
    config: Config,
    patterns: Sequence[str],
    store: Store | None = None,
    *,
    more_problems: Sequence[str] = (),
) -> Selection:
    """The hosts ``patterns`` name or match: config.xml's, and with ``store`` those it holds.

    A host removed from config.xml keeps its samples and alerts: commands that
    read the store pass it, so that such a host can still be asked for.  Raises
    UsageError with one did-you-mean line per pattern that selects nothing
    (``config.xml: ...`` when only its hosts count), after ``more_problems``
    (the command's other unknown names): every problem at once.
    """
    configured = {h.name: h for h in config.hosts}
    known = config.targets()
    if store is not None:
        known += [Target(name=n) for n in sorted(store.host_names().difference(configured))]
    names, problems = select(patterns, known, config.group_names)
    if store is None:
        problems = [f"{config.path.name}: {problem}" for problem in problems]
    if problems or more_problems:
        raise UsageError("\n".join([*problems, *more_problems]))
    chosen = tuple(configured[n] for n in names if n in configured)
    return Selection(names=names, hosts=chosen if patterns else config.hosts)


def shard_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--shard K/N`` as ``shard`` (a Shard, or None)."""
    return click.option(
        "--shard",
        type=SHARD,
        default=None,
        help="Collect only shard K of N: the hosts that rendezvous hashing of their names"
        " gives this collector, so that N collectors sharing one config.xml and one"
        " database split the fleet. Default: <collector shard>, else every host.",
    )


def collected_hosts(
    config: Config, patterns: Sequence[str], shard: Shard | None
) -> tuple[Config, tuple[HostConfig, ...]]:
    """The hosts this collector works on: ``-h``'s (all without it) in its shard.

    ``shard`` (``--shard``) replaces config.xml's <collector shard>; the config
    returned carries it.  UsageError when the shard leaves no host.
    """
    config = config.with_shard(shard)
    selected = select_hosts(config, patterns).hosts
    where = config.shard_source(shard is not None)
    return config, take(selected, config.collector.shard, where=where, selected=bool(patterns))


@contextmanager
def open_store(config: Config, *, upgrade: bool = True) -> Iterator[Store]:
    """config.xml's <database>, its schema brought up to date unless ``upgrade`` is False."""
    from netmetrix.store import Store

    with Store.open(config.database, upgrade=upgrade) as store:
        yield store


# ---------------------------------------------------------------- output


def explicit_format(ctx: click.Context) -> bool:
    """Whether ``--format`` was given on the command line (not left at its default)."""
    source = ctx.get_parameter_source("fmt")
    return source is not None and source != click.core.ParameterSource.DEFAULT


def one(row: Mapping[str, Any], fmt: str, line: str) -> None:
    """A one-record result: ``line`` for people as the table, the record as JSON/CSV."""
    if fmt == "table":
        click.echo(line)
    else:
        render([row], list(row), fmt, sys.stdout)


class HelpGroup(click.Group):
    """A group that, given no arguments at all, prints its help on stdout and exits 0."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(0)
        return super().parse_args(ctx, args)


# ---------------------------------------------------------------- parameters


class _Parsed(click.ParamType[T]):
    """A value that ``parse`` makes of the text given; its ValueError is the usage error."""

    def __init__(self, name: str, parse: Callable[[str], T], kind: type[T]) -> None:
        self.name, self._parse, self._kind = name, parse, kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> T:
        if isinstance(value, self._kind):  # a default, or a value converted already
            return value
        try:
            return self._parse(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


def _when(text: str) -> float:
    """A point in time: a duration ago (``30m``, ``1h``, ``2d``) or ISO 8601 (UTC if no zone)."""
    return parse_when(text, time.time())


class _Labels(click.ParamType[dict[str, str]]):
    """``k=v[,k=v]`` -> dict; an empty string is the series without labels."""

    name = "K=V[,K=V]"

    def convert(
        self, value: Any, _param: click.Parameter | None, _ctx: click.Context | None
    ) -> dict[str, str]:
        if isinstance(value, dict):
            return value
        labels: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in str(value).split(","))):
            key, sep, val = (part.strip() for part in item.partition("="))
            if not sep or not key or key in labels:
                self.fail(f"{value!r}: give name=value pairs, e.g. mount=/ or mount=/,dev=sda")
            labels[key] = val
        return labels


WHEN = _Parsed("WHEN", _when, float)
DURATION = _Parsed("DURATION", parse_duration, float)  # seconds: a number with s, m, h or d
WORKERS = _Parsed("N|auto", parse_workers, int)  # a number >= 1, or auto (the CPUs)
SHARD = _Parsed("K/N", parse_shard, Shard)  # shard K of N
LABELS = _Labels()
