"""Prometheus remote-write: push the queued samples to a receiver, in batches (#15).

The store queues every stored sample that Prometheus would see (``pipeline``,
``store.rwqueue``) in the transaction that stores it; ``send`` empties the
queue, oldest first, one batch per request, for as long as the receiver takes
them.  The wire format is remote-write 1.0: a protobuf ``WriteRequest``
(timeseries of labels and samples), snappy block-compressed, POSTed with
``Content-Encoding: snappy``, ``Content-Type: application/x-protobuf`` and
``X-Prometheus-Remote-Write-Version: 0.1.0``.  The names and labels are
``/metrics``'s (``promnames``): ``netmetrix_cpu_busy_ratio{host="web1"}``.

What the receiver answers decides what happens to a batch:

- 2xx: sent; deleted from the queue.
- 5xx, 429, a network error or a timeout: kept; the pass stops, and the next
  one (the next ``execute``; ``watch`` backs off exponentially) sends it again.
- 401, 403, 404, 405, 407, 413 and redirects: kept too, as above.  They refuse
  the request, not its samples (a token, a URL, a batch size to fix), and
  dropping the queue at full speed meanwhile would lose everything.
- Any other 4xx (400: out of order, out of bounds): the receiver will never
  take these samples; the batch is dropped with an ERROR line.

The queue is bounded: past ``<remote_write max_backlog>`` samples, the oldest
are dropped first, with a WARNING saying how many.  One sender at a time
(``Store.take_remote_write_lease``): the batches of one store leave in order,
whichever collector sends them.  Secrets (``password_env``/``password_file``,
``token_env``/``token_file``) are read when a pass starts and never logged;
URLs in messages lose any user, password and query string.

The message classes are built at import from a descriptor written here in
Python (``_file_descriptor``), not from protoc-generated code, whose version
must match the protobuf runtime's.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from netmetrix.config import RemoteWriteConfig
from netmetrix.format import count
from netmetrix.promnames import EXPOSED, NAME_LABEL, scaled, series_labels
from netmetrix.sanitize import clean
from netmetrix.store import QueuedSample, Store

log = logging.getLogger(__name__)

HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
LEASE_MARGIN = 30.0  # seconds the sender's lease outlives one request's timeout
BACKOFF_FIRST = 1.0  # seconds before the first retry (watch)
BACKOFF_MAX = 300.0  # seconds between retries at most
KEPT_STATUSES = frozenset({401, 403, 404, 405, 407, 413})  # the request is refused, not the data
ERROR_BODY = 300  # characters of a refusal's body in messages


# ---------------------------------------------------------------- the messages


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """remote-write 1.0's messages (prometheus/prompb remote.proto and types.proto), the
    fields netmetrix sends: WriteRequest{timeseries{labels{name,value},samples{value,
    timestamp}}}.  Field numbers and types are the wire format; names are for people."""
    fdp = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="netmetrix/remote_write.proto", package="prometheus", syntax="proto3"
    )

    def message(name: str, *fields: tuple[str, int, int, str]) -> None:
        added = file.message_type.add(name=name)
        for field_name, number, kind, type_name in fields:
            field = added.field.add(name=field_name, number=number, type=kind)
            field.label = fdp.LABEL_OPTIONAL
            if type_name:  # a message: repeated (a set but empty type_name is an error)
                field.label, field.type_name = fdp.LABEL_REPEATED, type_name

    message("Label", ("name", 1, fdp.TYPE_STRING, ""), ("value", 2, fdp.TYPE_STRING, ""))
    message("Sample", ("value", 1, fdp.TYPE_DOUBLE, ""), ("timestamp", 2, fdp.TYPE_INT64, ""))
    message(
        "TimeSeries",
        ("labels", 1, fdp.TYPE_MESSAGE, ".prometheus.Label"),
        ("samples", 2, fdp.TYPE_MESSAGE, ".prometheus.Sample"),
    )
    message("WriteRequest", ("timeseries", 1, fdp.TYPE_MESSAGE, ".prometheus.TimeSeries"))
    return file


def _write_request_class() -> type[Message]:
    # A pool of our own: another library's prometheus.WriteRequest in the default pool
    # (with more fields) neither clashes with this one nor changes it.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus.WriteRequest"))


WriteRequest = _write_request_class()


class Series(NamedTuple):
    """One time series of a request: labels sorted by name (``__name__`` among them),
    samples (ts_ms, value) oldest first, as the protocol requires."""

    labels: tuple[tuple[str, str], ...]
    samples: tuple[tuple[int, float], ...]


HostLabels = Mapping[str, tuple[tuple[str, str], ...]]  # host name -> its config.xml labels


def series_of(rows: Iterable[QueuedSample], host_labels: HostLabels | None = None) -> list[Series]:
    """The queued samples as Prometheus series: ``/metrics``'s names, labels and scale,
    with each host's labels (``host_labels``) as on ``/metrics``: added here, not stored.

    A row whose series was deleted, or whose metric Prometheus does not see, is
    left out; of two samples of a series at one millisecond the first is kept
    (as the store keeps it).
    """
    grouped: dict[tuple[str, str, str], dict[int, float]] = {}
    for _, host, metric, labels, ts_ms, value in rows:
        if host is None or metric not in EXPOSED or labels is None:
            continue  # a forgotten series (all None), or a metric Prometheus does not see
        points = grouped.get((host, metric, labels))
        if points is None:
            grouped[(host, metric, labels)] = {ts_ms: value}
        elif ts_ms not in points:
            points[ts_ms] = value
    found = []
    for (host, metric, labels), points in grouped.items():
        how = EXPOSED[metric]
        samples = tuple(sorted((ts, scaled(value, how)) for ts, value in points.items()))
        target = (host_labels or {}).get(host, ())
        found.append(Series(labels=_labels(host, metric, labels, target), samples=samples))
    return found


@functools.lru_cache(maxsize=65536)
def _labels(
    host: str, metric: str, labels: str, target: tuple[tuple[str, str], ...] = ()
) -> tuple[tuple[str, str], ...]:
    """A series' Prometheus labels, sorted; cached: every batch repeats the fleet's series."""
    own = series_labels(host, json.loads(labels), dict(target))
    names = {NAME_LABEL: EXPOSED[metric].full_name, **own}
    return tuple(sorted(names.items()))


def encode(series: Sequence[Series]) -> bytes:
    """A WriteRequest of ``series``, serialised (not compressed)."""
    request: Any = WriteRequest()
    for one in series:
        timeseries = request.timeseries.add()
        for name, value in one.labels:
            timeseries.labels.add(name=name, value=value)
        for ts_ms, sample in one.samples:
            timeseries.samples.add(value=sample, timestamp=ts_ms)
    data: bytes = request.SerializeToString()
    return data


def decode(data: bytes) -> list[Series]:
    """``encode``'s inverse: the series of a serialised WriteRequest."""
    request: Any = WriteRequest.FromString(data)
    return [
        Series(
            labels=tuple((label.name, label.value) for label in timeseries.labels),
            samples=tuple((sample.timestamp, sample.value) for sample in timeseries.samples),
        )
        for timeseries in request.timeseries
    ]


