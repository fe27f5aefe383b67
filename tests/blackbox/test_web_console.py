#!/usr/bin/env python3
"""The web console, black box: the real daemon serving it on loopback, the
Moodle double, a hostile feed.  Every security item of issue 17 is
checked here, each in a way that fails when the item is missing: the
login and its slow-down, the session cookie and its flags, a new id at
login, logout and the idle timeout, CSRF and Origin on every POST, no GET
that changes anything, the headers of every answer, escaping, the CSV
byte for byte, and what an approval does to Moodle."""
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, SLOWDOWN, WEBCOURSECTL, wait_for  # noqa: E402
from hostile import crash_report  # noqa: E402
from tap import Tap  # noqa: E402
from webclient import Console, first_run_ended, free_port  # noqa: E402

t = Tap()
PASSWORD = "correct horse battery"
IDLE = 3 * SLOWDOWN  # web.session_idle: requests under valgrind take seconds
XSS1 = "<script>document.title='pwned'</script>"
XSS2 = '"><img src=x onerror="document.title=\'pwned\'">'


def hostile_feed():
    feed = json.load(open(os.path.join(os.environ.get("TOP", "."), "tests", "data",
                                       "seed-feed.json")))
    courses = feed["courses"] if isinstance(feed, dict) else feed
    courses.append({"shortname": XSS1, "name": XSS2,
                    "participants": [{"username": "s_xss"}]})
    courses.append({"shortname": "HELD-B", "name": "Held B", "participants": []})
    return {"courses": courses}


def headers_ok(r, behind_login, what):
    csp = r.header("Content-Security-Policy") or ""
    t.ok("unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
         and "default-src 'none'" in csp,
         "%s: CSP without unsafe-inline, frame-ancestors 'none'" % what, r)
    t.eq(r.header("X-Content-Type-Options"), "nosniff", "%s: nosniff" % what)
    t.eq(r.header("Referrer-Policy"), "same-origin", "%s: Referrer-Policy" % what)
    if behind_login:
        t.eq(r.header("Cache-Control"), "no-store", "%s: Cache-Control no-store" % what)


def ledger_status(env):
    return json.loads(env.ctl("status", "--json").out)


def held(env):
    return {c["shortname"]: c.get("approved") for c in ledger_status(env)["awaiting_approval"]}


def _answers(web):
    try:
        return web.get("/login").status == 200
    except OSError:
        return False


port = free_port()
env = Env(feed=hostile_feed(), sync={"new_courses": "approve", "interval": "1h"},
          web={"listen": "127.0.0.1:%d" % port, "session_idle": "%ds" % IDLE})
