"""Which hosts collector K of N takes: rendezvous (highest-random-weight) hashing.

Every (host name, shard) pair gets a weight from a stable hash (BLAKE2b of the
name and the shard's number, the same in every process and on every machine,
unlike Python's salted ``hash()``); a host belongs to the shard that gives it
the highest weight.  So N collectors that read the same config.xml agree on
who collects each host without talking to each other, every host is in exactly
one shard, and going from N to N+1 shards moves only the hosts that the new
shard wins (about 1/(N+1) of them): the weights of shards 1..N do not change.

Pure: no I/O.  ``pick`` filters hosts, ``owns`` answers for one name (also a
name no longer in config.xml, whose alerts its owner resolves).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from netmetrix.errors import UsageError

MAX_SHARDS = 1000  # N at most: more collectors than this is a typo
_SHARD_RE = re.compile(r"\s*([0-9]{1,6})\s*/\s*([0-9]{1,6})\s*")
_SHOWN = 5  # hosts named in a message


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (``2/3``): 1 <= index <= count."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, name: str) -> bool:
        """Whether the host called ``name`` belongs to this shard."""
        return self.count == 1 or owner(name, self.count) == self.index


def parse_shard(text: str) -> Shard:
    """``"2/3"`` -> Shard(2, 3); ValueError saying what is wrong otherwise."""
    found = _SHARD_RE.fullmatch(text)
    if found is None:
        raise ValueError(f'"{text}" is not K/N (two whole numbers, e.g. 2/3)')
    index, count = int(found[1]), int(found[2])
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f'"{text}": N must be from 1 to {MAX_SHARDS}, got {count}')
    if not 1 <= index <= count:
        raise ValueError(f'"{text}": K must be from 1 to N ({count}), got {index}')
    return Shard(index, count)


def weight(name: str, index: int) -> int:
    """The weight shard ``index`` gives the host ``name``: 64 bits of BLAKE2b of the
    shard's number (4 bytes, big-endian) followed by the name (UTF-8)."""
    return _weight(index, name.encode("utf-8", "surrogateescape"))


def _weight(index: int, name: bytes) -> int:
    digest = hashlib.blake2b(index.to_bytes(4, "big") + name, digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(name: str, count: int) -> int:
    """The shard (1..``count``) that collects the host ``name``: the highest ``weight``
    wins (a tie, which takes 2^64 bad luck, goes to the higher shard)."""
    data = name.encode("utf-8", "surrogateescape")  # once, not once per shard
    best, top = 1, -1
    for index in range(1, count + 1):
        if (found := _weight(index, data)) >= top:
            best, top = index, found
    return best


class Named(Protocol):
    @property
    def name(self) -> str: ...


H = TypeVar("H", bound=Named)


def pick(hosts: Iterable[H], shard: Shard | None) -> tuple[H, ...]:
    """The ``hosts`` that ``shard`` collects, in their order (all of them for None)."""
    if shard is None:
        return tuple(hosts)
    return tuple(host for host in hosts if shard.owns(host.name))


def take(hosts: Sequence[H], shard: Shard | None, *, where: str, selected: bool) -> tuple[H, ...]:
    """``pick``, or UsageError when the shard leaves no host.

    ``where`` names the shard's source (``--shard 2/3``, ``config.xml: <collector
    shard="2/3">``); ``selected``: ``hosts`` are what ``-h`` chose, not all of
    config.xml's.  The message says where the hosts went instead.
    """
    chosen = pick(hosts, shard)
    if chosen or shard is None or not hosts:
        return chosen
    if selected:
        places = [f"{h.name} is in {owner(h.name, shard.count)}/{shard.count}" for h in hosts]
        more = f", ... ({len(hosts)} in all)" if len(hosts) > _SHOWN else ""
        raise UsageError(
            f"{where}: no host that -h selected is in shard {shard}"
            f" ({', '.join(places[:_SHOWN])}{more})"
        )
    spread = Counter(owner(h.name, shard.count) for h in hosts)
    counts = ", ".join(f"{k}/{shard.count}: {spread[k]}" for k in sorted(spread))
    raise UsageError(
        f"{where}: none of the {len(hosts)} hosts is in shard {shard}"
        f" (hosts per shard: {counts}); run fewer collectors for this few hosts"
    )
