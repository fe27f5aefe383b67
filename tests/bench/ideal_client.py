#!/usr/bin/env python3
"""The yardstick for an initial import: the least a client could ask of Moodle.

    ideal_client.py --url URL --token T --feed FEED.json [--concurrency N]
                    [--max-input-vars 5000] [--category 2]

Reads a feed in webcoursed's format (gen_feed.py writes one) and imports it
into an empty Moodle site over REST, as a client that needs no ledger,
no safety and no second look would:
  1. the user ids, in core_user_get_users_by_field calls as large as
     max_input_vars allows (this stands for "knows all user ids up front":
     one batched look-up, cut only where PHP would cut it);
  2. every course in core_course_create_courses calls as large as allowed
     (shortname, fullname, categoryid: nothing is looked up first, the site
     is known to be empty);
  3. every enrolment (teacher -> 3, else student 5) in
     enrol_manual_enrol_users calls of max_input_vars // 3 items, less a
     small margin (5000 -> 1660), the users split over N lanes by user id
     mod N; a lane's calls go one after another, the N lanes at once, so no
     user is ever in two calls in flight.
Steps 1 and 2 spread their calls over N at once as well; when there are
fewer full-size calls than N, the items are split evenly over N calls
instead (so the concurrency is used even then).

Prints one JSON object: wall seconds per step and in all, calls by
function, and the errors Moodle answered (there should be none).  Python
stdlib only; one keep-alive HTTP connection per lane.
"""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse

ROLES = {None: 5, "student": 5, "teacher": 3, "editingteacher": 3}
MARGIN = 10  # form variables kept free, as webcoursed keeps MOODLE_MARGIN_VARS


class Client:
    def __init__(self, url, token):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.path = u.path.rstrip("/") + "/webservice/rest/server.php"
        self.token = token
        self.local = threading.local()
        self.lock = threading.Lock()
        self.calls = {}
        self.errors = []

    def call(self, function, parts):
        """POST wstoken, wsfunction, json format and the already encoded
        "k=v" parts; returns the decoded answer (None for an error)."""
        body = "&".join(["wstoken=" + self.token, "wsfunction=" + function,
                         "moodlewsrestformat=json"] + parts).encode()
        conn = getattr(self.local, "conn", None)
        for attempt in (1, 2):
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
                self.local.conn = conn
            try:
                conn.request("POST", self.path, body, {
                    "Content-Type": "application/x-www-form-urlencoded"})
                resp = conn.getresponse()
                data = resp.read()
                break
            except (ConnectionError, http.client.HTTPException):
                conn.close()
                conn = self.local.conn = None
                if attempt == 2:
                    raise
        with self.lock:
            self.calls[function] = self.calls.get(function, 0) + 1
        answer = json.loads(data) if data else None
        if isinstance(answer, dict) and "exception" in answer:
            with self.lock:
                self.errors.append({"function": function,
                                    "errorcode": answer.get("errorcode"),
                                    "message": answer.get("message")})
            return None
        return answer


def q(s):
    return urllib.parse.quote(str(s), safe="")


def run_lanes(lanes, work):
    """work(lane_items) for each lane, all lanes at once."""
    threads = [threading.Thread(target=work, args=(items,)) for items in lanes if items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def chunks(items, cap, concurrency):
    """Calls of at most cap items; at least `concurrency` calls (of even size)
    when the items allow it."""
    n = len(items)
    if n == 0:
        return []
    calls = max(-(-n // cap), min(concurrency, n))
    size = -(-n // calls)
    return [items[i:i + size] for i in range(0, n, size)]


def spread(calls, concurrency):
    """Deal calls round-robin over the lanes."""
    return [calls[k::concurrency] for k in range(concurrency)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--feed", required=True)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--max-input-vars", type=int, default=5000)
    ap.add_argument("--category", type=int, default=2)
    a = ap.parse_args()
    t0 = time.monotonic()
    c = Client(a.url, a.token)
    n = a.concurrency
    room = a.max_input_vars - MARGIN - 3  # wstoken, wsfunction, moodlewsrestformat
    with open(a.feed) as f:
        feed = json.load(f)
    courses = feed["courses"]
    usernames = sorted({p["username"] for co in courses for p in co["participants"]})
    steps = {}

    # 1. user ids
    t = time.monotonic()
    ids = {}

    def lookup(calls):
        for names in calls:
            parts = ["field=username"] + ["values[%d]=%s" % (i, q(u))
                                          for i, u in enumerate(names)]
            for u in c.call("core_user_get_users_by_field", parts) or []:
                ids[u["username"]] = u["id"]

    run_lanes(spread(chunks(usernames, room - 1, n), n), lookup)
    steps["users"] = time.monotonic() - t

    # 2. courses
    t = time.monotonic()
    course_ids = {}

    def create(calls):
        for batch in calls:
            parts = []
            for i, co in enumerate(batch):
                parts += ["courses[%d][shortname]=%s" % (i, q(co["shortname"])),
                          "courses[%d][fullname]=%s" % (i, q(co["name"])),
                          "courses[%d][categoryid]=%d" % (i, a.category)]
            for r in c.call("core_course_create_courses", parts) or []:
                course_ids[r["shortname"]] = r["id"]

    run_lanes(spread(chunks(courses, room // 3, n), n), create)
    steps["courses"] = time.monotonic() - t

    # 3. enrolments, users split over n lanes by user id mod n
    t = time.monotonic()
    lanes = [[] for _ in range(n)]
    missing = 0
    for co in courses:
        cid = course_ids.get(co["shortname"])
        for p in co["participants"]:
            uid = ids.get(p["username"])
            if cid is None or uid is None:
                missing += 1
                continue
            lanes[uid % n].append((ROLES[p.get("roleid")], uid, cid))
    cap = room // 3

    def enrol(items):
        for k in range(0, len(items), cap):
            parts = []
            for i, (r, u, co) in enumerate(items[k:k + cap]):
                parts += ["enrolments[%d][roleid]=%d" % (i, r),
                          "enrolments[%d][userid]=%d" % (i, u),
                          "enrolments[%d][courseid]=%d" % (i, co)]
            c.call("enrol_manual_enrol_users", parts)

    run_lanes(lanes, enrol)
    steps["enrolments"] = time.monotonic() - t
    out = {"seconds": time.monotonic() - t0, "steps": steps, "calls": c.calls,
           "enrol_capacity": cap, "lanes": [len(x) for x in lanes],
           "users": len(ids), "courses": len(course_ids),
           "not_sent": missing, "errors": c.errors[:20], "nerrors": len(c.errors)}
    json.dump(out, sys.stdout)
    print()
    return 1 if c.errors else 0


if __name__ == "__main__":
    sys.exit(main())
