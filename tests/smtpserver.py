"""A real SMTP server (aiosmtpd) on a 127.0.0.1 port, for tests of alert mail.

``SMTPServer`` runs aiosmtpd's threaded ``Controller``: plain, STARTTLS or
implicit TLS, optionally requiring a login.  ``start`` returns once the server
answers (aiosmtpd waits on its ready event and re-raises errors of the server
thread); ``stop`` closes it, and ``start`` again reopens the same port, so a
test can take the mail server down and bring it back.  Every accepted message
is kept in ``messages``; ``Mailbox.refuse`` and ``refuse_data`` make it answer
RCPT or DATA with a reply of the test's choosing (a 550, a 450).

``DripServer`` is an SMTP server that stalls, one byte every so often, and
``HoldingProxy`` sits in front of a real one and holds its answer at one point
until the test lets it go (plain sockets and threads).

``make_tls`` writes a throwaway CA and a server certificate for 127.0.0.1 and
localhost with ``cryptography``; clients trust the CA through SSL_CERT_FILE.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import ipaddress
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from netmetrix import configxml


@dataclass(frozen=True)
class Received:
    """One message the server accepted."""

    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        content = part.get_content()
        assert isinstance(content, str)
        return content.replace("\r\n", "\n")  # as sent, before SMTP's CRLF line ends


class Mailbox:
    """aiosmtpd handler: keeps every message; refuses the addresses in ``refuse``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self.refuse: dict[str, str] = {}  # address -> SMTP reply, e.g. "550 no such user"
        self.refuse_data: str | None = None  # a reply to DATA instead of accepting it
        self.logins: list[str] = []

    async def handle_RCPT(
        self, _server: SMTP, _session: Session, envelope: Envelope, address: str, _options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        if self.refuse_data is not None:
            return self.refuse_data
        message = email.message_from_bytes(
            envelope.original_content or b"", policy=email.policy.default
        )
        assert isinstance(message, EmailMessage)
        received = Received(envelope.mail_from or "", tuple(envelope.rcpt_tos), message)
        with self._lock:
            self._messages.append(received)
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._messages)


class _Controller(Controller):
    """aiosmtpd's Controller; with ``tls_login`` AUTH is offered on an implicit-TLS port.

    aiosmtpd only counts STARTTLS as TLS when deciding to offer AUTH, and warns
    when told to offer it without TLS; a connection that is TLS from its first
    byte is safe, so the flag is set on each session instead.
    """

    def __init__(self, *args: Any, tls_login: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tls_login = tls_login

    def factory(self) -> SMTP:
        smtp = super().factory()
        if self._tls_login:
            smtp._auth_require_tls = False  # see the class docstring
        return smtp


@dataclass(frozen=True)
class TLSFiles:
    ca: Path  # what clients trust (SSL_CERT_FILE)
    cert: Path  # the server's chain
    key: Path


def make_tls(directory: Path) -> TLSFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost, valid one day."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netmetrix test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TLSFiles(
        ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "key.pem"
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key.chmod(0o600)
    return files


@dataclass
class SMTPServer:
    """One aiosmtpd server on 127.0.0.1:``port``; ``security`` none, starttls or tls."""

    port: int
    security: str = "none"
    user: str | None = None  # when set, a login with ``password`` is required
    password: str | None = None
    tls: TLSFiles | None = None
    mailbox: Mailbox = field(default_factory=Mailbox)
    _controller: Controller | None = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    @property
    def messages(self) -> list[Received]:
        return self.mailbox.messages

    @property
    def subjects(self) -> list[str]:
        return [m.subject for m in self.messages]

    def start(self) -> None:
        assert self._controller is None, "already running"
        kwargs: dict[str, Any] = {}
        if self.security != "none":
            import ssl

            assert self.tls is not None
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.tls.cert, self.tls.key)
            if self.security == "starttls":
                kwargs.update(tls_context=context, require_starttls=True)
            else:
                kwargs.update(ssl_context=context)
        if self.user is not None:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=self.security != "none",
                tls_login=self.security == "tls",
            )
        controller = _Controller(
            self.mailbox,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="localhost",  # else aiosmtpd looks up this machine's FQDN
            **kwargs,
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def settings(
        self, *, sender: str = "netmetrix@example.com", password_env: str = ""
    ) -> configxml.SMTP:
        """The ``<smtp>`` settings of a config.xml that uses this server."""
        login = self.user is not None
        return configxml.SMTP(
            host="127.0.0.1",
            port=self.port,
            security=self.security,
            sender=sender,
            user=self.user,
            password_env=(password_env or "NMX_TEST_SMTP_PASSWORD") if login else None,
        )

    def _authenticate(
        self, _server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.user
            and data.password.decode() == self.password
        )
        if isinstance(data, LoginPassword):
            self.mailbox.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)


