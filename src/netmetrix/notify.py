"""Deliver the outbox: queued alert mail over SMTP, each mail once, none blocking the rest.

``execute`` queues mail in the same transaction as the samples that caused it
(``Store.record_runs_with_alerts``); ``deliver`` sends what is waiting, after
the fan-out, in the main thread (so Ctrl-C interrupts it).  One pass:

1. opens one SMTP session, under ``<smtp timeout>`` per socket operation and
   ``<smtp deadline>`` for the whole pass (a watchdog shuts the socket down:
   a server dripping one byte at a time never trips a socket timeout);
2. per mail, once the session is up, claims its outbox rows for a lease longer
   than the deadline (another collector flushing the same outbox skips them);
3. sends it; the moment the server accepts it, marks it delivered in its own
   transaction, but only while the claim is still ours;
4. on failure counts the attempt, keeps the error and releases it: the next
   ``execute`` or ``netmetrix alerts flush`` retries it.  A 5xx refusal makes
   it a dead letter instead (``alerts outbox --failed``, ``alerts retry``),
   and so does a mail that cannot even be built.

Whatever goes wrong with one mail (a refusal, bad data, a bug) fails that mail
only.  When the deadline passes, the mails not tried yet stay queued as they
were; Ctrl-C releases the mail being sent.  Only a crash between the server's
250 and the commit that follows (or a 250 in the very moment the deadline
passes) could send a mail twice; nothing is ever dropped.  Mail waiting for
one recipient goes as one digest when there is more of it than
``<alerts digest_over>``.

Header values (host names, label values) are made one clean line before they
go into a header, so nothing a host reports can add a header.  The password is
read from the environment variable ``<smtp password_env>`` names, when
``<smtp user>`` is set, and is never logged or stored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from typing import Literal

from netmetrix import hooks, notice
from netmetrix.config import Config, SMTPConfig
from netmetrix.receivers import Receiver, by_name
from netmetrix.store import OutboxItem, Store

log = logging.getLogger(__name__)

LEASE_MARGIN = 60.0  # seconds a claim outlives the pass deadline
SUBJECT_MAX = 250  # characters; a longer subject is cut (RFC 5322 lines stop at 998)

_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_BODY_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")  # keeps \t \n
_ADDRESS_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Mail:
    """One message to send: a single notification or a digest of several."""

    recipient: str
    subject: str  # clean: one line, no control characters
    body: str
    ids: tuple[int, ...]  # the outbox rows it delivers
    attempt: int  # 1 for the first try
    message_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    recipient: str
    subject: str
    error: str
    notifications: int  # outbox rows left undelivered
    permanent: bool = False  # a dead letter: not retried until `alerts retry`


@dataclass(slots=True, kw_only=True)
class Delivery:
    """What one pass over the outbox did."""

    sent: list[Mail] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    busy: int = 0  # outbox rows another sender is delivering right now
    deferred: int = 0  # outbox rows not tried: the pass deadline came first
    lost: int = 0  # outbox rows sent after another sender had taken over our claim
    deadline: float | None = None  # the pass deadline (seconds), when it was reached
    dead_letters: int = 0  # outbox rows left alone: refused for good by an earlier pass
    hooks: hooks.HookDelivery | None = None  # the webhook and Alertmanager rows (#16)

    @property
    def ok(self) -> bool:
        http_ok = self.hooks is None or not (self.hooks.failed or self.hooks.deferred)
        return not self.failed and not self.deferred and http_ok

    @property
    def retrying(self) -> list[Failure]:
        """Failures kept in the queue for the next pass."""
        return [f for f in self.failed if not f.permanent]

    @property
    def dead(self) -> list[Failure]:
        """Failures that became dead letters in this pass."""
        return [f for f in self.failed if f.permanent]

    def problems(self, verb: str) -> list[str]:
        """One line per kind of mail this pass left undelivered, for the end of ``verb``."""
        later = "kept in the outbox for the next execute or `netmetrix alerts flush`"
        lines = []
        if self.retrying:
            lines.append(f"{verb}: {_mails_to(self.retrying)} not delivered; {later}")
        if self.dead:
            lines.append(
                f"{verb}: {_mails_to(self.dead)} refused for good; dead letters now, not retried:"
                " see `netmetrix alerts outbox --failed`"
            )
        if self.deferred:
            lines.append(
                f"{verb}: {self.deferred} mail(s) not tried, the SMTP delivery deadline"
                f" ({self.deadline:g}s) came first; {later}"
            )
        return lines + self._hook_problems(verb)

    def _hook_problems(self, verb: str) -> list[str]:
        if self.hooks is None:
            return []
        lines = []
        for failure in self.hooks.failed:
            fate = (
                "refused for good; dead letters now: see `netmetrix alerts outbox --failed`"
                if failure.permanent
                else "kept in the outbox, retried with backoff"
            )
            lines.append(
                f"{verb}: {failure.notifications} notification(s) not delivered: {failure.error};"
                f" {fate}"
            )
        if self.hooks.deferred:
            lines.append(
                f"{verb}: {self.hooks.deferred} webhook/Alertmanager notification(s) waiting"
                " to be retried (`netmetrix alerts flush` tries them now)"
            )
        return lines


def _mails_to(failures: Sequence[Failure]) -> str:
    to = ", ".join(sorted({failure.recipient for failure in failures}))
    return f"{len(failures)} mail(s) to {to}"


class SMTPFailure(Exception):
    """One mail could not be sent; ``str()`` says why, without any secret."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class _DeadlineReached(Exception):
    """The pass deadline ended the SMTP session."""


