"""``netmetrix demo``: the whole job on a local fleet that lives inside this process.

N SSH servers (asyncssh's server side) listen on 127.0.0.1 ephemeral ports,
each with its own host key, accepting only a client key the demo makes.  Each
serves SFTP and runs exec requests with ``/bin/sh -c`` in its own host
directory, and an SMTP server (aiosmtpd) keeps every message it receives.  The
demo writes a config.xml for them (strict host keys against the known_hosts it
writes, an ``<smtp>`` pointing at its SMTP server, an alert rule that always
fires) and runs the real ``upload`` and two ``execute`` runs: the jobs
``collect.run_upload`` and ``collect.run_execute`` with a ``Store``, exactly as
the CLI runs them.  Nothing in the collector knows it is a demo, but for one
argument: the demo's hosts are described completely by its config.xml, so the
jobs read no OpenSSH file of the user's (``ssh.NO_USER_FILES``: a ``Host *``
ProxyJump in ~/.ssh/config must not redirect loopback connections).

It ends with the dashboard (``netmetrix.web``) over the demo's store on
127.0.0.1:8470 (another port when that one is taken), served from a thread of
its own for a few seconds, or with ``--serve`` until SIGINT/SIGTERM while
``watch`` keeps collecting from the demo hosts on the main thread.

The SSH servers run on their own event loop in a background thread, so nothing
the collector does on its loop (store writes, sending mail) can stall them.

Host directories are not chrooted: the ``<host directory>`` in config.xml is
the directory's real absolute path, because the probe command that exec runs
names it.  SFTP is confined to it instead (any path outside is refused).

Layout::

    DIR/config.xml known_hosts demo_key demo_key.pub netmetrix.db   (--keep DIR, or a temp dir)
    TMP/hosts/demo1/ ...                     each demo host's directory (removed at exit)
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import functools
import logging
import os
import posixpath
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import asyncssh
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from netmetrix.errors import ExitStatus, UsageError

if TYPE_CHECKING:
    from netmetrix.config import Config
    from netmetrix.store import Store

log = logging.getLogger(__name__)

DEFAULT_HOSTS = 5
MAX_HOSTS = 100
CLIENT_USER = "monitor"  # any name works: the demo servers only check the key
ALERT_EMAIL = "ops@example.com"
START_TIMEOUT = 15.0  # seconds to start the SSH servers
STOP_TIMEOUT = 10.0  # seconds to wait for the server thread to finish
SHOWN_METRICS = ("up", "cpu_percent", "mem_percent", "load1", "procs_total")
BODY_LINES = 25  # lines of the first mail's body shown
# What config.xml accepts in <host directory> and <host python>.
_SAFE_PATH = re.compile(r"/[A-Za-z0-9_.+@%:,=/-]*")


# ---------------------------------------------------------------- SMTP


@dataclass(frozen=True, slots=True, kw_only=True)
class Mail:
    """One message the demo SMTP server accepted."""

    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    def body(self) -> str:
        """The plain-text body (or the first text part)."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        if part is None:
            return ""
        content = part.get_content()
        return content if isinstance(content, str) else repr(content)


class Mailbox:
    """aiosmtpd handler that keeps every message; read it from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mails: list[Mail] = []
        self._listener: Callable[[Mail], None] | None = None

    def listen(self, listener: Callable[[Mail], None]) -> None:
        """Call ``listener`` (in the SMTP server's thread) with each mail from now on."""
        with self._lock:
            self._listener = listener

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)  # policy.default makes EmailMessage
        mail = Mail(
            sender=envelope.mail_from or "",
            recipients=tuple(envelope.rcpt_tos),
            message=message,
        )
        with self._lock:
            self._mails.append(mail)
            listener = self._listener
        if listener is not None:
            listener(mail)
        return "250 Message accepted for delivery"

    def mails(self) -> list[Mail]:
        with self._lock:
            return list(self._mails)


