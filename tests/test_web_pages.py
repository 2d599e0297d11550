"""The dashboard's pages in a real headless Chromium, over a store filled by a real
``upload`` and ``execute`` against the sshd farm, served by the real server (uvicorn)
on a loopback port; plus plain HTTP checks (404s, escaping, CSP, page weight).

Chromium and its driver are Debian's (``make system-deps``).  Set
``NETMETRIX_SCREENSHOTS=DIR`` to keep the overview and host page screenshots in
DIR as well (the README's come from there).
"""

from __future__ import annotations

import gzip
import hashlib
import html.parser
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ports
import pytest
import sshd
from conftest import Fleet, sample
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from netmetrix import rows
from netmetrix.cli import main
from netmetrix.config import load_config, machine_name
from netmetrix.configxml import SMTP, Alert
from netmetrix.model import HostRun
from netmetrix.silences import NewSilence
from netmetrix.store import Store
from netmetrix.web import views
from netmetrix.web.background import loopback_socket, serving

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "src" / "netmetrix" / "web" / "static" / "vendor"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 90.0  # seconds for anything the browser does, on a loaded 2-core machine
HOSTILE = "<script>alert(1)</script>"
HOSTILE_ERROR = "bad message: <img src=x onerror=alert(2)>"
HOSTS = ("web1", "web2", "db1", "gone1")


# ---------------------------------------------------------------- the site


@dataclass
class Site:
    url: str
    fleet: Fleet
    store: Store
    shots: Path


@pytest.fixture(scope="module")
def site(farm: sshd.Farm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Four hosts (one of them unreachable) after a real upload and two executes, an
    alert firing, a mail stuck in the outbox, and a hostile label and last error
    written through the store API; the real server over that store."""
    root = tmp_path_factory.mktemp("web")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(tmp_path_factory.mktemp("home")))  # no ~/.ssh/config of ours
        fleet = Fleet(root=root, farm=farm, hosts=[], settings={})
        fleet.known_hosts.write_text(farm.known_hosts_text())
        fleet.host("web1", 0)
        fleet.host("web2", 1)
        fleet.host("db1", 2)  # no SFTP: upload pipes the probe over exec
        fleet.host("gone1", 0, port=str(ports.free_port()))  # nobody listens: refused
        fleet.write(
            smtp=SMTP(host="127.0.0.1", port=ports.free_port()),  # down: mail stays queued
            alerts=[Alert(metric="cpu_count", op=">=", limit=1, email="ops@example.com")],
        )
        text = fleet.config.read_text()
        fleet.config.write_text(
            text.replace("</netmetrix>", '  <watch interval="2s"/>\n</netmetrix>')
        )
        cfg = str(fleet.config)
        assert main(["--config", cfg, "upload"]) == 1  # gone1 is refused
        assert main(["--config", cfg, "execute"]) == 1
        assert main(["--config", cfg, "execute"]) == 1
    with Store.open(f"sqlite:///{fleet.database}") as store:
        now = time.time()
        store.record_runs(
            [
                HostRun(
                    host="web1",
                    address="127.0.0.1",
                    ts=now,
                    ok=True,
                    probe_version="0.1.0",
                    samples=(sample("disk_percent", 12.5, mount=HOSTILE),),
                ),
                HostRun(host="gone1", address="127.0.0.1", ts=now, ok=False, error=HOSTILE_ERROR),
            ]
        )
        # a silence in force (#16), on a host that raises no alert here
        quiet = NewSilence(
            starts=now, ends=now + 7200, hosts=("gone*",), comment=HOSTILE, author="ops"
        )
        store.add_silence(quiet, now)
        # the real server (uvicorn, as `serve` runs it) in a thread of its own
        with serving(load_config(fleet.config), store) as url:
            yield Site(url=url.rstrip("/"), fleet=fleet, store=store, shots=root / "screenshots")


def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers.items()), err.read()


# ---------------------------------------------------------------- the browser


def chromium(profile: Path, width: int = 1400, height: int = 1000) -> WebDriver:
    """Debian's headless Chromium through its chromedriver, its console kept
    (goog:loggingPrefs); the caller quits it."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: run make system-deps")
    driver = chromium(tmp_path_factory.mktemp("chromium"))
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, WAIT, poll_frequency=0.2)


