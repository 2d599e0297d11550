"""The original spec's design (seed/network-metrix-spec.txt), written faithfully as a baseline.

    python bench/spec_baseline.py --config config.xml upload
    python bench/spec_baseline.py --config config.xml execute

paramiko for SSH and SFTP, ``multiprocessing.Pool(concurrency)`` for
parallelism, click for the command line, sqlite3 for the store, and the
spec's client.py (``spec_client.py``: psutil, a hard-coded key, one encrypted
line).  Each host is a ``Node`` with ``upload`` and ``execute``; ``execute``
runs the script, decrypts its message, and inserts the metrics over a new
database connection ("to prevent database from being a bottleneck").  The
spec's e-mail alerts are checked after every host (the benchmark's one rule never
fires).

It reads the same config.xml as netmetrix (hosts, script directory, python,
concurrency, known_hosts) and checks host keys against the same known_hosts
(paramiko ``RejectPolicy``).  Nothing is slowed down on purpose: the pool
hands out one host at a time (``chunksize=1``) and SQLite runs in WAL mode.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import multiprocessing
import operator
import smtplib
import sqlite3
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import click
import paramiko
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = Path(__file__).resolve().parent
SCRIPT = "spec_client.py"
KEY = b"netmetrix-bench/spec-hardcoded!!"  # the same key as hard-coded in spec_client.py

log = logging.getLogger("spec")


# ---------------------------------------------------------------- config.py


@dataclass(frozen=True)
class NodeConfig:
    name: str
    address: str
    port: int
    user: str
    key: str
    directory: str
    python: str


@dataclass(frozen=True)
class Config:
    nodes: tuple[NodeConfig, ...]
    concurrency: int
    known_hosts: str
    database: str
    timeout: float
    alerts: tuple[tuple[str, str, float, str], ...]  # metric, operator, limit, e-mail
    smtp: tuple[str, int]


def load_config(path: Path) -> Config:
    root = ET.parse(path).getroot()
    ssh = root.find("ssh")
    nodes = tuple(
        NodeConfig(
            name=h.attrib["name"],
            address=h.attrib.get("address", h.attrib["name"]),
            port=int(h.attrib.get("port", "22")),
            user=h.attrib["user"],
            key=h.attrib["key"],
            directory=h.attrib.get("directory", "/tmp"),
            python=h.attrib.get("python", "python3"),
        )
        for h in root.iter("host")
    )
    return Config(
        nodes=nodes,
        concurrency=int(root.findtext("concurrency", "50")),
        known_hosts=str(path.parent / (ssh.attrib["known_hosts"] if ssh is not None else "")),
        database=str(path.with_name(path.stem + "-spec.db")),
        timeout=float(ssh.attrib.get("command_timeout", "30")) if ssh is not None else 30.0,
        alerts=tuple(
            (a.attrib["metric"], a.attrib["op"], float(a.attrib["limit"]), a.attrib["email"])
            for a in root.iter("alert")
        ),
        smtp=(smtp.attrib.get("host", "localhost"), int(smtp.attrib.get("port", "25")))
        if (smtp := root.find("smtp")) is not None
        else ("localhost", 25),
    )


# ---------------------------------------------------------------- database.py

OPERATORS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
SCHEMA = "CREATE TABLE IF NOT EXISTS metrics (host TEXT, metric TEXT, value REAL, ts REAL)"


def create_database(path: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(SCHEMA)


def save_metrics(path: str, host: str, metrics: dict[str, float]) -> None:
    """A new connection per host, as the spec says."""
    db = sqlite3.connect(path, timeout=60)
    try:
        with db:
            now = time.time()
            db.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?, ?)",
                [(host, name, value, now) for name, value in metrics.items()],
            )
    finally:
        db.close()


# ---------------------------------------------------------------- node.py


def decrypt(line: str) -> dict[str, float]:
    """Open the client's message with the hard-coded key."""
    raw = base64.b64decode(line.strip())
    metrics: dict[str, float] = json.loads(AESGCM(KEY).decrypt(raw[:12], raw[12:], None))
    return metrics


