"""WebDriver (W3C) spoken over HTTP from the standard library, to drive
Debian's chromium headless through chromium-driver.  Chosen over
playwright-core from npm: no Node, no downloaded browser, nothing outside
Debian's archive; the protocol is plain JSON over HTTP."""
import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from harness import wait_for

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def missing():
    """Why a browser test cannot run here, or None."""
    if not CHROMIUM or not DRIVER:
        return "chromium and chromium-driver are not installed (make deps)"
    return None


class WebDriverError(Exception):
    def __init__(self, status, value):
        super().__init__("%s: %s" % (value.get("error"), value.get("message", "")[:300]))
        self.error = value.get("error")


class Browser:
    def __init__(self, shots_dir):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.profile = tempfile.mkdtemp(prefix="webcoursed-chromium-")
        self.shots = shots_dir
        os.makedirs(shots_dir, exist_ok=True)
        self.driver = subprocess.Popen([DRIVER, "--port=%d" % self.port],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = "http://127.0.0.1:%d" % self.port
        wait_for(self._ready, 30, "chromedriver")
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900",
                         "--user-data-dir=" + self.profile, "--no-first-run",
                         "--disable-extensions", "--password-store=basic"]}}}}
        self.session = self._call("POST", "/session", caps, timeout=120)["sessionId"]

    def _ready(self):
        try:
            return self._call("GET", "/status", timeout=2)["ready"]
        except (OSError, WebDriverError):
            return False

    def _call(self, method, path, body=None, timeout=60):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())["value"]
        except urllib.error.HTTPError as e:
            raise WebDriverError(e.code, json.loads(e.read()).get("value", {}))

    def cmd(self, method, path, body=None):
        return self._call(method, "/session/%s%s" % (self.session, path), body)

    def go(self, url):
        self.cmd("POST", "/url", {"url": url})

    def url(self):
        return self.cmd("GET", "/url")

    def title(self):
        return self.cmd("GET", "/title")

    def find(self, css):
        return self.cmd("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def find_all(self, css):
        return [e[ELEMENT] for e in self.cmd("POST", "/elements",
                                             {"using": "css selector", "value": css})]

    def text(self, el):
        return self.cmd("GET", "/element/%s/text" % el)

    def type(self, css, text):
        el = self.find(css)
        self.cmd("POST", "/element/%s/clear" % el, {})
        self.cmd("POST", "/element/%s/value" % el, {"text": text})

    def click(self, css):
        self.click_el(self.find(css))

    def click_el(self, el):
        self.cmd("POST", "/element/%s/click" % el, {})

    def source(self):
        return self.cmd("GET", "/source")

    def script(self, js, *args):
        return self.cmd("POST", "/execute/sync", {"script": js, "args": list(args)})

    def script_async(self, js, *args):
        return self.cmd("POST", "/execute/async", {"script": js, "args": list(args)})

    def downloads_to(self, directory):
        """Let downloads land in directory (Chrome DevTools through
        chromedriver's CDP endpoint)."""
        self.cmd("POST", "/goog/cdp/execute", {
            "cmd": "Browser.setDownloadBehavior",
            "params": {"behavior": "allow", "downloadPath": directory}})

    def alert_open(self):
        try:
            self.cmd("GET", "/alert/text")
            return True
        except WebDriverError as e:
            if e.error == "no such alert":
                return False
            raise

    def screenshot(self, name):
        png = base64.b64decode(self.cmd("GET", "/screenshot"))
        path = os.path.join(self.shots, name + ".png")
        with open(path, "wb") as f:
            f.write(png)
        return path

    def close(self):
        try:
            self.cmd("DELETE", "")
        except Exception:
            pass
        self.driver.terminate()
        try:
            self.driver.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.driver.kill()
        shutil.rmtree(self.profile, ignore_errors=True)
