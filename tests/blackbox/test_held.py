#!/usr/bin/env python3
"""What held in issue 20's second hardening round, kept as tests where no
other test held it yet:
- formula cells in the missing-users CSV are neutralised (a course or a
  username starting with = + - @ stays text in a spreadsheet);
- Moodle behind a self-signed certificate is refused without
  moodle.ca_file, before any request, and reached with it."""
import csv
import io
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, TOP, feed_of  # noqa: E402
from feedserver import FeedServer  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
CERT = os.path.join(TOP, "tests", "data", "tls", "feed-cert.pem")
KEY = os.path.join(TOP, "tests", "data", "tls", "feed-key.pem")

# --- formula cells ------------------------------------------------------------
env = Env(feed=feed_of({
    '=HYPERLINK("http://evil.example/","x")': ("formula course",
                                               [("-2.3", None), ("@sum", None)]),
    "+SUM(1,2)": ("formula course 2", [("plain.user", None)]),
}))
try:
    p = env.sync()
    t.eq(p.returncode, 0, "a feed with formula-like names syncs", p.err[-800:])
    raw = open(env.csv, newline="").read()
    rows = list(csv.reader(io.StringIO(raw)))
    cells = [c for row in rows[1:] for c in row[:2]]
    t.ok(len(rows) == 4, "the CSV lists the three missing users", rows)
    danger = [c for c in cells if c[:1] in "=+-@"]
    t.eq(danger, [], "no cell starts with = + - @ (each is prefixed with ')", raw)
    t.ok("'=HYPERLINK" in raw and "'-2.3" in raw and "'@sum" in raw and "'+SUM" in raw,
         "... and the text is kept after the quote", raw)
    p = env.ctl("missing-users")
    t.eq(p.out.replace("\r\n", "\n"), raw.replace("\r\n", "\n"),
         "webcoursectl missing-users prints the same neutralised CSV")
finally:
    env.close()

# --- Moodle behind a self-signed certificate -----------------------------------
# An https server with the test certificate stands where Moodle would: TLS
# verification is the first thing the client does.
env = Env()
fake = FeedServer(body=b"not Moodle", tls=(CERT, KEY)).start()
try:
    env.set("moodle", "url", fake.origin)
    p = env.sync()
    t.ok(p.returncode != 0 and "certificate" in p.err,
         "Moodle with a self-signed certificate is refused without moodle.ca_file",
         p.err[-800:])
    t.ok("HTTP 501" not in p.err, "... before any request is made")
    env.set("moodle", "ca_file", CERT)
    p = env.sync()
    # FeedServer answers a POST with 501: the request got through TLS.
    t.ok(p.returncode != 0 and "certificate" not in p.err and "HTTP 501" in p.err,
         "with moodle.ca_file naming it, the TLS check passes (the server is not Moodle)",
         p.err[-800:])
    t.eq(env.writes(), [], "nothing was written to the real Moodle double meanwhile")
finally:
    fake.stop()
    env.close()
t.done()
