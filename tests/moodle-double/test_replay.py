#!/usr/bin/env python3
"""Replay every recorded Moodle exchange in tests/data/moodle-ws against the double.

Two recording sessions, on two sites (README): 00-27 on the first install,
30 and later on a fresh one. Each session is replayed against its own double
seeded like its site (seed "lab1", seed "lab2"), in the order it was recorded
("# Sent at" where the file has it, else "# Date:", file name breaking ties).
Requests that went to the max_input_vars=1000 pool (port 8081) go to a second
server on the first site with max_input_vars=1000. Recordings whose recorded
send..answer times overlap were in flight together (30a/30b, 30d/30e): they are
replayed together too, each sent once the previous one is under way in the
double, with a cost model so that they overlap (the log's start/end times are
checked). The recorded tokens are swapped for the double's, the recorded
host:port for the double's. An answer must equal the recording byte for byte
once host:port and the course timestamps (timecreated, timemodified, cacherev:
the double's clock, not the recording's) are normalised.
"""
import http.client
import json
import os
import re
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.environ.get("TOP") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
sys.path.insert(0, HERE)

from tap import Tap  # noqa: E402
from moodle_double import MoodleDouble, max_concurrency  # noqa: E402

RECORDINGS = os.path.join(TOP, "tests", "data", "moodle-ws")
VOLATILE = re.compile(rb'"(timecreated|timemodified|cacherev)":[0-9]+')
# The theme's revision in picture URLs: a cache purge moves it on (32k).
THEMEREV = re.compile(rb'(theme\\?/image\.php\\?/[a-z]+\\?/core\\?/)[0-9]+')
REQ_HEAD_RX = re.compile(rb"===== REQUEST \(headers as sent(?: by curl)?\) =====\n")
SENT_RX = re.compile(r"^# Sent at ([0-9.]+), answered at ([0-9.]+)", re.M)
# Replaying requests that were in flight together: seconds per enrolment, enough
# for them to overlap in the double (the recorded ones took about 0.006 s each).
REPLAY_ITEM_SECONDS = 0.004
REPLAY_CALL_SECONDS = 0.3
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
        # README: files 30 and later come from the second session, on a fresh site.
        self.session = 2 if int(re.match(r"\d+", self.name).group()) >= 30 else 1
        m = SENT_RX.search(head)
        self.sent, self.answered = (float(m.group(1)), float(m.group(2))) if m else (None, None)
        self.bodies = {}
        for m in BODY_RX.finditer(raw):
            n = int(m.group(2))
            self.bodies[m.group(1).decode()] = raw[m.end():m.end() + n]
        m = REQ_HEAD_RX.search(raw)
        if m is None:
            raise ValueError("no request headers section")
        req = raw[m.end():raw.index(b"\n\n", m.end())].decode("utf-8")
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


def localiser(tokens, hosts):
    def localise(data):
        for old, new in tokens.items():
            data = data.replace(old.encode(), new.encode())
        for old, new in hosts.items():
            data = data.replace(old.encode(), new.encode())
        return data
    return localise


def request_of(rec, localise):
    headers = [("Host", localise(rec.header("Host").encode()).decode())]
    headers += [(k, v) for k, v in rec.req_headers
                if k.lower() in ("user-agent", "accept", "content-type")]
    return rec.method, localise(rec.target.encode()).decode(), headers, localise(rec.req_body)


def compare(t, rec, localise, status, rh, body):
    want = THEMEREV.sub(rb'\g<1>0', VOLATILE.sub(rb'"\1":0', localise(rec.resp_body)))
    got = THEMEREV.sub(rb'\g<1>0', VOLATILE.sub(rb'"\1":0', body))
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


def in_flight_groups(recs):
    """Runs of recordings whose recorded send..answer times overlap."""
    groups = []
    for rec in recs:
        last = groups[-1] if groups else None
        if (last and rec.sent is not None and last[-1].sent is not None
                and rec.sent < max(r.answered for r in last)):
            last.append(rec)
        else:
            groups.append([rec])
    return groups


def replay_session1(t, recs):
    by_name = {r.name: r for r in recs}
    rec_admin = by_name["01_site_info"].token()
    rec_wsclient = by_name["25a_wsclient_site_info"].token()

    main_double = MoodleDouble(max_input_vars=5000).start()
    pool1000 = MoodleDouble(max_input_vars=1000, site=main_double.site).start()
    localise = localiser({rec_admin: main_double.token, rec_wsclient: main_double.wsclient_token},
                         {"127.0.0.1:8080": "127.0.0.1:%d" % main_double.port,
                          "127.0.0.1:8081": "127.0.0.1:%d" % pool1000.port,
                          "localhost:8080": "localhost:%d" % main_double.port})
    replayed = 0
    try:
        for rec in recs:
            reason = why_not(rec)
            if reason:
                t.ok(False, "%s: replayed" % rec.name, reason)
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
            try:
                status, rh, body = send(double.port, *request_of(rec, localise))
            finally:
                main_double.configure(ws_enabled=True, debug=False)
                pool1000.configure(display_startup_errors=False)
                main_double.clear_faults()
            replayed += 1
            compare(t, rec, localise, status, rh, body)

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
    finally:
        pool1000.stop()
        main_double.stop()
    return replayed


def started(double, mark):
    """How many requests since log entry mark have begun to run (the log is read
    first: one that moves from running to done in between is missed, not counted
    twice)."""
    done = sum(1 for e in double.log(since=mark) if e["start"] is not None)
    return done + sum(1 for a in double.inflight() if a["start"] is not None)


