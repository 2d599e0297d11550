"""``netmetrix trust``: learn the host keys of hosts known_hosts does not list yet (#18).

Each selected host is asked for its key (key exchange only, no login), all at
once under ``<concurrency>``; ``decide`` records the accepted new keys in
config.xml's known_hosts.  A changed or revoked key is reported, never
written: that takes a person who checked the host (``ssh-keygen -R``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from netmetrix.config import Config, HostConfig
from netmetrix.errors import HostError
from netmetrix.ssh import USER_FILES, ClientFiles, HostKeys, ScannedKey, scan_host_key

State = Literal["known", "new", "added", "declined", "changed", "revoked", "error"]
COLUMNS = ("host", "address", "state", "key_type", "fingerprint", "problem")
GOOD: frozenset[State] = frozenset({"known", "added"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    """What ``trust`` found out about one host's key."""

    host: str
    state: State
    scanned: ScannedKey | None = None  # None when the host could not be asked
    problem: str = ""

    def row(self) -> dict[str, Any]:
        key = self.scanned.key if self.scanned else None
        return {
            "host": self.host,
            "address": self.scanned.where if self.scanned else "",
            "state": self.state,
            "key_type": key.get_algorithm() if key else "",
            "fingerprint": key.get_fingerprint("sha256") if key else "",
            "problem": self.problem,
        }


async def scan(
    config: Config, hosts: Sequence[HostConfig], keys: HostKeys, files: ClientFiles = USER_FILES
) -> list[Seen]:
    """Every host's key and its state, in the order of ``hosts``; nothing written."""
    limit = asyncio.Semaphore(config.concurrency)

    async def one(host: HostConfig) -> Seen:
        async with limit:
            try:
                scanned = await scan_host_key(host, config.ssh, keys, files)
            except HostError as err:
                return Seen(host=host.name, state="error", problem=str(err))
        return Seen(host=host.name, state=scanned.state, scanned=scanned, problem=_why(scanned))

    return list(await asyncio.gather(*(one(h) for h in hosts)))


def _why(scanned: ScannedKey) -> str:
    if scanned.state == "changed":
        return (
            f"host key changed: {scanned.where} does not match known_hosts (possible"
            " man-in-the-middle); not recorded"
        )
    if scanned.state == "revoked":
        return f"REVOKED HOST KEY for {scanned.where}: known_hosts marks it @revoked"
    return ""


def decide(keys: HostKeys, seen: Sequence[Seen], accept: Callable[[Seen], bool]) -> list[Seen]:
    """``seen`` with each new key that ``accept`` takes recorded ("added"), or "declined"."""
    done = []
    for one in seen:
        if one.state == "new" and one.scanned is not None:
            if accept(one):
                keys.record(one.scanned.key_host, one.scanned.port, one.scanned.key, say=False)
                one = replace(one, state="added")
            else:
                one = replace(one, state="declined")
        done.append(one)
    return done


def all_good(seen: Sequence[Seen]) -> bool:
    """Whether every host's key is now trusted (exit status 0)."""
    return all(one.state in GOOD for one in seen)
