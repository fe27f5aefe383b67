#!/usr/bin/env python3
"""The /metrics endpoint of the live daemon: valid exposition (promtool),
the same numbers as `webcoursectl status --json`, answers while a long sync
runs and while clients misbehave, counters that only go up, 404/405/400,
reload and bind failures, and the docs kept true to what is served."""
import calendar
import copy
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, SLOWDOWN, TOP, SEED_FEED, wait_for  # noqa: E402
from feedserver import FeedServer  # noqa: E402
from hostile import Lines, crash_report  # noqa: E402
from scrape import free_port, parse, request, scrape, value  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PROMTOOL = shutil.which("promtool")
DELAY = 3 * SLOWDOWN  # seconds Moodle takes to answer the slow call


def types(text):
    """{family: type} from the TYPE lines, in order."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def promtool(text, what):
    if PROMTOOL is None:
        t.ok(False, "promtool is installed (make deps installs prometheus)")
        return
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t.eq(p.returncode, 0, "promtool check metrics passes %s" % what, p.stdout.decode())
    t.eq(p.stdout.decode().strip(), "", "and has no lint findings %s" % what)


def epoch(iso):
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def status(env):
    p = env.ctl("status", "--json")
    return json.loads(p.out)


def compare_status(env, port, what):
    """The numbers /metrics and `webcoursectl status --json` share."""
    st = status(env)
    m = parse(scrape(port))
    last = st["runs"][0]
    pairs = [
        ("webcoursed_last_sync_start_timestamp_seconds", {}, epoch(last["started"])),
        ("webcoursed_last_sync_end_timestamp_seconds", {}, epoch(last["ended"])),
        ("webcoursed_last_sync_duration_seconds", {},
         epoch(last["ended"]) - epoch(last["started"])),
        ("webcoursed_last_sync_outcome", {"outcome": last["outcome"]}, 1),
        ("webcoursed_last_sync_success", {}, 1 if last["outcome"] in ("ok", "partial") else 0),
        ("webcoursed_last_sync_item_errors", {}, last["counts"]["errors"]),
        ("webcoursed_courses", {"state": "active"}, st["courses"]["tracked"]),
        ("webcoursed_courses", {"state": "hidden"}, st["courses"]["hidden"]),
        ("webcoursed_courses_awaiting_approval", {}, len(st["awaiting_approval"])),
        ("webcoursed_enrolments", {"state": "active"}, st["enrolments"]["active"]),
        ("webcoursed_enrolments", {"state": "suspended"}, st["enrolments"]["suspended"]),
        ("webcoursed_missing_users", {}, st["missing_users"]),
        ("webcoursed_next_sync_timestamp_seconds", {}, epoch(st["next_run"])),
        ("webcoursed_oldest_drift_check_timestamp_seconds", {},
         epoch(st["drift"]["oldest_check"]) if st["drift"]["oldest_check"] else 0),
    ] + [("webcoursed_drift", {"kind": k}, st["drift"]["kinds"].get(k, 0))
         for k in ("gone", "role_gone", "suspended", "course_gone", "renamed", "visibility")]
    got = {"%s%s" % (n, l or ""): value(m, n, **l) for n, l, _ in pairs}
    want = {"%s%s" % (n, l or ""): float(v) for n, l, v in pairs}
    t.eq(got, want, "%s: /metrics says what status --json says" % what)
    withheld = value(m, "webcoursed_removals_withheld")
    t.eq(withheld > 0, st["removals_withheld"] is not None,
         "%s: removals withheld in both or in neither (%s)" % (what, withheld))
    return st, m


def counters(text):
    """The samples of counters and histograms, which must never go down."""
    kinds = types(text)
    out = {}
    for (name, labels), v in parse(text).items():
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        if kinds.get(name) == "counter" or kinds.get(family) == "histogram":
            out[(name, labels)] = v
    return out


def never_down(before, after, what):
    down = [(k, before[k], after.get(k)) for k in before
            if after.get(k) is None or after[k] < before[k]]
    t.eq(down, [], "%s: no counter went down or vanished" % what)


def raw(port, data, read=True, timeout=5):
    """Send data on a raw connection; the first bytes of the answer (b"" when
    the server closed without one)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOWDOWN)
    try:
        s.sendall(data)
        if not read:
            return s
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and len(out) > 12:
                break
        return out
    finally:
        if read:
            s.close()


