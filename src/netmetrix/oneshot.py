"""One host's probe run: the command lines, the deadlines the host enforces, how a run ended.

``execute`` runs ``probe_host`` for every host (in its own process, or in
worker processes: ``workers``); ``watch``'s sessions start ``watch_command``.
Nothing here touches the store, so a worker process imports only this, the SSH
edge and the envelope (about half of ``collect``'s start-up cost).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass

from netmetrix import envelope, probe, shprobe, ssh
from netmetrix.config import Config, HostConfig
from netmetrix.errors import HostError, Outcome
from netmetrix.sanitize import clean

NO_KEY = "no key stored for this host"  # the reason a host is not set up


def remote_path(host: HostConfig, script: str) -> str:
    """The probe's path as config.xml spells it (``~/.cache/netmetrix/client.py``), for people.

    An sh host's probe is ``client.sh`` beside it (``shprobe.script_name``).
    """
    return f"{host.directory.rstrip('/')}/{host_script(host, script)}"


def host_script(host: HostConfig, script: str) -> str:
    """The probe's file name on ``host``: ``<script>``, or its sh probe's name (#18)."""
    return shprobe.script_name(script) if host.probe == "sh" else script


def interpreter(host: HostConfig) -> str:
    """What runs the host's probe: its python, or its shell for probe="sh"."""
    return host.shell if host.probe == "sh" else host.python


@dataclass(frozen=True, slots=True, kw_only=True)
class HostDeadlines:
    """When a probe run ends itself on the host, in seconds after it started there."""

    probe: float  # the probe's own watchdog kills the run's process group
    group: float  # the shell around it does, whatever the probe became


def host_deadlines(command_timeout: float) -> HostDeadlines:
    """Deadlines a little shorter than the collector's ``command_timeout``.

    The host ends the run by itself because the collector cannot: OpenSSH
    refuses channel signals for root logins, and closing the channel signals
    nothing.  Ending it first, rather than at the same moment, lets the
    collector hear how it ended (the probe's last stderr line, the KILL) before
    its own deadline, whose KILL and close stay as the backup.  The probe goes
    first so that its watchdog, not the shell, says what happened.  With the
    default 30 s: probe 27 s, shell 28 s, collector 30 s; steps shrink for
    short timeouts (2 s: 1.25 s, 1.5 s, 2 s).  The host's clock starts after
    the login shell's startup files: behind a slow .bashrc the collector may
    give up first, and the host still ends the run at its own deadline.
    """
    step = min(1.0, command_timeout / 8)
    return HostDeadlines(probe=command_timeout - 3 * step, group=command_timeout - 2 * step)


# The run's supervisor, in POSIX sh: `sh -c _SUPERVISOR netmetrix GROUP PROBE PYTHON SCRIPT
# CHALLENGE COLLECTOR`.  sshd starts every exec channel in a session of its own, so process group
# 0 is this run and nothing else.  A background watchdog kills the whole group (this
# shell included) when GROUP seconds pass, whatever runs in it: a hung or replaced probe,
# its children.  The probe runs in the foreground (keeping stdin); when it ends, the shell,
# immune itself, TERMs what is left (the watchdog, a stray child holding stdout, which
# would keep the channel open) and exits with the probe's status.  `&&`: a sleep that
# cannot parse a fraction must not kill the run at once.
_SUPERVISOR = (
    "export NETMETRIX_DEADLINE=$2; (sleep $1 && kill -s KILL 0) </dev/null >/dev/null 2>&1 & "
    'shift 2; "$@"; s=$?; trap "" TERM; kill -s TERM 0; exit $s'
)


def probe_command(
    host: HostConfig, script: str, challenge: str, command_timeout: float, *, collector: str
) -> str:
    """The command line that runs the probe under deadlines enforced on the host itself.

    Any login shell runs it (sh, bash, csh, fish: `exec` and single quotes);
    the supervisor itself is POSIX sh, so nothing but /bin/sh and sleep is needed.
    ``collector`` (the store's collector id) tells the probe whose key and state
    files to use.  It is an argument rather than an environment variable: a
    probe uploaded before collector ids ignores the environment and would read
    the shared ``<script>.key``, perhaps another collector's; given an extra
    argument it stops with a usage line, which ``check_exit`` turns into "run upload".
    """
    deadlines = host_deadlines(command_timeout)
    words = [
        "/bin/sh",
        "-c",
        _SUPERVISOR,
        "netmetrix",
        f"{deadlines.group:g}",
        f"{deadlines.probe:g}",
        interpreter(host),
        # home-relative, not "~/...": a quoted "~" would reach the shell unexpanded
        ssh.home_relative(remote_path(host, script)),
        challenge,
        collector,
    ]
    return "exec " + " ".join(shlex.quote(word) for word in words)


def watch_command(host: HostConfig, script: str, *, collector: str) -> str:
    """The command line of the streaming probe (``watch``): it ends by itself at EOF
    or when the collector falls silent, and each tick has its own watchdog, so no
    supervisor shell is needed around it."""
    path = ssh.home_relative(remote_path(host, script))
    words = [interpreter(host), path, probe.WATCH_FLAG, collector]
    return "exec " + " ".join(shlex.quote(word) for word in words)


@dataclass(frozen=True, slots=True)
class ProbeSession:
    """What every host's probe run of one execute shares."""

    known: ssh.HostKeys
    files: ssh.ClientFiles
    collector: str


async def run_probe(
    host: HostConfig, config: Config, keys: dict[str, bytes], session: ProbeSession
) -> envelope.Message:
    """One host: run the probe with a fresh challenge, check how it ended, open its message."""
    limit = config.ssh.command_timeout
    challenge = envelope.new_challenge()
    async with ssh.connect(host, config.ssh, session.known, session.files) as conn:
        began = time.monotonic()
        command = probe_command(host, config.script, challenge, limit, collector=session.collector)
        done = await ssh.run(conn, command, seconds=limit)
        check_host_deadline(done, time.monotonic() - began, limit)
    check_exit(host, config.script, session.collector, done)
    line = envelope.find_envelope(done.stdout)
    required = config.security.encryption == "required"
    return envelope.open_envelope(
        line, keys=keys, host=host.name, challenge=challenge, require_encryption=required
    )


def check_host_deadline(done: ssh.Completed, seconds: float, command_timeout: float) -> None:
    """A run that the host ended at its own deadline is a timeout, as if we had ended it."""
    killed = done.exit_signal is not None and seconds >= host_deadlines(command_timeout).probe
    if killed or done.exit_status == probe.EXIT_DEADLINE:
        raise HostError(
            Outcome.TIMEOUT, f"timeout after {command_timeout:g}s (run; ended on the host)"
        )


def check_exit(host: HostConfig, script: str, collector: str, done: ssh.Completed) -> None:
    """Raise the HostError that says why the probe ended with ``done``'s status (0: nothing)."""
    if done.exit_status == 0:
        return
    # the host's own words: no NUL, escapes or forged lines in our logs and store (#10)
    tail = clean((done.stderr.strip().splitlines() or [""])[-1], 200)
    path = remote_path(host, script)
    if done.exit_status == probe.EXIT_KEY:
        key = probe.file_names(path, collector)[0]
        raise HostError(
            Outcome.PROBE_MISSING,
            f"probe key {key} missing (collector id {collector}) — run upload",
        )
    if done.exit_status == probe.EXIT_USAGE and "usage:" in done.stderr:
        # only a probe older than collector ids refuses the collector id argument
        raise HostError(
            Outcome.PROBE_MISSING,
            f"probe {path} is from an older netmetrix (it takes no collector id) — run upload",
        )
    if done.exit_status == probe.EXIT_UNSAFE and probe.UNSAFE_PREFIX in done.stderr:
        # "<file>: owned by uid 0, not by uid 1001 that runs the probe", uncut
        refused = (done.stderr.rsplit(probe.UNSAFE_PREFIX, 1)[1].splitlines() or [""])[0][:500]
        raise HostError(
            Outcome.ERROR,
            f"probe refused {refused} — another user could plant or change it; remove it,"
            " keep <host directory> private to the login user (default ~/.cache/netmetrix),"
            " then run upload",
        )
    if host.probe == "sh" and done.exit_status == shprobe.EXIT_NO_OPENSSL:
        raise HostError(Outcome.ERROR, shprobe.NO_OPENSSL)
    if done.exit_status == 127:
        raise HostError(Outcome.ERROR, f"`{interpreter(host)}` not found on the host: {tail}")
    if done.exit_status == 2 and _cannot_open(done.stderr):
        raise HostError(Outcome.PROBE_MISSING, f"probe {path} missing — run upload")
    raise HostError(Outcome.BAD_MESSAGE, f"probe exited with status {done.exit_status}: {tail}")


def _cannot_open(stderr: str) -> bool:
    """What python, dash and BusyBox sh say when the probe file is not there."""
    return any(text in stderr for text in ("can't open file", "cannot open", "can't open '"))


async def probe_host(
    host: HostConfig,
    config: Config,
    stored_keys: dict[str, dict[str, bytes]],
    session: ProbeSession,
) -> envelope.Message:
    """``execute``'s job for one host: its verified message, or a HostError saying why not."""
    keys = stored_keys.get(host.name)
    if not keys:
        raise HostError(Outcome.NOT_SET_UP, f"{NO_KEY} — run netmetrix upload -h {host.name}")
    return await run_probe(host, config, keys, session)
