"""Exceptions raised by netmetrix.

Tree::

    NetmetrixError              base; str() is the one-line message for the user
     +-- ConfigError            config.xml is invalid (exit 2); holds every problem
     +-- EnvelopeError          a probe message failed to open (bad MAC, replay, ...)
     +-- UsageError             the command line names something that does not exist
     |    +-- MissingExtra      a command needs an optional package (pip install 'netmetrix[X]')
     +-- HostError              one host failed in one phase (connect, upload, run);
                                ``outcome`` classifies it for the run summary
     +-- StoreError             the database refused a read or write (locked, full,
                                corrupt, unreachable): exit 3, not "a host failed"

Only ``cli.py`` turns these into exit codes (see ``ExitStatus``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence


class ExitStatus(enum.IntEnum):
    """Process exit codes, following click's conventions."""

    OK = 0
    HOST_FAILED = 1  # some host failed, a mail is undelivered, or an unexpected error
    USAGE = 2
    STORE = 3  # the database could not be read or written: nothing of this run may be stored
    INTERRUPTED = 130


class NetmetrixError(Exception):
    """Base class: ``str(err)`` is a complete one-line message."""

    exit_code: ExitStatus = ExitStatus.HOST_FAILED


class ConfigError(NetmetrixError):
    """config.xml has one or more problems; each is a ``file:line: field: what`` line."""

    exit_code = ExitStatus.USAGE

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class UsageError(NetmetrixError):
    """The command line asks for something that cannot be (an unknown host name...)."""

    exit_code = ExitStatus.USAGE


class MissingExtra(UsageError):
    """A command needs a package of one of netmetrix's extras, which is not installed."""

    def __init__(self, feature: str, module: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs the Python package {module}, which is not installed:"
            f" pip install 'netmetrix[{extra}]'"
        )


def require_extra(feature: str, module: str, extra: str) -> None:
    """Raise ``MissingExtra`` unless ``module`` can be imported (without importing it)."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[module] is None
        found = False
    if not found:
        raise MissingExtra(feature, module, extra)


class EnvelopeError(NetmetrixError):
    """A probe message was rejected; ``reason`` is a short phrase for the summary."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Outcome(enum.StrEnum):
    """How one host's job ended; the run summary counts these."""

    OK = "ok"
    TIMEOUT = "timeout"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    THROTTLED = "throttled by sshd"
    RESET = "reset before login"
    AUTH = "auth failed"
    HOST_KEY = "host key"
    NOT_SET_UP = "not set up"  # no key stored for the host yet: upload never ran for it
    PROBE_MISSING = "probe missing"
    BAD_MESSAGE = "bad message"
    ERROR = "error"


class HostError(NetmetrixError):
    """One host failed; ``str()`` is the reason without the host name."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        self.outcome = outcome
        super().__init__(reason)


class StoreError(NetmetrixError):
    """The database could not be read or written."""

    exit_code = ExitStatus.STORE
