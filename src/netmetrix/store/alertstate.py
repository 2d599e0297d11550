"""Alert state per (rule, series) and the alert history, as ``alerts.evaluate`` left them.

``alert_state`` holds only the alerts that are not ok (pending or firing): a
state back to ok is deleted.  ``alert_events`` is the history (fired,
repeated, resolved); the outbox's mail points at its events.  Nothing here
evaluates a rule: this module reads and writes what the pipeline hands it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from netmetrix.model import AlertEvent, AlertState, StateKey
from netmetrix.store._sql import chunks, insert, ms, seconds
from netmetrix.store.schema import (
    alert_events_table,
    alert_state_table,
    labels_json,
    silenced_events_table,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveAlert:
    host: str
    metric: str
    labels: dict[str, str]
    state: str  # pending | firing
    value: float  # latest value
    rule: str
    severity: str
    since: float  # unix seconds of the first sample past the limit
    fired: float | None  # when it fired (None while pending)
    ts: float  # latest sample evaluated
    rule_id: str = ""  # alerts.rule_id: which rule of config.xml (#16)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertHistoryRow:
    id: int
    ts: float
    kind: str  # firing | repeat | resolved
    host: str
    metric: str
    labels: dict[str, str]
    value: float
    rule: str
    severity: str
    since: float
    silenced: bool = False  # a silence kept it from every receiver (#16)


# -- state, for the pipeline ------------------------------------------------------


def alert_states(
    conn: Connection, hosts: Iterable[str], rule_ids: Collection[str] | None = None
) -> dict[StateKey, AlertState]:
    """The stored states of ``hosts`` (of ``rule_ids`` only, when given)."""
    st = alert_state_table
    found: dict[StateKey, AlertState] = {}
    for chunk in chunks(sorted(set(hosts))):
        query = select(st).where(st.c.host.in_(chunk))
        if rule_ids is not None:
            query = query.where(st.c.rule_id.in_(sorted(rule_ids)))
        found.update(_state_item(row) for row in conn.execute(query))
    return found


def other_alert_states(
    conn: Connection, rule_ids: Collection[str], hosts: Collection[str] | None
) -> dict[StateKey, AlertState]:
    """The stored states of a rule not in ``rule_ids`` or a host not in ``hosts``
    (None: every host is in it)."""
    st = alert_state_table
    # alert_state holds only the alerts that are not ok: reading its ids and hosts is cheap
    stored_ids = set(conn.execute(select(st.c.rule_id).distinct()).scalars())
    wanted: list[tuple[Any, list[str]]] = [(st.c.rule_id, sorted(stored_ids - set(rule_ids)))]
    if hosts is not None:
        stored_hosts = set(conn.execute(select(st.c.host).distinct()).scalars())
        wanted.append((st.c.host, sorted(stored_hosts - set(hosts))))
    found: dict[StateKey, AlertState] = {}
    for column, values in wanted:
        for chunk in chunks(values):
            rows = conn.execute(select(st).where(column.in_(chunk)))
            found.update(_state_item(row) for row in rows)
    return found


def save_alert_states(conn: Connection, changes: Mapping[StateKey, AlertState | None]) -> None:
    """Write changed states: None deletes the stored one (back to ok), others upsert."""
    st = alert_state_table
    gone = [
        {"r": rid, "h": host, "m": metric, "l": labels_json(labels)}
        for (rid, host, metric, labels), state in changes.items()
        if state is None
    ]
    if gone:
        conn.execute(
            st.delete().where(
                st.c.rule_id == bindparam("r"),
                st.c.host == bindparam("h"),
                st.c.metric == bindparam("m"),
                st.c.labels == bindparam("l"),
            ),
            gone,
        )
    rows = [_state_row(key, state) for key, state in changes.items() if state is not None]
    if rows:
        # An upsert: another collector may have evaluated the same host just now.
        stmt = insert(conn.dialect.name, st)
        keys = ("rule_id", "host", "metric", "labels")
        update = {c.name: stmt.excluded[c.name] for c in st.columns if c.name not in keys}
        conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=update), rows)


def add_alert_events(conn: Connection, events: Sequence[AlertEvent]) -> list[int]:
    """Append ``events`` to the alert history; their ids, in order."""
    if not events:
        return []
    ev = alert_events_table
    rows = [
        {
            "ts_ms": ms(e.ts),
            "kind": e.kind,
            "rule_id": e.rule_id,
            "rule": e.rule,
            "severity": e.severity,
            "host": e.host,
            "metric": e.metric,
            "labels": labels_json(e.labels),
            "value": e.value,
            "since_ms": ms(e.since),
        }
        for e in events
    ]
    inserted = conn.execute(ev.insert().returning(ev.c.id, sort_by_parameter_order=True), rows)
    return list(inserted.scalars().all())


# -- for people -------------------------------------------------------------------


def alerts_active(conn: Connection, hosts: Sequence[str] = ()) -> list[ActiveAlert]:
    """Every (rule, series) pending or firing: firing first, then by host, series, rule."""
    t = alert_state_table
    query = select(t)
    if hosts:
        query = query.where(t.c.host.in_(sorted(set(hosts))))
    found = [
        ActiveAlert(
            host=r.host,
            metric=r.metric,
            labels=json.loads(r.labels),
            state=r.state,
            value=r.value,
            rule=r.rule,
            severity=r.severity,
            since=r.since_ms / 1000,
            fired=seconds(r.fired_ms),
            ts=r.ts_ms / 1000,
            rule_id=r.rule_id,
        )
        for r in conn.execute(query)
    ]
    found.sort(key=lambda a: (a.state != "firing", a.host, a.metric, str(a.labels), a.rule))
    return found


def alert_history(
    conn: Connection, hosts: Sequence[str] = (), limit: int | None = None
) -> list[AlertHistoryRow]:
    """Alert events (fired, repeated, resolved), newest first; ``limit`` caps them.

    Newest by the sample's time: ids follow the order a batch was evaluated
    in (by host), not when each host answered; ties (one sample, several
    rules) newest-inserted first.
    """
    t, se = alert_events_table, silenced_events_table
    query = (
        select(t, se.c.silence_id)
        .select_from(t.outerjoin(se, se.c.event_id == t.c.id))
        .order_by(t.c.ts_ms.desc(), t.c.id.desc())
    )
    if hosts:
        query = query.where(t.c.host.in_(sorted(set(hosts))))
    if limit is not None:
        query = query.limit(limit)
    return [
        AlertHistoryRow(
            id=r.id,
            ts=r.ts_ms / 1000,
            kind=r.kind,
            host=r.host,
            metric=r.metric,
            labels=json.loads(r.labels),
            value=r.value,
            rule=r.rule,
            severity=r.severity,
            since=r.since_ms / 1000,
            silenced=r.silence_id is not None,
        )
        for r in conn.execute(query)
    ]


def _state_item(row: Any) -> tuple[StateKey, AlertState]:
    labels = tuple(sorted(json.loads(row.labels).items()))
    state = AlertState(
        phase="firing" if row.state == "firing" else "pending",
        count=row.breaches,
        since=row.since_ms / 1000,
        fired=seconds(row.fired_ms),
        notified=seconds(row.notified_ms),
        value=row.value,
        ts=row.ts_ms / 1000,
        rule=row.rule,
        severity=row.severity,
    )
    return (row.rule_id, row.host, row.metric, labels), state


def _state_row(key: StateKey, state: AlertState) -> dict[str, Any]:
    rid, host, metric, labels = key
    return {
        "rule_id": rid,
        "host": host,
        "metric": metric,
        "labels": labels_json(labels),
        "state": state.phase,
        "breaches": state.count,
        "since_ms": ms(state.since),
        "fired_ms": None if state.fired is None else ms(state.fired),
        "notified_ms": None if state.notified is None else ms(state.notified),
        "value": state.value,
        "ts_ms": ms(state.ts),
        "rule": state.rule,
        "severity": state.severity,
    }
