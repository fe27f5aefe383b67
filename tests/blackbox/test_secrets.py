#!/usr/bin/env python3
"""Secrets stay secret.  A distinctive Moodle token and feed auth header go
through normal syncs and every error path we can trigger (a bad token,
Moodle down or answering errors, the feed failing or answering HTML, a
broken config, secret files readable by others, check, plan, status,
errors, missing-users), at log level debug.  Then every stdout and stderr,
the CSV, the ledger's bytes (and its -wal), the double's request log, the
feed server's request log, and /proc/PID/cmdline and environ of a running
daemon and of its sync child are searched for the secrets, whole or in
part (any 12 characters of them).  The token must travel in the POST bodies
to Moodle and nowhere else: never in a query string, never to the feed
server; the auth header only to the feed server."""
import glob
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, MoodleDouble, WEBCOURSECTL, WEBCOURSED, wait_for, wrapper  # noqa: E402
from hostile import Lines  # noqa: E402
from feedserver import FeedServer  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()

TOKEN = "wcs" + secrets.token_hex(16)          # the Moodle token (35 characters)
FEED_SECRET = "wcsfeed" + secrets.token_hex(20)  # the feed's bearer token (47)
BAD_TOKEN = "wcsbad" + secrets.token_hex(16)     # a wrong token is a secret too
URL_PASSWORD = "wcspw" + secrets.token_hex(16)   # a password in moodle.url (a proxy's)
SECRETS = {"the Moodle token": TOKEN, "the feed secret": FEED_SECRET,
           "the wrong token": BAD_TOKEN, "the Moodle URL's password": URL_PASSWORD}
FRAGMENT = 12