def body(series: Sequence[Series]) -> bytes:
    """What one request carries: the WriteRequest, snappy block-compressed (not framed)."""
    return bytes(cramjam.snappy.compress_raw(encode(series)))


# ---------------------------------------------------------------- the receiver


def display_url(url: str) -> str:
    """``url`` for messages: scheme, host, port and path; no user, password or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class PushError(Exception):
    """A batch was not accepted; ``str()`` says why, without any secret.

    ``keep``: the batch stays queued (retried later); else it is dropped.
    """

    def __init__(self, message: str, *, keep: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.keep = keep
        self.retry_after = retry_after


class Receiver:
    """POSTs request bodies to ``<remote_write url>``: headers, credentials, TLS, timeout.

    Raises PushError on creation when a secret cannot be read.
    """

    def __init__(
        self,
        config: RemoteWriteConfig,
        environ: Mapping[str, str],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = config.url
        self.where = display_url(config.url)
        self._timeout = config.timeout
        self._headers = {**HEADERS, "User-Agent": _user_agent()}
        authorization = _authorization(config, environ)
        if authorization is not None:
            self._headers["Authorization"] = authorization
        https = urlsplit(config.url).scheme == "https"
        context = ssl_context or (_ssl_context(config) if https else None)
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

    def push(self, data: bytes) -> None:
        """Send one request body; PushError unless the receiver answered 2xx."""
        # S310: config.py lets only http:// and https:// URLs through
        request = urllib.request.Request(  # noqa: S310
            self.url, data=data, headers=self._headers, method="POST"
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as answer:
                answer.read()
        except urllib.error.HTTPError as err:
            with err:
                raise _refusal(err.code, err.reason, err.headers, _error_body(err)) from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise PushError(f"cannot reach {self.where}: {_why(err)}", keep=True) from None


def _refusal(status: int, reason: str, headers: Any, text: str) -> PushError:
    """The PushError for an HTTP error answer (see the module docstring)."""
    what = f"HTTP {status} {reason}".rstrip() + (f": {text}" if text else "")
    if status in KEPT_STATUSES or 300 <= status < 400:
        hint = " (lower <remote_write batch>)" if status == 413 else ""
        return PushError(f"{what}{hint}", keep=True)
    if status == 429 or status >= 500:
        return PushError(what, keep=True, retry_after=_retry_after(headers))
    return PushError(what, keep=False)


def _error_body(err: urllib.error.HTTPError) -> str:
    try:
        raw = err.read(4096)
    except (OSError, ValueError):
        return ""
    return clean(raw.decode("utf-8", "replace").strip(), ERROR_BODY)


def _retry_after(headers: Any) -> float | None:
    """Retry-After in seconds, when given as a number (an HTTP date is ignored)."""
    raw = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None


def _why(err: BaseException) -> str:
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {reason.verify_message}"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return clean(str(reason), ERROR_BODY) or type(reason).__name__


def _authorization(config: RemoteWriteConfig, environ: Mapping[str, str]) -> str | None:
    """The Authorization header (basic or bearer), or None without credentials."""
    if config.username:
        password = _secret("password", config.password_env, config.password_file, environ)
        pair = f"{config.username}:{password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")
    if config.token_env or config.token_file:
        return "Bearer " + _secret("token", config.token_env, config.token_file, environ)
    return None


def _secret(what: str, env: str, file: os.PathLike[str] | None, environ: Mapping[str, str]) -> str:
    """A password or token from the environment variable ``env`` or from ``file``."""
    if env:
        value = environ.get(env, "")
        if not value:
            raise PushError(
                f"the environment variable {env} (<remote_write {what}_env>) is not set",
                keep=True,
            )
        return value
    assert file is not None
    try:
        with open(file, encoding="utf-8") as handle:
            value = handle.read().strip()
    except (OSError, UnicodeError) as err:
        message = f"cannot read <remote_write {what}_file> {file}: {_why(err)}"
        raise PushError(message, keep=True) from None
    if not value:
        raise PushError(f"<remote_write {what}_file> {file} is empty", keep=True)
    return value


def _ssl_context(config: RemoteWriteConfig) -> ssl.SSLContext:
    """The system's trust store, or only ``ca_file`` when it is given."""
    if config.ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(config.ca_file))
    except (OSError, ssl.SSLError) as err:
        raise PushError(
            f"cannot read <remote_write ca_file> {config.ca_file}: {_why(err)}", keep=True
        ) from None


