"""The POSIX-sh probe (``probe.sh``) for hosts without python: ``<host probe="sh"/>`` (#18).

It speaks probe.py's protocol 1, always HS256 (no encryption), so
``envelope.open_envelope`` opens its messages unchanged.  This module is the
collector's side of what differs: the file it ships as, the key file it reads
(the MAC subkey and key id, precomputed here, instead of the key itself), and
its one exit status of its own.
"""

from __future__ import annotations

from importlib import resources

from netmetrix import probe

SOURCE = "probe.sh"  # in the package
EXIT_NO_OPENSSL = 6  # probe.sh: no openssl on the host's PATH
NO_OPENSSL = "sh probe: openssl not found: install openssl"
VERSION = probe.PROBE_VERSION + "-sh"  # what its messages say (the `probe` field)


def source() -> bytes:
    """The sh probe exactly as it ships in the package."""
    return resources.files("netmetrix").joinpath(SOURCE).read_bytes()


def script_name(script: str) -> str:
    """The sh probe's file name on the hosts, beside config.xml's ``<script>``:
    ``client.py`` -> ``client.sh``, ``probe`` -> ``probe.sh``."""
    return script.removesuffix(".py") + ".sh"


def key_file_text(host: str, key: bytes) -> str:
    """The sh probe's key file for ``host``: what it needs of ``key``, in lines ``read`` splits.

    The MAC subkey rather than the key: sh cannot derive it without putting the
    key in a command's argv; it is all an HS256 message needs.
    """
    mac = probe.subkey(key, b"mac").hex()
    return f"netmetrix-sh-key 1\nhost {host}\nkid {probe.key_id(key)}\nmac {mac}\n"