def fragments(secret):
    return {secret[i:i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}


FRAGMENTS = {name: fragments(s) for name, s in SECRETS.items()}


def leaks(text, allowed=()):
    """Names of the secrets found in text, whole or by a 12-character piece."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    found = []
    for name, secret in SECRETS.items():
        if name in allowed:
            continue
        if secret in text:
            found.append("%s (whole)" % name)
        elif any(f in text for f in FRAGMENTS[name]):
            found.append("%s (a piece: %s)" % (
                name, next(f for f in FRAGMENTS[name] if f in text)))
    return found


def where(text):
    """The lines of text that hold a leak, for the diagnostics."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    out = []
    for line in text.splitlines():
        if leaks(line):
            out.append(line[:300])
    return "\n".join(out[:6])


class CapturingDouble(MoodleDouble):
    """The Moodle double, keeping every web-service request as it came."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.raw = []

    def handle_ws(self, method, query, headers, body):
        self.raw.append({"method": method, "query": query.decode("latin-1"),
                         "headers": "\n".join("%s: %s" % kv for kv in headers.items()),
                         "body": body.decode("latin-1")})
        return super().handle_ws(method, query, headers, body)


def set_token(double, value):
    with double.site.lock:
        tok = double.site.admin_token
        del double.site.tokens[tok.value]
        tok.value = value
        double.site.tokens[value] = tok


outputs = []  # (label, text) of everything the binaries printed


def keep(label, p):
    outputs.append((label + " (stdout)", p.out if hasattr(p, "out") else p.stdout))
    outputs.append((label + " (stderr)", p.err if hasattr(p, "err") else p.stderr))
    return p


def run(label, argv, cwd=None):
    p = subprocess.run(wrapper() + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       cwd=cwd, timeout=120)
    p.out = p.stdout.decode("utf-8", "replace")
    p.err = p.stderr.decode("utf-8", "replace")
    return keep(label, p)


def write_secret(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


double = CapturingDouble(max_input_vars=5000).start()
set_token(double, TOKEN)
env = Env(double=double, log={"level": "debug"})
fs = FeedServer(file=env.feed_file).start()
try:
    header_file = os.path.join(env.dir, "feed-auth")
    write_secret(header_file, "Authorization: Bearer %s\n" % FEED_SECRET)
    env.set("source", "url", fs.url)
    env.set("source", "auth_header_file", header_file)
    t.ok(open(env.token_file).read().strip() == TOKEN, "the token file holds the distinctive token")

    # --- normal use -------------------------------------------------------------
    # plan before the first run: there is no ledger yet.
    cwd = tempfile.mkdtemp(prefix="webcoursed-cwd-")
    p = run("plan before the first run", [WEBCOURSECTL, "-c", env.conf, "plan"], cwd=cwd)
    t.ok(p.returncode == 0 and "unique_field1" in p.out,
         "plan works before the first run (no ledger yet)", p.out[-500:] + p.err[-500:])
    t.eq(os.listdir(cwd), [], "plan leaves no file in the working directory")
    # ... nor needs to write there: an operator may run it from /etc.
    p = run("plan from /proc", [WEBCOURSECTL, "-c", env.conf, "plan"], cwd="/proc")
    t.ok(p.returncode == 0, "plan before the first run works from a directory it cannot write",
         p.err[-500:])
    p = run("check", [WEBCOURSECTL, "-c", env.conf, "check"])
    t.eq(p.returncode, 0, "webcoursectl check passes", p.out + p.err)
    p = keep("sync", env.sync())
    t.eq(p.returncode, 0, "a sync with the feed behind an auth header", p.err[-1500:])
    t.eq(fs.requests[-1]["headers"].get("Authorization"), "Bearer " + FEED_SECRET,
         "the feed server received the auth header")
    t.ok(len(env.courses()) >= 3, "the feed reached Moodle")
    keep("daemon --once", env.daemon_once())
    for args in (["status"], ["status", "--json"], ["errors"], ["errors", "--json"],
                 ["missing-users"], ["missing-users", "--json"], ["plan"], ["plan", "--json"]):
        keep(" ".join(args), env.ctl(*args))
    run("webcoursed -t", [WEBCOURSED, "-c", env.conf, "-t"])

    # --- Moodle errors -------------------------------------------------------
    write_secret(env.token_file, BAD_TOKEN + "\n")
    p = keep("sync with a wrong token", env.sync())
    t.ok(p.returncode != 0 and "token is not valid" in p.err, "a wrong token: the run fails",
         p.err[-800:])
    keep("check with a wrong token", env.ctl("check"))
    write_secret(env.token_file, TOKEN + "\n")

    env.double.set_fault("http503", count=-1)
    p = keep("sync, Moodle 503", env.sync())
    t.ok(p.returncode != 0, "Moodle answering 503: the run fails")
    env.double.clear_faults()

    # Moodle (or a proxy in front of it) echoes the request back: the token
    # straddles the 80 bytes of the answer that a message quotes.
    echo = "<html><body>Request blocked by the firewall. It read: wstoken="
    echo = echo + " " * (60 - len(echo)) + TOKEN + "&wsfunction=core_webservice_get_site_info"
    env.double.set_fault("error", count=-1, body=echo)
    keep("sync, Moodle echoes the request", env.sync())
    keep("check, Moodle echoes the request", env.ctl("check"))
    env.double.set_fault("error", count=-1, body={
        "exception": "invalid_parameter_exception", "errorcode": "invalidparameter",
        "message": "Invalid parameter value detected",
        "debuginfo": "wstoken=%s: refused %s" % (TOKEN, TOKEN)}, function="core_user_get_users_by_field")
    env.set_feed(json.dumps(json.load(open(env.feed_file)), indent=3))
    keep("sync, Moodle puts the token in debuginfo", env.sync())
    keep("errors after the debuginfo", env.ctl("errors", "--json"))
    env.double.clear_faults()

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = "http://127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    env.set("moodle", "url", closed)
    p = keep("sync, Moodle down", env.sync())
    t.ok(p.returncode != 0, "Moodle down: the run fails")
    keep("check, Moodle down", env.ctl("check"))
    env.set("moodle", "url", env.double.url)

    # --- feed errors ---------------------------------------------------------
    # The feed server puts the request's Authorization header at the top of
    # its error page, as some do.
    fs.set(echo_header="Authorization", status=500)
    p = keep("sync, feed 500 echoing the header", env.sync())
    t.ok(p.returncode != 0 and "HTTP 500" in p.err, "a feed 500: the run fails", p.err[-500:])
    fs.set(status=200, content_type="text/html")
    keep("sync, feed HTML echoing the header", env.sync())
    keep("plan, feed HTML echoing the header", env.ctl("plan"))
    fs.set(status=401, echo_header=None, content_type="text/html", file=None,
           body=b"<html>401: bad credentials " + FEED_SECRET.encode() + b"</html>")
    keep("sync, feed 401 naming the secret", env.sync())
    fs.set(status=200, content_type="application/json", file=env.feed_file, body=b"")

    # --- broken configurations -------------------------------------------------
    good_conf = open(env.conf).read()
    for label, extra in [
            ("the token pasted as a key", "\n[moodle]\ntoken = %s\n" % TOKEN),
            ("the token pasted alone on a line", "\n%s\n" % TOKEN),
            ("the feed header pasted as a key", "\n[source]\nauth_header = Bearer %s\n" % FEED_SECRET),
            ("the token in a bad value", "\n[sync]\ninterval = 1h %s\n" % TOKEN)]:
        with open(env.conf, "w") as f:
            f.write(good_conf + extra)
        p = run("-t, " + label, [WEBCOURSED, "-c", env.conf, "-t"])
        t.ok(p.returncode != 0, "config with %s is refused" % label, p.out + p.err)
        keep("sync, " + label, env.sync())
    with open(env.conf, "w") as f:
        f.write(good_conf)

    os.chmod(env.token_file, 0o644)
    p = keep("sync, token file 0644", env.sync())
    t.ok(p.returncode != 0 and "chmod 600" in p.err, "a token file readable by others is refused",
         p.err[-500:])
    run("-t, token file 0644", [WEBCOURSED, "-c", env.conf, "-t"])
    keep("check, token file 0644", env.ctl("check"))
    os.chmod(env.token_file, 0o600)
    os.chmod(header_file, 0o644)
    p = keep("sync, header file 0644", env.sync())
    t.ok(p.returncode != 0, "an auth header file readable by others is refused", p.err[-500:])
    os.chmod(header_file, 0o600)
    write_secret(env.token_file, TOKEN[:10] + " " + TOKEN[10:] + "\n")
    p = keep("sync, a token with a blank", env.sync())
    t.ok(p.returncode != 0, "a token with a blank in it is refused", p.err[-500:])
    write_secret(env.token_file, TOKEN + "\n")

    # --- the daemon and its sync child, caught mid-run ---------------------------
    # moodle.url carries a user and password (issue 20 item 4: the daemon's
    # "started; syncing URL" line showed it).
    env.set("moodle", "url", env.double.url.replace("://", "://mu:%s@" % URL_PASSWORD, 1))
    env.double.set_fault("delay", seconds=3, count=1, function="core_webservice_get_site_info")
    d = env.daemon()
    lines = Lines(d.stdout)
    wait_for(lambda: lines.matching("sync started (pid"), 30, "the daemon's first run")
    child = int(re.search(r"sync started \(pid (\d+)\)", lines.matching("sync started")[0]).group(1))
    procs = {}
    for who, pid in (("daemon", d.pid), ("sync child", child)):
        for what in ("cmdline", "environ"):
            try:
                with open("/proc/%d/%s" % (pid, what), "rb") as f:
                    procs["%s /proc/%s" % (who, what)] = f.read()
            except OSError as e:
                procs["%s /proc/%s" % (who, what)] = None
                print("# cannot read /proc/%d/%s: %s" % (pid, what, e))
    t.ok(procs.get("sync child /proc/environ") is not None,
         "the sync child was caught running (pid %d)" % child)
    for label, data in procs.items():
        if data is not None:
            t.eq(leaks(data), [], "no secret in the %s" % label, where(data))
    wait_for(lambda: lines.count("sync done") + lines.count("sync failed") >= 1, 30,
             "the daemon's run to end")
    d.send_signal(signal.SIGTERM)
    d.wait(20)
    lines.thread.join(5)
    outputs.append(("the daemon's log", lines.text()))

    # --- where the secrets went ------------------------------------------------
    for label, text in outputs:
        t.eq(leaks(text), [], "no secret in %s" % label, where(text))
    files = [env.csv] + sorted(glob.glob(env.db + "*"))
    print("# files searched: %s" % [os.path.basename(f) for f in files])
    for path in files:
        if os.path.isfile(path):
            with open(path, "rb") as f:
                data = f.read()
            t.eq(leaks(data), [], "no secret in the bytes of %s" % os.path.basename(path),
                 where(data))

    raw = env.double.raw
    t.ok(len(raw) > 10, "the double kept %d requests" % len(raw))
    t.eq([r["query"] for r in raw if "wstoken" in r["query"] or r["query"]], [],
         "no request to Moodle has a query string (so no wstoken in one)")
    t.eq([e for e in env.double.log() if e.get("nvars_get")], [],
         "the double's log shows no GET variable in any request")
    with_token = [r for r in raw if ("wstoken=" + TOKEN) in r["body"] or
                  ("wstoken=" + BAD_TOKEN) in r["body"]]
    t.eq(len(with_token), len(raw), "every request carries the token in its POST body")
    t.eq([r["headers"] for r in raw if leaks(r["headers"])], [],
         "no secret in the headers sent to Moodle")
    t.eq([r["body"][:200] for r in raw if leaks(r["body"], allowed=(
        "the Moodle token", "the wrong token"))], [],
         "the feed's secret never goes to Moodle")
    t.eq([r for r in raw if r["method"] != "POST"], [], "every request to Moodle is a POST")
    t.eq([(r["path"], r["headers"]) for r in fs.requests if leaks(
        r["path"] + json.dumps(r["headers"]), allowed=("the feed secret",))], [],
         "no Moodle token goes to the feed server")
    t.ok(all(r["headers"].get("Authorization") == "Bearer " + FEED_SECRET
             for r in fs.requests), "every feed request carried the auth header")
    entries = json.dumps(env.double.log())
    t.eq(leaks(entries), [], "no secret in the double's request log")
finally:
    fs.stop()
    env.close()
t.done()
