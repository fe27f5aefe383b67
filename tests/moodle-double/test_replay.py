#!/usr/bin/env python3
"""Replay every recorded Moodle exchange in tests/data/moodle-ws against the double.

The recordings were made one after another on one site, so they are replayed
in the order they were recorded (their "# Date:" line, file name breaking
ties), against one double seeded like that site; requests that went to the
max_input_vars=1000 pool (port 8081) go to a second server on the same site
with max_input_vars=1000. The recorded tokens are swapped for the double's,
the recorded host:port for the double's. An answer must equal the recording
byte for byte once host:port and the course timestamps (timecreated,
timemodified, cacherev: the double's clock, not the recording's) are
normalised.
"""
import http.client
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.environ.get("TOP") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
sys.path.insert(0, HERE)

from tap import Tap  # noqa: E402
from moodle_double import MoodleDouble  # noqa: E402

RECORDINGS = os.path.join(TOP, "tests", "data", "moodle-ws")
VOLATILE = re.compile(rb'"(timecreated|timemodified|cacherev)":[0-9]+')
BODY_RX = re.compile(rb"===== (REQUEST|RESPONSE) BODY \((?:exact bytes, )?(\d+) bytes"
                     rb"(?:, verbatim)?\) =====\n")


class Recording:
    """One transcript file: the request as sent and the answer as received."""

    def __init__(self, path):
        self.file = os.path.basename(path)
        self.name = self.file[:-4]
        raw = open(path, "rb").read()
        head = raw.split(b"\n===== ", 1)[0].decode("utf-8")
        meta = dict(re.findall(r"^# ([A-Za-z ]+): (.*)$", head, re.M))
        self.date = meta.get("Date", "")
        self.url = meta.get("URL", "")
        self.bodies = {}
        for m in BODY_RX.finditer(raw):
            n = int(m.group(2))
            self.bodies[m.group(1).decode()] = raw[m.end():m.end() + n]
        req = self._section(raw, b"===== REQUEST (headers as sent by curl) =====\n")
        lines = req.split("\n")
        self.method, self.target, _ = lines[0].split(" ", 2)
        self.req_headers = [tuple(x.split(": ", 1)) for x in lines[1:] if ": " in x]
        resp = self._section(raw, b"===== RESPONSE (status line + headers) =====\n")
        lines = resp.split("\n")
        self.status = int(lines[0].split(" ")[1])
        self.resp_headers = dict(tuple(x.split(": ", 1)) for x in lines[1:] if ": " in x)
        self.req_body = self.bodies.get("REQUEST", b"")
        self.resp_body = self.bodies["RESPONSE"]

    @staticmethod
    def _section(raw, marker):
        start = raw.index(marker) + len(marker)
        return raw[start:raw.index(b"\n\n", start)].decode("utf-8")

    def header(self, name):
        for k, v in self.req_headers:
            if k.lower() == name.lower():
                return v
        return None

    def token(self):
        m = re.search(r"wstoken=([0-9a-f]+)", self.target + self.req_body.decode("latin-1"))
        return m.group(1) if m else None


def send(port, method, target, headers, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        if method == "POST":
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body if method == "POST" else None)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def errorcode(body):
    try:
        v = json.loads(body)
    except ValueError:
        m = re.search(rb"<ERRORCODE>(.*)</ERRORCODE>", body)
        return m.group(1).decode() if m else None
    return v.get("errorcode") if isinstance(v, dict) else None


def first_difference(got, want):
    n = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return "first difference at byte %d\ngot  ...%r\nwant ...%r" % (
        n, got[max(0, n - 60):n + 100], want[max(0, n - 60):n + 100])


def why_not(rec):
    """Why a recording cannot be replayed, or None."""
    m = re.match(r"https?://([^/]+)/", rec.url)
    if not m or m.group(1) not in ("127.0.0.1:8080", "127.0.0.1:8081", "localhost:8080"):
        return "sent to %s, which the replay does not model" % rec.url
    if rec.method not in ("GET", "POST"):
        return "method %s" % rec.method
    return None


