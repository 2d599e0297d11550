"""node_exporter textfiles (#17): the probe's Prometheus text parser, its limits, and
textfile metrics arriving from a real sshd host with warnings naming file:line."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Fleet, Run
from hypothesis import given, settings
from hypothesis import strategies as st

from netmetrix import probe
from netmetrix.envelope import _sample  # the collector's own check of one sample
from netmetrix.store import Store

Cli = Callable[..., Run]

GOOD = """\
# HELP backup_age_seconds Seconds since the last backup.
# TYPE backup_age_seconds gauge
backup_age_seconds{job="db",path="C:\\\\dump \\"nightly\\"\\nv2"} 3600 1700000000000
queue_depth 12
# TYPE rpc_seconds histogram
rpc_seconds_bucket{le="0.1"} 5
rpc_seconds_bucket{le="+Inf"} 7
rpc_seconds_sum 1.5
rpc_seconds_count 7
node:custom:ratio{ a = "1" , } 0.5
"""


def test_prometheus_text_with_help_type_escapes_and_timestamps() -> None:
    samples, warnings = probe.parse_prom(GOOD, "good.prom")
    assert warnings == []
    assert samples == [
        ["backup_age_seconds", {"job": "db", "path": 'C:\\dump "nightly"\nv2'}, 3600.0],
        ["queue_depth", {}, 12.0],
        ["rpc_seconds_bucket", {"le": "0.1"}, 5.0],
        ["rpc_seconds_bucket", {"le": "+Inf"}, 7.0],
        ["rpc_seconds_sum", {}, 1.5],
        ["rpc_seconds_count", {}, 7.0],
        ["node:custom:ratio", {"a": "1"}, 0.5],
    ]


@pytest.mark.parametrize(
    ("line", "warning"),
    [
        ("9lives 1", "x.prom:1: not a metric name: '9lives 1'"),
        ("a{b=1} 1", 'x.prom:1: label b: expected ="'),
        ('a{b="1} 1', "x.prom:1: unterminated label value"),
        ('a{b="\\q"} 1', "x.prom:1: bad escape '\\\\q' in a label value"),
        ('a{b="1" c="2"} 1', "x.prom:1: expected , or } after label b"),
        ('a{b="1",b="2"} 1', "x.prom:1: label b twice"),
        ("a", "x.prom:1: a: expected a value (and a timestamp)"),
        ("a one", "x.prom:1: a: bad value 'one'"),
        ("a NaN", "x.prom:1: a: value NaN is not a finite number the collector keeps"),
        ("a 1e300", "x.prom:1: a: value 1e300 is not a finite number the collector keeps"),
        ("a 1 2 3", "x.prom:1: a: expected a value (and a timestamp)"),
    ],
)
def test_a_bad_line_is_a_warning_naming_file_and_line(line: str, warning: str) -> None:
    samples, warnings = probe.parse_prom(line + "\nok 1\n", "x.prom")
    assert warnings == [warning]
    assert samples == [["ok", {}, 1.0]]


def test_duplicates_keep_the_first_across_files() -> None:
    seen: set[object] = set()
    first, _ = probe.parse_prom('a{x="1"} 1\n', "one.prom", seen)
    second, warnings = probe.parse_prom('a{x="1"} 2\na{x="2"} 3\n', "two.prom", seen)
    assert first == [["a", {"x": "1"}, 1.0]]
    assert second == [["a", {"x": "2"}, 3.0]]
    assert warnings == ["two.prom:1: duplicate series a; the first kept"]


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from('ab_:{}="\\, \n#0123456789.eE+-InfNa'), max_size=120))
def test_any_text_gives_samples_the_collector_accepts_never_a_traceback(text: str) -> None:
    samples, warnings = probe.parse_prom(text, "f.prom")
    assert all(isinstance(w, str) and w.startswith("f.prom:") for w in warnings)
    for name, labels, value in samples:
        assert math.isfinite(value)
        _sample([probe.TEXTFILE_PREFIX + name.replace(":", "_"), labels, value])  # no raise


@given(st.text(max_size=80))
def test_any_unicode_never_raises(text: str) -> None:
    probe.parse_prom(text, "f.prom")


def spec(directory: Path, **limits: int) -> dict[str, object]:
    return {"dir": str(directory), "files": 100, "samples": 1000, "bytes": 1 << 20, **limits}


def test_limits_on_files_samples_and_bytes(tmp_path: Path) -> None:
    for index in range(3):
        (tmp_path / f"{index}.prom").write_text(f"m{index} {index}\nn{index} 1\n")
    (tmp_path / "ignored.txt").write_text("not_prom 1\n")
    samples, warnings = probe.read_textfiles(spec(tmp_path, files=2))
    assert [s[0] for s in samples] == ["textfile_m0", "textfile_n0", "textfile_m1", "textfile_n1"]
    assert warnings == [
        f"textfile directory {tmp_path}: 3 files, over the limit of 2; 2.prom and later skipped"
    ]
    samples, warnings = probe.read_textfiles(spec(tmp_path, samples=3))
    assert len(samples) == 3
    assert warnings == [
        f"{tmp_path}/1.prom: over the limit of 3 samples per directory; the rest skipped"
    ]
    samples, warnings = probe.read_textfiles(spec(tmp_path, bytes=15))
    assert [s[0] for s in samples] == ["textfile_m0", "textfile_n0"]  # 10 bytes each file
    assert warnings == [
        f"{tmp_path}/1.prom: over the limit of bytes read per directory; it and later files skipped"
    ]


def test_a_fifo_or_a_missing_directory_is_a_warning(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.prom")
    (tmp_path / "ok.prom").write_text("ok 1\n")
    samples, warnings = probe.read_textfiles(spec(tmp_path))
    assert samples == [["textfile_ok", {}, 1.0]]
    assert warnings == [f"{tmp_path}/fifo.prom: not a regular file; skipped"]
    assert probe.read_textfiles(spec(tmp_path / "nope")) == (
        [],
        [f"textfile directory {tmp_path}/nope: No such file or directory"],
    )


@pytest.mark.sshd
def test_textfile_metrics_arrive_with_warnings_for_the_rest(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.host("web1", 0)
    textdir = fleet.root / "textfile"
    textdir.mkdir()
    (textdir / "backup.prom").write_text(GOOD)
    (textdir / "broken.prom").write_text("queue_depth 13\ngarbage here\n")
    fleet.write()
    text = fleet.config.read_text().replace(
        "</netmetrix>",
        f'  <checks>\n    <textfile dir="{textdir}" hosts="web*"/>\n  </checks>\n</netmetrix>',
    )
    fleet.config.write_text(text)
    assert netmetrix("--config", fleet.config, "upload").code == 0
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 0, ran.err
    assert (
        f"WARNING [web1] probe could not read {textdir}/broken.prom:1: duplicate series" in ran.err
    )
    assert f"[web1] probe could not read {textdir}/broken.prom:2: garbage: bad value 'here'" in (
        ran.err
    )
    with Store.open(f"sqlite:///{fleet.database}") as store:
        rows = {(r.metric, tuple(sorted(r.labels.items()))): r.value for r in store.latest()}
    assert rows[("textfile_queue_depth", ())] == 12.0
    assert rows[("textfile_rpc_seconds_bucket", (("le", "+Inf"),))] == 7.0
    assert rows[("textfile_node_custom_ratio", (("a", "1"),))] == 0.5
    # the collector stores a control character escaped, as in any label (#10)
    path = 'C:\\dump "nightly"\\x0av2'
    assert rows[("textfile_backup_age_seconds", (("job", "db"), ("path", path)))] == 3600
    assert ("cpu_percent", ()) in rows


def test_textfile_config_and_the_plan_each_host_gets(tmp_path: Path) -> None:
    from netmetrix import checks
    from netmetrix.config import load_config
    from netmetrix.errors import ConfigError

    path = tmp_path / "config.xml"
    path.write_text(
        '<netmetrix>\n  <hosts><host name="web1"/><host name="db1"/></hosts>\n'
        '  <checks><textfile dir="/var/lib/node_exporter/textfile" hosts="web*"'
        ' max_samples="50"/></checks>\n</netmetrix>\n'
    )
    config = load_config(path).checks
    assert checks.plan_for(config, "web1")["textfiles"] == [
        {"dir": "/var/lib/node_exporter/textfile", "files": 100, "samples": 50, "bytes": 1 << 20}
    ]
    assert checks.plan_for(config, "db1")["textfiles"] == []
    path.write_text(
        '<netmetrix>\n  <hosts><host name="web1"/></hosts>\n'
        '  <checks><textfile dir="relative" max_samples="9000"/></checks>\n</netmetrix>\n'
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert list(raised.value.problems) == [
        f'{path}:3: <textfile>: dir must be an absolute directory path on the host, got "relative"',
        f'{path}:3: <textfile>: max_samples must be an integer 1-5000, got "9000"',
    ]
    assert checks.TEXTFILE_PREFIX == probe.TEXTFILE_PREFIX
