#!/usr/bin/env python3
"""The web console in a real browser: Debian's chromium, headless, driven
over WebDriver (chromium-driver) from Python's standard library.  Log in,
approve and reject (the next run creates exactly the approved course in
the Moodle double), download the CSV and compare it with the file, search
the history, a hostile feed's names run no script (checked in the browser:
no dialog, the title and DOM unchanged), a cross-site form POST changes
nothing, a wrong password is slowed, log out, a session expires.
Screenshots of every page go to $BUILD/web-screenshots/."""
import http.server
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import BUILD, Env, SLOWDOWN, TOP, WEBCOURSECTL, wait_for  # noqa: E402
from tap import Tap  # noqa: E402
import webdriver  # noqa: E402
from webclient import first_run_ended, free_port  # noqa: E402

why = webdriver.missing()
if why:
    print("1..0 # SKIP %s" % why)
    sys.exit(0)

t = Tap()
PASSWORD = "correct horse battery"
XSS1 = "<script>document.title='pwned';alert(1)</script>"
XSS2 = '"><img src=x onerror="document.title=\'pwned\';alert(2)">'
SHOTS = os.path.join(BUILD, "web-screenshots")
IDLE = 4 * SLOWDOWN  # web.session_idle: a daemon under valgrind is slow


def hostile_feed():
    feed = json.load(open(os.path.join(TOP, "tests", "data", "seed-feed.json")))
    courses = feed["courses"] if isinstance(feed, dict) else feed
    courses.append({"shortname": XSS1, "name": XSS2, "participants": [{"username": "s_xss"}]})
    courses.append({"shortname": "HELD-B", "name": "Held B", "participants": []})
    return {"courses": courses}


def evil_site(target):
    """Another origin (another port) whose page posts a form to the
    console: the attack a CSRF token and the Origin check stop."""
    page = ('<!DOCTYPE html><title>win a prize</title><form method="post" '
            'action="%s/approvals"><input type="hidden" name="action" value="approve">'
            '<input type="hidden" name="all" value="1"><input type="hidden" name="csrf" '
            'value="%s"><button id="go">Claim</button></form>' % (target, "0" * 64)).encode()

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def shows(b, text, timeout=15):
    """Whether the page shows text once the navigation a click started
    has ended (a click may return before the next page is in)."""
    try:
        return wait_for(lambda: text in b.source(), timeout, repr(text))
    except TimeoutError:
        return False


def at(b, url, timeout=15):
    try:
        return wait_for(lambda: b.url() == url, timeout, url)
    except TimeoutError:
        return False


def status(env):
    return json.loads(env.ctl("status", "--json").out)


port = free_port()
base = "http://127.0.0.1:%d" % port
env = Env(feed=hostile_feed(), sync={"new_courses": "approve", "interval": "1h"},
          web={"listen": "127.0.0.1:%d" % port, "session_idle": "%ds" % IDLE})