def sync_ended(port, n, outcome=None):
    """Wait for the n-th ended sync (of outcome, or any); the samples."""
    def cond():
        text = scrape(port)
        if text is None:
            return None
        m = parse(text)
        total = sum(value(m, "webcoursed_syncs_total", outcome=o) or 0
                    for o in ("ok", "partial", "failed", "cancelled"))
        if total >= n and value(m, "webcoursed_sync_running") == 0:
            return m
        return None
    m = wait_for(cond, 60, "sync %d to end" % n)
    if outcome is not None:
        t.ok(value(m, "webcoursed_syncs_total", outcome=outcome) >= 1,
             "sync %d ended %s" % (n, outcome))
    return m


# --- a long sync, scraped during it and after ------------------------------
port = free_port()
env = Env(metrics={"listen": "127.0.0.1:%d" % port},
          moodle={"timeout": "120s"},  # longer than DELAY, even under valgrind
          sync={"removals_allowance": "0", "max_removals": "10%"})
try:
    # The one enrol call of the first sync takes DELAY seconds.
    env.double.set_fault("delay", seconds=DELAY, function="enrol_manual_enrol_users")
    d = env.daemon()
    out = Lines(d.stdout)
    wait_for(lambda: scrape(port), 20, "/metrics to answer")
    t.ok(True, "/metrics answers once the daemon is up")

    # The sync is in its slow enrol call once the users are looked up.
    def in_enrol():
        m = parse(scrape(port) or "")
        return (value(m, "webcoursed_sync_running") == 1 and
                value(m, "webcoursed_moodle_requests_total",
                      function="core_user_get_users_by_field", outcome="ok"))
    wait_for(in_enrol, 30, "the sync to reach its enrol call")
    t.ok(True, "the Moodle requests of a running sync show while it runs")

    latencies, running = [], []
    for _ in range(20):
        st, headers, body, secs = request(port)
        latencies.append(secs)
        running.append(value(parse(body), "webcoursed_sync_running"))
    t.eq(running, [1.0] * 20, "20 scrapes answered while the sync ran")
    print("# scrape latency during a sync: median %.1f ms, max %.1f ms "
          "(Moodle holds the sync for %d s)" %
          (statistics.median(latencies) * 1000, max(latencies) * 1000, DELAY))
    t.ok(max(latencies) < DELAY / 3,
         "every scrape took well under the sync's remaining time (max %.1f ms)" %
         (max(latencies) * 1000))

    # Clients that misbehave hold only their own connections.
    half = raw(port, b"GET /metr", read=False)
    idle = socket.create_connection(("127.0.0.1", port))
    deaf = socket.socket()
    deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    deaf.connect(("127.0.0.1", port))
    deaf.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 64)
    r = request(port)
    t.ok(r is not None and r[0] == 200 and value(parse(r[2]), "webcoursed_sync_running") == 1,
         "with a half-sent request, an idle and a deaf client, a scrape still "
         "answers during the sync (%.1f ms)" % (r[3] * 1000 if r else -1))
    t.ok(r is not None and r[3] < DELAY / 3, "and promptly")

    m = sync_ended(port, 1, "ok")
    text = scrape(port)
    promtool(text, "after a sync")
    st, headers, _, _ = request(port)
    t.eq(headers.get("Content-Type"), CONTENT_TYPE, "Content-Type of the 0.0.4 text format")
    names = list(types(text))
    t.eq(names, sorted(names), "families come sorted by name")
    t.eq(scrape(port), text, "two scrapes with nothing in between are identical")
    t.eq(value(m, "webcoursed_build_info", version=re.search(
        r'version="([^"]+)"', text).group(1)), 1.0, "webcoursed_build_info is 1")
    t.ok(abs(value(m, "process_start_time_seconds") - time.time()) < 600,
         "process_start_time_seconds is about now")
    t.eq(value(m, "webcoursed_syncs_total", outcome="ok"), 1.0, "one ok sync counted")
    t.eq(value(m, "webcoursed_sync_duration_seconds_count"), 1.0, "one sync duration observed")
    t.ok(value(m, "webcoursed_sync_duration_seconds_sum") >= DELAY,
         "it lasted at least the slow call (%.2f s)" % value(m, "webcoursed_sync_duration_seconds_sum"))
    enrols = value(m, "webcoursed_moodle_requests_total",
                   function="enrol_manual_enrol_users", outcome="ok")
    t.eq(enrols, 1.0, "the enrol request is counted by function and outcome")
    t.ok(value(m, "webcoursed_moodle_request_duration_seconds_sum",
               function="enrol_manual_enrol_users", outcome="ok") >= DELAY,
         "and its duration is Moodle's delay")
    log = env.double.log()
    for fn in sorted({r["function"] for r in log}):
        t.eq(value(m, "webcoursed_moodle_requests_total", function=fn, outcome="ok"),
             float(sum(1 for r in log if r["function"] == fn)),
             "requests to %s: as many as the double saw" % fn)
    size = os.path.getsize(env.feed_file)
    t.eq((value(m, "webcoursed_feed_fetches_total", result="new"),
          value(m, "webcoursed_feed_fetch_bytes_total"),
          value(m, "webcoursed_feed_size_bytes"),
          value(m, "webcoursed_feed_fetch_duration_seconds_count")),
         (1.0, float(size), float(size), 1.0), "the feed fetch: new, its bytes, timed")
    compare_status(env, port, "after the first sync")
    page = open(os.path.join(TOP, "man", "webcoursed.8")).read()
    t.eq([n for n in names if n not in page], [], "webcoursed(8) lists every family served")

    # A second sync of the same feed: unchanged; counters only go up.
    before = counters(text)
    d.send_signal(signal.SIGUSR1)
    m = sync_ended(port, 2, "ok")
    t.eq(value(m, "webcoursed_feed_fetches_total", result="unchanged"), 1.0,
         "the same feed again: unchanged")
    text = scrape(port)
    never_down(before, counters(text), "after a second sync")
    compare_status(env, port, "after an unchanged feed")

    # The endpoint refuses what it does not serve, and stays up.
    for path in ("/", "/metricsx", "/metrics/", "/index.html"):
        r = request(port, path)
        t.eq(r[0], 404, "GET %s is 404" % path)
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
        r = request(port, method=method, body="x" if method in ("POST", "PUT") else None)
        t.ok(r[0] == 405 and r[1].get("Allow") == "GET, HEAD",
             "%s /metrics is 405 with Allow: GET, HEAD" % method, r[:2])
    r = request(port, method="HEAD")
    t.ok(r[0] == 200 and r[2] == "" and r[1].get("Content-Type") == CONTENT_TYPE,
         "HEAD /metrics: 200, the headers, no body")
    r = request(port, "/metrics?name[]=x")
    t.eq(r[0], 200, "a query string is ignored")
    bad = {
        "a garbage request line": b"GARBAGE\r\n\r\n",
        "a request line without a version": b"GET\r\n\r\n",
        "a header without a colon": b"GET /metrics HTTP/1.1\r\nHost x\r\n\r\n",
        "binary noise": bytes(range(256)) * 4 + b"\r\n\r\n",
        "headers over 8 KiB": b"GET /metrics HTTP/1.1\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n",
        "a body over 1 KiB": b"POST /metrics HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + b"b" * 5000,
    }
    for what, data in bad.items():
        answer = raw(port, data)
        status_line = answer.split(b"\r\n", 1)[0]
        t.ok(not status_line.startswith(b"HTTP/1.1 200") and
             (answer == b"" or re.match(rb"HTTP/1\.[01] (400|405|413|431)", status_line)),
             "%s is refused (%s)" % (what, status_line.decode("latin-1") or "closed"))
    for s in (half, idle, deaf):
        s.close()
    t.ok(scrape(port) is not None, "after all that /metrics still answers")
    d.send_signal(signal.SIGUSR1)
    sync_ended(port, 3, "ok")
    t.ok(True, "and the daemon still syncs")

    # Removals withheld: the gauge, the outcome, status.
    feed = json.load(open(SEED_FEED))
    for c in feed["courses"]:
        c["participants"] = c["participants"][:1]
    env.set_feed(feed)
    d.send_signal(signal.SIGUSR1)
    m = sync_ended(port, 4, "partial")
    st, m = compare_status(env, port, "with removals withheld")
    t.ok(value(m, "webcoursed_removals_withheld") > 0 and
         value(m, "webcoursed_removals_withheld") ==
         st["runs"][0]["counts"]["removals_withheld"],
         "webcoursed_removals_withheld is the count the guard withheld (%s)" %
         value(m, "webcoursed_removals_withheld"))
    t.eq(value(m, "webcoursed_last_sync_outcome", outcome="partial"), 1.0,
         "the last outcome is partial")

    # A feed that is not JSON is rejected; a missing one is an error.
    env.set_feed(b"this is not json")
    d.send_signal(signal.SIGUSR1)
    m = sync_ended(port, 5, "failed")
    t.eq(value(m, "webcoursed_feed_fetches_total", result="rejected"), 1.0,
         "a broken feed: rejected")
    t.eq(value(m, "webcoursed_last_sync_success"), 0.0, "the last sync did not succeed")
    compare_status(env, port, "after a failed sync")
    os.remove(env.feed_file)
    d.send_signal(signal.SIGUSR1)
    m = sync_ended(port, 6)
    t.eq(value(m, "webcoursed_feed_fetches_total", result="error"), 1.0,
         "a missing feed: error")
    t.eq(value(m, "webcoursed_syncs_total", outcome="failed"), 2.0, "two failed syncs counted")

    # An http feed with an ETag: unchanged once, then 304.
    env.set_feed(json.load(open(SEED_FEED)))
    fs = FeedServer(file=env.feed_file, etag="auto").start()
    try:
        env.set("source", "url", fs.url)
        d.send_signal(signal.SIGHUP)
        wait_for(lambda: out.count("configuration %s reloaded" % env.conf) >= 1, 20, "reload")
        d.send_signal(signal.SIGUSR1)
        sync_ended(port, 7, "ok")
        d.send_signal(signal.SIGUSR1)
        m = sync_ended(port, 8, "ok")
        t.eq(value(m, "webcoursed_feed_fetches_total", result="304"), 1.0,
             "a conditional fetch answered 304 is counted as 304")
    finally:
        fs.stop()
    never_down(before, counters(scrape(port)), "after eight syncs")
    promtool(scrape(port), "after failures of every kind")

    # Reload: another port moves the endpoint; a taken one keeps it.
    port2 = free_port()
    env.set("metrics", "listen", "127.0.0.1:%d" % port2)
    d.send_signal(signal.SIGHUP)
    wait_for(lambda: scrape(port2), 20, "the new port")
    t.ok(request(port) is None, "a reload to another port moves /metrics there")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    env.set("metrics", "listen", "127.0.0.1:%d" % taken.getsockname()[1])
    d.send_signal(signal.SIGHUP)
    wait_for(lambda: out.count("still serving /metrics on 127.0.0.1:%d" % port2), 20,
             "the bind error")
    t.ok(scrape(port2) is not None, "a port that is taken: the old one still serves")
    taken.close()
    env.set("metrics", "listen", "")
    d.send_signal(signal.SIGHUP)
    wait_for(lambda: request(port2) is None, 20, "the endpoint to close")
    t.ok(True, "an empty listen turns the endpoint off")
    d.send_signal(signal.SIGTERM)
    t.eq(d.wait(30 * SLOWDOWN), 0, "the daemon stops cleanly")
    out.thread.join(10)
    t.eq(out.count("cannot listen"), 1, "one line for the bind failure", out.text()[-2000:])
    t.eq(crash_report(out.text()), None, "no crash or sanitizer report")
