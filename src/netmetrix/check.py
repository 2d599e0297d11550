"""``netmetrix check``: is each host ready for ``execute``? Like ``ansible -m ping`` (#18).

Per host, in order, each step only when the one before passed: reachable,
host key trusted, login, the python that runs the probe (its version and the
host's clock, in one command), the probe file (present, and the one this
netmetrix uploads), and the key (a real probe run with a fresh challenge
whose sealed answer must open with the stored key).  Nothing is stored: the
probe's answer is only checked.  ``ready`` when nothing is wrong.
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from netmetrix import oneshot, shprobe, ssh
from netmetrix.config import Config, HostConfig
from netmetrix.errors import EnvelopeError, HostError, Outcome

COLUMNS = (
    *("host", "ready", "reachable", "host_key", "login", "python"),
    *("probe", "key", "clock_offset", "problems"),
)
MIN_PYTHON = (3, 6)
CLOCK_LIMIT = 60.0  # seconds of clock difference reported as a problem
INSTALL_PYTHON = (
    "install python3 there (apt-get install python3-minimal, dnf install python3,"
    ' apk add python3) or point <host python="..."> at one; or set probe="sh"'
    " for the basic metrics without python"
)
NOT_NEEDED = "not needed (probe=sh)"  # the python aspect of an sh host
_MARK = "netmetrix-check"
# probe.sh's hosts: the clock and the probe's digest by the openssl that probe.sh needs too.
_SH_SNIPPET = (  # its clock has whole seconds: enough for CLOCK_LIMIT
    f'command -v openssl >/dev/null 2>&1 || {{ echo "{_MARK} no-openssl"; exit 0; }}; '
    'd=-; if [ -f "$1" ]; then d=$(openssl dgst -sha256 -r <"$1") && d=${d%% *}; fi; '
    f'echo "{_MARK} $(date +%s) ${{d:--}}"'
)
# Python 2.7 and 3.x alike, so that an old interpreter is named, not a syntax error.
_SNIPPET = (
    "import hashlib, os, sys, time\n"
    "try:\n"
    "    digest = hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest()\n"
    "except (IOError, OSError):\n"
    "    digest = '-'\n"
    f"print('{_MARK} %d.%d.%d %.6f %s' % (tuple(sys.version_info[:3]) + (time.time(), digest)))\n"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Checked:
    """One host's readiness; None: not checked (an earlier step failed)."""

    host: str
    reachable: bool | None = None
    host_key: bool | None = None
    login: bool | None = None
    python: str | None = None  # its version, "3.11.4"; "" when there is none
    probe: str | None = None  # "current", "outdated", "missing"
    key: bool | None = None  # the sealed round trip verified
    clock_offset: float | None = None  # seconds the host's clock is ahead of ours
    problems: tuple[str, ...] = field(default=())

    @property
    def ready(self) -> bool:
        return not self.problems

    def row(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in COLUMNS if name != "ready"}
        offset = self.clock_offset
        return {**row, "ready": self.ready, "clock_offset": offset, "problems": list(self.problems)}


async def check_hosts(
    config: Config,
    hosts: Sequence[HostConfig],
    stored_keys: Mapping[str, dict[str, bytes]],
    session: oneshot.ProbeSession,
    probe_source: bytes,
) -> list[Checked]:
    """Every host checked at once under ``<concurrency>``, in the order of ``hosts``."""
    limit = asyncio.Semaphore(config.concurrency)
    digests = {
        "python": hashlib.sha256(probe_source).hexdigest(),
        "sh": hashlib.sha256(shprobe.source()).hexdigest(),  # probe="sh" hosts' (#18)
    }

    async def one(host: HostConfig) -> Checked:
        async with limit:
            digest = digests[host.probe]
            return await check_host(host, config, stored_keys.get(host.name), session, digest)

    return list(await asyncio.gather(*(one(h) for h in hosts)))


async def check_host(
    host: HostConfig,
    config: Config,
    keys: dict[str, bytes] | None,
    session: oneshot.ProbeSession,
    digest: str,
) -> Checked:
    """One host, step by step; every failure a plain-language problem."""
    found = Checked(host=host.name)
    try:
        async with ssh.connect(host, config.ssh, session.known, session.files) as conn:
            found = replace(found, reachable=True, host_key=True, login=True)
            found = await _python_and_probe(conn, host, config, found, digest)
    except HostError as err:
        return _connect_failed(found, err)
    if found.problems:
        return found
    if not keys:
        return _problem(
            found, key=False, why=f"{oneshot.NO_KEY}: run netmetrix upload -h {host.name}"
        )
    try:
        await oneshot.run_probe(host, config, keys, session)
    except (HostError, EnvelopeError) as err:
        return _problem(found, key=False, why=f"key: {err}")
    return replace(found, key=True)


