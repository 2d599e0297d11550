"""Silences in the store (#16): add, list, end; the events they kept quiet."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection

from netmetrix.model import StateKey
from netmetrix.silences import NewSilence, Silence
from netmetrix.store._sql import ms, seconds
from netmetrix.store.schema import (
    alert_events_table,
    alert_state_table,
    labels_json,
    silenced_events_table,
    silences_table,
)


def add_silence(conn: Connection, new: NewSilence, now: float) -> int:
    """Store ``new``; its id."""
    t = silences_table
    result = conn.execute(
        t.insert().values(
            created_ms=ms(now),
            starts_ms=ms(new.starts),
            ends_ms=ms(new.ends),
            hosts=json.dumps(list(new.hosts)),
            metric=new.metric,
            labels=labels_json(new.labels),
            comment=new.comment,
            author=new.author,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def silences(conn: Connection, *, now: float, ended: bool = False) -> list[Silence]:
    """The silences not ended at ``now`` (with ``ended``: every one), oldest first."""
    t = silences_table
    query = select(t).order_by(t.c.id)
    if not ended:
        query = query.where(t.c.ends_ms > ms(now))
    return [_silence(r) for r in conn.execute(query)]


def end_silence(conn: Connection, silence_id: int, now: float) -> bool:
    """End silence ``silence_id`` at ``now``; False when there is no such silence not
    ended yet."""
    t = silences_table
    done = conn.execute(
        t.update().where(t.c.id == silence_id, t.c.ends_ms > ms(now)).values(ends_ms=ms(now))
    )
    return bool(done.rowcount)


def mark_silenced(conn: Connection, pairs: Sequence[tuple[int, int]]) -> None:
    """Remember that silence ``pair[1]`` kept alert event ``pair[0]`` from every receiver."""
    if pairs:
        conn.execute(
            silenced_events_table.insert(),
            [{"event_id": event, "silence_id": silence} for event, silence in pairs],
        )


def settle_ended(conn: Connection, now: float) -> list[Silence]:
    """The silences that ended by ``now`` and nobody settled yet, now settled by us: a
    second collector in the same moment gets none of them (the update decides)."""
    t = silences_table
    ended = [
        _silence(r)
        for r in conn.execute(
            select(t).where(t.c.ends_ms <= ms(now), t.c.settled_ms.is_(None)).with_for_update()
        )
    ]
    ours = []
    for silence in ended:
        done = conn.execute(
            t.update()
            .where(t.c.id == silence.id, t.c.settled_ms.is_(None))
            .values(settled_ms=ms(now))
        )
        if done.rowcount:
            ours.append(silence)
    return ours


def kept_quiet(conn: Connection, silence_ids: Iterable[int]) -> list[StateKey]:
    """The (rule, series) still firing whose last event one of these silences kept quiet:
    nobody was told they fire."""
    ev, se, st = alert_events_table, silenced_events_table, alert_state_table
    ids = sorted(set(silence_ids))
    if not ids:
        return []
    last = (
        select(ev.c.rule_id, ev.c.host, ev.c.metric, ev.c.labels, ev.c.id)
        .where(
            ev.c.id
            == select(ev.c.id)
            .where(
                and_(
                    ev.c.rule_id == st.c.rule_id,
                    ev.c.host == st.c.host,
                    ev.c.metric == st.c.metric,
                    ev.c.labels == st.c.labels,
                )
            )
            .correlate(st)
            .order_by(ev.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        .add_columns(st.c.state)
        .select_from(st.join(ev, and_(ev.c.rule_id == st.c.rule_id, ev.c.host == st.c.host)))
    )
    found: list[StateKey] = []
    silenced = set(conn.execute(select(se.c.event_id).where(se.c.silence_id.in_(ids))).scalars())
    for row in conn.execute(last):
        if row.state == "firing" and row.id in silenced:
            key = (row.rule_id, row.host, row.metric, tuple(sorted(json.loads(row.labels).items())))
            found.append(key)
    return sorted(set(found))


def silenced_event_ids(conn: Connection, event_ids: Iterable[int]) -> set[int]:
    """Which of ``event_ids`` a silence kept quiet."""
    se = silenced_events_table
    ids = sorted(set(event_ids))
    if not ids:
        return set()
    return set(conn.execute(select(se.c.event_id).where(se.c.event_id.in_(ids))).scalars())


def _silence(r: Any) -> Silence:
    return Silence(
        id=r.id,
        created=r.created_ms / 1000,
        starts=r.starts_ms / 1000,
        ends=r.ends_ms / 1000,
        hosts=tuple(json.loads(r.hosts)),
        metric=r.metric,
        labels=json.loads(r.labels),
        comment=r.comment,
        author=r.author,
        settled=seconds(r.settled_ms),
    )
