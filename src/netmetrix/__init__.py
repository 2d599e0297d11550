"""netmetrix: agentless fleet metrics over SSH."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # The version is written once, in probe.py (pyproject reads it from there); it is
    # looked up only when asked for, as importlib.metadata costs CLI start-up time.
    if name == "__version__":
        from importlib.metadata import version

        return version("netmetrix")
    raise AttributeError(f"module 'netmetrix' has no attribute {name!r}")