def _user_agent() -> str:
    import netmetrix

    return f"netmetrix/{netmetrix.__version__}"


# ---------------------------------------------------------------- a send pass


@dataclass(slots=True, kw_only=True)
class Pushed:
    """What one send pass did."""

    where: str  # the receiver, for messages
    sent: int = 0  # samples the receiver accepted
    dropped: int = 0  # samples it refused for good
    trimmed: int = 0  # oldest samples dropped: the backlog was over max_backlog
    backlog: int = 0  # samples still queued after the pass
    busy: bool = False  # another sender held the lease
    error: str | None = None  # why the pass stopped with samples kept
    retry_after: float | None = None  # seconds the receiver asked us to wait
    deadline: float | None = None  # the pass deadline (seconds), when it was reached

    @property
    def failed(self) -> bool:
        """The receiver (or our setup) failed: the next try should back off."""
        return self.error is not None

    def problems(self, verb: str) -> list[str]:
        """One line when samples are left queued after the pass, for the end of ``verb``."""
        if not self.backlog:
            return []
        if self.busy:
            why = "another netmetrix is sending them"
        elif self.error is not None:
            why = self.error
        elif self.deadline is not None:
            why = f"the deadline ({self.deadline:g}s) came first"
        else:
            why = "queued meanwhile"
        return [
            f"{verb}: remote-write: {count(self.backlog, 'sample')} still queued for"
            f" {self.where} ({why}); the next execute or watch sends them"
        ]