def plan(items: Sequence[OutboxItem], digest_over: int, sender: str) -> list[Mail]:
    """Group undelivered outbox rows into mails: per recipient, one each or one digest."""
    by_recipient: dict[str, list[OutboxItem]] = {}
    for item in sorted(items, key=lambda i: i.id):
        by_recipient.setdefault(item.recipient, []).append(item)
    domain = sender.rpartition("@")[2] or "localhost"
    mails: list[Mail] = []
    for recipient, group in by_recipient.items():
        attempt = max(item.attempts for item in group) + 1
        if len(group) > digest_over:
            lines = [
                notice.DigestLine(
                    kind="resolved" if item.kind == "resolved" else "firing",
                    host=header_text(item.host),
                    severity=item.severity,
                    ts=item.ts,
                    subject=header_text(item.subject),
                )
                for item in group
            ]
            subject, body = notice.digest(lines, recipient, digest_over)
            ids = tuple(item.id for item in group)
            mid = f"<netmetrix.digest.{ids[0]}-{ids[-1]}.{len(ids)}@{domain}>"
            mails.append(
                Mail(
                    recipient=recipient,
                    subject=header_text(subject),
                    body=body_text(body),
                    ids=ids,
                    attempt=attempt,
                    message_id=mid,
                )
            )
            continue
        mails += [
            Mail(
                recipient=recipient,
                subject=header_text(item.subject),
                body=body_text(item.body),
                ids=(item.id,),
                attempt=item.attempts + 1,
                message_id=f"<netmetrix.{item.id}.{round(item.created * 1000)}@{domain}>",
            )
            for item in group
        ]
    return mails


