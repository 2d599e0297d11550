"""How netmetrix's series look in Prometheus: names, units, scale and labels.

One mapping, read by both ways samples reach Prometheus: ``/metrics``
(``web.exposition``, scraped) and remote-write (``remote_write``, pushed), so
a series has the same name and labels whichever way it arrives.  Pure data and
functions: importing this loads neither prometheus_client nor protobuf.

- ``EXPOSED`` maps each catalogue metric to its Prometheus name, type, unit and
  scale: base units (``uptime_sec`` -> ``netmetrix_uptime_seconds``), percent
  as a 0-1 ratio, rates ``_per_second``.  A metric not in the table (written by
  a newer netmetrix) is left out rather than sent under a name nobody chose.
- Labels: ``host`` (the name in config.xml), then the metric's own labels
  (``mount``, ``interface``, ``device``); see ``series_labels``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from netmetrix.model import UP

PREFIX = "netmetrix_"
HOST_LABEL = "host"
NAME_LABEL = "__name__"  # Prometheus' label for the metric name (remote-write sends it)


@dataclass(frozen=True, slots=True, kw_only=True)
class Exposed:
    """How one catalogue metric appears in Prometheus."""

    name: str  # without PREFIX; a counter's samples get ``_total`` after it
    type: Literal["gauge", "counter"] = "gauge"
    unit: str = ""  # OpenMetrics' UNIT; the name ends with it
    scale: float = 1.0  # Prometheus value = stored value * scale

    @property
    def full_name(self) -> str:
        return PREFIX + self.name + ("_total" if self.type == "counter" else "")


# The one mapping from catalogue name to what Prometheus sees; docs/metrics.md shows it
# and a test checks that it covers the catalogue and passes `promtool check metrics`.
EXPOSED: dict[str, Exposed] = {
    "uptime_sec": Exposed(name="uptime_seconds", unit="seconds"),
    "cpu_percent": Exposed(name="cpu_busy_ratio", unit="ratio", scale=0.01),
    "mem_percent": Exposed(name="mem_used_ratio", unit="ratio", scale=0.01),
    "load1": Exposed(name="load1"),
    "load5": Exposed(name="load5"),
    "load15": Exposed(name="load15"),
    "cpu_count": Exposed(name="cpus"),  # promtool: `_count` is a histogram's suffix
    "mem_total_bytes": Exposed(name="mem_total_bytes", unit="bytes"),
    "mem_available_bytes": Exposed(name="mem_available_bytes", unit="bytes"),
    "swap_percent": Exposed(name="swap_used_ratio", unit="ratio", scale=0.01),
    "disk_percent": Exposed(name="disk_used_ratio", unit="ratio", scale=0.01),
    "disk_used_bytes": Exposed(name="disk_used_bytes", unit="bytes"),
    "disk_total_bytes": Exposed(name="disk_total_bytes", unit="bytes"),
    "net_rx_bytes_per_sec": Exposed(name="net_rx_bytes_per_second", unit="bytes_per_second"),
    "net_tx_bytes_per_sec": Exposed(name="net_tx_bytes_per_second", unit="bytes_per_second"),
    "disk_read_bytes_per_sec": Exposed(name="disk_read_bytes_per_second", unit="bytes_per_second"),
    "disk_write_bytes_per_sec": Exposed(
        name="disk_write_bytes_per_second", unit="bytes_per_second"
    ),
    "procs_total": Exposed(name="procs"),  # promtool: `_total` is a counter's suffix
    "procs_running": Exposed(name="procs_running"),
    "probe_duration_sec": Exposed(name="probe_duration_seconds", unit="seconds"),
    UP: Exposed(name="up"),
}


def series_labels(
    host: str, labels: Mapping[str, str], target: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The Prometheus labels of one series of ``host`` (its metric name aside): the host's
    labels from config.xml (``target``: Prometheus' target labels, never stored per
    sample), ``host``, then the metric's own labels, which win a clash."""
    return {**(target or {}), HOST_LABEL: host, **labels}


def scaled(value: float, how: Exposed) -> float:
    """A stored value as Prometheus shows it (a percent as a 0-1 ratio)."""
    return value * how.scale if how.scale != 1.0 else value