def _connect_failed(found: Checked, err: HostError) -> Checked:
    """What a failed connect or command says of the steps."""
    if found.login:  # the python command itself failed (a timeout)
        return _problem(found, why=str(err))
    if err.outcome is Outcome.HOST_KEY:
        return _problem(found, reachable=True, host_key=False, why=f"{err}; or run netmetrix trust")
    if err.outcome is Outcome.AUTH:
        return _problem(found, reachable=True, host_key=True, login=False, why=str(err))
    return _problem(found, reachable=False, why=str(err))


async def _python_and_probe(
    conn: Any, host: HostConfig, config: Config, found: Checked, digest: str
) -> Checked:
    path = ssh.home_relative(oneshot.remote_path(host, config.script))
    if host.probe == "sh":
        words = (host.shell, "-c", _SH_SNIPPET, "netmetrix-check", path)
        done = await ssh.run(conn, _command(words), seconds=config.ssh.command_timeout)
        return _sh_and_probe(done, host, config, found, digest)
    done = await ssh.run(
        conn, _command((host.python, "-c", _SNIPPET, path)), seconds=config.ssh.command_timeout
    )
    # Compared with when the answer arrived, not with the middle of the run: python's
    # start-up (0.1-0.5 s) comes before its clock reading, the exit and one network
    # hop after it, so the offset is off by that hop only.
    ended = time.time()
    line = next((x for x in done.stdout.splitlines() if x.startswith(_MARK)), "")
    if done.exit_status == 127 or not line:
        tail = (done.stderr.strip().splitlines() or [""])[-1][:200]
        why = f"`{host.python}` not found or not working on the host ({tail}): {INSTALL_PYTHON}"
        return _problem(found, python="", why=why)
    _, version, stamp, remote_digest = line.split()[:4]
    offset = round(float(stamp) - ended, 3)
    found = replace(found, python=version, clock_offset=offset)
    problems = []
    if tuple(int(x) for x in version.split(".")[:2]) < MIN_PYTHON:
        problems.append(
            f"python {version} is too old: the probe needs 3.6 or newer; {INSTALL_PYTHON}"
        )
    return _probe_and_clock(found, problems, host, config, remote_digest, digest)


def _command(words: Sequence[str]) -> str:
    return "exec " + " ".join(shlex.quote(w) for w in words)


def _sh_and_probe(
    done: ssh.Completed, host: HostConfig, config: Config, found: Checked, digest: str
) -> Checked:
    """An sh host: no python needed; its shell, openssl, the sh probe and the clock."""
    ended = time.time()
    found = replace(found, python=NOT_NEEDED)
    words = next((x.split() for x in done.stdout.splitlines() if x.startswith(_MARK)), [])
    if words[1:2] == ["no-openssl"]:
        return _problem(found, why=shprobe.NO_OPENSSL)
    if len(words) < 3:
        tail = (done.stderr.strip().splitlines() or [""])[-1][:200]
        return _problem(found, why=f"`{host.shell}` not found or not working on the host ({tail})")
    _, stamp, remote_digest = words[:3]
    found = replace(found, clock_offset=round(float(stamp) - ended, 3))
    return _probe_and_clock(found, [], host, config, remote_digest, digest)


def _probe_and_clock(
    found: Checked,
    problems: list[str],
    host: HostConfig,
    config: Config,
    remote_digest: str,
    digest: str,
) -> Checked:
    """The probe file's state and the clock offset's problems, after the interpreter's."""
    offset = found.clock_offset or 0.0
    shown = oneshot.remote_path(host, config.script)
    upload = f"run netmetrix upload -h {host.name}"
    state = (
        "missing" if remote_digest == "-" else "current" if remote_digest == digest else "outdated"
    )
    found = replace(found, probe=state)
    if state == "missing":
        problems.append(f"probe {shown} missing: {upload}")
    elif state == "outdated":
        problems.append(f"probe {shown} is not the one this netmetrix uploads: {upload}")
    if abs(offset) > CLOCK_LIMIT:
        way = "ahead of" if offset > 0 else "behind"
        problems.append(f"clock {abs(offset):.1f}s {way} the collector's: run NTP (chrony) there")
    return replace(found, problems=found.problems + tuple(problems))


def _problem(found: Checked, *, why: str, **fields: Any) -> Checked:
    return replace(found, problems=(*found.problems, why), **fields)
