"""``Store``: the one object callers hold; each method runs one module's function
in a connection or transaction of its own."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from netmetrix.model import HostRun
from netmetrix.silences import NewSilence, Silence
from netmetrix.store import (
    alertstate,
    checkresults,
    collector,
    migrate,
    outbox,
    rwqueue,
    samples,
    silencestore,
)
from netmetrix.store import hosts as _hosts  # `hosts` is a parameter name of the API
from netmetrix.store.alertstate import ActiveAlert, AlertHistoryRow
from netmetrix.store.checkresults import CheckRow
from netmetrix.store.engine import DEFAULT_BUSY_TIMEOUT, Database, connect
from netmetrix.store.hosts import Activated, HostRow
from netmetrix.store.outbox import OutboxChange, OutboxItem, OutboxSize
from netmetrix.store.rwqueue import QueuedSample
from netmetrix.store.samples import Buckets, LatestRow, Sparkline, StoredSample, Written
from netmetrix.store.transaction import Transaction


class Store(Database):
    """The metrics database; make one with ``Store.open(url)``."""

    @classmethod
    def open(
        cls, url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, upgrade: bool = True
    ) -> Store:
        """Connect to ``url`` and bring its schema up to date (unless ``upgrade`` is False).

        ``busy_timeout`` (seconds) is how long a write waits for another
        process's SQLite write lock.  Raises StoreError.
        """
        engine, display = connect(url, busy_timeout)
        store = cls(engine, busy_timeout=busy_timeout, url_display=display)
        try:
            if upgrade:
                migrate.upgrade(store)
        except BaseException:
            store.close()
            raise
        return store

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- schema -------------------------------------------------------------------

    def schema_version(self) -> str | None:
        """The Alembic revision the database is at; None before the first migration."""
        with self.reading("read the schema version") as conn:
            return migrate.schema_version(conn)

    @staticmethod
    def schema_head() -> str | None:
        """The newest schema version this netmetrix knows (its head migration)."""
        return migrate.schema_head()

    def upgrade(self) -> tuple[str | None, str | None]:
        """Run the migrations up to the head; return the schema version before and after."""
        before = self.schema_version()
        migrate.upgrade(self)
        return before, self.schema_version()

    # -- keys, collector identity and the upload lock (#3, #11) ---------------------

    def host_keys(self, hosts: Iterable[str]) -> dict[str, dict[str, bytes]]:
        """Host -> {kid: key} for ``hosts``, active and pending keys both; keyless hosts absent."""
        with self.reading("read host keys") as conn:
            return _hosts.host_keys(conn, hosts)

    def add_pending_keys(self, items: Sequence[tuple[str, str, bytes]]) -> None:
        """Add (host, kid, key) entries as pending keys, in one transaction
        (``hosts.add_pending_keys``)."""
        with self.writing("add host keys") as conn:
            _hosts.add_pending_keys(conn, items)

    def activate_keys(
        self, pairs: Sequence[tuple[str, str]], *, pending_only: bool = False
    ) -> Activated:
        """Make each (host, kid) its host's only key, in one transaction, host by host
        (``hosts.activate_keys``)."""
        with self.writing("activate host keys") as conn:
            return _hosts.activate_keys(conn, pairs, pending_only=pending_only)

    def find_collector_id(self) -> str | None:
        """This store's collector id, or None when the schema predates it (reads only)."""
        with self.reading("read the collector id") as conn:
            return collector.find_collector_id(conn)

    def collector_id(self) -> str:
        """This store's collector id: it names the key and state files on the hosts.

        Made once, by migration 0004; made here if that row is gone.
        """
        found = self.find_collector_id()
        if found is not None:
            return found
        with self.writing("make the collector id") as conn:
            return collector.make_collector_id(conn)

    @contextmanager
    def upload_lock(self) -> Iterator[None]:
        """Hold this store's upload lock while the block runs.

        Raises UploadRunning, naming the holder's pid and start time, when
        another upload holds it: two uploads at once would each store keys the
        other one then overwrites on the hosts.  SQLite: an flock on
        ``<database>.upload-lock`` (0600, holding "pid start"); PostgreSQL: a
        session advisory lock on a connection of its own, whose
        application_name carries pid, start and machine for the message.
        A process that dies loses the lock with its file descriptor or
        connection: nothing stale is left behind.
        """
        with collector.upload_lock(self):
            yield

    # -- runs -----------------------------------------------------------------------

    @contextmanager
    def transaction(self, doing: str) -> Iterator[Transaction]:
        """One write transaction (SQLite: BEGIN IMMEDIATE), committed when the block ends.

        What collect writes of a run (samples, host rows, alert state, history,
        outbox) goes through one of these, so it commits together or not at
        all.  A database error becomes a StoreError naming ``doing``.
        """
        with self.writing(doing) as conn:
            yield Transaction(conn)

    def record_runs(self, runs: Sequence[HostRun]) -> Written:
        """Store a batch of host runs in a transaction of its own (``Transaction.write_runs``)."""
        if not runs:
            return Written(samples=0)
        with self.transaction(f"store {len(runs)} host run(s)") as tx:
            return tx.write_runs(runs)

    # -- queries ----------------------------------------------------------------------

    def latest(self, hosts: Sequence[str] = (), metrics: Sequence[str] = ()) -> list[StoredSample]:
        """The newest sample of every matching series, by host, metric, labels.

        Empty ``hosts`` or ``metrics`` means all of them.
        """
        with self.reading("read the latest samples") as conn:
            return samples.latest(conn, hosts, metrics)

    def latest_rows(
        self, hosts: Sequence[str] = (), metrics: Sequence[str] = ()
    ) -> list[LatestRow]:
        """``latest`` with each series' labels as stored (canonical JSON): cheaper for
        a caller that reads the whole fleet at once (``/metrics``)."""
        with self.reading("read the latest samples") as conn:
            return samples.latest_rows(conn, hosts, metrics)

    def history(
        self,
        host: str,
        metric: str,
        labels: dict[str, str] | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[StoredSample]:
        """Samples of one metric of one host, oldest first; ``since``/``until`` inclusive.

        ``labels`` None means every series of the metric, else exactly that label set.
        """
        with self.reading(f'read {metric} history of host "{host}"') as conn:
            return samples.history(conn, host, metric, labels, since, until)

    def history_buckets(
        self,
        hosts: Sequence[str],
        metrics: Sequence[str],
        step: float,
        since: float,
        until: float,
    ) -> list[Buckets]:
        """Every series of ``hosts`` (of ``metrics``; empty: all) as the mean of each ``step``
        seconds from ``since`` to ``until`` (``samples.history_buckets``).  ValueError for
        more than ``samples.MAX_STEPS`` steps."""
        samples.step_count(step, since, until)
        with self.reading(f"read {step:g} s averages of {len(hosts)} host(s)") as conn:
            return samples.history_buckets(conn, hosts, metrics, step, since, until)

    def sparklines(
        self,
        hosts: Sequence[str],
        series: Sequence[tuple[str, Mapping[str, str]]],
        until: float,
        step: float,
        count: int,
    ) -> list[Sparkline]:
        """The (metric, labels) ``series`` of ``hosts``: the newest sample, and the values at
        ``count`` instants ``step`` seconds apart up to ``until`` (``samples.sparklines``)."""
        samples.check_instants(count)
        with self.reading(f"read recent values of {len(hosts)} host(s)") as conn:
            return samples.sparklines(conn, hosts, series, until, step, count)

    def hosts(self) -> list[HostRow]:
        """Every host the store has seen, by name, with its latest ``up``."""
        with self.reading("read hosts") as conn:
            return _hosts.hosts(conn)

    def host_names(self) -> set[str]:
        """Every host the store knows of: those with a hosts row or a series."""
        with self.reading("read host names") as conn:
            return _hosts.host_names(conn)

    def metric_names(self) -> set[str]:
        """Every metric name that has a series."""
        with self.reading("read metric names") as conn:
            return samples.metric_names(conn)

    def checks(self, hosts: Sequence[str] = ()) -> list[CheckRow]:
        """Every host's custom checks as last reported (of ``hosts`` when given) (#17)."""
        with self.reading("read checks") as conn:
            return checkresults.check_rows(conn, hosts)

    # -- alerts (#7) ----------------------------------------------------------------------

    def alerts_active(self, hosts: Sequence[str] = ()) -> list[ActiveAlert]:
        """Every (rule, series) pending or firing: firing first, then by host, series, rule."""
        with self.reading("read active alerts") as conn:
            return alertstate.alerts_active(conn, hosts)

    def alert_history(
        self, hosts: Sequence[str] = (), limit: int | None = None
    ) -> list[AlertHistoryRow]:
        """Alert events (fired, repeated, resolved), newest first; ``limit`` caps them."""
        with self.reading("read the alert history") as conn:
            return alertstate.alert_history(conn, hosts, limit)

    # -- the outbox (#7, #10) ---------------------------------------------------------------

    def outbox(
        self,
        *,
        undelivered: bool = True,
        failed: bool | None = None,
        limit: int | None = None,
        hosts: Sequence[str] = (),
    ) -> list[OutboxItem]:
        """Outbox mail, oldest first: only the undelivered, or (``undelivered=False``) all
        (``outbox.outbox``: ``failed``, ``limit``, ``hosts``)."""
        with self.reading("read the outbox") as conn:
            return outbox.outbox(
                conn, undelivered=undelivered, failed=failed, limit=limit, hosts=hosts
            )

    def outbox_size(self) -> OutboxSize:
        """How much mail is undelivered: pending and failed (dead letters)."""
        with self.reading("count the outbox") as conn:
            return outbox.outbox_size(conn)

    def claim_mail(self, ids: Sequence[int], token: str, *, now: float, lease: float) -> bool:
        """Claim waiting outbox rows ``ids`` for ``lease`` seconds, all or none
        (``outbox.claim_mail``)."""
        with self.writing("claim outbox mail") as conn:
            return outbox.claim_mail(conn, ids, token, now=now, lease=lease)

    def mail_delivered(self, ids: Sequence[int], token: str, *, now: float) -> bool:
        """Mark outbox rows still claimed with ``token`` delivered (``outbox.mail_delivered``)."""
        with self.writing("mark outbox mail delivered") as conn:
            return outbox.mail_delivered(conn, ids, token, now=now)

    def mail_failed(
        self,
        ids: Sequence[int],
        token: str,
        *,
        now: float,
        error: str,
        permanent: bool = False,
    ) -> bool:
        """Record a failed attempt on outbox rows; ``permanent`` makes dead letters
        (``outbox.mail_failed``)."""
        with self.writing("record a failed mail") as conn:
            return outbox.mail_failed(conn, ids, token, now=now, error=error, permanent=permanent)

    def release_mail(self, ids: Sequence[int], token: str) -> None:
        """Give up our claim on outbox rows without counting an attempt (interrupted)."""
        with self.writing("release outbox mail") as conn:
            outbox.release_mail(conn, ids, token)

    def drop_mail(self, ids: Sequence[int]) -> OutboxChange:
        """Delete undelivered outbox rows ``ids``, all or none (``outbox.drop_mail``)."""
        with self.writing("drop outbox mail") as conn:
            return outbox.drop_mail(conn, ids)

    def retry_mail(self, ids: Sequence[int]) -> OutboxChange:
        """Put dead letters ``ids`` back in the queue, all or none (``outbox.retry_mail``)."""
        with self.writing("retry outbox mail") as conn:
            return outbox.retry_mail(conn, ids)

    # -- silences (#16) -----------------------------------------------------------------

    def add_silence(self, new: NewSilence, now: float) -> int:
        """Store a silence; its id."""
        with self.writing("add a silence") as conn:
            return silencestore.add_silence(conn, new, now)

    def silences(self, now: float, *, ended: bool = False) -> list[Silence]:
        """The silences not ended at ``now`` (``ended``: every one), oldest first."""
        with self.reading("read the silences") as conn:
            return silencestore.silences(conn, now=now, ended=ended)

    def end_silence(self, silence_id: int, now: float) -> bool:
        """End a silence now; False when no silence ``silence_id`` is still on."""
        with self.writing("end a silence") as conn:
            return silencestore.end_silence(conn, silence_id, now)

    # -- the remote-write queue (#15) --------------------------------------------------

    def remote_write_backlog(self) -> int:
        """How many samples wait to be sent by remote-write."""
        with self.reading("count the remote-write queue") as conn:
            return rwqueue.backlog(conn)

    def remote_write_oldest(self, limit: int) -> list[QueuedSample]:
        """The ``limit`` oldest samples waiting for remote-write, with their series."""
        with self.reading("read the remote-write queue") as conn:
            return rwqueue.oldest(conn, limit)

    def remote_write_done(self, ids: Sequence[int]) -> int:
        """Delete queued samples (sent, or refused for good); how many went."""
        with self.writing("delete sent remote-write samples") as conn:
            return rwqueue.delete(conn, ids)

    def trim_remote_write(self, keep: int) -> int:
        """Delete the oldest queued samples beyond the newest ``keep``; how many went."""
        with self.writing("trim the remote-write queue") as conn:
            return rwqueue.trim(conn, keep)

    def take_remote_write_lease(self, token: str, *, now: float, lease: float) -> bool:
        """Hold or renew the remote-write sender's lease (``rwqueue.take_lease``)."""
        with self.writing("take the remote-write lease") as conn:
            return rwqueue.take_lease(conn, token, now=now, lease=lease)

    def release_remote_write_lease(self, token: str) -> None:
        """Give the remote-write sender's lease up, if ``token`` still holds it."""
        with self.writing("release the remote-write lease") as conn:
            rwqueue.release_lease(conn, token)