def console_errors(driver: WebDriver) -> list[dict[str, Any]]:
    """What the console said at level SEVERE since the last call (CSP violations too)."""
    log: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[attr-defined]
    return [entry for entry in log if entry["level"] == "SEVERE"]


def open_page(driver: WebDriver, url: str) -> None:
    console_errors(driver)  # forget what earlier tests left
    driver.get(url)
    wait(driver).until(lambda d: d.execute_script("return document.readyState") == "complete")


def shown_hosts(driver: WebDriver) -> list[str]:
    found: list[str] = driver.execute_script(
        "return Array.from(document.querySelectorAll('#fleet-table tbody tr.host'))"
        ".filter(r => !r.hidden).map(r => r.dataset.name)"
    )
    return found


def screenshot(driver: WebDriver, site: Site, name: str) -> Path:
    """Save a PNG as a test artifact (its path is printed); also in $NETMETRIX_SCREENSHOTS."""
    site.shots.mkdir(exist_ok=True)
    path = site.shots / f"{name}.png"
    assert driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    keep = os.environ.get("NETMETRIX_SCREENSHOTS")
    if keep:
        shutil.copy(path, Path(keep) / path.name)
    return path


def charts_ready(driver: WebDriver) -> None:
    wait(driver).until(
        lambda d: d.find_element(By.ID, "charts").get_attribute("aria-busy") == "false"
    )


# ---------------------------------------------------------------- the browser tests


def fleet_row(driver: WebDriver, name: str) -> dict[str, Any]:
    """What the overview shows of one host, read in one go: htmx replaces the table
    every refresh, so an element found earlier may be gone by the next call."""
    found: dict[str, Any] = driver.execute_script(
        "const row = document.querySelector(`#fleet-table tr[data-name='${arguments[0]}']`);"
        "const texts = sel => Array.from(row.querySelectorAll(sel)).map(e => e.textContent);"
        "return {state: row.dataset.state, error: texts('.last-error').join(''),"
        "  values: texts('td.metric .value'), alerts: texts('td.alerts').join(''),"
        "  paths: Array.from(row.querySelectorAll('svg.spark path'))"
        "    .map(p => p.getAttribute('d'))};",
        name,
    )
    return found


def click_sort(driver: WebDriver, key: str) -> None:
    """Click a column's header (found and clicked in one step, for the same reason)."""
    driver.execute_script(
        "document.querySelector(`#fleet-table th[data-sort='${arguments[0]}'] button`).click()",
        key,
    )


