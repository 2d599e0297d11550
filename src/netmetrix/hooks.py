"""Deliver the outbox's webhook and Alertmanager rows over HTTP (#16).

``notify.deliver`` hands this module the rows that are not mail; it runs
beside the SMTP pass, so a slow mail server delays no webhook and the other
way round.  One pass:

1. groups the rows by destination (a webhook receiver, or one Alertmanager
   URL: each member of an HA cluster gets every alert) and works the
   destinations in threads of their own, so one that is down delays no other;
2. per destination, batch by batch (oldest first): claims the rows for a lease
   (another collector flushing the same outbox skips them), POSTs one body
   under the receiver's ``timeout`` (the whole request: a server dripping bytes
   is cut off too), then marks them delivered (2xx), dead letters (4xx but 408
   and 429: the receiver will never take them; ``alerts retry`` puts them
   back) or failed and retried (5xx, 408, 429, no answer in time, refused
   connection);
3. a failure stops that destination for this pass, and a failed row waits
   ``backoff(attempts)`` before the next pass tries it again (``alerts flush``
   tries at once).

With ``secret_env`` a webhook request carries ``X-Netmetrix-Signature:
sha256=<hex HMAC-SHA256 of the body, keyed with the variable's value>``.
Alertmanager rows go to ``URL/api/v2/alerts``.  ``refresh`` re-posts every
firing alert routed to an Alertmanager, so that it does not resolve them by
its ``resolve_timeout`` while they last.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from netmetrix import alerts, notice, payloads
from netmetrix.config import AlertRule, Config
from netmetrix.model import AlertEvent
from netmetrix.receivers import DEFAULT_TIMEOUT, Receiver, by_name
from netmetrix.sanitize import clean
from netmetrix.silences import silencing
from netmetrix.store import ActiveAlert, OutboxItem, Store

log = logging.getLogger(__name__)

BATCH = 100  # rows per request
DEADLINE = 60.0  # seconds: no destination starts a request after this in one pass
LEASE_MARGIN = 60.0  # seconds a claim outlives the request's timeout
BACKOFF_FIRST = 10.0  # seconds before the first retry; doubles, up to BACKOFF_MAX
BACKOFF_MAX = 3600.0
SIGNATURE = "X-Netmetrix-Signature"
ALERTS_PATH = "/api/v2/alerts"
_ERROR_BODY = 200  # characters of an error answer kept
_RETRIED = frozenset({408, 425, 429})  # 4xx that say "later", not "never"


def backoff(attempts: int) -> float:
    """Seconds a row waits after ``attempts`` failed tries: 10, 20, 40 ... 3600."""
    if attempts <= 0:
        return 0.0
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(attempts - 1, 30)))


@dataclass(frozen=True, slots=True, kw_only=True)
class HookFailure:
    """One request that did not deliver its rows."""

    where: str  # "webhook chat" / "alertmanager http://am1:9093"
    error: str
    notifications: int
    permanent: bool = False


@dataclass(slots=True, kw_only=True)
class HookDelivery:
    """What one HTTP pass did."""

    sent: int = 0  # rows delivered
    requests: int = 0  # requests answered 2xx
    failed: list[HookFailure] = field(default_factory=list)
    busy: int = 0  # rows another sender holds
    deferred: int = 0  # rows not tried: their destination failed, or backing off
    lost: int = 0  # rows delivered after another sender took our claim over


class _Failed(Exception):
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def deliver(
    store: Store,
    items: Sequence[OutboxItem],
    receivers: Mapping[str, Receiver],
    *,
    environ: Mapping[str, str],
    clock: Callable[[], float] = time.time,
    force: bool = False,
    deadline: float = DEADLINE,
) -> HookDelivery:
    """POST the waiting webhook and Alertmanager rows ``items``, each destination in a
    thread of its own; report what happened.  ``force`` ignores the backoff."""
    report = HookDelivery()
    lock = threading.Lock()
    now = clock()
    groups: dict[tuple[str, str, str], list[OutboxItem]] = {}
    for item in sorted(items, key=lambda i: i.id):
        if item.failed is not None or item.delivered is not None:
            continue
        if item.claimed_until is not None and item.claimed_until >= now:
            report.busy += 1
            continue
        if not force and now < _retry_at(item):
            report.deferred += 1
            continue
        groups.setdefault((item.channel, item.receiver, item.recipient), []).append(item)
    until = now + deadline
    threads = []
    for (channel, name, recipient), rows in groups.items():
        shared = _Pass(store=store, environ=environ, clock=clock, report=report, lock=lock)
        post = _Destination(shared, channel, name, recipient, receivers.get(name))
        thread = threading.Thread(
            target=post.run, args=(rows, until), name="netmetrix-hook", daemon=True
        )
        thread.start()
        threads.append(thread)
    for thread in threads:  # each request is bounded by its timeout: this ends
        thread.join()
    return report


def _retry_at(item: OutboxItem) -> float:
    """When a failed row may be tried again (0 for a row never tried)."""
    if item.last_attempt is None:
        return 0.0
    return item.last_attempt + backoff(item.attempts)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pass:
    """What every destination of one pass shares."""

    store: Store
    environ: Mapping[str, str]
    clock: Callable[[], float]
    report: HookDelivery
    lock: threading.Lock


class _Destination:
    """One webhook receiver or one Alertmanager URL, for one pass."""

    def __init__(
        self, shared: _Pass, channel: str, name: str, recipient: str, receiver: Receiver | None
    ) -> None:
        self._store, self._channel, self._name = shared.store, channel, name
        self._receiver, self._environ, self._clock = receiver, shared.environ, shared.clock
        self._report, self._lock = shared.report, shared.lock
        self._timeout = receiver.timeout if receiver is not None else DEFAULT_TIMEOUT
        self._token = secrets.token_hex(8)
        self.where = f"webhook {name}" if channel == "webhook" else f"alertmanager {recipient}"
        self._url = recipient if channel == "alertmanager" else ""

    def run(self, rows: Sequence[OutboxItem], until: float) -> None:
        try:
            self._run(rows, until)
        except Exception:  # a bug or the store: said; the rows' claims run out by themselves
            log.exception("%s: delivery failed", self.where)

    def _run(self, rows: Sequence[OutboxItem], until: float) -> None:
        for start in range(0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            if self._clock() >= until:
                self._count(deferred=len(rows) - start)
                return
            ids = [row.id for row in batch]
            lease = self._timeout + LEASE_MARGIN
            if not self._store.claim_mail(ids, self._token, now=self._clock(), lease=lease):
                self._count(busy=len(ids))
                continue
            try:
                self._post(batch)
            except _Failed as err:
                self._failed(ids, str(err), permanent=err.permanent)
                if not err.permanent:  # down: the rest waits for the next pass
                    self._count(deferred=len(rows) - start - len(batch))
                    return
                continue
            except BaseException:
                self._store.release_mail(ids, self._token)
                raise
            self._delivered(ids)

    def _post(self, rows: Sequence[OutboxItem]) -> None:
        url, body, headers = self._request(rows)
        answer = _post(url, body, headers, self._timeout)
        if isinstance(answer, str):
            raise _Failed(f"cannot reach {self.where}: {answer}")
        status, text = answer
        what = f"{self.where} answered HTTP {status}" + (f": {text}" if text else "")
        if 200 <= status < 300:
            return
        if 400 <= status < 500 and status not in _RETRIED:
            raise _Failed(what, permanent=True)
        raise _Failed(what)

    def _request(self, rows: Sequence[OutboxItem]) -> tuple[str, bytes, dict[str, str]]:
        headers = {"Content-Type": "application/json", "User-Agent": "netmetrix"}
        if self._channel == "alertmanager":
            url = self._url.rstrip("/") + ALERTS_PATH
            return url, payloads.alertmanager([row.body for row in rows]), headers
        receiver = self._receiver
        if receiver is None or receiver.channel != "webhook":
            raise _Failed(
                f'{self.where}: no <webhook name="{self._name}"> in config.xml any more',
                permanent=True,
            )
        events = [row.body for row in rows]
        if receiver.format == "slack":
            body = payloads.slack(events)
        else:
            body = payloads.batch(receiver.name, events)
        if receiver.secret_env:
            secret = self._environ.get(receiver.secret_env, "")
            if not secret:
                raise _Failed(
                    f"{self.where}: the environment variable {receiver.secret_env}"
                    " (secret_env) is not set"
                )
            headers[SIGNATURE] = "sha256=" + sign(secret, body)
        return receiver.urls[0], body, headers

    def _delivered(self, ids: Sequence[int]) -> None:
        if self._store.mail_delivered(ids, self._token, now=self._clock()):
            self._count(sent=len(ids), requests=1)
            log.info("%s took %d notification(s)", self.where, len(ids))
            return
        self._count(lost=len(ids))
        log.warning(
            "%s took %d notification(s) after our claim ran out: another netmetrix may send"
            " them too",
            self.where,
            len(ids),
        )

    def _failed(self, ids: Sequence[int], error: str, *, permanent: bool) -> None:
        if not self._store.mail_failed(
            ids, self._token, now=self._clock(), error=error, permanent=permanent
        ):
            self._count(busy=len(ids))
            return
        failure = HookFailure(
            where=self.where, error=error, notifications=len(ids), permanent=permanent
        )
        with self._lock:
            self._report.failed.append(failure)
        shown = ", ".join(str(i) for i in ids)
        if permanent:
            log.error(
                "%s (outbox id %s): a dead letter now, `netmetrix alerts retry ID` or"
                " `netmetrix alerts drop ID`",
                error,
                shown,
            )
        else:
            log.error("%s (outbox id %s): kept in the outbox, retried later", error, shown)

    def _count(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self._report, name, getattr(self._report, name) + value)


def sign(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` keyed with ``secret`` (``X-Netmetrix-Signature``)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


_OPENER = urllib.request.build_opener()


def _post(
    url: str, body: bytes, headers: Mapping[str, str], timeout: float
) -> tuple[int, str] | str:
    """POST ``body``: (status, start of an error answer), or why there was no answer.

    The whole request gets ``timeout`` seconds: a watchdog thread waits for it
    (a socket timeout alone lets a server dripping one byte at a time go on);
    a request cut off this way may still arrive, as a retried one may.
    """
    result: list[tuple[int, str] | str] = []

    def attempt() -> None:
        result.append(_request(url, body, headers, timeout))

    worker = threading.Thread(target=attempt, name="netmetrix-hook-request", daemon=True)
    worker.start()
    worker.join(timeout)
    return result[0] if result else f"no answer within {timeout:g}s"


def _request(
    url: str, body: bytes, headers: Mapping[str, str], timeout: float
) -> tuple[int, str] | str:
    # S310: config.py lets only http:// and https:// URLs through
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            answer.read(65536)
            return answer.status, ""
    except urllib.error.HTTPError as err:
        with err:
            try:
                text = err.read(4096).decode("utf-8", "replace")
            except (OSError, ValueError):
                text = ""
        return err.code, clean(text.strip(), _ERROR_BODY)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        if isinstance(reason, TimeoutError):
            return f"no answer within {timeout:g}s"
        if isinstance(reason, OSError) and reason.strerror:
            return reason.strerror
        return clean(str(reason), _ERROR_BODY) or type(reason).__name__


# -- Alertmanager: firing alerts again, every pass -------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Refreshed:
    """What ``refresh`` re-posted: alerts per Alertmanager URL, and the URLs that failed."""

    alerts: int = 0
    failed: tuple[str, ...] = ()  # "http://am1:9093: HTTP 500 ..."


def refresh(store: Store, config: Config, now: float | None = None) -> Refreshed:
    """POST every firing alert routed to an Alertmanager to each of its URLs again.

    Alertmanager resolves an alert nobody has re-posted for its
    ``resolve_timeout``; Prometheus re-sends every evaluation, so do we, every
    execute and every watch delivery pass.  Best effort: a failure is logged
    and the next pass posts again (firing and resolved events themselves go
    through the outbox, which loses nothing).
    """
    routes = _alertmanager_routes(config)
    if not routes:
        return Refreshed()
    by_url: dict[str, list[str]] = {}
    rules = alerts.unique_rules(config.alerts.rules)
    at = time.time() if now is None else now
    quiet = store.silences(at)
    labelled = config.host_labels()
    for active in store.alerts_active():
        receivers = routes.get(active.rule_id) if active.state == "firing" else None
        if not receivers:
            continue
        if silencing(quiet, active.host, active.metric, active.labels, at) is not None:
            continue  # silenced: nobody is told, Alertmanager neither (#16)
        body = _firing_alert(
            active, rules[active.rule_id], config.web.url or None, labelled.get(active.host)
        )
        for receiver in receivers:
            for url in receiver.urls:
                by_url.setdefault(url, []).append(body)
    failed = []
    timeouts = {url: r.timeout for rs in routes.values() for r in rs for url in r.urls}
    for url, bodies in by_url.items():
        answer = _post(
            url.rstrip("/") + ALERTS_PATH,
            payloads.alertmanager(bodies),
            {"Content-Type": "application/json", "User-Agent": "netmetrix"},
            timeouts[url],
        )
        if isinstance(answer, str) or not 200 <= answer[0] < 300:
            why = answer if isinstance(answer, str) else f"HTTP {answer[0]} {answer[1]}".strip()
            failed.append(f"{url}: {why}")
            log.warning("alertmanager %s: firing alerts not re-posted: %s", url, why)
    return Refreshed(alerts=sum(len(b) for b in by_url.values()), failed=tuple(failed))


def _alertmanager_routes(config: Config) -> dict[str, list[Receiver]]:
    """rule_id -> the Alertmanager receivers its rule notifies."""
    receivers = by_name(config.receivers)
    routes: dict[str, list[Receiver]] = {}
    for rid, rule in alerts.unique_rules(config.alerts.rules).items():
        found = [
            receivers[name]
            for name in rule.notify
            if name in receivers and receivers[name].channel == "alertmanager"
        ]
        if found:
            routes[rid] = found
    return routes


def _firing_alert(
    active: ActiveAlert,
    rule: AlertRule,
    dashboard: str | None,
    host_labels: Mapping[str, str] | None,
) -> str:
    event = AlertEvent(
        kind="firing",
        rule_id=active.rule_id,
        rule=active.rule,
        severity=active.severity,
        host=active.host,
        metric=active.metric,
        labels=tuple(sorted(active.labels.items())),
        value=active.value,
        ts=active.ts,
        since=active.since,
        seen=active.ts,
    )
    subject, body = notice.render(event, rule, active.host)
    return payloads.alert_json(
        event,
        subject=subject,
        description=body.split("\n", 1)[0],
        dashboard=dashboard,
        host_labels=host_labels,
    )