finally:
    env.close()

# --- the port is taken at start: syncs go on, a reload retries ------------
taken = socket.socket()
taken.bind(("127.0.0.1", 0))
taken.listen(1)
port = taken.getsockname()[1]
env = Env(metrics={"listen": "127.0.0.1:%d" % port})
try:
    d = env.daemon()
    out = Lines(d.stdout)
    wait_for(lambda: out.count("sync done"), 30, "the first sync")
    t.ok(len(env.courses()) >= 3, "a port that cannot be bound does not stop the syncs")
    lines = out.matching("cannot listen on 127.0.0.1:%d" % port)
    t.ok(len(lines) == 1 and "Address already in use" in lines[0] and
         "off until a reload" in lines[0], "one clear error says so", out.text())
    taken.close()
    d.send_signal(signal.SIGHUP)
    wait_for(lambda: scrape(port), 20, "/metrics after the reload")
    t.ok(True, "a reload binds the freed port")
    compare_status(env, port, "after a restart of the endpoint")
    d.send_signal(signal.SIGTERM)
    t.eq(d.wait(30 * SLOWDOWN), 0, "the daemon stops cleanly")
    out.thread.join(10)
    t.eq(crash_report(out.text()), None, "no crash or sanitizer report")
finally:
    taken.close()
    env.close()