try:
    users = os.path.join(env.dir, "web-users")
    env.set("web", "users_file", users)
    p = subprocess.run([WEBCOURSECTL, "-c", env.conf, "web-user", "add", "alice"],
                       input=(PASSWORD + "\n").encode(), capture_output=True)
    t.eq(p.returncode, 0, "web-user add alice", p.stderr)
    d = env.daemon()
    web = Console(port)
    wait_for(lambda: first_run_ended(env), 60, "the first run")
    wait_for(lambda: _answers(web), 20, "the console to answer")
    t.ok({XSS1, "HELD-B"} <= set(held(env)), "the new courses are held", held(env))

    # --- not logged in ---------------------------------------------------
    r = web.get("/")
    t.ok(r.status == 303 and r.header("Location") == "/login",
         "not logged in: / answers 303 to /login", r)
    headers_ok(r, True, "the redirect")
    for path in ("/approvals", "/history", "/missing-users", "/drift", "/errors", "/removals"):
        r = web.get(path)
        t.ok(r.status == 303 and r.header("Location") == "/login",
             "not logged in: %s answers 303 to /login" % path, r)
    r = web.get("/missing-users.csv")
    t.eq(r.status, 401, "not logged in: the CSV answers 401", r)
    runs_before = len(ledger_status(env)["runs"])
    r = web.post("/sync", {"csrf": "0" * 64})
    t.eq(r.status, 403, "not logged in: POST /sync is refused", r)
    r = web.get("/login")
    t.ok(r.status == 200 and 'name="password"' in r.text and 'type="password"' in r.text,
         "GET /login: the form", r)
    headers_ok(r, True, "the login page")
    r = web.get("/static/console.css")
    t.ok(r.status == 200 and r.header("Content-Type").startswith("text/css")
         and "body" in r.text, "the stylesheet", r)
    headers_ok(r, False, "the stylesheet")
    r = web.get("/nonexistent")
    t.eq(r.status, 404, "an unknown path: 404")
    headers_ok(r, False, "a 404")

    # --- hostile HTTP: refused before any handler -------------------------
    for path in ("/../etc/passwd", "/approvals/../approvals", "//approvals",
                 "/%2e%2e/etc/passwd", "/static/../console.c", "/approvals/"):
        r = web.get(path)
        t.ok(r.status in (400, 404), "path trick %s: %d" % (path, r.status), r)
    r = web.request("DELETE", "/approvals")
    t.eq(r.status, 405, "a method no route takes: 405")
    r = web.post("/login", {"username": "alice", "password": "x" * (128 * 1024)})
    t.ok(r.status in (400, 413), "a 128 KiB form: refused (%d)" % r.status, r)

    # --- login and its slow-down ------------------------------------------
    r = web.login("alice", "wrong password")
    t.ok(r.status == 200 and "Wrong user name or password" in r.text and not web.cookie,
         "a wrong password: no session", r)

    def slowed(client):
        """Fail again until the address is told to wait (each failure
        doubles its wait: 1 s, 2 s, 4 s...; a slow machine may outlast the
        first ones), then try the right password while it waits."""
        for _ in range(6):
            r = client.login("alice", "wrong again")
            if r.status == 429:
                return client.login("alice", PASSWORD)
        return r
    r = slowed(web)
    t.ok(r.status == 429 and r.header("Retry-After") and not web.cookie,
         "failures in a row make the same address wait (429, Retry-After), even "
         "with the right password", r)
    other = Console(port, source=("127.0.0.2", 0))
    r = other.login("alice", PASSWORD)
    t.ok(r.status == 303 and other.cookie,
         "another address is not held back by the first one's failures", r)
    other.post("/logout", {"csrf": other.csrf()})
    r = slowed(other)
    t.eq(r.status, 429, "and waits for its own: guessing is slowed per address")
    r = wait_for(lambda: (lambda x: x if x.status != 429 else None)(web.login("alice", PASSWORD)),
                 70, "the wait to end")
    t.ok(r.status == 303 and r.header("Location") == "/" and web.cookie,
         "after the wait the right password logs in: 303 to / with a cookie", r)
    cookie = [c for c in r.headers["set-cookie"]][0]
    t.ok(re.match(r"webcoursed=[0-9a-f]{64}; HttpOnly; SameSite=Strict; Path=/$", cookie),
         "the cookie: 256-bit id, HttpOnly, SameSite=Strict, Path=/, no Secure over "
         "plain HTTP", cookie)
    first = web.cookie
    web2 = Console(port)
    web2.cookie = first  # the browser came with a session already
    wait_for(lambda: (lambda x: x if x.status != 429 else None)(web2.login("alice", PASSWORD)),
             70, "a second login")
    t.ok(web2.cookie and web2.cookie != first, "a login always gets a new id (no fixation)")
    t.eq(web.get("/").status, 303, "the id the browser came with is logged out by that login")
    web.cookie = web2.cookie

    # --- pages behind the login ------------------------------------------
    for path in ("/", "/approvals", "/history", "/missing-users", "/drift", "/errors",
                 "/removals", "/history?user=s_xss&page=1"):
        r = web.get(path)
        t.eq(r.status, 200, "logged in: %s answers 200" % path, r)
        headers_ok(r, True, path)
        t.ok("<script" not in r.text and "<img" not in r.text,
             "%s: no markup from the feed" % path)
    r = web.get("/approvals")
    t.ok("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in r.text,
         "a course named <script> shows as text", r.text[-3000:])
    t.ok("&quot;&gt;&lt;img src=x onerror=&quot;document.title=&#39;pwned&#39;&quot;&gt;"
         in r.text, "a name with an attribute breakout shows as text")
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', r.text)
    t.ok(csrf, "the page's forms carry the session's CSRF token")
    csrf = csrf.group(1) if csrf else ""

    # --- CSRF and Origin: nothing changes ---------------------------------
    form = {"csrf": csrf, "action": "approve", "shortname": "HELD-B"}
    for desc, kw in [
            ("without the CSRF token", dict(form={"action": "approve", "shortname": "HELD-B"})),
            ("with another session's token", dict(form=dict(form, csrf="ab" * 32))),
            ("from another site (Origin)", dict(form=form, origin="http://evil.example")),
            ("from another port (Origin)", dict(form=form, origin="http://127.0.0.1:%d" % (port + 1))),
            ("with the opaque Origin null", dict(form=form, origin="null")),
            ("without Origin or Referer", dict(form=form, origin=False)),
            ("with another site's Referer", dict(form=form, origin=False,
                                                 headers={"Referer": "http://evil.example/x"}))]:
        r = web.request("POST", "/approvals", **kw)
        t.eq(r.status, 403, "POST /approvals %s: 403" % desc, r)
        t.eq(held(env).get("HELD-B"), False, "%s: the course is still only held" % desc)
    r = web.get("/approvals?action=approve&shortname=HELD-B&csrf=" + csrf)
    t.eq(held(env).get("HELD-B"), False, "a GET with the form's fields changes nothing")
    r = web.get("/sync")
    t.eq(r.status, 405, "GET /sync: 405, a state change is a POST only")
    t.eq(len(ledger_status(env)["runs"]), runs_before, "no sync started by any of these")

    # --- approve: the next run starts at once and creates it ---------------
    r = web.request("POST", "/approvals", form=form, origin=False,
                    headers={"Referer": web.origin + "/approvals"})
    t.ok(r.status == 303 and "notice=approved" in r.header("Location"),
         "POST /approvals with token and our Referer: approved", r)
    wait_for(lambda: "HELD-B" in env.courses(), 60, "the approved course in Moodle")
    t.ok(XSS1 not in env.courses(), "the run created exactly the approved course")
    hist = json.loads(env.ctl("history", "--json", "--course", "HELD-B").out)
    t.ok(any(h["action"] == "approve" and "approved by alice (web)" in h["reason"]
             for h in hist), "the history says approved by alice (web)", hist)
    r = web.post("/approvals", {"csrf": csrf, "action": "reject", "shortname": XSS1})
    t.eq(r.status, 303, "reject the hostile course")
    t.ok(XSS1 not in held(env), "it is no longer held")
    hist = json.loads(env.ctl("history", "--json", "--course", XSS1).out)
    t.ok(any("rejected by alice (web)" in h["reason"] for h in hist),
         "the history says rejected by alice (web)")
    r = web.get("/history?course=HELD-B")
    t.ok("approved by alice (web)" in r.text, "the history page finds it by course")

    # --- sync now; removals need a confirmation ----------------------------
    n = len(ledger_status(env)["runs"])
    r = web.post("/sync", {"csrf": csrf, "allow_removals": "1"})
    t.eq(r.status, 400, "sync with removals without the confirmation: refused", r)
    r = web.post("/sync", {"csrf": csrf})
    t.ok(r.status == 303 and r.header("Location") == "/?notice=sync", "sync now", r)
    wait_for(lambda: len(ledger_status(env)["runs"]) > n, 60, "the run sync now started")
    hist = json.loads(env.ctl("history", "--json").out)
    t.ok(any("sync requested by alice (web)" in h["reason"] for h in hist),
         "sync now is a history row with her name")

    # --- the CSV, byte for byte -------------------------------------------
    r = web.get("/missing-users.csv")
    t.ok(r.status == 200 and r.header("Content-Type").startswith("text/csv"),
         "the CSV: 200 text/csv", r)
    t.ok(r.body == open(env.csv, "rb").read(), "byte for byte the missing_users_csv file")
    headers_ok(r, True, "the CSV")

    # --- a users file broken by hand: the users read before are kept ------
    good = open(users).read()
    with open(users, "w") as f:
        f.write(good + "broken line without a hash\n")
    for _ in range(3):
        r = Console(port, source=("127.0.0.3", 0)).login("alice", PASSWORD)
        t.eq(r.status, 303, "with a broken users file alice still logs in")
    with open(users, "w") as f:
        f.write(good)

    # --- logout, idle timeout ---------------------------------------------
    cookie = web.cookie
    r = web.post("/logout", {"csrf": csrf})
    t.ok(r.status == 303 and r.header("Location") == "/login" and web.cookie is None,
         "logout: 303 to /login, the cookie deleted", r)
    web.cookie = cookie
    t.eq(web.get("/").status, 303, "the old cookie is worthless after logout")
    web.cookie = None
    wait_for(lambda: web.login("alice", PASSWORD).status == 303, 20, "login again")
    t.eq(web.get("/").status, 200, "logged in again")
    # the session's own clock is what is tested, so the wait is on the
    # clock (a request would renew the session)
    used = time.monotonic()
    wait_for(lambda: time.monotonic() - used > IDLE + 0.5, IDLE + 10,
             "session_idle without a request")
    r = web.get("/")
    t.ok(r.status == 303 and r.header("Location") == "/login",
         "idle past web.session_idle: logged out", r)
    d.terminate()
    out = d.communicate(timeout=60)[0].decode("utf-8", "replace")
    t.eq(d.returncode, 0, "the daemon stops cleanly", out[-2000:])
    t.eq(crash_report(out), None, "no crash or sanitizer report in the daemon's log")
    t.ok("alice logged in" in out and "approved 1 course(s)" in out,
         "the log says who logged in and who approved", out[-2000:])
    t.eq(out.count("keeping the users read before"), 1,
         "a broken users file is reported once, not at every login", out[-3000:])
finally:
    env.close()
t.done()
