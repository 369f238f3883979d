"""report.html in a real browser: headless Chromium driven over the DevTools protocol (its
`--remote-debugging-pipe`: JSON messages on file descriptors 3 and 4, so no websocket library)."""

import base64
import json
import os
import select
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.test_report import make_report, with_flips
from toolkit.reporting import write_reports

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_SECONDS = 60  # a bound on a hang: a loaded machine starts Chromium slowly
# No network of its own: on a machine without outside access, Chromium's background requests
# (component updates, sync, QUIC, DNS lookups of Google's hosts) stall its start under load.
QUIET = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


class Chromium:
    """A headless Chromium with one page, spoken to over the DevTools pipe."""

    def __init__(self, executable: str, profile: Path):
        to_browser, self._writer = os.pipe()
        self._reader, from_browser = os.pipe()

        def use_fds_3_and_4():  # duplicate first: dup2 onto the same number keeps close-on-exec
            read_end, write_end = os.dup(to_browser), os.dup(from_browser)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.log = profile.parent / "chromium.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
                + QUIET
                + ["--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
                preexec_fn=use_fds_3_and_4,
                close_fds=False,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id, self.events = b"", 0, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        attached = self.call("Target.attachToTarget", targetId=target, flatten=True)
        self.session = attached["sessionId"]

    def call(self, method: str, session: str | None = None, **params) -> dict:
        """Sends one command and returns its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._writer, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]
            self.events.append(reply)

    def page(self, method: str, **params) -> dict:
        return self.call(method, self.session, **params)

    def wait_for(self, event: str) -> dict:
        while not any(e.get("method") == event for e in self.events):
            self.events.append(self._receive())
        return next(e for e in self.events if e.get("method") == event)

    def evaluate(self, expression: str):
        result = self.page(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def _receive(self) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._reader], [], [], TIMEOUT_SECONDS)
            chunk = os.read(self._reader, 1 << 20) if ready else b""
            if not chunk:  # what the browser said, so a failure here can be told apart
                why = f"exit {self.process.poll()}" if ready else f"{TIMEOUT_SECONDS} s silent"
                tail = self.log.read_text(errors="replace")[-1500:]
                raise AssertionError(f"Chromium stopped answering ({why}); its stderr:\n{tail}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def close(self) -> None:
        self.process.kill()
        self.process.wait(10)
        os.close(self._writer)
        os.close(self._reader)


def open_page(browser: Chromium, url: str) -> None:
    """Loads `url` with a listener that records every request the page's CSP refused."""
    browser.page("Network.enable")
    browser.page("Page.enable")
    browser.page(
        "Page.addScriptToEvaluateOnNewDocument",
        source="window.refused = []; document.addEventListener('securitypolicyviolation', "
        "(e) => window.refused.push(e.blockedURI));",
    )
    browser.page("Page.navigate", url=url)
    browser.wait_for("Page.loadEventFired")


def screenshot(browser: Chromium, path: Path, width: int = 1280) -> Path:
    """The whole page, not just the first screen."""
    height = browser.evaluate("document.documentElement.scrollHeight")
    browser.page(
        "Emulation.setDeviceMetricsOverride",
        width=width,
        height=height,
        deviceScaleFactor=1,
        mobile=False,
    )
    png = browser.page("Page.captureScreenshot", format="png")["data"]
    path.write_bytes(base64.b64decode(png))
    return path


@pytest.fixture
def browser(tmp_path):
    executable = next(filter(None, map(shutil.which, BROWSERS)), None)
    if executable is None:
        pytest.skip("no Chromium installed: `make setup` installs Debian's chromium")
    chromium = Chromium(executable, tmp_path / "profile")
    yield chromium
    chromium.close()


PAGE_CHECKS = """(async () => {
  const table = document.querySelector("#results");
  const names = () => [...table.tBodies[0].rows].map((row) => row.cells[1].dataset.v);
  const header = (start) => [...table.tHead.rows[0].cells].find(
    (th) => th.textContent.startsWith(start));
  const shown = names();
  header("artifact").click();
  const byName = names();
  header("p50").click();
  header("p50").click();
  const slowestFirst = names();
  await Promise.all([...document.images].map((image) => image.decode()));
  return {
    shown, byName, slowestFirst, refused: window.refused,
    images: [...document.images].map((image) => image.naturalWidth),
    sections: [...document.querySelectorAll("details > summary")].map((s) => s.textContent),
  };
})()"""


def test_report_page_in_headless_chromium(browser, tmp_path):
    report = with_flips(make_report(baseline=True))
    inputs = np.random.default_rng(0).integers(0, 256, (report.test_images, 28, 28), np.uint8)
    folder = tmp_path / "report"
    write_reports(report, folder, inputs)
    open_page(browser, (folder / "report.html").as_uri())

    page = browser.evaluate(PAGE_CHECKS)

    assert page["shown"] == [
        "model_int8.tflite",
        "model_float32.tflite",
        "model.keras",
        "model.onnx",
    ]
    assert page["byName"] == sorted(page["shown"])
    # Descending p50: the failed row has no latency and stays last either way.
    assert page["slowestFirst"] == ["model.keras", *page["shown"][1::-1], "model.onnx"]
    assert len(page["images"]) == 5 and all(width > 0 for width in page["images"])
    assert any("model_int8.tflite" in section for section in page["sections"])
    requests = [
        e["params"]["request"]["url"]
        for e in browser.events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    assert [url for url in requests if not url.startswith(("data:", "file:"))] == []
    assert page["refused"] == []
    shot = screenshot(browser, tmp_path / "report.png")
    assert shot.read_bytes().startswith(b"\x89PNG")
