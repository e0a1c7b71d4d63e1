"""The dashboard in a real browser: Debian's headless Chromium, driven over the DevTools protocol.

Chromium is started with --remote-debugging-pipe (the protocol as NUL-separated JSON on file descriptors
3 and 4, as Puppeteer does), so the test needs no websocket library and no open port. The page comes
from the `dashboard_url` fixture: /dashboard of a running `xccel serve` (the page `xccel report --html`
writes is the same; tests/test_serve.py checks that).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, invoke_xccel
from tests.test_dashboard import CHART_IDS, write_dump
from tests.test_serve import Server

pytestmark = pytest.mark.integration  # real processes: the subject of these tests

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """A headless Chromium and one page in it, spoken to with DevTools protocol commands."""

    def __init__(self, executable: str, timeout: float = 60) -> None:
        self.profile = tempfile.mkdtemp(prefix="xccel-chromium-")
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()

        def on_fds_3_and_4() -> None:  # in the child: the pipe ends where Chromium expects them
            a, b = os.dup(to_browser), os.dup(from_browser)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            preexec_fn=on_fds_3_and_4,
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self.timeout = timeout
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.command("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.command("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def _read_message(self) -> dict[str, Any]:
        import select

        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], self.timeout)
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def command(self, method: str, *, on_page: bool = False, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if on_page:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for_event(self, method: str) -> dict[str, Any]:
        while True:
            for event in self.events:
                if event.get("method") == method:
                    self.events.remove(event)
                    return event
            self.events.append(self._read_message())

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        return self.command(method, on_page=True, **params)

    def evaluate(self, expression: str) -> Any:
        result = self.page("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"]["value"]

    def close(self) -> None:
        try:
            self.command("Browser.close")
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)
            shutil.rmtree(self.profile, ignore_errors=True)


def load_page(browser: Browser, url: str, width: int = 1200, height: int = 900, mobile: bool = False) -> list[str]:
    """Open url at a viewport size (mobile: as a phone would, honouring the viewport meta tag) and wait for the
    load event; returns every URL the page requested."""
    browser.page("Page.enable")
    browser.page("Network.enable")
    browser.page("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)
    browser.page("Page.navigate", url=url)
    browser.wait_for_event("Page.loadEventFired")
    # layout settled, and time for late requests (a browser asks for /favicon.ico after the load event)
    browser.page(
        "Runtime.evaluate",
        awaitPromise=True,
        expression="document.fonts.ready.then(() => new Promise(done => setTimeout(done, 500)))",
    )
    requested = [
        e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"
    ]
    return [url for url in requested if not url.startswith("data:")]  # inline data never leaves the page


def screenshot(browser: Browser, path: Path, width: int = 1200, mobile: bool = False) -> bytes:
    """A PNG of the whole page (not just the first screen)."""
    height = browser.evaluate("Math.ceil(document.documentElement.scrollHeight)")
    browser.page("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)
    data = base64.b64decode(browser.page("Page.captureScreenshot", format="png")["data"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); the browser test needs it")
    started = Browser(executable)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def loaded_database_url(database_url: str, tmp_path: Path) -> str:
    """A database with a small dump published through the real command."""
    dump = write_dump(tmp_path / "events.ndjson")
    loaded = invoke_xccel(["run-all", "--source", str(dump), "--json", "--database-url", database_url])
    assert loaded.exit_code == 0, loaded.stderr
    return database_url


@pytest.fixture
def dashboard_url(loaded_database_url: str) -> Iterator[str]:
    """The page under test: /dashboard of a real `xccel serve` on 127.0.0.1."""
    server = Server(loaded_database_url)
    try:
        yield f"http://127.0.0.1:{server.port}/dashboard"
    finally:
        assert server.stop() == 0
        server.log_path.unlink(missing_ok=True)


BOXES_SCRIPT = """JSON.stringify(Object.fromEntries(
  [...document.querySelectorAll('svg.chart')].filter(svg => svg.getBoundingClientRect().width > 0).map(svg => {
    const box = svg.getBoundingClientRect();
    return [svg.id, {width: box.width, height: box.height, left: box.left, right: box.right,
                     page_width: document.documentElement.clientWidth,
                     marks: svg.querySelectorAll('rect, polyline, circle').length,
                     title: svg.querySelector('title') ? svg.querySelector('title').textContent : ''}];
  })))"""

# Every visible chart text: its rendered height (getBoundingClientRect) and its font size as drawn (the CSS
# font size times the chart's scale: rendered width over viewBox width).
TEXT_SCRIPT = """JSON.stringify([...document.querySelectorAll('svg.chart')]
  .filter(svg => svg.getBoundingClientRect().width > 0)
  .flatMap(svg => {
    const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
    return [...svg.querySelectorAll('text')].map(text => ({
      chart: svg.id, text: text.textContent, height: text.getBoundingClientRect().height,
      font_px: parseFloat(getComputedStyle(text).fontSize) * scale}));
  }))"""

LAYOUT_SCRIPT = """(() => {
  document.querySelectorAll('details').forEach(d => d.open = true);  // opened tables must fit too
  return JSON.stringify({scroll_width: document.documentElement.scrollWidth, inner_width: window.innerWidth,
                         body_scroll_width: document.body.scrollWidth});
})()"""


def base_chart_id(svg_id: str) -> str:
    for chart_id in CHART_IDS:
        if svg_id == chart_id or svg_id.startswith(chart_id + "-") and svg_id[len(chart_id) + 1 :] in LAYOUT_NAMES:
            return chart_id
    raise AssertionError(f"unknown chart {svg_id}")


LAYOUT_NAMES = {"phone", "mid", "wide", "desktop"}


def test_every_chart_renders_with_a_visible_box(browser: Browser, dashboard_url: str) -> None:
    requested = load_page(browser, dashboard_url)
    assert requested == [dashboard_url]  # nothing but the page itself: no font, script, image or style fetched

    boxes = json.loads(browser.evaluate(BOXES_SCRIPT))
    assert sorted(base_chart_id(svg_id) for svg_id in boxes) == sorted(CHART_IDS)  # one drawing of each shown
    for chart_id, box in boxes.items():
        assert box["width"] > 100 and box["height"] > 80, (chart_id, box)
        assert box["right"] <= box["page_width"], (chart_id, box)  # nothing cut off at the side
        # the weekly trend of this one-week dump is a frame with a message, not a chart
        assert box["marks"] > (0 if chart_id.startswith("chart-weekly") else 3), (chart_id, box)
        assert box["title"], chart_id
    headline = browser.evaluate(
        "document.querySelector('#headline-median_visits_before_order .value').getBoundingClientRect().height"
    )
    assert headline > 30  # the headline figures are large

    png = screenshot(browser, ARTIFACTS / "dashboard.png")
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_the_page_satisfies_its_content_security_policy(browser: Browser, dashboard_url: str) -> None:
    """The served CSP is enforced (a fetch is refused) and the page needs nothing it forbids: no violation is
    reported, and its inline stylesheet applies."""
    browser.page("Log.enable")
    load_page(browser, dashboard_url)
    violations = [
        event["params"]["entry"]["text"]
        for event in browser.events
        if event.get("method") == "Log.entryAdded" and "Content Security Policy" in event["params"]["entry"]["text"]
    ]
    assert violations == []
    styled = browser.evaluate("[...document.styleSheets].every(sheet => sheet.cssRules.length > 0)")
    assert styled and browser.evaluate("document.styleSheets.length") >= 1  # the inline stylesheet applies
    fetched = browser.page(
        "Runtime.evaluate",
        awaitPromise=True,
        returnByValue=True,
        expression="fetch('/health').then(() => 'fetched', () => 'refused')",
    )
    assert fetched["result"]["value"] == "refused"  # connect-src falls back to default-src 'none'


@pytest.mark.parametrize(("width", "height", "mobile"), [(390, 844, True), (1400, 900, False)])
def test_the_page_fits_a_phone_and_a_desktop(
    browser: Browser, dashboard_url: str, width: int, height: int, mobile: bool
) -> None:
    load_page(browser, dashboard_url, width=width, height=height, mobile=mobile)
    png = screenshot(browser, ARTIFACTS / f"dashboard-{width}.png", width=width, mobile=mobile)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    browser.page("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)
    layout = json.loads(browser.evaluate(LAYOUT_SCRIPT))
    assert layout["inner_width"] == width
    assert layout["scroll_width"] <= layout["inner_width"], layout  # no horizontal scroll, tables opened
    assert layout["body_scroll_width"] <= layout["inner_width"], layout

    boxes = json.loads(browser.evaluate(BOXES_SCRIPT))
    assert sorted(base_chart_id(svg_id) for svg_id in boxes) == sorted(CHART_IDS)  # each chart once, redrawn
    expected_layout = "phone" if width < 600 else None
    for svg_id, box in boxes.items():
        assert box["left"] >= 0 and box["right"] <= width, (svg_id, box)  # inside the viewport
        assert box["width"] > 0.75 * (width - 60) or width >= 1100, (svg_id, box)  # a phone chart uses the width
        if expected_layout:
            assert svg_id.endswith("-" + expected_layout), svg_id  # drawn for the phone, not a desktop one shrunk

    texts = json.loads(browser.evaluate(TEXT_SCRIPT))
    assert len(texts) > 50
    smallest = min(texts, key=lambda t: t["height"])
    assert smallest["height"] >= 11, smallest
    smallest_font = min(texts, key=lambda t: t["font_px"])
    assert smallest_font["font_px"] >= 11, smallest_font
