"""The built site in a real headless Chromium: served from 127.0.0.1, a column sorted by a real
mouse click on its header, the order checked, a screenshot saved.

Chromium is driven over the DevTools protocol through a minimal WebSocket client written with
the standard library, so the test needs no Python package beyond the project's own.
Install the browser with `apt-get install -y chromium` (Debian/Ubuntu).
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from urllib.parse import urlparse

import pytest
from test_leaderboard_support import make_claimed, make_submission, write_submission

from cycl_bench.leaderboard.site import build_site
from cycl_bench.leaderboard.validate import submission_files, validate

INSTALL = "install it with `apt-get install -y chromium` (Debian/Ubuntu)"
HOSTILE_NAME = "<script>window.pwned = 1</script> & friends"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1280,1000",
    "--remote-debugging-port=0",
)


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    message = f"Chromium is needed for the browser test: {INSTALL}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class DevTools:
    """Just enough of RFC 6455 (client side) to speak the DevTools protocol to one page."""

    def __init__(self, url: str, timeout: float = 30.0):
        parsed = urlparse(url)
        self.socket = socket.create_connection((parsed.hostname, parsed.port), timeout=timeout)
        self.stream = self.socket.makefile("rb")
        key = base64.b64encode(os.urandom(16)).decode()
        self.socket.sendall(
            (
                f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status = self.stream.readline()
        assert b" 101 " in status, status
        while self.stream.readline() not in (b"\r\n", b""):
            pass
        self.last_id = 0
        self.events: list[dict] = []

    def close(self) -> None:
        self.stream.close()
        self.socket.close()

    def _send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x81, 0x80 | size)
        elif size < 2**16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.socket.sendall(header + mask + masked)

    def _read(self, size: int) -> bytes:
        data = self.stream.read(size)
        if len(data) != size:
            raise ConnectionError("DevTools connection closed")
        return data

    def _receive(self) -> dict:
        message = b""
        while True:
            first, second = self._read(2)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", self._read(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", self._read(8))
            payload = self._read(size)
            opcode = first & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the connection")
            if opcode in (0x0, 0x1):
                message += payload
                if first & 0x80:
                    return json.loads(message)

    def call(self, method: str, **params) -> dict:
        self.last_id += 1
        self._send(json.dumps({"id": self.last_id, "method": method, "params": params}))
        while True:
            message = self._receive()
            if message.get("id") == self.last_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, event: str) -> dict:
        while True:
            for index, message in enumerate(self.events):
                if message.get("method") == event:
                    return self.events.pop(index)
            self.events.append(self._receive())

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the centre of the element."""
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )


@pytest.fixture
def site(tmp_path):
    submissions = tmp_path / "submissions"
    write_submission(submissions, make_submission("Middle", level=0.85, train_bitops=5e13))
    write_submission(submissions, make_submission("Best", level=0.95, train_bitops=2e13))
    write_submission(submissions, make_submission(HOSTILE_NAME, level=0.6, train_bitops=1e14))
    write_submission(submissions, make_claimed())
    checked = validate(submission_files([submissions]))
    assert all(item.ok for item in checked), [item.problems for item in checked]
    out = tmp_path / "site"
    build_site([(item.path, item.submission) for item in checked], out)
    return out


@pytest.fixture
def server(site):
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def browser(tmp_path):
    profile = tmp_path / "profile"
    process = subprocess.Popen(
        [chromium_path(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert process.poll() is None, "Chromium exited during start-up"
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as response:
            targets = json.load(response)
        page = next(t for t in targets if t["type"] == "page")
        devtools = DevTools(page["webSocketDebuggerUrl"])
        yield devtools
        devtools.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def column_values(devtools: DevTools, column: int) -> list[float]:
    return devtools.evaluate(
        "Array.from(document.querySelectorAll('#reproduced tbody tr'))"
        f".map(row => parseFloat(row.cells[{column}].dataset.value))"
    )


def test_sorting_by_a_header_click_in_chromium(browser, server, tmp_path):
    browser.call("Page.enable")
    browser.call("Page.navigate", url=f"{server}/core50_nc.html")
    browser.wait_for("Page.loadEventFired")
    names = (
        "Array.from(document.querySelectorAll('#reproduced tbody tr'))"
        ".map(row => row.cells[0].textContent)"
    )
    assert browser.evaluate(names) == ["Best", "Middle", HOSTILE_NAME]

    accuracy_header = "#reproduced thead th:nth-child(5) button"
    browser.click(accuracy_header)
    ascending = column_values(browser, 4)
    assert ascending == sorted(ascending) and len(ascending) == 3
    assert browser.evaluate(names) == [HOSTILE_NAME, "Middle", "Best"]
    assert (
        browser.evaluate(
            "document.querySelector('#reproduced thead th:nth-child(5)').getAttribute('aria-sort')"
        )
        == "ascending"
    )

    browser.click(accuracy_header)
    assert column_values(browser, 4) == sorted(ascending, reverse=True)

    browser.click("#reproduced thead th:nth-child(6) button")  # forgetting
    forgetting = column_values(browser, 5)
    assert forgetting == sorted(forgetting) and len(set(forgetting)) == 3

    # the hostile name is text on the page, its script never ran
    assert browser.evaluate("typeof window.pwned") == "undefined"
    assert browser.evaluate("document.querySelectorAll('main script').length") == 0

    shot = browser.call("Page.captureScreenshot", format="png")
    image = base64.b64decode(shot["data"])
    assert image.startswith(b"\x89PNG\r\n\x1a\n") and len(image) > 10_000
    (tmp_path / "leaderboard.png").write_bytes(image)


def test_filtering_by_typing_in_chromium(browser, server):
    browser.call("Page.enable")
    browser.call("Page.navigate", url=f"{server}/core50_nc.html")
    browser.wait_for("Page.loadEventFired")
    browser.click("input.table-filter[data-table='reproduced']")
    browser.call("Input.insertText", text="midd")
    visible = browser.evaluate(
        "Array.from(document.querySelectorAll('#reproduced tbody tr'))"
        ".filter(r => !r.hidden).map(r => r.cells[0].textContent)"
    )
    assert visible == ["Middle"]
    counter = ".row-count[data-table='reproduced']"
    assert browser.evaluate(f"document.querySelector({json.dumps(counter)}).textContent") == (
        "1 of 3 rows"
    )


def test_the_site_works_from_file_urls(browser, site):
    browser.call("Page.enable")
    browser.call("Page.navigate", url=(site / "core50_nc.html").as_uri())
    browser.wait_for("Page.loadEventFired")
    browser.click("#reproduced thead th:nth-child(5) button")
    values = column_values(browser, 4)
    assert values == sorted(values)
    sheets = browser.evaluate("document.styleSheets.length")
    assert sheets == 1