class _LoopbackController(Controller):
    """aiosmtpd's threaded controller on an ephemeral port (it expects a fixed one)."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def smtp_server(mailbox: Mailbox) -> Iterator[int]:
    """Run an SMTP server on 127.0.0.1 that hands messages to ``mailbox``; yield its port."""
    # A fixed server_hostname: aiosmtpd would otherwise look up this machine's FQDN.
    controller = _LoopbackController(
        mailbox, hostname="127.0.0.1", port=0, server_hostname="localhost"
    )
    controller.start()
    try:
        yield int(controller.port)
    finally:
        controller.stop()


# ---------------------------------------------------------------- SSH


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoHost:
    """One running demo SSH server."""

    name: str
    port: int
    directory: Path
    host_key: str  # "ssh-ed25519 AAAA..."

    @property
    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key}"


class _HostSFTP(asyncssh.SFTPServer):
    """SFTP confined to one host directory, under the same absolute paths exec uses."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], *, root: Path) -> None:
        super().__init__(chan)
        self._root = os.fsencode(root)

    def map_path(self, path: bytes) -> bytes:
        full = posixpath.normpath(posixpath.join(self._root, path))
        if full != self._root and not full.startswith(self._root + b"/"):
            shown = path.decode("utf-8", "replace")
            raise asyncssh.SFTPPermissionDenied(f"{shown}: outside this demo host's directory")
        return full


class _Server(asyncssh.SSHServer):
    """Keeps track of its connections so that shutting down can close them."""

    def __init__(self, connections: set[asyncssh.SSHServerConnection]) -> None:
        self._connections = connections
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._connections.add(conn)

    def connection_lost(self, _exc: Exception | None) -> None:
        if self._conn is not None:
            self._connections.discard(self._conn)


class LocalFleet:
    """N SSH servers on 127.0.0.1, run on their own event loop in a background thread.

    Use as a context manager: entering starts them (``hosts`` then lists them),
    leaving closes the listeners and every connection, and kills every command
    still running (its whole process group).
    """

    def __init__(self, directories: dict[str, Path], client_key: asyncssh.SSHKey) -> None:
        self._directories = directories
        self._authorized = asyncssh.import_authorized_keys(
            client_key.export_public_key("openssh").decode("ascii")
        )
        self.hosts: list[DemoHost] = []
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._acceptors: list[asyncssh.SSHAcceptor] = []
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._children: set[asyncio.subprocess.Process] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    def __enter__(self) -> LocalFleet:
        self._thread = threading.Thread(target=self._main, name="netmetrix-demo-ssh", daemon=True)
        self._thread.start()
        try:
            if not self._ready.wait(START_TIMEOUT):
                raise RuntimeError(f"demo SSH servers did not start within {START_TIMEOUT:g}s")
            if self._failure is not None:
                raise RuntimeError(f"demo SSH servers failed to start: {self._failure}")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop everything; safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(stop.set)
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            log.warning("demo SSH servers did not stop within %gs", STOP_TIMEOUT)

    # -- the server thread ----------------------------------------------------

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the thread that waits for _ready
            self._failure = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            for name, directory in self._directories.items():
                host_key = asyncssh.generate_private_key("ssh-ed25519")
                acceptor = await asyncssh.listen(
                    "127.0.0.1",
                    0,
                    server_host_keys=[host_key],
                    authorized_client_keys=self._authorized,
                    server_factory=functools.partial(_Server, self._connections),
                    process_factory=functools.partial(self._exec, directory),
                    sftp_factory=functools.partial(_HostSFTP, root=directory),
                    allow_scp=False,
                    encoding=None,
                )
                self._acceptors.append(acceptor)
                public = host_key.export_public_key("openssh").decode("ascii").split()
                self.hosts.append(
                    DemoHost(
                        name=name,
                        port=acceptor.get_port(),
                        directory=directory,
                        host_key=" ".join(public[:2]),
                    )
                )
            self._ready.set()
            await self._stop.wait()
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        """Close listeners and connections, then let every exec handler finish.

        Handlers are waited for, not cancelled: cancelling one while it is still
        in ``create_subprocess_exec`` hangs the event loop on Python 3.11.  A
        closed channel makes its handler kill the command and return.
        """
        for acceptor in self._acceptors:
            acceptor.close()
        for conn in list(self._connections):
            conn.close()
        for child in list(self._children):
            _kill_group(child)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                if self._handlers:
                    await asyncio.wait(list(self._handlers))
                for acceptor in self._acceptors:
                    await acceptor.wait_closed()
                for conn in list(self._connections):
                    await conn.wait_closed()

    async def _exec(self, directory: Path, process: asyncssh.SSHServerProcess[bytes]) -> None:
        """Run the client's command with /bin/sh -c in ``directory``, relaying I/O and status."""
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            await self._run_command(directory, process)
        finally:
            self._handlers.discard(handler)

    async def _run_command(
        self, directory: Path, process: asyncssh.SSHServerProcess[bytes]
    ) -> None:
        command = process.command
        if not command:
            process.stderr.write(b"this demo host runs commands and SFTP only, no shell\n")
            process.exit(1)
            return
        child = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            cwd=directory,
            env={**os.environ, "HOME": str(directory)},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: killed as a whole, no Ctrl-C
        )
        self._children.add(child)
        output = asyncio.ensure_future(_relay_output(child, process))
        aborted = asyncio.ensure_future(_relay_input(child, process))
        try:
            await asyncio.wait({output, aborted}, return_when=asyncio.FIRST_COMPLETED)
            if output.done() and output.exception() is None:
                _send_exit(process, output.result())
        finally:
            for task in (output, aborted):
                task.cancel()
            await asyncio.gather(output, aborted, return_exceptions=True)
            _kill_group(child)
            await child.wait()
            self._children.discard(child)


