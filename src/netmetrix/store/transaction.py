"""``Transaction``: the writes of one run, inside one ``Store.transaction()``."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from sqlalchemy.engine import Connection

from netmetrix.model import AlertEvent, AlertState, HostRun, Labels, StateKey
from netmetrix.silences import Silence
from netmetrix.store import alertstate, checkresults, outbox, samples, silencestore
from netmetrix.store import hosts as _hosts  # `hosts` is a parameter name of the API
from netmetrix.store.samples import Written


class Transaction:
    """The writes of one transaction (``Store.transaction``): samples, host rows, alert
    state, alert history and outbox rows.  The pipeline orchestrates them; nothing here
    evaluates a rule or words a mail."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # -- runs and hosts -------------------------------------------------------------

    def write_runs(
        self, runs: Sequence[HostRun], forward: Collection[str] | None = None
    ) -> Written:
        """Store host runs (samples, ``up``, host rows); a refused host fails alone.
        The samples of ``forward``'s metrics are queued for remote-write too
        (``samples.write_runs``)."""
        written = samples.write_runs(self._conn, runs, forward)
        checkresults.write_checks(self._conn, written.runs)  # as stored: refused ones failed
        return written

    def update_hosts(self, runs: Sequence[HostRun]) -> None:
        """Update only the host rows of ``runs`` (address, last error).

        For runs that were cut short (Ctrl-C): no sample, so no `up` = 0 that
        would page someone, and nothing for the alert rules to see.
        """
        _hosts.update_hosts(self._conn, runs)

    def never_seen(self, hosts: Iterable[str]) -> set[str]:
        """Which of ``hosts`` have a row without last_seen: they never answered."""
        return _hosts.never_seen(self._conn, hosts)

    def check_text(self, host: str, name: str) -> tuple[int, str] | None:
        """(status, first line of text) of ``host``'s custom check ``name``, or None (#17)."""
        return checkresults.check_text(self._conn, host, name)

    def addresses(self, hosts: Iterable[str]) -> dict[str, str]:
        """The stored address of each of ``hosts`` that has one."""
        return _hosts.addresses(self._conn, hosts)

    def recent(
        self, host: str, metric: str, labels: Labels, until: float, limit: int
    ) -> tuple[tuple[float, float], ...]:
        """The last ``limit`` (ts, value) of one series up to ``until``, oldest first."""
        return samples.recent(self._conn, host, metric, labels, until, limit)

    def forget_host(self, name: str) -> tuple[int, int, int, bool]:
        """Delete a host's series, samples, keys and row: (series, samples, keys, had a row).

        Its alert history and outbox stay (mail still to send is sent)."""
        return _hosts.forget_host(self._conn, name)

    # -- alert state, history, outbox -------------------------------------------------

    def alert_states(
        self, hosts: Iterable[str], rule_ids: Collection[str] | None = None
    ) -> dict[StateKey, AlertState]:
        """The stored states of ``hosts`` (of ``rule_ids`` only, when given)."""
        return alertstate.alert_states(self._conn, hosts, rule_ids)

    def other_alert_states(
        self, rule_ids: Collection[str], hosts: Collection[str] | None
    ) -> dict[StateKey, AlertState]:
        """The stored states of a rule not in ``rule_ids`` or a host not in ``hosts``
        (None: every host is in it)."""
        return alertstate.other_alert_states(self._conn, rule_ids, hosts)

    def save_alert_states(self, changes: Mapping[StateKey, AlertState | None]) -> None:
        """Write changed states: None deletes the stored one (back to ok), others upsert."""
        alertstate.save_alert_states(self._conn, changes)

    def add_alert_events(self, events: Sequence[AlertEvent]) -> list[int]:
        """Append ``events`` to the alert history; their ids, in order."""
        return alertstate.add_alert_events(self._conn, events)

    def last_firing_recipients(
        self, rule_id: str, series: StateKey
    ) -> tuple[tuple[str, str, str], ...]:
        """Where the last firing notification of a (rule, series) went, dead letters aside:
        (channel, receiver, recipient)."""
        return outbox.last_firing_recipients(self._conn, rule_id, series)

    def queue_mail(self, mails: Iterable[outbox.NewMail], now: float) -> int:
        """Queue each mail to each of its recipients, created at ``now``; how many rows."""
        return outbox.queue_mail(self._conn, mails, now)

    # -- silences (#16) -------------------------------------------------------------

    def silences(self, now: float) -> list[Silence]:
        """The silences not ended at ``now``."""
        return silencestore.silences(self._conn, now=now)

    def mark_silenced(self, pairs: Sequence[tuple[int, int]]) -> None:
        """(event id, silence id): events a silence kept from every receiver."""
        silencestore.mark_silenced(self._conn, pairs)

    def settle_ended_silences(self, now: float) -> list[Silence]:
        """The silences that ended by ``now`` and nobody settled yet, settled by us."""
        return silencestore.settle_ended(self._conn, now)

    def kept_quiet(self, silence_ids: Iterable[int]) -> list[StateKey]:
        """Still-firing (rule, series) whose last event these silences kept quiet."""
        return silencestore.kept_quiet(self._conn, silence_ids)
