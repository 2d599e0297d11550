"""Make the README's dashboard screenshots: docs/img/overview.png and docs/img/host.png.

    .venv/bin/python tests/screenshots.py [--minutes 4]

Runs `netmetrix demo --hosts 6 --serve` (real SSH servers inside the process,
the real upload, execute and watch), lets watch collect for a few minutes so
the charts have lines, then photographs the pages in the same headless
Chromium the browser tests use (test_web_pages.chromium) and stops the demo
with SIGINT.  The browser tests take the same two screenshots of their own
fleet on every run (printed paths; NETMETRIX_SCREENSHOTS=DIR keeps them).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from test_web_pages import chromium

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"
MAX_BYTES = 200_000  # each PNG in the repository


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="of watch before the shots")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="netmetrix-shots-") as tmp:
        demo = subprocess.Popen(
            [Path(sys.executable).with_name("netmetrix"), "demo", "--hosts", "6", "--serve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            url = _dashboard_url(demo)
            print(f"demo serving {url}; collecting for {args.minutes:g} min", flush=True)
            time.sleep(args.minutes * 60)  # watch collects meanwhile: what the charts show
            _shoot(url, Path(tmp))
        finally:
            demo.send_signal(signal.SIGINT)
            try:
                demo.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
    for name in ("overview.png", "host.png"):
        size = (OUT / name).stat().st_size
        print(f"{OUT / name}: {size} bytes")
        if size > MAX_BYTES:
            print(f"  larger than {MAX_BYTES} bytes: make the window smaller", file=sys.stderr)
            return 1
    return 0


def _dashboard_url(demo: subprocess.Popen[str]) -> str:
    assert demo.stdout is not None
    for line in demo.stdout:
        match = re.match(r"Dashboard: (\S+)", line)
        if match:
            return match[1]
    raise SystemExit("the demo ended without serving its dashboard")


def _shoot(url: str, profile: Path) -> None:
    driver = chromium(profile, width=1280, height=820)
    try:
        driver.get(url)
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.host"))
        driver.save_screenshot(str(OUT / "overview.png"))
        driver.get(url + "hosts/demo1?since=" + "5m")
        WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.ID, "charts").get_attribute("aria-busy") == "false"
        )
        driver.save_screenshot(str(OUT / "host.png"))
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