async def _relay_output(
    child: asyncio.subprocess.Process, process: asyncssh.SSHServerProcess[bytes]
) -> int:
    """Copy the child's stdout and stderr to the channel; return its exit status."""
    assert child.stdout is not None
    assert child.stderr is not None
    await asyncio.gather(_copy(child.stdout, process.stdout), _copy(child.stderr, process.stderr))
    return await child.wait()


async def _copy(source: asyncio.StreamReader, target: asyncssh.SSHWriter[bytes]) -> None:
    while chunk := await source.read(65536):
        target.write(chunk)
        await target.drain()


async def _relay_input(
    child: asyncio.subprocess.Process, process: asyncssh.SSHServerProcess[bytes]
) -> None:
    """Copy the channel's stdin to the child; return only when the client gives up.

    Returning (the channel closed, a signal, any error reading the channel)
    means: kill the command.
    """
    assert child.stdin is not None
    try:
        while data := await process.stdin.read(65536):
            child.stdin.write(data)
            await child.stdin.drain()
        child.stdin.close()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the command does not read its input: fine
    await process.channel.wait_closed()


def _send_exit(process: asyncssh.SSHServerProcess[bytes], status: int) -> None:
    if status >= 0:
        process.exit(status)
    else:  # killed by a signal, as asyncio reports it
        process.exit_with_signal(signal.Signals(-status).name.removeprefix("SIG"))


def _kill_group(child: asyncio.subprocess.Process) -> None:
    """SIGKILL the child's process group, unless the child has already been reaped."""
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)


# ---------------------------------------------------------------- config


