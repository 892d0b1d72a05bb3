"""A headless Chromium driven over the DevTools protocol, for the tests of pages minicnn writes.

Debian's chromium package is the browser (``apt-get install chromium``). It is started with
``--remote-debugging-pipe``: the protocol's JSON messages, each ended by a NUL byte, go in
on the browser's file descriptor 3 and come out on its 4, so no websocket library and no
port are needed. One page is attached ("flat" session); every exception the page throws
and every console or log message of level error is kept in ``errors``.

    with Chromium() as browser:
        browser.open(Path("page.html"))
        title = browser.evaluate("document.title")
        browser.click(100, 200)
        png = browser.screenshot()
"""

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

# what Chromium needs to start quietly in a container: no sandbox, no GPU, no network of its own
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe"]


def find_chromium():
    """The Chromium executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    def __init__(self, width=1400, height=900, timeout=60):
        self.width, self.height, self.timeout = width, height, timeout
        self.errors = []          # the page's exceptions and console errors, as text
        self.events = []          # every event seen, (method, params)
        self._next_id = 0
        self._buffer = b""

    # ------------------------------------------------------------ start and stop
    def __enter__(self):
        executable = find_chromium()
        if executable is None:
            raise RuntimeError("no chromium executable found (apt-get install chromium)")
        self._profile = tempfile.mkdtemp(prefix="minicnn-chromium-")
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def wire_pipes():                 # in the child: the protocol's descriptors 3 and 4
            os.dup2(to_browser_read, 3)
            os.dup2(from_browser_write, 4)
        self._process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self._profile}", f"--window-size={self.width},{self.height}",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire_pipes, pass_fds=(3, 4))
        os.close(to_browser_read)
        os.close(from_browser_write)
        try:
            page = next(t for t in self.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
            self._session = self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                self.send(domain + ".enable", session=True)
            self.send("Emulation.setDeviceMetricsOverride", session=True, width=self.width, height=self.height,
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self._process.poll() is None:
                os.write(self._to_browser, json.dumps({"id": -1, "method": "Browser.close"}).encode() + b"\0")
                self._process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)
            shutil.rmtree(self._profile, ignore_errors=True)
        return False

    # ------------------------------------------------------------ the protocol
    def send(self, method, session=False, **params):
        """Send one command and return its result (events that arrive meanwhile are kept)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def _receive(self):
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer within {self.timeout} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed its pipe (did it crash?)")
            self._buffer += chunk
        text, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(text)
        if "method" in message:
            self._event(message["method"], message.get("params", {}))
        return message

    def _event(self, method, params):
        self.events.append((method, params))
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details.get("text"))
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.errors.append("console." + params["type"] + ": " +
                               " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append("log: " + params["entry"]["text"])

    # ------------------------------------------------------------ what tests do
    def open(self, path):
        """Load a file and wait for its load event."""
        seen = len(self.events)
        self.send("Page.navigate", session=True, url=path.resolve().as_uri())
        while not any(method == "Page.loadEventFired" for method, _ in self.events[seen:]):
            self._receive()

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (JSON-able values)."""
        result = self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, x, y):
        """A real left click at (x, y) in the viewport (CSS pixels)."""
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", session=True, type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, full_page=False):
        """The page as PNG bytes: the viewport, or the whole page."""
        return base64.b64decode(self.send("Page.captureScreenshot", session=True, format="png",
                                          captureBeyondViewport=full_page)["data"])