def main():
    t = Tap()
    if not os.path.isdir(RECORDINGS):
        t.ok(False, "the recordings are in the tree at %s" % RECORDINGS)
        t.done()
    files = sorted(f for f in os.listdir(RECORDINGS)
                   if f.endswith(".txt") and f != "INDEX.txt")
    recs = []
    for f in files:
        try:
            recs.append(Recording(os.path.join(RECORDINGS, f)))
        except (ValueError, KeyError, IndexError) as e:
            print("# cannot replay: %s: transcript not parsed (%s)" % (f, e))
    t.eq(len(recs), len(files), "every transcript parses (%d files)" % len(files))
    index = open(os.path.join(RECORDINGS, "INDEX.txt"), encoding="utf-8").read()
    missing = [r.name for r in recs if ("\n%s\n" % r.name.replace("_MAILFAIL", "")) not in index
               and ("\n%s\n" % r.name) not in index]
    t.eq(missing, [], "INDEX.txt lists every transcript")

    recs.sort(key=lambda r: (r.date, r.file))
    by_name = {r.name: r for r in recs}
    rec_admin = by_name["01_site_info"].token()
    rec_wsclient = by_name["25a_wsclient_site_info"].token()

    main_double = MoodleDouble(max_input_vars=5000).start()
    pool1000 = MoodleDouble(max_input_vars=1000, site=main_double.site).start()
    tokens = {rec_admin: main_double.token, rec_wsclient: main_double.wsclient_token}
    hosts = {"127.0.0.1:8080": "127.0.0.1:%d" % main_double.port,
             "127.0.0.1:8081": "127.0.0.1:%d" % pool1000.port,
             "localhost:8080": "localhost:%d" % main_double.port}

    def localise(data):
        for old, new in tokens.items():
            data = data.replace(old.encode(), new.encode())
        for old, new in hosts.items():
            data = data.replace(old.encode(), new.encode())
        return data

    replayed = 0
    try:
        for rec in recs:
            reason = why_not(rec)
            if reason:
                print("# cannot replay: %s: %s" % (rec.file, reason))
                continue
            to_pool = "127.0.0.1:8081" in rec.url
            double = pool1000 if to_pool else main_double
            # Reproduce the site settings the recording was made under.
            if rec.name.startswith("00_"):
                print("# %s: replayed with web services disabled" % rec.file)
                main_double.configure(ws_enabled=False)
            if rec.name.endswith("_MAILFAIL"):
                print("# %s: replayed with the mailfail fault (no mail server)" % rec.file)
                main_double.set_fault("mailfail", function="enrol_manual_enrol_users")
            if "_DEBUG_" in rec.name:
                print("# %s: replayed with debug on" % rec.file)
                main_double.configure(debug=True)
            if rec.name.startswith("27b_"):
                print("# %s: replayed with display_startup_errors on" % rec.file)
                pool1000.configure(display_startup_errors=True)
            if rec.name.startswith(("21_", "21b_")):
                print("# %s: answer compared, not the recorded duration" % rec.file)
            headers = [("Host", localise(rec.header("Host").encode()).decode())]
            headers += [(k, v) for k, v in rec.req_headers
                        if k.lower() in ("user-agent", "accept", "content-type")]
            try:
                status, rh, body = send(double.port, rec.method,
                                        localise(rec.target.encode()).decode(), headers,
                                        localise(rec.req_body))
            finally:
                main_double.configure(ws_enabled=True, debug=False)
                pool1000.configure(display_startup_errors=False)
                main_double.clear_faults()
            replayed += 1
            want = VOLATILE.sub(rb'"\1":0', localise(rec.resp_body))
            got = VOLATILE.sub(rb'"\1":0', body)
            t.eq(status, rec.status, "%s: HTTP status" % rec.name)
            t.eq(rh.get("Content-Type"), rec.resp_headers.get("Content-Type"),
                 "%s: Content-Type" % rec.name)
            if "Location" in rec.resp_headers:
                t.eq(rh.get("Location"), localise(rec.resp_headers["Location"].encode()).decode(),
                     "%s: Location" % rec.name)
            if errorcode(want) is not None or errorcode(got) is not None:
                t.eq(errorcode(got), errorcode(want), "%s: errorcode" % rec.name)
            t.ok(got == want, "%s: body (%d bytes)" % (rec.name, len(want)),
                 first_difference(got, want))

        # What the notes say the database held afterwards.
        st = {c["shortname"]: c for c in main_double.state()["courses"]}
        t.eq(len(st["LAB-MIV"]["enrolments"]), 200,
             "20c: the silently truncated call enrolled 200 of 400 into LAB-MIV")
        t.eq(len(st["LAB-MIV2"]["enrolments"]), 400, "21b: 400 enrolled in LAB-MIV2")
        t.ok("LAB103" not in st, "03b: LAB103 was rolled back")
        e = {x["username"]: x for x in st["LAB101"]["enrolments"]}
        t.eq(e["00000000023"]["status"], "active", "12c: omitting suspend re-activated user 3")
        t.eq(e["00000000023"]["roles"], [4, 5], "08b: another roleid adds the role")
        t.ok("00000000069" not in e, "11a: user 4 unenrolled")
        t.eq(st["LAB101"]["roles_without_enrolment"],
             [{"userid": 7, "username": "00000000078", "roles": [5]}],
             "15b: a role without an enrolment")
        t.eq(sorted(st), ["LAB-MANUALOFF", "LAB-MIV", "LAB-MIV2", "LAB-NOMANUAL", "LAB-WSC",
                          "LAB101", "LAB102"], "the courses the recordings created")
        t.eq([c["id"] for c in main_double.state()["courses"]], [2, 3, 4, 5, 7, 8, 9],
             "course ids: 6 used up by the rolled-back 03b")
        t.ok(replayed > 0, "replayed %d of %d recordings" % (replayed, len(recs)))
    finally:
        pool1000.stop()
        main_double.stop()
    t.done()


if __name__ == "__main__":
    main()