b = None
evil = None
try:
    env.set("web", "users_file", os.path.join(env.dir, "web-users"))
    p = subprocess.run([WEBCOURSECTL, "-c", env.conf, "web-user", "add", "alice"],
                       input=(PASSWORD + "\n").encode(), capture_output=True)
    t.eq(p.returncode, 0, "web-user add alice", p.stderr)
    env.daemon()
    wait_for(lambda: first_run_ended(env), 60, "the first run")
    b = webdriver.Browser(SHOTS)

    # --- log in, with a wrong password first ---------------------------------
    b.go(base + "/")
    t.ok(at(b, base + "/login"), "not logged in: the browser lands on /login", b.url())
    b.screenshot("login")
    b.type("#username", "alice")
    b.type("#password", "wrong password")
    b.click("button[type=submit]")
    t.ok(shows(b, "Wrong user name or password"), "a wrong password is refused")
    # each failure doubles the address's wait (1 s, 2 s, 4 s...): typing
    # again soon enough meets it, even with the right password
    slowed = False
    for _ in range(5):
        b.type("#username", "alice")
        b.type("#password", "wrong again")
        b.click("button[type=submit]")
        if shows(b, "Too many failed logins", 3):
            slowed = True
            break
    t.ok(slowed, "wrong passwords in a row are slowed: the address must wait")
    b.screenshot("login-slowed")

    def log_in():
        b.go(base + "/login")
        b.type("#username", "alice")
        b.type("#password", PASSWORD)
        b.click("button[type=submit]")
        return at(b, base + "/", 5)
    wait_for(log_in, 60, "the login after the wait")
    t.eq(b.title(), "Overview \u2014 webcoursed", "logged in: the overview")
    b.screenshot("overview")
    cookie = b.cmd("GET", "/cookie")
    t.ok(cookie and cookie[0]["httpOnly"] and cookie[0].get("sameSite") == "Strict",
         "the browser holds an HttpOnly, SameSite=Strict cookie", cookie)

    # --- hostile names: text, no script ----------------------------------------
    b.go(base + "/approvals")
    b.screenshot("approvals")
    t.eq(b.title(), "Approvals \u2014 webcoursed", "the hostile course did not set the title")
    t.ok(not b.alert_open(), "no dialog opened")
    t.eq(b.script("return document.querySelectorAll('img, script').length"), 0,
         "no <img> or <script> element in the DOM")
    labels = [b.text(e) for e in b.find_all("label")]
    t.ok(XSS1 in labels, "the course named <script> shows as its text", labels)
    t.ok(any(XSS2 in b.text(e) for e in b.find_all("td")), "so does its name")

    # --- approve one, reject one ---------------------------------------------
    for e in b.find_all("input[name=shortname]"):
        if b.cmd("GET", "/element/%s/property/value" % e) == "HELD-B":
            b.click_el(e)
    b.click("button[value=approve]")
    t.ok(shows(b, "Approved."), "approve: the notice")
    b.screenshot("approved")
    wait_for(lambda: "HELD-B" in env.courses(), 60, "HELD-B in Moodle")
    t.ok(XSS1 not in env.courses(), "the run that started at once created exactly "
         "the approved course")
    b.go(base + "/approvals")
    for e in b.find_all("input[name=shortname]"):
        if b.cmd("GET", "/element/%s/property/value" % e) == XSS1:
            b.click_el(e)
    b.click("button[value=reject]")
    t.ok(shows(b, "Rejected"), "reject: the notice")
    t.ok(XSS1 not in [c["shortname"] for c in status(env)["awaiting_approval"]],
         "the hostile course is no longer held")

    # --- a cross-site form POST changes nothing -----------------------------------
    env.set_feed(dict(hostile_feed(), courses=hostile_feed()["courses"] +
                      [{"shortname": "HELD-C", "name": "Held C", "participants": []}]))
    b.go(base + "/")
    b.click("form[action='/sync'] button")
    wait_for(lambda: "HELD-C" in [c["shortname"] for c in status(env)["awaiting_approval"]],
             60, "HELD-C held")
    evil = evil_site(base)
    b.go("http://127.0.0.1:%d/" % evil.server_address[1])
    b.click("#go")
    t.ok(shows(b, "forbidden"), "the other site's form is answered 403", b.source()[:500])
    t.ok(not any(c.get("approved") for c in status(env)["awaiting_approval"]),
         "and nothing was approved: HELD-C and the others are still only held")
    b.screenshot("cross-site-refused")

    # --- the CSV, downloaded by the browser ------------------------------------
    b.go(base + "/missing-users")
    b.screenshot("missing-users")
    downloads = os.path.join(env.dir, "downloads")
    os.makedirs(downloads)
    b.downloads_to(downloads)
    b.click("a[href='/missing-users.csv']")
    path = os.path.join(downloads, "missing-users.csv")
    wait_for(lambda: os.path.exists(path) and os.path.getsize(path) ==
             os.path.getsize(env.csv), 30, "the download")
    t.ok(open(path, "rb").read() == open(env.csv, "rb").read(),
         "the CSV the browser downloads is byte for byte the missing_users_csv file")

    # --- history search -----------------------------------------------------
    b.go(base + "/history")
    b.type("#course", "HELD-B")
    b.click("form.filter button")
    # The unfiltered page shows the row too: wait for the search's page.
    try:
        wait_for(lambda: "course=HELD-B" in b.url(), 15, "the search's address")
        searched = True
    except TimeoutError:
        searched = False
    t.ok(searched, "the search is in the address (bookmarkable)", b.url())
    t.ok(shows(b, "approved by alice (web)"), "the history shows who approved it")
    b.screenshot("history")
    for name, path in (("drift", "/drift"), ("errors", "/errors"), ("removals", "/removals")):
        b.go(base + path)
        b.screenshot(name)
        t.ok(b.title().endswith("webcoursed"), "%s renders" % path)

    # --- on a phone -------------------------------------------------------------
    b.cmd("POST", "/window/rect", {"width": 390, "height": 844})
    for name, path in (("overview-phone", "/"), ("history-phone", "/history")):
        b.go(base + path)
        b.screenshot(name)
        t.ok(b.script("return document.documentElement.scrollWidth <= "
                      "document.documentElement.clientWidth"),
             "%s on a 390 px wide phone: no sideways scrolling of the page" % path)
    b.cmd("POST", "/window/rect", {"width": 1280, "height": 900})

    # --- log out; a session expires --------------------------------------------
    b.go(base + "/")
    b.click("form.logout button")
    t.ok(at(b, base + "/login"), "log out: back on /login", b.url())
    b.go(base + "/history")
    t.ok(at(b, base + "/login"), "and the pages want a login again", b.url())
    wait_for(log_in, 60, "log in again")
    used = time.monotonic()
    wait_for(lambda: time.monotonic() - used > IDLE + 0.5, IDLE + 10, "session_idle, idle")
    b.go(base + "/")
    t.ok(at(b, base + "/login"), "idle past web.session_idle: logged out", b.url())
    t.ok(len([f for f in os.listdir(SHOTS) if f.endswith(".png")]) >= 10,
         "screenshots saved in %s" % SHOTS)
finally:
    if b is not None:
        b.close()
    if evil is not None:
        evil.shutdown()
    env.close()
t.done()
