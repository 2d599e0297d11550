"""Custom checks' last reports per host (#17): state, the plugin's first line, since when."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Connection

from netmetrix.model import HostRun
from netmetrix.store._sql import chunks, ms
from netmetrix.store.schema import check_results_table


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckRow:
    """One check of one host as last reported."""

    host: str
    name: str
    status: int  # 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    text: str
    since: float  # unix seconds: the first report in this status
    ran: float  # unix seconds: when the plugin last ran on the host
    duration: float  # seconds
    ts: float  # unix seconds: the run that reported it


def write_checks(conn: Connection, runs: Sequence[HostRun]) -> None:
    """Replace each answered run's host's checks with the ones it reported.

    A check keeps its ``since`` while its status stays the same; one the host no
    longer reports (taken out of config.xml, then uploaded) is deleted.  A few
    statements per batch, not per host: a fleet without checks pays one SELECT.
    """
    t = check_results_table
    answered = {run.host: run for run in runs if run.ok}  # the others keep their last checks
    old: dict[tuple[str, str], tuple[int, int]] = {}
    for part in chunks(list(answered)):
        query = select(t.c.host, t.c.name, t.c.status, t.c.since_ms).where(t.c.host.in_(part))
        for host, name, status, since in conn.execute(query):
            old[(host, name)] = (status, since)
    stale = sorted({host for host, _ in old})
    for part in chunks(stale):
        conn.execute(t.delete().where(t.c.host.in_(part)))
    rows = [
        _row(run, report, old.get((run.host, report[0])))
        for run in answered.values()
        for report in run.checks
    ]
    if rows:
        conn.execute(t.insert(), rows)


def _row(
    run: HostRun, report: tuple[str, int, str, float, float], before: tuple[int, int] | None
) -> dict[str, object]:
    name, status, text, ran, duration = report
    return {
        "host": run.host,
        "name": name,
        "status": status,
        "text": text,
        "since_ms": before[1] if before and before[0] == status else ms(run.ts),
        "ran_ms": ms(ran),
        "duration": duration,
        "ts_ms": ms(run.ts),
    }


def check_rows(conn: Connection, hosts: Sequence[str] = ()) -> list[CheckRow]:
    """Every stored check (of ``hosts`` when given), by host, then name."""
    t = check_results_table
    query = select(t).order_by(t.c.host, t.c.name)
    if hosts:
        query = query.where(t.c.host.in_(list(hosts)))
    return [
        CheckRow(
            host=row.host,
            name=row.name,
            status=row.status,
            text=row.text,
            since=row.since_ms / 1000,
            ran=row.ran_ms / 1000,
            duration=row.duration,
            ts=row.ts_ms / 1000,
        )
        for row in conn.execute(query)
    ]


def check_text(conn: Connection, host: str, name: str) -> tuple[int, str] | None:
    """(status, text) of ``host``'s check ``name`` as last stored, or None."""
    t = check_results_table
    query = select(t.c.status, t.c.text).where(t.c.host == host, t.c.name == name)
    row = conn.execute(query).first()
    return None if row is None else (row.status, row.text)