def config_xml(
    hosts: Sequence[DemoHost], *, smtp_port: int, python: str, key_file: str = "demo_key"
) -> str:
    """The demo fleet's config.xml."""
    from netmetrix.configxml import SMTP, SSH, Alert, ConfigXml, Host, render

    return render(
        ConfigXml(
            comment=(
                "Written by `netmetrix demo` for SSH and SMTP servers that live inside\n"
                "that process on 127.0.0.1: while it serves its dashboard, upload and\n"
                "execute work with this file; once it ends they fail, and the query\n"
                "commands still work on its database."
            ),
            script="client.py",
            concurrency=50,
            database="netmetrix.db",
            ssh=SSH(
                known_hosts="known_hosts",
                host_key_policy="strict",
                connect_timeout=10,
                command_timeout=30,
            ),
            smtp=SMTP(
                host="127.0.0.1", port=smtp_port, security="none", sender="netmetrix@localhost"
            ),
            hosts=[
                Host(
                    name=h.name,
                    address="127.0.0.1",
                    port=h.port,
                    user=CLIENT_USER,
                    key=key_file,
                    directory=h.directory,
                    python=python,
                )
                for h in hosts
            ],
            alerts=(
                Alert(
                    metric="cpu_count",
                    op=">=",
                    limit=1,
                    severity="info",
                    email=ALERT_EMAIL,
                    comment="Always true, so that the demo has mail to show.",
                ),
                Alert(
                    metric="up",
                    op="==",
                    limit=0,
                    severity="critical",
                    email=ALERT_EMAIL,
                    comment="The rule you will want on a real fleet: a host stopped answering.",
                ),
            ),
        )
    )


def _probe_python(bin_dir: Path) -> str:
    """An interpreter path config.xml accepts: this one, or a symlink to it."""
    if _SAFE_PATH.fullmatch(sys.executable):
        return sys.executable
    bin_dir.mkdir(parents=True, exist_ok=True)
    link = bin_dir / "python3"
    link.symlink_to(sys.executable)
    return str(link)