def test_the_overview_shows_every_host_and_filters_and_sorts(
    browser: WebDriver, site: Site
) -> None:
    open_page(browser, site.url + "/")
    assert shown_hosts(browser) == list(HOSTS)  # config.xml's order
    summary = browser.find_element(By.ID, "summary").text
    assert summary.startswith("4 hosts: 3 up, 1 down")
    assert "3 alerts firing" in summary
    gone = fleet_row(browser, "gone1")
    assert gone["state"] == "down"
    assert gone["error"] == HOSTILE_ERROR
    web1 = fleet_row(browser, "web1")
    assert web1["state"] == "up"
    # cpu, mem, disk and load1 from the real probe, with the last hour's sparklines
    values = web1["values"]
    assert len(values) == 4
    assert all(re.fullmatch(r"\d+\.\d%", v) for v in values[:3]), values
    assert re.fullmatch(r"\d+\.\d\d", values[3]), values
    assert len(web1["paths"]) == 4
    assert all(re.fullmatch(r"M\d+,\d+( \d+,\d+)+", d) for d in web1["paths"]), web1["paths"]
    assert "cpu_count" in web1["alerts"]
    shot = screenshot(browser, site, "overview")

    name = browser.find_element(By.ID, "filter-name")  # outside the table: never replaced
    name.send_keys("WEB")  # case does not matter
    wait(browser).until(lambda d: shown_hosts(d) == ["web1", "web2"])
    wait(browser).until(lambda d: d.find_element(By.ID, "filter-count").text == "2 of 4 shown")
    name.clear()
    name.send_keys("nothing-like-it")
    wait(browser).until(lambda d: shown_hosts(d) == [])
    wait(browser).until(
        lambda d: d.execute_script("return !document.getElementById('no-match').hidden")
    )
    browser.execute_script("arguments[0].value = ''", name)
    name.send_keys(" ")  # an input event; blanks around the text are ignored
    wait(browser).until(lambda d: len(shown_hosts(d)) == 4)
    state = Select(browser.find_element(By.ID, "filter-state"))
    state.select_by_value("down")
    wait(browser).until(lambda d: shown_hosts(d) == ["gone1"])
    state.select_by_value("alerting")
    wait(browser).until(lambda d: shown_hosts(d) == ["web1", "web2", "db1"])
    state.select_by_value("")
    wait(browser).until(lambda d: len(shown_hosts(d)) == 4)

    click_sort(browser, "name")
    wait(browser).until(lambda d: shown_hosts(d) == sorted(HOSTS))
    click_sort(browser, "name")
    wait(browser).until(lambda d: shown_hosts(d) == sorted(HOSTS, reverse=True))
    assert (
        browser.execute_script(
            "return document.querySelector(`#fleet-table th[data-sort='name']`)"
            ".getAttribute('aria-sort')"
        )
        == "descending"
    )
    click_sort(browser, "state")
    wait(browser).until(lambda d: shown_hosts(d)[0] == "gone1")  # "down" sorts before "up"
    assert console_errors(browser) == []
    assert shot.stat().st_size > 10_000


def test_the_overview_refreshes_its_table_without_reloading(browser: WebDriver, site: Site) -> None:
    open_page(browser, site.url + "/")
    browser.execute_script("window.notReloaded = true")
    first = browser.find_element(By.ID, "fleet").get_attribute("data-made")
    browser.find_element(By.ID, "filter-name").send_keys("db")
    wait(browser).until(lambda d: shown_hosts(d) == ["db1"])
    # every <watch interval> (2 s here) htmx swaps in a fresh table from /fleet
    wait(browser).until(
        lambda d: d.find_element(By.ID, "fleet").get_attribute("data-made") != first
    )
    assert browser.execute_script("return window.notReloaded") is True
    assert shown_hosts(browser) == ["db1"]  # the filter applies to the new table too
    assert console_errors(browser) == []