# ---------------------------------------------------------------- misbehaving servers (#10)


class _Threads:
    """A listening socket on 127.0.0.1 whose connections are served by threads.

    ``stop`` closes the listener and shuts every connection down, then joins
    the threads, so a test never leaves one behind even when it fails.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.stopping = threading.Event()
        self.connected = threading.Event()  # a client connected
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            sockets = [self._listener, *self._sockets]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in list(self._threads):
            thread.join(timeout=30)

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # stopped
            self.track(conn)
            self.connected.set()
            self._spawn(self._serve_quietly, conn)

    def _serve_quietly(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the client went away, or stop()
            self.serve(conn)


class DripServer(_Threads):
    """An SMTP server that stalls: one byte of a never-ending reply every ``interval`` s.

    ``drip_at="greeting"`` stalls from the first byte (a socket timeout never
    fires: a byte keeps arriving); ``"data"`` speaks plain SMTP up to the
    message's final dot and then stalls instead of saying 250.  Nothing is
    ever accepted; ``dripping`` is set once it stalls.
    """

    def __init__(self, drip_at: str = "greeting", interval: float = 0.2) -> None:
        self.drip_at = drip_at
        self.interval = interval
        self.dripping = threading.Event()
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        if self.drip_at == "greeting":
            self._drip(conn)
            return
        conn.sendall(b"220 slow ESMTP\r\n")
        lines = conn.makefile("rb")
        while not self.stopping.is_set():
            line = lines.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
                while lines.readline() not in (b".\r\n", b""):
                    pass
                self._drip(conn)
                return
            conn.sendall(b"221 bye\r\n" if verb == b"QUIT" else b"250 OK\r\n")

    def _drip(self, conn: socket.socket) -> None:
        self.dripping.set()
        reply = b"250-still thinking\r\n"
        while not self.stopping.wait(self.interval):  # bounded by stop()
            for byte in reply:
                conn.sendall(bytes([byte]))
                if self.stopping.wait(self.interval):
                    return


class HoldingProxy(_Threads):
    """Forwards to a real server on 127.0.0.1:``target``, holding its bytes at one point.

    ``hold="greeting"`` holds the server's first bytes; ``"data-reply"`` holds
    its reply to the end of a message (so the message is already accepted).
    ``held`` is set when the proxy starts holding; bytes flow again once the
    test sets ``release``.
    """

    def __init__(self, target: int, hold: str) -> None:
        self.target = target
        self.hold = hold
        self.held = threading.Event()
        self.release = threading.Event()
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        upstream = self.track(socket.create_connection(("127.0.0.1", self.target), timeout=30))
        upstream.settimeout(None)  # stop() shuts it down
        sent_message = threading.Event()  # the client sent a message's final dot
        self._spawn(self._pump_up, conn, upstream, sent_message)
        while True:
            data = upstream.recv(65536)
            if not data:
                conn.shutdown(socket.SHUT_WR)
                return
            must_hold = self.hold == "greeting" or sent_message.is_set()
            if must_hold and not self.release.is_set():
                self.held.set()
                if not self.release.wait(timeout=120) or self.stopping.is_set():
                    return
            conn.sendall(data)

    def _pump_up(
        self, conn: socket.socket, upstream: socket.socket, sent_message: threading.Event
    ) -> None:
        tail = b""
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                tail = (tail + data)[-5:]
                if tail == b"\r\n.\r\n":
                    sent_message.set()  # before the server can answer it
                upstream.sendall(data)
            upstream.shutdown(socket.SHUT_WR)