# --- approve and reject between syncs show without a sync ----------------
port = free_port()
env = Env(metrics={"listen": "127.0.0.1:%d" % port}, sync={"new_courses": "approve"})
try:
    d = env.daemon()
    out = Lines(d.stdout)
    m = sync_ended(port, 1, "ok")
    t.eq((value(m, "webcoursed_courses", state="pending"),
          value(m, "webcoursed_courses_awaiting_approval")), (3.0, 3.0),
         "new courses wait for approval")
    t.eq(env.ctl("approve", "unique_field1").returncode, 0, "approve one")
    t.eq(env.ctl("reject", "unique_field2").returncode, 0, "reject another")

    def decided():
        m = parse(scrape(port) or "")
        return [value(m, "webcoursed_courses", state=s)
                for s in ("pending", "approved", "rejected")] == [1, 1, 1]
    wait_for(decided, 20, "the course states to be read again")
    t.ok(True, "approve and reject show between syncs")
    compare_status(env, port, "after approve and reject")
    d.send_signal(signal.SIGTERM)
    t.eq(d.wait(30 * SLOWDOWN), 0, "the daemon stops cleanly")
finally:
    env.close()

# --- the docs and the units ----------------------------------------------
example = open(os.path.join(TOP, "etc", "webcoursed.conf")).read()
listen = re.search(r"^listen = (\S+):(\d+)$", example, re.M)
t.ok(listen is not None and listen.group(1) == "127.0.0.1",
     "the example configuration listens on loopback")