def _write_private(path: Path, data: bytes) -> None:
    """Write a new file readable by its owner only, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


# ---------------------------------------------------------------- the demo


class _Output:
    """Writes the demo's narration to stdout and the run summaries to stderr, flushed."""

    def __init__(self, out: IO[str], err: IO[str]) -> None:
        self.out, self.err = out, err

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def summary(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()


def check_keep(keep: Path) -> Path:
    """``--keep DIR`` as an absolute path; it must be new or an empty directory."""
    path = Path(os.path.abspath(keep))
    if path.exists() and not path.is_dir():
        raise UsageError(f"--keep {keep}: not a directory")
    if path.is_dir() and any(path.iterdir()):
        raise UsageError(
            f"--keep {keep}: directory is not empty; give a new or empty one "
            "(the demo writes config.xml, known_hosts, demo_key and netmetrix.db there)"
        )
    return path


def run(
    *,
    hosts: int = DEFAULT_HOSTS,
    keep: Path | None = None,
    serve: bool = False,
    out: IO[str],
    err: IO[str],
) -> ExitStatus:
    """Run the demo; return OK when every host succeeded in every run.

    It ends with the dashboard over the demo's store, up for SERVE_SECONDS, or
    (``serve``) until SIGINT or SIGTERM while ``watch`` keeps collecting.
    """
    if not 1 <= hosts <= MAX_HOSTS:
        raise UsageError(f"--hosts must be 1-{MAX_HOSTS}, got {hosts}")
    keep = check_keep(keep) if keep is not None else None
    started = time.monotonic()
    output = _Output(out, err)
    workdir = Path(tempfile.mkdtemp(prefix="netmetrix-demo-"))
    try:
        if not _SAFE_PATH.fullmatch(str(workdir)):
            raise UsageError(
                f"temporary directory {workdir}: the demo hosts' directories need a path"
                " without spaces or shell metacharacters; set TMPDIR to one"
            )
        files = keep or workdir  # mkdtemp made workdir 0700
        if not files.exists():
            files.mkdir(mode=0o700, parents=True)  # it will hold a private key and the store
        status = _run(hosts, files, workdir, output, serve)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    output.say()
    if keep is not None:
        output.say(f"The files stay in {keep}: config.xml, known_hosts, demo_key, netmetrix.db.")
        output.say("Ask the store what it holds:")
        output.say(f"  netmetrix --config {keep / 'config.xml'} hosts")
        output.say(f"  netmetrix --config {keep / 'config.xml'} metrics latest")
        output.say(f"  netmetrix --config {keep / 'config.xml'} alerts history")
        output.say(f"  netmetrix --config {keep / 'config.xml'} serve     # the dashboard")
    else:
        output.say(f"The demo's files were in {workdir} and have been removed.")
        output.say("To keep them and query the database afterwards:")
        output.say("  netmetrix demo --keep ./demo")
        output.say("  netmetrix --config ./demo/config.xml metrics latest")
    output.say(f"demo: finished in {time.monotonic() - started:.1f}s")
    return status


def _run(count: int, files: Path, workdir: Path, output: _Output, serve: bool) -> ExitStatus:
    names = [f"demo{i}" for i in range(1, count + 1)]
    directories = {name: workdir / "hosts" / name for name in names}
    for directory in directories.values():
        directory.mkdir(mode=0o700, parents=True)  # as upload makes a host's directory
    client_key = asyncssh.generate_private_key("ssh-ed25519", comment="netmetrix-demo")
    _write_private(files / "demo_key", client_key.export_private_key("openssh"))
    (files / "demo_key.pub").write_bytes(client_key.export_public_key("openssh"))
    python = _probe_python(workdir / "bin")
    mailbox = Mailbox()
    with smtp_server(mailbox) as smtp_port, LocalFleet(directories, client_key) as fleet:
        config_path = files / "config.xml"
        known = "".join(h.known_hosts_line + "\n" for h in fleet.hosts)
        _write_private(files / "known_hosts", known.encode("ascii"))
        config_path.write_text(config_xml(fleet.hosts, smtp_port=smtp_port, python=python))
        ports = ", ".join(str(h.port) for h in fleet.hosts)
        output.say(
            f"Started {count} SSH server(s) on 127.0.0.1 (ports {ports}) and an SMTP server"
            f" on 127.0.0.1:{smtp_port}, all inside this process."
        )
        output.say(f"Wrote {config_path} for them (and known_hosts, demo_key beside it).")
        ok = _collect(config_path, mailbox, output)
        _show_metrics(config_path, output)
        _show_mail(mailbox.mails(), output)
        if serve:  # mail that execute, run by hand meanwhile, sends is shown as it comes
            mailbox.listen(lambda mail: output.say(f"  mail arrived: {_mail_line(mail)}"))
        _dashboard(config_path, output, serve)
    return ExitStatus.OK if ok else ExitStatus.HOST_FAILED


def _collect(config_path: Path, mailbox: Mailbox, output: _Output) -> bool:
    """upload, execute, execute: the CLI's jobs; True when every host succeeded."""
    from netmetrix import collect, ssh
    from netmetrix.config import load_config
    from netmetrix.store import Store

    config = load_config(config_path)
    all_ok = True
    for verb in ("upload", "execute", "execute"):
        job = collect.JOBS[verb]
        output.say()
        output.say(f"$ netmetrix --config {config_path} {verb}")
        before = len(mailbox.mails())
        with Store.open(config.database) as store:
            report = job(
                config, store, config.hosts, ssh_files=ssh.NO_USER_FILES, say=output.summary
            )
        all_ok = all_ok and report.summary.all_ok
        if verb == "execute":
            arrived = len(mailbox.mails()) - before
            if arrived or not before:
                output.say(f"  ({arrived} mail(s) arrived at the demo SMTP server during this run)")
            else:
                output.say("  (no new mail: an alert that is still firing is not mailed again)")
    return _watch_a_little(config, output) and all_ok


WATCH_TICKS = 3
DASHBOARD_PORT = 8470  # serve's default; another port when something listens there
SERVE_SECONDS = 10.0  # how long the dashboard stays up at the end, without --serve
SERVE_INTERVAL = 2.0  # seconds between watch's ticks while --serve keeps it up


def _watch_a_little(config: Config, output: _Output) -> bool:
    """A few ticks of ``watch``: the same hosts, on one SSH session each."""
    from netmetrix import ssh
    from netmetrix.store import Store
    from netmetrix.watch import WatchOptions, run_watch

    output.say()
    output.say(f"$ netmetrix --config {config.path} watch --interval 1s --ticks {WATCH_TICKS}")
    options = WatchOptions(interval=1.0, ticks=WATCH_TICKS, ssh_files=ssh.NO_USER_FILES)
    with Store.open(config.database) as store:
        report = run_watch(config, store, options)
    output.say(
        f"  ({report.ticks} ticks, {report.samples} samples stored, on one SSH session per"
        " host; without --ticks, watch runs until SIGTERM or Ctrl-C)"
    )
    return report.answers >= len(config.hosts)  # a slow answer is up=0, not a failed demo


def _dashboard(config_path: Path, output: _Output, serve: bool) -> None:
    """The dashboard over the demo's store: for SERVE_SECONDS, or (``serve``) until SIGINT or
    SIGTERM while ``watch`` keeps the demo hosts' charts moving."""
    from netmetrix.config import load_config
    from netmetrix.store import Store
    from netmetrix.web.background import serving

    config = load_config(config_path)
    with Store.open(config.database) as store, serving(config, store, DASHBOARD_PORT) as url:
        output.say()
        if serve:
            _serve_and_watch(config, store, url, output)
            return
        output.say(f"Dashboard: {url}  (up for {SERVE_SECONDS:g} s: open it now; run")
        output.say("  `netmetrix demo --serve` to keep it up, and collecting, until Ctrl-C)")
        time.sleep(SERVE_SECONDS)  # it serves from its own thread meanwhile


def _serve_and_watch(config: Config, store: Store, url: str, output: _Output) -> None:
    from netmetrix import ssh
    from netmetrix.watch import WatchOptions, run_watch

    output.say(f"Dashboard: {url}")
    output.say(
        f"  (watch collects from the demo hosts every {SERVE_INTERVAL:g} s meanwhile;"
        " Ctrl-C stops both)"
    )
    options = WatchOptions(interval=SERVE_INTERVAL, ssh_files=ssh.NO_USER_FILES)
    report = run_watch(config, store, options)
    output.say(f"  ({report.ticks} ticks, {report.samples} samples stored while serving)")


def _show_metrics(config_path: Path, output: _Output) -> None:
    from netmetrix.config import load_config
    from netmetrix.render import render
    from netmetrix.store import Store

    config = load_config(config_path)
    with Store.open(config.database) as store:
        samples = store.latest()
    rows: dict[str, dict[str, Any]] = {}
    series: dict[str, int] = {}
    for sample in samples:
        row = rows.setdefault(sample.host, {"host": sample.host})
        series[sample.host] = series.get(sample.host, 0) + 1
        if sample.metric in SHOWN_METRICS and not sample.labels:
            row[sample.metric] = sample.value
        if sample.metric == "disk_percent" and sample.labels == {"mount": "/"}:
            row["disk_percent{mount=/}"] = sample.value
    for host, row in rows.items():
        row["series"] = series[host]
    output.say()
    output.say(f"Latest samples in {store.url_display} (a few of each host's series):")
    columns = ["host", *SHOWN_METRICS, "disk_percent{mount=/}", "series"]
    render([rows[h] for h in sorted(rows)], columns, "table", output.out)
    output.out.flush()


def _mail_line(mail: Mail) -> str:
    return f"{mail.subject}   (to {', '.join(mail.recipients)})"


def _show_mail(mails: Sequence[Mail], output: _Output) -> None:
    output.say()
    if not mails:
        output.say("The demo SMTP server received no mail: no alert rule fired.")
        return
    output.say(f"The demo SMTP server received {len(mails)} mail(s):")
    for mail in mails:
        output.say(f"  {_mail_line(mail)}")
    first = mails[0]
    output.say()
    output.say("The first one:")
    for header in ("From", "To", "Subject", "Date"):
        if first.message.get(header) is not None:
            output.say(f"  {header}: {first.message[header]}")
    output.say("")
    lines = first.body().rstrip().splitlines()
    for line in lines[:BODY_LINES]:
        output.say(f"  {line}".rstrip())
    if len(lines) > BODY_LINES:
        output.say(f"  ... ({len(lines) - BODY_LINES} more lines)")