# Moodle down or closed (32*): the fault that puts the double in that state.
OUTAGES = (("_db_down_", "dbdown"), ("_maintenance_admin_", "sitemaintenance"),
           ("_maintenance_", "maintenance"), ("_php_down_", "http502"),
           ("_RACE", "cacherace"))


def outage_of(rec):
    for part, mode in OUTAGES:
        if part in rec.name:
            return mode
    return None


def replay_session2(t, recs):
    """The fresh site: concurrent pairs replayed concurrently (see the module doc)."""
    lab2 = MoodleDouble(max_input_vars=5000, seed="lab2").start()
    tokens = {}
    for rec in recs:
        if rec.token():
            tokens[rec.token()] = lab2.token  # every file of the session used the admin's
    localise = localiser(tokens, {"127.0.0.1:8080": "127.0.0.1:%d" % lab2.port})
    replayed = 0
    rebuilt = False
    try:
        for group in in_flight_groups(recs):
            bad = [(rec, why_not(rec)) for rec in group if why_not(rec)]
            for rec, reason in bad:
                t.ok(False, "%s: replayed" % rec.name, reason)
            if bad:
                continue
            if any(r.name.startswith("32") for r in group) and not rebuilt:
                # README: the lab was rebuilt for 32* (same ids); its seed
                # users are "Student <username>" without idnumber there (32k).
                print("# 32*: replayed on the rebuilt lab: seed users named Student")
                with lab2.site.lock:
                    for u in lab2.site.users.values():
                        if u["firstname"] == "Seed":
                            u["firstname"], u["lastname"] = "Student", u["username"]
                            u["idnumber"] = ""
                rebuilt = True
            for rec in group:
                if outage_of(rec):
                    print("# %s: replayed with the %s fault" % (rec.file, outage_of(rec)))
                    lab2.set_fault(outage_of(rec))
            if len(group) == 1:
                rec = group[0]
                try:
                    compare(t, rec, localise, *send(lab2.port, *request_of(rec, localise)))
                finally:
                    lab2.clear_faults()
                replayed += 1
                continue
            names = "/".join(r.name.split("_")[0] for r in group)
            print("# %s: in flight together when recorded: replayed together, in the "
                  "recorded sending order (%s first), cost %.3f s per item"
                  % (names, group[0].name.split("_")[0], REPLAY_ITEM_SECONDS))
            # A call's own time too, so that one-item calls (32k) overlap.
            lab2.configure(cost={"call": REPLAY_CALL_SECONDS, "item": REPLAY_ITEM_SECONDS})
            mark = len(lab2.log())
            answers = [None] * len(group)

            def go(i, rec):
                try:
                    answers[i] = send(lab2.port, *request_of(rec, localise))
                except Exception as e:  # reported below
                    answers[i] = e

            threads = []
            try:
                for i, rec in enumerate(group):
                    th = threading.Thread(target=go, args=(i, rec))
                    th.start()
                    threads.append(th)
                    # The next one goes once this one runs in the double.
                    deadline = time.monotonic() + 30
                    while (started(lab2, mark) <= i and answers[i] is None
                           and time.monotonic() < deadline):
                        time.sleep(0.005)
                for th in threads:
                    th.join(120)
            finally:
                lab2.configure(cost=None)
                lab2.clear_faults()
            log = lab2.log(since=mark)
            t.eq(max_concurrency(log), len(group),
                 "%s: the double had them in flight together" % names,
                 [(e["seq"], e["start"], e["end"]) for e in log])
            for rec, ans in zip(group, answers):
                if not isinstance(ans, tuple):
                    t.ok(False, "%s: answered" % rec.name, ans)
                    continue
                compare(t, rec, localise, *ans)
                replayed += 1
            # The requests were sent, and so numbered, in the group's order.
            short = {e["seq"]: r.name.split("_")[0]
                     for e, r in zip(sorted(log, key=lambda e: e["seq"]), group)}
            for e in log:
                if e["waited_for"] and not e["deadlock"]:
                    print("# %s: %s waited for %s to end before committing (README: the second "
                          "waits for the first)" % (names, short[e["seq"]],
                                                    "/".join(short[w] for w in e["waited_for"])))
                if e["deadlock"]:
                    print("# %s: %s, the later one, was the deadlock victim, as in the recording"
                          % (names, short[e["seq"]]))
            done_order = [short[e["seq"]] for e in sorted(log, key=lambda e: e["end"])]
            rec_order = [r.name.split("_")[0] for r in sorted(group, key=lambda r: r.answered)]
            if done_order != rec_order:
                print("# %s: Moodle answered them in the order %s, the double in the order %s: "
                      "the answers are compared, not their order" % (names, rec_order,
                                                                     done_order))

        st = {c["shortname"]: c for c in lab2.state()["courses"]}
        t.eq([(sn, len(st[sn]["enrolments"])) for sn in ("DL1", "DL2", "DL3", "DL4")],
             [("DL1", 500), ("DL2", 500), ("DL3", 0), ("DL4", 500)],
             "30f: the deadlocked call's batch was rolled back, the others committed")
        t.eq(lab2.stats()["deadlocks"], 1, "30d/30e: one deadlock")
    finally:
        lab2.stop()
    return replayed


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

    recs.sort(key=lambda r: (r.date if r.sent is None else "", r.sent or 0, r.date, r.file))
    first = [r for r in recs if r.session == 1]
    second = [r for r in recs if r.session == 2]
    replayed = replay_session1(t, first) + replay_session2(t, second)
    t.eq(replayed, len(recs), "replayed every recording (%d)" % len(recs))
    t.done()


if __name__ == "__main__":
    main()