def test_a_host_page_draws_every_series_and_zooms(browser: WebDriver, site: Site) -> None:
    open_page(browser, site.url + "/")
    browser.find_element(By.LINK_TEXT, "web1").click()
    wait(browser).until(lambda d: d.current_url == site.url + "/hosts/web1")
    charts_ready(browser)
    info = browser.find_element(By.CSS_SELECTOR, "dl.host-info").text
    assert "127.0.0.1 port" in info
    assert "0.1.0" in info  # the probe's version
    figures = browser.find_elements(By.CSS_SELECTOR, "figure.chart")
    metrics = [f.get_attribute("data-metric") for f in figures]
    assert metrics[:3] == ["up", "uptime_sec", "cpu_percent"]  # up first, then the catalogue
    assert set(metrics) == {"up", *views.UNITS}
    # uPlot's data: every chart has points; the disk chart a series per mount
    drawn: dict[str, list[Any]] = browser.execute_script(
        "const out = {};"
        "for (const u of window.netmetrixCharts) {"
        "  out[u.root.parentNode.dataset.metric] = u.series.slice(1).map((s, i) =>"
        "    [s.label, u.data[i + 1].filter(v => v !== null).length]);"
        "}"
        "return out;"
    )
    assert all(series and all(n >= 1 for _, n in series) for series in drawn.values()), drawn
    assert [label for label, _ in drawn["cpu_percent"]] == ["cpu_percent"]
    assert f"mount={HOSTILE}" in [label for label, _ in drawn["disk_percent"]]
    assert "mount=/" in [label for label, _ in drawn["disk_percent"]]
    # ... and drawn: the canvas holds pixels of the first series' colour (#1f77b4)
    cpu = browser.find_element(By.CSS_SELECTOR, 'figure[data-metric="cpu_percent"] canvas')
    assert coloured_pixels(browser, cpu, (0x1F, 0x77, 0xB4)) > 0
    shot = screenshot(browser, site, "host")

    # drag across the cpu chart: every chart zooms, the custom range fields say where
    before: list[float] = browser.execute_script(
        "return window.netmetrixCharts.map(u => u.scales.x.max - u.scales.x.min)"
    )
    over = browser.find_element(By.CSS_SELECTOR, 'figure[data-metric="cpu_percent"] .u-over')
    ActionChains(browser).move_to_element_with_offset(
        over, -100, 0
    ).click_and_hold().move_by_offset(150, 0).release().perform()
    wait(browser).until(lambda d: d.find_element(By.ID, "since").get_attribute("value") != "")
    after: list[float] = browser.execute_script(
        "return window.netmetrixCharts.map(u => u.scales.x.max - u.scales.x.min)"
    )
    assert all(a < b / 2 for a, b in zip(after, before, strict=True)), (before, after)
    since = browser.find_element(By.ID, "since").get_attribute("value")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", since or ""), since
    assert console_errors(browser) == []
    # "custom" reloads the zoomed span, in finer steps
    browser.find_element(By.CSS_SELECTOR, "#custom-range button").click()
    wait(browser).until(lambda d: "since=" in d.current_url)
    charts_ready(browser)
    step = float(browser.find_element(By.ID, "charts").get_attribute("data-step") or 0)
    assert 0 < step < views.chart_step(3600.0)
    assert browser.find_element(By.ID, "since").get_attribute("value") == since
    assert console_errors(browser) == []
    assert shot.stat().st_size > 10_000


def coloured_pixels(driver: WebDriver, canvas: WebElement, rgb: tuple[int, int, int]) -> int:
    """How many pixels of ``canvas`` are close to ``rgb`` (antialiasing blurs the edges)."""
    count: int = driver.execute_script(
        "const [c, r, g, b] = arguments;"
        "const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0;"
        "for (let i = 0; i < px.length; i += 4) {"
        "  if (px[i + 3] > 128 && Math.abs(px[i] - r) < 40 && Math.abs(px[i + 1] - g) < 40"
        "      && Math.abs(px[i + 2] - b) < 40) n++;"
        "}"
        "return n;",
        canvas,
        *rgb,
    )
    return count


@pytest.mark.parametrize("range_", ["6h", "24h", "7d"])
def test_each_range_keeps_charts_under_a_thousand_points(
    browser: WebDriver, site: Site, range_: str
) -> None:
    open_page(browser, f"{site.url}/hosts/web1?range={range_}")
    charts_ready(browser)
    step = float(browser.find_element(By.ID, "charts").get_attribute("data-step") or 0)
    assert step == views.chart_step(pages_range(range_))
    assert browser.find_element(By.CSS_SELECTOR, f'a[href="?range={range_}"]').get_attribute(
        "aria-current"
    )
    span: float = browser.execute_script(
        "const u = window.netmetrixCharts[0]; return u.scales.x.max - u.scales.x.min"
    )
    assert span == pytest.approx(pages_range(range_), abs=2 * step)  # the whole range shows
    assert console_errors(browser) == []


def pages_range(name: str) -> float:
    from netmetrix.web.pages import RANGES

    return RANGES[name]