def send(
    store: Store,
    config: RemoteWriteConfig,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
    stop: threading.Event | None = None,
    ssl_context: ssl.SSLContext | None = None,
    host_labels: HostLabels | None = None,
) -> Pushed:
    """Send queued samples, oldest first, one batch per request, until the queue is
    empty, a request fails, ``<remote_write deadline>`` passes or ``stop`` is set.

    Blocking (urllib, the store): ``execute`` calls it after the fan-out, ``watch``
    in a thread.  Another sender holding the lease makes it return at once
    (``busy``).  ``host_labels``: config.xml's labels of each host, sent with its
    series.  Raises StoreError only.
    """
    pushed = Pushed(where=display_url(config.url))
    token = secrets.token_hex(8)
    lease = config.timeout + LEASE_MARGIN  # no lease runs out while a request waits
    if not store.take_remote_write_lease(token, now=clock(), lease=lease):
        pushed.busy = True
    else:
        try:
            _trim(store, config, pushed)
            receiver = Receiver(config, os.environ if environ is None else environ, ssl_context)
            _Pass(store, config, receiver, pushed, token, clock, host_labels or {}).run(stop)
        except PushError as err:
            pushed.error = str(err)
            log.warning("remote-write: %s: %s; samples kept for the next try", pushed.where, err)
        finally:
            store.release_remote_write_lease(token)
    pushed.backlog = store.remote_write_backlog()
    return pushed


def _trim(store: Store, config: RemoteWriteConfig, pushed: Pushed) -> None:
    pushed.trimmed = store.trim_remote_write(config.max_backlog)
    if pushed.trimmed:
        log.warning(
            "remote-write: more than max_backlog=%s samples queued for %s: dropped the %s oldest",
            f"{config.max_backlog:,}",
            pushed.where,
            f"{pushed.trimmed:,}",
        )


class _Pass:
    """The batches of one send pass."""

    def __init__(
        self,
        store: Store,
        config: RemoteWriteConfig,
        receiver: Receiver,
        pushed: Pushed,
        token: str,
        clock: Callable[[], float],
        host_labels: HostLabels,
    ) -> None:
        self._store, self._config, self._receiver = store, config, receiver
        self._host_labels = host_labels
        self._pushed, self._token, self._clock = pushed, token, clock
        self._ends = time.monotonic() + config.deadline

    def run(self, stop: threading.Event | None) -> None:
        """Batch after batch until nothing is left or something says stop."""
        while stop is None or not stop.is_set():
            if time.monotonic() >= self._ends:
                self._pushed.deadline = self._config.deadline
                return
            lease = self._config.timeout + LEASE_MARGIN
            if not self._store.take_remote_write_lease(self._token, now=self._clock(), lease=lease):
                self._pushed.busy = True  # ours ran out and another sender took over
                return
            rows = self._store.remote_write_oldest(self._config.batch)
            if not rows or not self._one(rows):
                return

    def _one(self, rows: Sequence[QueuedSample]) -> bool:
        """Send one batch; False when the pass must stop (it stays queued)."""
        series = series_of(rows, self._host_labels)
        ids = [row.id for row in rows]
        samples = sum(len(one.samples) for one in series)
        if samples:
            try:
                self._receiver.push(body(series))
            except PushError as err:
                return self._refused(err, ids, samples)
        self._store.remote_write_done(ids)
        self._pushed.sent += samples
        log.debug("remote-write: %d sample(s) sent to %s", samples, self._receiver.where)
        return True

    def _refused(self, err: PushError, ids: Sequence[int], samples: int) -> bool:
        where = self._receiver.where
        if err.keep:
            self._pushed.error, self._pushed.retry_after = str(err), err.retry_after
            log.warning(
                "remote-write: %s: %s; %s kept for the next try",
                where,
                err,
                count(self._store.remote_write_backlog(), "sample"),
            )
            return False
        self._store.remote_write_done(ids)
        self._pushed.dropped += samples
        log.error(
            "remote-write: %s refused %s for good: %s; dropped",
            where,
            count(samples, "sample"),
            err,
        )
        return True


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` failed passes in a row: 1, 2, 4 ... 300."""
    if failures <= 0:
        return 0.0
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(failures - 1, 30)))