for unit, rule in (("webcoursed.service", "tcp:%s" % listen.group(2)),
                   ("webcoursed@.service", None)):
    text = open(os.path.join(TOP, "systemd", unit)).read()
    allow = re.findall(r"^SocketBindAllow=(\S+)$", text, re.M)
    t.ok("SocketBindDeny=any" in text.splitlines(), "%s denies other binds" % unit)
    if rule is not None:
        t.eq(allow[:1], [rule], "%s allows the example's port (the console's "
             "follows)" % unit)
    else:
        lo, hi = re.match(r"tcp:(\d+)-(\d+)$", allow[0]).groups() if allow else (0, -1)
        t.ok(int(lo) <= int(listen.group(2)) <= int(hi),
             "%s allows a range from the example's port (%s)" % (unit, allow))
readme = open(os.path.join(TOP, "README.md")).read()
rules = re.search(r"```yaml\n(# webcoursed.rules.yml.*?)```", readme, re.S)
t.ok(rules is not None, "the README has alert rules")
if rules is not None and PROMTOOL is not None:
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "webcoursed-rules-%d.yml" % os.getpid())
    with open(path, "w") as f:
        f.write(rules.group(1))
    p = subprocess.run([PROMTOOL, "check", "rules", path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    os.remove(path)
    t.eq(p.returncode, 0, "promtool check rules accepts them", p.stdout.decode())
t.done()