def test_a_hostile_label_and_last_error_are_inert_text(browser: WebDriver, site: Site) -> None:
    open_page(browser, site.url + "/hosts/web1")
    charts_ready(browser)
    legend = browser.find_element(By.CSS_SELECTOR, 'figure[data-metric="disk_percent"] .u-legend')
    assert f"mount={HOSTILE}" in legend.text
    open_page(browser, site.url + "/hosts/gone1")
    assert browser.find_element(By.CSS_SELECTOR, "dd.last-error").text == HOSTILE_ERROR
    open_page(browser, site.url + "/")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.accept()
    scripts: list[str] = browser.execute_script(
        "return Array.from(document.scripts).map(s => s.getAttribute('src'))"
    )
    assert all(src and src.startswith("/static/") for src in scripts), scripts
    assert browser.find_elements(By.CSS_SELECTOR, 'img[src="x"]') == []
    assert console_errors(browser) == []


def test_the_alerts_page_shows_what_the_cli_shows(
    browser: WebDriver, site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    open_page(browser, site.url + "/alerts")
    tables = browser.find_elements(By.CSS_SELECTOR, "table.records")
    assert len(tables) == 4  # firing, history, outbox, silences
    cfg = str(site.fleet.config)
    for table, command, columns in zip(
        tables,
        (["alerts", "active"], ["alerts", "history"], ["alerts", "outbox"], ["alerts", "silences"]),
        (rows.ACTIVE_COLUMNS, rows.HISTORY_COLUMNS, rows.OUTBOX_COLUMNS, rows.SILENCE_COLUMNS),
        strict=True,
    ):
        headers = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
        assert headers == list(columns)
        capsys.readouterr()
        assert main(["--config", cfg, *command, "--format", "json"]) == 0
        expected = json.loads(capsys.readouterr().out)
        assert expected  # three alerts firing, their events, their undelivered mail, a silence
        shown = [
            [td.text for td in tr.find_elements(By.CSS_SELECTOR, "td")]
            for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]
        wanted = [
            [str(item[c]) if item[c] is not None else "" for c in columns] for item in expected
        ]
        skip = {"value", "labels", "status"}  # shown in units / as k=v / as of now
        keep = [i for i, c in enumerate(columns) if c not in skip]
        assert [[row[i] for i in keep] for row in shown] == [
            [row[i] for i in keep] for row in wanted
        ]
    assert console_errors(browser) == []


# ---------------------------------------------------------------- plain HTTP


def test_an_unknown_host_is_a_404_page(site: Site) -> None:
    status, headers, body = get(site.url + "/hosts/web9")
    assert status == 404
    assert headers["content-type"].startswith("text/html")
    assert "unknown host &#34;web9&#34;" in body.decode()
    status, headers, body = get(site.url + "/hosts/web9/series.json")
    assert status == 404
    assert json.loads(body) == {"error": 'unknown host "web9"'}
    status, _, body = get(site.url + "/hosts/%3Cb%3E")
    assert status == 404
    assert "&lt;b&gt;" in body.decode()
    assert "<b>" not in body.decode()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("range=2h", "range=&#39;2h&#39;: choose one of 1h, 6h, 24h, 7d"),
        ("since=yesterday", "since: &#39;yesterday&#39; is neither a duration ago"),
        ("since=1h&until=2h", "must be before until"),
    ],
)
def test_a_bad_range_is_a_400_page(site: Site, query: str, message: str) -> None:
    status, _, body = get(f"{site.url}/hosts/web1?{query}")
    assert status == 400
    assert message in body.decode()


def test_every_page_names_the_collector_of_each_host(site: Site) -> None:
    """Which collector (and shard) ran a host's last run (#15): the overview's column,
    the host page, and the API's host record."""
    import html as html_text

    label = machine_name()  # the site's executes ran here, without a shard
    _, _, body = get(site.url + "/fleet")
    cells = re.findall(r'<td class="collector muted">([^<]*)</td>', body.decode())
    assert cells == [html_text.escape(label)] * len(HOSTS)
    _, _, body = get(site.url + "/hosts/web1")
    assert f"<dt>collected by</dt><dd>{html_text.escape(label)}</dd>" in body.decode()
    _, _, body = get(site.url + "/api/v1/hosts")
    assert {h["host"]: h["collector"] for h in json.loads(body)} == dict.fromkeys(HOSTS, label)


