"""Deliver the outbox: queued alert mail over SMTP, each mail exactly once.

``execute`` queues mail in the same transaction as the samples that caused it
(``Store.record_runs_with_alerts``); ``deliver`` sends what is waiting, after
the fan-out, from a worker thread.  For each mail:

1. claim its outbox rows for a short lease (another collector flushing the
   same outbox skips them);
2. send it; the moment the server accepts it, mark it delivered in its own
   transaction;
3. on failure, count the attempt, keep the error and release it: the next
   ``execute`` or ``netmetrix alerts flush`` retries it.

Only a crash between the server's 250 and that commit (milliseconds) could send
a mail twice; nothing is ever dropped.  Mail waiting for one recipient goes as
one digest when there is more of it than ``<alerts digest_over>``.

The password is read from the environment variable ``<smtp password_env>``
names, when ``<smtp user>`` is set, and is never logged or stored.
"""

from __future__ import annotations

import logging
import os
import secrets
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate

from netmetrix import alerts
from netmetrix.config import SMTPConfig
from netmetrix.store import OutboxItem, Store

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0  # seconds for the SMTP connection and each command


@dataclass(frozen=True, slots=True, kw_only=True)
class Mail:
    """One message to send: a single notification or a digest of several."""

    recipient: str
    subject: str
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


@dataclass(slots=True, kw_only=True)
class Delivery:
    """What one pass over the outbox did."""

    sent: list[Mail] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    busy: int = 0  # outbox rows another sender is delivering right now

    @property
    def ok(self) -> bool:
        return not self.failed


class SMTPFailure(Exception):
    """One mail could not be sent; ``str()`` says why, without any secret."""


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
                alerts.DigestLine(
                    kind="resolved" if item.kind == "resolved" else "firing",
                    host=item.host,
                    severity=item.severity,
                    ts=item.ts,
                    subject=item.subject,
                )
                for item in group
            ]
            subject, body = alerts.digest(lines, recipient, digest_over)
            ids = tuple(item.id for item in group)
            mid = f"<netmetrix.digest.{ids[0]}-{ids[-1]}.{len(ids)}@{domain}>"
            mails.append(
                Mail(
                    recipient=recipient,
                    subject=subject,
                    body=body,
                    ids=ids,
                    attempt=attempt,
                    message_id=mid,
                )
            )
            continue
        mails += [
            Mail(
                recipient=recipient,
                subject=item.subject,
                body=item.body,
                ids=(item.id,),
                attempt=item.attempts + 1,
                message_id=f"<netmetrix.{item.id}.{round(item.created * 1000)}@{domain}>",
            )
            for item in group
        ]
    return mails


def deliver(
    store: Store,
    smtp: SMTPConfig,
    *,
    digest_over: int,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
    timeout: float = DEFAULT_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
) -> Delivery:
    """Send every undelivered outbox mail nobody else is sending; report what happened.

    Blocking (smtplib, the store): call it after the fan-out or in a thread.
    ``ssl_context`` defaults to the system's trust store (``SSL_CERT_FILE``
    works for a private CA).  Raises StoreError only.
    """
    now = clock()
    waiting = store.outbox(undelivered=True)
    free = [i for i in waiting if i.claimed_until is None or i.claimed_until < now]
    report = Delivery(busy=len(waiting) - len(free))
    if not free:
        return report
    token = secrets.token_hex(8)
    lease = 2 * timeout + 60  # connect + send, with room to spare
    with _Connection(
        smtp, os.environ if environ is None else environ, timeout, ssl_context
    ) as conn:
        for mail in plan(free, digest_over, smtp.sender):
            if not store.claim_mail(mail.ids, token, now=clock(), lease=lease):
                report.busy += len(mail.ids)
                continue
            try:
                conn.send(_message(mail, smtp.sender))
            except SMTPFailure as err:
                store.mail_failed(mail.ids, token, now=clock(), error=str(err))
                report.failed.append(
                    Failure(
                        recipient=mail.recipient,
                        subject=mail.subject,
                        error=str(err),
                        notifications=len(mail.ids),
                    )
                )
                log.error(
                    "Mail `%s` not sent to `%s`: %s (attempt %d; kept in the outbox for the"
                    " next execute or `netmetrix alerts flush`)",
                    mail.subject,
                    mail.recipient,
                    err,
                    mail.attempt,
                )
                continue
            store.mail_delivered(mail.ids, now=clock())
            report.sent.append(mail)
            log.info("Mail `%s` sent to `%s`", mail.subject, mail.recipient)
    return report


def _message(mail: Mail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.recipient
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = mail.message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    message.set_content(mail.body)
    return message


class _Connection:
    """One SMTP session for a delivery pass, opened on the first mail.

    When connecting or logging in fails, the remaining mails of the pass fail
    with the same error rather than trying (and timing out) once each.
    """

    def __init__(
        self,
        config: SMTPConfig,
        environ: Mapping[str, str],
        timeout: float,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._config = config
        self._environ = environ
        self._timeout = timeout
        self._context = ssl_context
        self._smtp: smtplib.SMTP | None = None
        self._broken: SMTPFailure | None = None

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._close()

    def send(self, message: EmailMessage) -> None:
        """Hand ``message`` to the server; raise SMTPFailure unless it accepted it."""
        if self._broken is not None:
            raise self._broken
        if self._smtp is None:
            try:
                self._smtp = self._open()
            except SMTPFailure as err:
                self._broken = err
                raise
        try:
            refused = self._smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as err:
            code, reason = next(iter(err.recipients.values()))
            raise SMTPFailure(f"recipient refused: {_reply(code, reason)}") from None
        except smtplib.SMTPResponseException as err:
            raise SMTPFailure(
                f"server refused the message: {_reply(err.smtp_code, err.smtp_error)}"
            ) from None
        except (smtplib.SMTPException, OSError) as err:
            self._close()  # the next mail reconnects once
            raise SMTPFailure(f"connection to {self._where} lost: {_why(err)}") from None
        if refused:  # only possible with several recipients; kept for safety
            code, reason = next(iter(refused.values()))
            raise SMTPFailure(f"recipient refused: {_reply(code, reason)}")

    @property
    def _where(self) -> str:
        return f"{self._config.host}:{self._config.port}"

    def _open(self) -> smtplib.SMTP:
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
        smtp: smtplib.SMTP | None = None
        try:
            if config.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    config.host,
                    config.port,
                    local_hostname=local,
                    timeout=self._timeout,
                    context=context,
                )
            else:
                smtp = smtplib.SMTP(
                    config.host, config.port, local_hostname=local, timeout=self._timeout
                )
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
        return smtp

    def _close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
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
    return f"{code} {' '.join(text.split())}"


def _why(err: BaseException) -> str:
    """One line for an SMTP or socket error."""
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {err.verify_message}"
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, smtplib.SMTPResponseException):
        return _reply(err.smtp_code, err.smtp_error)
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__