class Node:
    def __init__(self, node: NodeConfig, config: Config) -> None:
        self.node = node
        self.config = config
        self.remote = f"{node.directory.rstrip('/')}/{SCRIPT}"

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.load_host_keys(self.config.known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            self.node.address,
            port=self.node.port,
            username=self.node.user,
            key_filename=self.node.key,
            timeout=self.config.timeout,
            allow_agent=False,
            look_for_keys=False,
        )
        return client

    def upload(self) -> None:
        client = self._connect()
        try:
            sftp = client.open_sftp()
            with contextlib.suppress(OSError):  # already there
                sftp.mkdir(self.node.directory)
            sftp.put(str(HERE / SCRIPT), self.remote)
            sftp.chmod(self.remote, 0o700)
            sftp.close()
        finally:
            client.close()
        log.info("[%s] SUCCESS! Script `%s` uploaded", self.node.name, self.remote)

    def execute(self) -> dict[str, float]:
        client = self._connect()
        try:
            _, stdout, stderr = client.exec_command(
                f"{self.node.python} {self.remote}", timeout=self.config.timeout
            )
            out = stdout.read().decode()
            status = stdout.channel.recv_exit_status()
            if status != 0:
                raise RuntimeError(f"exit status {status}: {stderr.read().decode()[-200:]}")
        finally:
            client.close()
        log.info("[%s] SUCCESS! Script `%s` executed", self.node.name, self.remote)
        metrics = decrypt(out.splitlines()[-1])
        save_metrics(self.config.database, self.node.name, metrics)
        for name, value in metrics.items():
            log.debug("[%s] Metric `%s`->`%s` saved", self.node.name, name, value)
        self.alert(metrics)
        return metrics

    def alert(self, metrics: dict[str, float]) -> None:
        """Mail whoever a rule names when a metric is past its limit (the spec's step 6)."""
        for metric, op, limit, email in self.config.alerts:
            value = metrics.get(metric)
            if value is not None and OPERATORS[op](value, limit):
                subject = f"ALERT [{self.node.name}] {metric} is {value}{op}{limit:g}"
                message = f"Subject: {subject}\nTo: {email}\n\n{subject}\n"
                with smtplib.SMTP(*self.config.smtp, timeout=self.config.timeout) as smtp:
                    smtp.sendmail("netmetrix@localhost", [email], message)
                log.info("Mail `%s` sent to `%s`", subject, email)


# ---------------------------------------------------------------- server.py

_CONFIG: Config | None = None  # the spec's singleton configuration, inherited by the pool


def _work(args: tuple[str, int]) -> tuple[str, str | None]:
    verb, index = args
    assert _CONFIG is not None
    node = _CONFIG.nodes[index]
    try:
        getattr(Node(node, _CONFIG), verb)()
    except Exception as exc:  # one host failing must not stop the others
        log.error("[%s] FAILED: %s: %s", node.name, type(exc).__name__, exc)
        return node.name, f"{type(exc).__name__}: {exc}"
    return node.name, None


def _run(config_path: Path, verb: str) -> None:
    global _CONFIG
    _CONFIG = load_config(config_path)
    create_database(_CONFIG.database)
    started = time.monotonic()
    with multiprocessing.Pool(_CONFIG.concurrency) as pool:
        results = pool.map(_work, [(verb, i) for i in range(len(_CONFIG.nodes))], chunksize=1)
    failed = [name for name, error in results if error]
    ok = len(results) - len(failed)
    click.echo(
        f"{verb}: {ok} ok, {len(failed)} failed in {time.monotonic() - started:.2f}s", err=True
    )
    sys.exit(1 if failed else 0)


@click.group()
@click.option("--config", "config_path", type=click.Path(path_type=Path), default="config.xml")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def cli(ctx: click.Context, config_path: Path, verbose: bool) -> None:
    """The spec's server.py."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    ctx.obj = config_path


@cli.command()
@click.pass_obj
def upload(config_path: Path) -> None:
    """Put the script on every host over SFTP."""
    _run(config_path, "upload")


@cli.command()
@click.pass_obj
def execute(config_path: Path) -> None:
    """Run the script on every host, decrypt, store."""
    _run(config_path, "execute")


if __name__ == "__main__":
    cli()