def header_text(text: str, limit: int = SUBJECT_MAX) -> str:
    """``text`` as one header-safe line: no CR, LF or other control character, cut to ``limit``."""
    line = " ".join(_HEADER_UNSAFE.sub(" ", _valid_unicode(text)).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def body_text(text: str) -> str:
    """``text`` with plain line ends and no control characters but tabs."""
    text = _valid_unicode(text).replace("\r\n", "\n").replace("\r", "\n")
    return _BODY_UNSAFE.sub("?", text)


def _valid_unicode(text: str) -> str:
    """``text`` with lone surrogates (which no encoder takes) replaced by "?"."""
    return text.encode("utf-8", "replace").decode("utf-8")


def deliver_all(
    store: Store,
    config: Config,
    *,
    clock: Callable[[], float] = time.time,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Delivery:
    """``deliver`` with what ``config`` says: SMTP, digests, receivers (#16)."""
    return deliver(
        store,
        config.smtp,
        digest_over=config.alerts.digest_over,
        receivers=config.receivers,
        clock=clock,
        force=force,
        environ=environ,
        refresh=lambda: hooks.refresh(store, config, clock()),
    )


def deliver(  # noqa: PLR0913 -- keyword-only settings of one pass
    store: Store,
    smtp: SMTPConfig,
    *,
    digest_over: int,
    receivers: Sequence[Receiver] = (),
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
    ssl_context: ssl.SSLContext | None = None,
    force: bool = False,
    refresh: Callable[[], object] | None = None,
) -> Delivery:
    """Send every waiting outbox mail nobody else is sending; report what happened.

    Blocking (smtplib, the store), for at most about ``smtp.deadline``: call
    it after the fan-out, in the main thread, so that Ctrl-C interrupts it
    (KeyboardInterrupt propagates; the mail being sent stays queued).
    ``ssl_context`` defaults to the system's trust store (``SSL_CERT_FILE``
    works for a private CA).  Raises StoreError only.
    """
    now = clock()
    undelivered = store.outbox()
    env = os.environ if environ is None else environ
    posted = _HTTP(store, undelivered, receivers, env, clock, force, refresh)
    report = _deliver_mail(
        store,
        smtp,
        [i for i in undelivered if i.channel == "email"],
        digest_over=digest_over,
        environ=env,
        clock=clock,
        ssl_context=ssl_context,
        now=now,
    )
    report.dead_letters += sum(1 for i in undelivered if i.channel != "email" and i.failed)
    report.hooks = posted.result()
    return report


class _HTTP:
    """The webhook and Alertmanager rows' pass (``hooks.deliver``), in a thread beside
    the SMTP pass: neither waits for the other."""

    def __init__(
        self,
        store: Store,
        items: Sequence[OutboxItem],
        receivers: Sequence[Receiver],
        environ: Mapping[str, str],
        clock: Callable[[], float],
        force: bool,
        refresh: Callable[[], object] | None,
    ) -> None:
        self._report: hooks.HookDelivery | None = None
        waiting = [i for i in items if i.channel != "email" and i.failed is None]
        self._thread: threading.Thread | None = None
        if not waiting and refresh is None:
            return

        def run() -> None:
            try:
                if waiting:
                    self._report = hooks.deliver(
                        store,
                        waiting,
                        by_name(receivers),
                        environ=environ,
                        clock=clock,
                        force=force,
                    )
                if refresh is not None:  # after: a resolve in the outbox goes first
                    refresh()
            except Exception:  # said; the rows stay queued for the next pass
                log.exception("webhook/Alertmanager delivery failed")

        self._thread = threading.Thread(target=run, name="netmetrix-http", daemon=True)
        self._thread.start()

    def result(self) -> hooks.HookDelivery | None:
        if self._thread is not None:
            self._thread.join()  # every request in it has a deadline
        return self._report


def _deliver_mail(
    store: Store,
    smtp: SMTPConfig,
    undelivered: Sequence[OutboxItem],
    *,
    digest_over: int,
    environ: Mapping[str, str],
    clock: Callable[[], float],
    ssl_context: ssl.SSLContext | None,
    now: float,
) -> Delivery:
    """The SMTP pass over the mail rows ``undelivered``."""
    waiting = [i for i in undelivered if i.failed is None]
    free = [i for i in waiting if i.claimed_until is None or i.claimed_until < now]
    report = Delivery(busy=len(waiting) - len(free), dead_letters=len(undelivered) - len(waiting))
    if not free:
        return report
    mails = plan(free, digest_over, smtp.sender)
    env = environ
    run = _Pass(store, smtp, report, clock)
    with _Connection(smtp, env, ssl_context) as conn:
        for index, mail in enumerate(mails):
            step = "untried" if conn.expired else run.one(conn, mail)
            if step != "done":
                run.defer(mails[index:] if step == "untried" else mails[index + 1 :])
                break
    return report


_Step = Literal["done", "tried", "untried"]  # the deadline stopped the pass: after, before


class _Pass:
    """One delivery pass: claims, sends and records each mail; fills ``report``."""

    def __init__(
        self, store: Store, smtp: SMTPConfig, report: Delivery, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._smtp = smtp
        self._report = report
        self._clock = clock
        self._token = secrets.token_hex(8)
        self._lease = smtp.deadline + LEASE_MARGIN  # no claim runs out while we send

    def one(self, conn: _Connection, mail: Mail) -> _Step:
        """Deliver ``mail``; "tried"/"untried" when the pass deadline stopped it."""
        try:
            conn.open()
        except _DeadlineReached:
            return "untried"
        except SMTPFailure as err:
            self._failed(mail, str(err), permanent=False)
            return "done"
        # Claimed only now the session is up: a slow greeting cannot outlast the claim.
        if not self._store.claim_mail(mail.ids, self._token, now=self._clock(), lease=self._lease):
            self._report.busy += len(mail.ids)
            return "done"
        try:
            return self._send(conn, mail)
        except BaseException:  # Ctrl-C (or the store failed): the mail stays queued
            self._release(mail)
            raise

    def _send(self, conn: _Connection, mail: Mail) -> _Step:
        try:
            message = _message(mail, self._smtp.sender)
        except Exception as err:  # this mail's data, whatever it is, fails this mail only
            self._failed(mail, f"cannot build the mail: {_why(err)}", permanent=True)
            return "done"
        try:
            conn.send(message)
        except _DeadlineReached as err:
            self._failed(mail, str(err), permanent=False)
            return "tried"
        except SMTPFailure as err:
            self._failed(mail, str(err), permanent=err.permanent)
            return "done"
        except Exception as err:  # a bug or odd data: this mail only; the session is reset
            self._failed(mail, f"cannot send the mail: {_why(err)}", permanent=False)
            return "done"
        self._delivered(mail)
        return "done"

    def _release(self, mail: Mail) -> None:
        try:
            self._store.release_mail(mail.ids, self._token)
        except Exception:  # the claim's lease runs out by itself
            log.debug("could not release the claim on outbox rows %s", mail.ids, exc_info=True)

    def defer(self, mails: Sequence[Mail]) -> None:
        """Leave ``mails`` queued, untried: the pass deadline was reached."""
        report = self._report
        report.deadline = self._smtp.deadline
        report.deferred += sum(len(mail.ids) for mail in mails)
        if not report.deferred:
            return
        log.warning(
            "SMTP delivery deadline of %gs reached (%s:%d): %d mail(s) left in the outbox for"
            " the next execute or `netmetrix alerts flush`",
            self._smtp.deadline,
            self._smtp.host,
            self._smtp.port,
            report.deferred,
        )

    def _delivered(self, mail: Mail) -> None:
        if not self._store.mail_delivered(mail.ids, self._token, now=self._clock()):
            self._report.lost += len(mail.ids)
            log.warning(
                "Mail `%s` sent to `%s`, but our claim on it had run out: another netmetrix"
                " took it over and may send it too",
                mail.subject,
                header_text(mail.recipient),
            )
            return
        self._report.sent.append(mail)
        log.info("Mail `%s` sent to `%s`", mail.subject, header_text(mail.recipient))

    def _failed(self, mail: Mail, error: str, *, permanent: bool) -> None:
        now = self._clock()
        recorded = self._store.mail_failed(
            mail.ids, self._token, now=now, error=error, permanent=permanent
        )
        if not recorded:  # another sender holds it now: its outcome counts
            self._report.busy += len(mail.ids)
            return
        self._report.failed.append(
            Failure(
                recipient=header_text(mail.recipient),
                subject=mail.subject,
                error=error,
                notifications=len(mail.ids),
                permanent=permanent,
            )
        )
        if permanent:
            ids = ", ".join(str(i) for i in mail.ids)
            log.error(
                "Mail `%s` to `%s` failed for good: %s (attempt %d; a dead letter now, outbox"
                " id %s: `netmetrix alerts retry ID` or `netmetrix alerts drop ID`)",
                mail.subject,
                header_text(mail.recipient),
                error,
                mail.attempt,
                ids,
            )
            return
        log.error(
            "Mail `%s` not sent to `%s`: %s (attempt %d; kept in the outbox for the"
            " next execute or `netmetrix alerts flush`)",
            mail.subject,
            header_text(mail.recipient),
            error,
            mail.attempt,
        )


def _message(mail: Mail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = _address(sender)
    message["To"] = _address(mail.recipient)
    message["Subject"] = header_text(mail.subject)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = mail.message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    message.set_content(body_text(mail.body))
    return message


def _address(address: str) -> str:
    """``address`` unchanged, or ValueError when it holds a space or control character."""
    if _ADDRESS_UNSAFE.search(address):
        raise ValueError(f"address {address!r} contains a space or control character")
    return address


def _permanent(code: int) -> bool:
    """A 5xx reply refuses the mail for good; 530 (log in first) is our setup, not the mail."""
    return 500 <= code < 600 and code != 530


class _Deadline:
    """Shuts the session's socket down when the pass deadline passes.

    A socket timeout restarts with every byte, so a server that drips one byte
    every few seconds would hold a pass for ever; shutting the socket down from
    a timer thread wakes the blocked read at once, whatever TLS is on top.  It
    holds a duplicate of each socket, which TLS wrapping cannot detach.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True  # never keeps the process alive
        self._timer.start()

    @property
    def expired(self) -> bool:
        with self._lock:
            return self._expired

    def watch(self, sock: socket.socket) -> None:
        copy = sock.dup()
        with self._lock:
            self._sockets.append(copy)
            if self._expired:
                _shutdown(copy)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


class _SMTP(smtplib.SMTP):
    """smtplib.SMTP that shows its socket to the pass deadline as soon as it exists."""

    deadline: _Deadline | None = None
    _host: str  # smtplib's: the name TLS checks the server's certificate against

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # smtplib's own hook between connecting and the greeting (typeshed omits it)
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        if self.deadline is not None:
            self.deadline.watch(sock)  # before SMTP_SSL's TLS handshake
        return sock


class _SMTPSSL(smtplib.SMTP_SSL, _SMTP):
    """smtplib.SMTP_SSL whose plain socket is watched before the handshake (see _SMTP)."""


class _Connection:
    """One SMTP session for a delivery pass, opened by the first mail, ended by the deadline.

    When connecting or logging in fails, the remaining mails of the pass fail
    with the same error rather than trying (and timing out) once each.
    """

    def __init__(
        self,
        config: SMTPConfig,
        environ: Mapping[str, str],
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._config = config
        self._environ = environ
        self._context = ssl_context
        self._smtp: _SMTP | None = None
        self._broken: SMTPFailure | None = None
        self._deadline = _Deadline(config.deadline)

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        try:
            # QUIT only after a clean pass; the watchdog still bounds it.
            self._close(polite=exc_type is None and not self.expired)
        finally:
            self._deadline.close()

    @property
    def expired(self) -> bool:
        """True once the pass deadline has passed."""
        return self._deadline.expired

    def open(self) -> None:
        """Connect and log in unless done; raise SMTPFailure or _DeadlineReached."""
        if self._smtp is not None:
            return
        if self._broken is not None:
            raise self._broken
        try:
            self._smtp = self._open()
        except SMTPFailure as err:
            if self.expired:
                raise self._deadline_error("connecting") from None
            self._broken = err
            raise

    def send(self, message: EmailMessage) -> None:
        """Hand ``message`` to the server; raise SMTPFailure unless it accepted it."""
        smtp = self._smtp
        assert smtp is not None, "open() first"
        try:
            refused = self._send_or_deadline(smtp, message)
        except smtplib.SMTPRecipientsRefused as err:
            self._forget_if_closed()
            code, reason = next(iter(err.recipients.values()))
            raise SMTPFailure(
                f"recipient refused: {_reply(code, reason)}", permanent=_permanent(code)
            ) from None
        except smtplib.SMTPResponseException as err:
            self._forget_if_closed()
            raise SMTPFailure(
                f"server refused the message: {_reply(err.smtp_code, err.smtp_error)}",
                permanent=_permanent(err.smtp_code),
            ) from None
        except (smtplib.SMTPException, OSError) as err:
            self._close(polite=False)  # the next mail reconnects once
            raise SMTPFailure(f"connection to {self._where} lost: {_why(err)}") from None
        except BaseException:
            self._close(polite=False)  # state unknown (or Ctrl-C): never reuse it
            raise
        if refused:  # only possible with several recipients; kept for safety
            code, reason = next(iter(refused.values()))
            raise SMTPFailure(
                f"recipient refused: {_reply(code, reason)}", permanent=_permanent(code)
            )

    def _send_or_deadline(self, smtp: _SMTP, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        """``smtp.send_message``; _DeadlineReached for any outcome once the deadline passed.

        The watchdog's shutdown can cut a reply short, and smtplib takes a cut
        line for a whole one: "25" of "250" as a refusal, "250" of
        "250-wait..." as the acceptance.  Neither is the server's word, so the
        mail counts as not sent: the next pass sends it again (twice only if
        the server really accepted it in the very moment the deadline passed).
        """
        try:
            refused = smtp.send_message(message)
        except (smtplib.SMTPException, OSError):
            if not self.expired:
                raise
            self._close(polite=False)
            raise self._deadline_error("sending") from None
        if self.expired:
            self._close(polite=False)
            raise self._deadline_error("sending")
        return refused

    @property
    def _where(self) -> str:
        return f"{self._config.host}:{self._config.port}"

    def _deadline_error(self, doing: str) -> _DeadlineReached:
        return _DeadlineReached(
            f"SMTP server {self._where} still busy {doing} when the delivery deadline of"
            f" {self._deadline.seconds:g}s passed"
        )

    def _open(self) -> _SMTP:
        config = self._config
        password = None
        if config.user:
            password = self._environ.get(config.password_env)
            if not password:
                raise SMTPFailure(
                    f"<smtp user> is {config.user!r} but the environment variable"
                    f" {config.password_env} (password_env) is not set"
                )
        context = self._context or ssl.create_default_context()
        local = socket.gethostname() or "localhost"  # getfqdn() may wait on DNS
        smtp: _SMTP | None = None
        try:
            if config.security == "tls":
                smtp = _SMTPSSL(local_hostname=local, timeout=config.timeout, context=context)
            else:
                smtp = _SMTP(local_hostname=local, timeout=config.timeout)
            # What SMTP(host, port) does, with the deadline watching from the first byte:
            smtp.deadline, smtp._host = self._deadline, config.host
            code, greeting = smtp.connect(config.host, config.port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, greeting)
            smtp.ehlo()
            if config.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if config.user:
                assert password is not None
                smtp.login(config.user, password)
        except smtplib.SMTPAuthenticationError as err:
            _quietly_close(smtp)
            raise SMTPFailure(
                f"{self._where} refused the login of user {config.user!r}:"
                f" {_reply(err.smtp_code, err.smtp_error)}"
            ) from None
        except (smtplib.SMTPException, OSError) as err:
            _quietly_close(smtp)
            raise SMTPFailure(
                f"cannot connect to SMTP server {self._where} ({config.security}): {_why(err)}"
            ) from None
        except BaseException:
            _quietly_close(smtp)
            raise
        return smtp

    def _forget_if_closed(self) -> None:
        """smtplib closes the session itself after a 421 reply: reconnect for the next mail."""
        if self._smtp is not None and self._smtp.sock is None:
            self._smtp = None

    def _close(self, *, polite: bool) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if polite:
                smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()


def _quietly_close(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        smtp.close()


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return header_text(f"{code} {text}", limit=500)


def _why(err: BaseException) -> str:
    """One line for an SMTP, socket or unexpected error."""
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {err.verify_message}"
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, smtplib.SMTPResponseException):
        return _reply(err.smtp_code, err.smtp_error)
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = header_text(str(err), limit=500)
    if isinstance(err, smtplib.SMTPException | OSError):
        return text or type(err).__name__
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