def test_strings_from_hosts_are_escaped_in_the_html(site: Site) -> None:
    for path in ("/", "/fleet", "/hosts/gone1"):
        status, _, body = get(site.url + path)
        assert status == 200
        text = body.decode()
        assert "bad message: &lt;img src=x onerror=alert(2)&gt;" in text
        assert "<img" not in text
    status, _, body = get(site.url + "/hosts/web1/series.json?range=1h")
    assert status == 200
    [disk] = [c for c in json.loads(body)["charts"] if c["metric"] == "disk_percent"]
    assert {s["label"] for s in disk["series"]} >= {"mount=/", f"mount={HOSTILE}"}


def test_every_page_has_the_strict_csp(site: Site) -> None:
    for path in ("/", "/fleet", "/hosts/web1", "/hosts/nope", "/alerts", "/static/app.js"):
        _, headers, _ = get(site.url + path)
        csp = headers["content-security-policy"]
        assert "script-src 'self';" in csp
        assert "style-src 'self';" in csp
        assert "unsafe-inline" not in csp
        assert headers["x-content-type-options"] == "nosniff"


class _Resources(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.inline: list[str] = []
        self._tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self._tag = tag
        if tag == "script" and found.get("src"):
            self.found.append(str(found["src"]))
        if tag == "link" and found.get("rel") in ("stylesheet", "icon"):
            self.found.append(str(found["href"]))
        if "style" in found or any(name.startswith("on") for name in found):
            self.inline.append(tag)

    def handle_data(self, data: str) -> None:
        if self._tag in ("script", "style") and data.strip():
            self.inline.append(self._tag)


@pytest.mark.parametrize("path", ["/", "/hosts/web1", "/alerts"])
def test_page_weight_and_no_inline_script_or_style(site: Site, path: str) -> None:
    """The page and everything it loads, uncompressed; no inline script or style."""
    status, _, body = get(site.url + path)
    assert status == 200
    parser = _Resources()
    parser.feed(body.decode())
    assert parser.inline == []
    total = len(body)
    for resource in parser.found:
        status, _, content = get(site.url + resource)
        assert status == 200, resource
        total += len(content)
    if path == "/":
        assert "/static/vendor/htmx.min.js?v=" in " ".join(parser.found)
        assert total <= 300_000, total
    if path.startswith("/hosts/"):
        assert "/static/vendor/uPlot.iife.min.js?v=" in " ".join(parser.found)
        _, _, data = get(site.url + "/hosts/web1/series.json")
        total += len(data)
    assert total <= 300_000, total


def test_pages_are_compressed_for_browsers_that_accept_it(site: Site) -> None:
    status, headers, body = get(site.url + "/", **{"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    plain = gzip.decompress(body).decode()
    assert '<section id="fleet"' in plain
    _, headers, _ = get(site.url + "/")
    assert "content-encoding" not in headers


def test_the_history_api_averages_with_step(site: Site) -> None:
    since = time.time() - 7200
    url = f"{site.url}/api/v1/history?host=web*&metric=up&step=1h&since={_iso(since)}"
    status, _, body = get(url)
    assert status == 200
    found = json.loads(body)
    buckets = site.store.history_buckets(["web1", "web2"], ["up"], 3600.0, since, time.time())
    assert found == [
        {"host": b.host, "metric": "up", "labels": {}, "ts": iso, "value": value}
        for b in buckets
        for iso, value in ((_iso(ts), value) for ts, value in b.points)
    ]
    assert {r["host"] for r in found} == {"web1", "web2"}
    assert all(r["ts"].endswith(":00:00.000Z") for r in found)  # aligned to the hour
    # without step: every sample, as before
    _, _, body = get(f"{site.url}/api/v1/history?host=web1&metric=up")
    assert len(json.loads(body)) == len(site.store.history("web1", "up"))
    for query, error in (
        ("step=soon&since=1h", "step='soon': invalid duration"),
        ("step=1m", "step needs since: ?since=1h&step=1m"),
        ("step=1s&since=1d", "step='1s': 86400 steps, at most 10000; a longer one"),
    ):
        status, _, body = get(f"{site.url}/api/v1/history?host=web1&metric=up&{query}")
        assert status == 400
        assert json.loads(body)["error"].startswith(error)


def _iso(ts: float) -> str | None:
    from netmetrix.format import iso

    return iso(ts)


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("span", "step"),
    [(3600, 5.0), (6 * 3600, 30.0), (86400, 120.0), (7 * 86400, 900.0), (800 * 86400, 86400.0)],
)
def test_chart_steps_keep_a_chart_under_a_thousand_points(span: float, step: float) -> None:
    assert views.chart_step(span) == step
    assert span / step <= views.MAX_POINTS


def test_a_long_span_steps_by_whole_days() -> None:
    assert views.chart_step(5000 * 86400) == 5 * 86400.0


@pytest.mark.parametrize(
    ("points", "top", "path"),
    [
        ([], 100.0, ""),
        ([(3600.0, 50.0)], 100.0, "M60,10 60,10"),  # a lone point: a dot
        ([(3000.0, 0.0), (3300.0, 100.0), (3600.0, 50.0)], 100.0, "M49,20 55,0 60,10"),
        ([(300.0, 1.0), (1500.0, 2.0), (1800.0, 4.0)], None, "M0,15 0,15M22,10 27,0"),  # gap
        ([(0.0, 250.0)], 100.0, "M0,0 0,0"),  # clipped to the box
    ],
)
def test_spark_paths(points: list[tuple[float, float]], top: float | None, path: str) -> None:
    """Twelve instants five minutes apart ending at 3600: x 0, 5.45, ... 60."""
    assert views.spark_path(points, 3600.0, top) == path


@pytest.mark.parametrize(
    ("ts", "text"),
    [(None, "never"), (1000.0, "just now"), (995.0, "5 s ago"), (700.0, "5m ago")],
)
def test_ago(ts: float | None, text: str) -> None:
    assert views.ago(ts, 1000.0) == text


# ---------------------------------------------------------------- the vendored files


def test_the_vendored_files_are_the_ones_the_readme_lists() -> None:
    readme = (VENDOR / "README.md").read_text()
    listed = dict(
        (name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.M)
    )
    files = {p.name for p in VENDOR.iterdir() if p.name != "README.md"}
    assert set(listed) == files
    for name, digest in listed.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert "uPlot.LICENSE" in files
    assert "htmx.LICENSE" in files


def test_the_wheel_ships_templates_static_files_and_licences(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building writes build/ and egg-info beside it
    source.mkdir()
    for part in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / part).exists():
            shutil.copy(ROOT / part, source / part)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("netmetrix-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = ROOT / "src" / "netmetrix" / "web"
    wanted = {
        "netmetrix/web/" + str(p.relative_to(package))
        for sub in ("templates", "static")
        for p in (package / sub).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert "netmetrix/web/static/vendor/uPlot.iife.min.js" in wanted
    assert "netmetrix/web/static/vendor/htmx.LICENSE" in wanted
    assert "netmetrix/web/templates/overview.html" in wanted
    assert wanted - names == set()


# ---------------------------------------------------------------- the server's socket


def test_the_dashboard_takes_its_port_unless_someone_listens_there() -> None:
    port = ports.free_port()
    first = loopback_socket(port)
    try:
        assert first.getsockname() == ("127.0.0.1", port)
        second = loopback_socket(port)  # taken: the kernel picks another
        with second:
            assert second.getsockname()[1] not in (port, 0)
    finally:
        first.close()


def test_a_closed_connection_in_time_wait_does_not_move_the_dashboard() -> None:
    """The server closed a connection last (it is in TIME_WAIT) and stopped: the next
    run still gets the port (SO_REUSEADDR), as `netmetrix demo` twice in a row should."""
    port = ports.free_port()
    with loopback_socket(port) as listener, socket.create_connection(("127.0.0.1", port)) as c:
        accepted, _ = listener.accept()
        accepted.close()  # the server's side closes first: it goes to TIME_WAIT
        assert c.recv(1) == b""
    with loopback_socket(port) as again:
        assert again.getsockname() == ("127.0.0.1", port)
