"""Host rows (address, last seen, last error) and host keys (pending, then active).

A host's key is added as *pending* before the upload sends it, and made
*active* (its host's only key) once the host holds it: an upload that crashed
in between leaves both keys stored, and execute accepts either (#3, #11).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from netmetrix.errors import StoreError
from netmetrix.model import UP, HostRun
from netmetrix.store._sql import chunks, insert, ms, newest, now_ms, seconds
from netmetrix.store.schema import (
    NO_LABELS,
    check_results_table,
    host_keys_table,
    hosts_table,
    samples_table,
    series_table,
)

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite


@dataclass(frozen=True, slots=True, kw_only=True)
class HostRow:
    name: str
    address: str | None
    last_seen: float | None  # unix seconds of the last good run
    last_error: str | None
    probe_version: str | None
    up: float | None  # latest `up` sample
    collector: str | None = None  # who collected its last run: "db1 (2/3)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Activated:
    """What ``activate_keys`` did, host by host."""

    activated: tuple[str, ...] = ()  # hosts whose key is now their only one
    missing: tuple[str, ...] = ()  # hosts that no longer had the key (nothing changed for them)


# -- host rows ------------------------------------------------------------------


def update_hosts(conn: Connection, runs: Sequence[HostRun]) -> None:
    """Upsert the host rows of ``runs`` (see ``upsert_hosts``)."""
    if runs:
        conn.execute(upsert_hosts(conn.dialect.name), host_rows(runs, now_ms()))


def upsert_hosts(dialect: str) -> sqlite.Insert | postgresql.Insert:
    """Upsert one host row: a good run sets last_seen and clears the error; a failed one
    sets the error and keeps last_seen.  The probe version and the collector are kept
    when not given."""
    t = hosts_table
    stmt = insert(dialect, t)
    return stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={
            "address": stmt.excluded.address,
            "last_seen_ms": func.coalesce(stmt.excluded.last_seen_ms, t.c.last_seen_ms),
            "last_error": stmt.excluded.last_error,
            "probe_version": func.coalesce(stmt.excluded.probe_version, t.c.probe_version),
            "updated_ms": stmt.excluded.updated_ms,
            "collector": func.coalesce(stmt.excluded.collector, t.c.collector),
        },
    )


def host_rows(runs: Sequence[HostRun], at_ms: int) -> list[dict[str, Any]]:
    """One row per host (a batch may hold several runs of one host; the newest wins)."""
    rows: dict[str, dict[str, Any]] = {}
    for run in sorted(runs, key=lambda r: r.ts):
        row = rows.setdefault(
            run.host,
            {"name": run.host, "last_seen_ms": None, "probe_version": None, "collector": None},
        )
        row["address"] = run.address
        row["updated_ms"] = at_ms
        if run.ok:
            row["last_seen_ms"] = ms(run.ts)
            row["last_error"] = None
        else:
            row["last_error"] = run.error or "failed"
        if run.probe_version is not None:
            row["probe_version"] = run.probe_version
        if run.collector is not None:
            row["collector"] = run.collector
    return [rows[name] for name in sorted(rows)]


def never_seen(conn: Connection, hosts: Iterable[str]) -> set[str]:
    """Which of ``hosts`` have a row without last_seen: they never answered."""
    h = hosts_table
    found: set[str] = set()
    for chunk in chunks(sorted(set(hosts))):
        query = select(h.c.name).where(h.c.name.in_(chunk), h.c.last_seen_ms.is_(None))
        found.update(conn.execute(query).scalars())
    return found


def addresses(conn: Connection, hosts: Iterable[str]) -> dict[str, str]:
    """The stored address of each of ``hosts`` that has one."""
    h = hosts_table
    found: dict[str, str] = {}
    for chunk in chunks(sorted(set(hosts))):
        query = select(h.c.name, h.c.address).where(h.c.name.in_(chunk))
        found.update((name, address) for name, address in conn.execute(query) if address)
    return found


def forget_host(conn: Connection, name: str) -> tuple[int, int, int, bool]:
    """Delete a host's series, samples, keys and row: (series, samples, keys, had a row).

    Its alert history and outbox stay (mail still to send is sent)."""
    s, p, k, h = series_table, samples_table, host_keys_table, hosts_table
    series = select(s.c.id).where(s.c.host == name).scalar_subquery()
    samples = conn.execute(p.delete().where(p.c.series_id.in_(series))).rowcount
    conn.execute(check_results_table.delete().where(check_results_table.c.host == name))
    return (
        conn.execute(s.delete().where(s.c.host == name)).rowcount,
        samples,
        conn.execute(k.delete().where(k.c.host == name)).rowcount,
        conn.execute(h.delete().where(h.c.name == name)).rowcount > 0,
    )


def hosts(conn: Connection) -> list[HostRow]:
    """Every host the store has seen, by name, with its latest ``up``."""
    h, s = hosts_table, series_table
    is_up = and_(s.c.host == h.c.name, s.c.metric == UP, s.c.labels == NO_LABELS)
    query = select(
        h.c.name,
        h.c.address,
        h.c.last_seen_ms,
        h.c.last_error,
        h.c.probe_version,
        newest(s, "value"),
        h.c.collector,
    ).select_from(h.outerjoin(s, is_up))
    rows = [
        HostRow(
            name=name,
            address=address,
            last_seen=seconds(seen),
            last_error=error,
            probe_version=version,
            up=value,
            collector=collector,
        )
        for name, address, seen, error, version, value, collector in conn.execute(query)
    ]
    return sorted(rows, key=lambda row: row.name)


def collectors(conn: Connection) -> list[tuple[str, int]]:
    """(collector, hosts whose last run it collected), most hosts first; hosts that no
    collector has named (runs before netmetrix knew collectors) are left out."""
    h = hosts_table
    query = (
        select(h.c.collector, func.count())
        .where(h.c.collector.is_not(None))
        .group_by(h.c.collector)
    )
    found = [(name, int(hosts)) for name, hosts in conn.execute(query)]
    return sorted(found, key=lambda item: (-item[1], item[0]))


def host_names(conn: Connection) -> set[str]:
    """Every host the store knows of: those with a hosts row or a series."""
    query = select(hosts_table.c.name).union(select(series_table.c.host))
    return set(conn.execute(query).scalars())


# -- keys -----------------------------------------------------------------------


def host_keys(conn: Connection, hosts: Iterable[str]) -> dict[str, dict[str, bytes]]:
    """Host -> {kid: key} for ``hosts``, active and pending keys both; keyless hosts absent."""
    t = host_keys_table
    found: dict[str, dict[str, bytes]] = {}
    for chunk in chunks(sorted(set(hosts))):
        rows = conn.execute(select(t.c.host, t.c.kid, t.c.key).where(t.c.host.in_(chunk)))
        for host, kid, key in rows:
            found.setdefault(host, {})[kid] = bytes(key)
    return found


def add_pending_keys(conn: Connection, items: Sequence[tuple[str, str, bytes]]) -> None:
    """Add (host, kid, key) entries as pending keys.

    Nothing is removed: the active key and earlier pending keys stay until a
    key is activated, because an upload that crashed after replacing the
    remote key file left that host holding one of them.  Adding a key the
    host already has changes nothing; StoreError when its id names another key.
    """
    t = host_keys_table
    for host, kid, key in items:
        old = conn.execute(
            select(t.c.key).where(t.c.host == host, t.c.kid == kid)
        ).scalar_one_or_none()
        if old is not None:
            if bytes(old) != key:
                raise StoreError(f'host "{host}": key id {kid!r} already names another key')
            continue
        conn.execute(
            t.insert().values(host=host, kid=kid, key=key, state="pending", created_ms=now_ms())
        )


def activate_keys(
    conn: Connection, pairs: Sequence[tuple[str, str]], *, pending_only: bool = False
) -> Activated:
    """Make each (host, kid) its host's only key, state active.

    Host by host: a host that no longer has that key (another upload
    replaced it, or the host was forgotten) keeps its keys as they are and
    is reported in ``missing``; the other hosts are activated all the same.
    ``pending_only`` (execute settling on the key a host used) leaves a host
    whose ``kid`` is already active alone, pending keys included: an upload
    running at the same time may be about to activate one of them.
    """
    t = host_keys_table
    done: list[str] = []
    missing: list[str] = []
    for host, kid in pairs:
        match = and_(t.c.host == host, t.c.kid == kid)
        if pending_only:
            match = and_(match, t.c.state == "pending")
            if not conn.execute(t.update().where(match).values(state="active")).rowcount:
                continue  # already active, or gone: nothing to settle
        elif conn.execute(t.update().where(match).values(state="active")).rowcount != 1:
            missing.append(host)
            continue
        conn.execute(t.delete().where(t.c.host == host, t.c.kid != kid))
        done.append(host)
    return Activated(activated=tuple(done), missing=tuple(missing))
