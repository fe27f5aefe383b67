#!/usr/bin/env python3
"""Several Moodle calls in flight: they overlap, no user is ever in two
write calls at once, Moodle's deadlock answer sends a call again alone and
unsplit, a Moodle in trouble gets fewer calls at once (and more again when
it recovers), courses are matched with one listing per category on a first import and
by shortname look-ups when few are new, the
daemon logs a long phase with its rate, and max_input_vars = auto measures
the server's limit once per Moodle version and again after a cut."""
import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, MoodleDouble, feed_of, wait_for  # noqa: E402
import moodle_double  # noqa: E402
from moodle_double import max_concurrency  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()

WRITES = ("enrol_manual_enrol_users", "enrol_manual_unenrol_users",
          "core_role_assign_roles", "core_role_unassign_roles")
DEADLOCK = {"exception": "dml_write_exception", "errorcode": "dmlwriteexception",
            "message": "Error writing to database"}


class WatchingDouble(MoodleDouble):
    """Keeps the users of every write call and the category/shortname of
    every course look-up in its log entry."""

    def handle_ws(self, method, query, headers, body):
        fields = urllib.parse.parse_qsl(body.decode("latin-1"))
        reply, entry = super().handle_ws(method, query, headers, body)
        f = dict(fields)
        entry["users"] = sorted({int(v) for k, v in fields if k.endswith("[userid]")})
        entry["field"] = f.get("field")
        entry["value"] = f.get("value")
        return reply, entry


def feed_sharing_users(ncourses, per_course, users, category=None):
    """Each user in several courses: a naive client would put one user in
    two calls at once."""
    courses = []
    for c in range(ncourses):
        parts = [{"username": users[(c * 7 + i) % len(users)]} for i in range(per_course)]
        course = {"shortname": "CC%03d" % c, "name": "Concurrency %d" % c,
                  "participants": parts}
        if category is not None:
            course["category"] = category(c)
        courses.append(course)
    return {"courses": courses}


def expected_of(feed):
    return {(c["shortname"], p["username"]) for c in feed["courses"] for p in c["participants"]}


def holds(env, feed):
    return {k for k, (st, _) in env.enrolments().items()
            if k[0].startswith("CC") and st == "active"} == expected_of(feed)


def overlapping_writes(log):
    """Pairs of write calls that ran at the same time and shared a user."""
    w = [e for e in log if e["function"] in WRITES and e.get("start") is not None]
    bad = []
    for i, a in enumerate(w):
        for b in w[i + 1:]:
            if a["start"] < b["end"] and b["start"] < a["end"] and \
                    set(a["users"]) & set(b["users"]):
                bad.append((a["seq"], b["seq"], sorted(set(a["users"]) & set(b["users"]))[:5]))
    return bad


USERS = ["cc%04d" % i for i in range(300)]
FEED = feed_sharing_users(24, 50, USERS)

# --- an import with four calls in flight over two php-fpm workers ---------
d = WatchingDouble(max_input_vars=1000, cost={"call": 0.005, "item": 0.0005}, workers=2).start()
env = Env(feed=FEED, double=d, max_input_vars=1000, moodle={"max_concurrent_calls": "4"})
try:
    d.add_users(USERS)
    p = env.sync()
    t.eq(p.returncode, 0, "an import of 1200 enrolments, 4 calls at once", p.err[-1500:])
    t.ok(holds(env, FEED), "Moodle holds exactly the feed")
    log = d.log()
    most = max_concurrency([e for e in log if e["function"] in WRITES])
    t.ok(2 <= most <= 4, "enrol calls overlapped: %d at once at most (2..4)" % most)
    t.eq([e["seq"] for e in log if e.get("deadlock")], [], "no call was a deadlock victim")
    t.eq(overlapping_writes(log), [], "no user was in two write calls at once")
    t.eq(json.loads(env.ctl("errors", "--json").out), [], "no item error")
finally:
    env.close()

# --- the import as a graph, on the model of a real Moodle 4.4 --------------
# 200 courses: creates go one at a time from the start, look-ups beside
# them, a course's enrolments as soon as it exists.
GFEED = feed_sharing_users(200, 20, USERS)
d = WatchingDouble(max_input_vars=5000, model={"scale": 0.1}, workers=2).start()
env = Env(feed=GFEED, double=d, moodle={"max_concurrent_calls": "4"})
try:
    d.add_users(USERS)
    p = env.sync()
    t.eq(p.returncode, 0, "a graph import of 200 courses, 4000 enrolments", p.err[-1500:])
    t.ok(holds(env, GFEED), "Moodle holds exactly the feed")
    log = d.log()
    creates = sorted((e for e in log if e["function"] == "core_course_create_courses"),
                     key=lambda e: e["arrived"])
    looks = [e for e in log if e["function"] == "core_user_get_users_by_field"]
    enrols = [e for e in log if e["function"] in WRITES]
    t.ok(len(creates) >= 2 and all(b["arrived"] >= a["end"]
                                   for a, b in zip(creates, creates[1:])),
         "%d create calls, each sent once the one before was answered" % len(creates))
    t.ok(looks and creates and looks[0]["arrived"] < creates[0]["end"],
         "the users are looked up beside the first create")
    t.ok(enrols and min(e["arrived"] for e in enrols) < creates[-1]["end"] and
         all(e["arrived"] >= creates[0]["end"] for e in enrols),
         "enrolments go after the first create, before the last one ends: as soon "
         "as their course exists")
    beside = [e["items"] for e in enrols if e["arrived"] < creates[-1]["arrived"]]
    t.ok(beside and max(beside) <= 150,
         "while creates go, enrol calls stay short (150 at most): a create "
         "never waits long for a worker", beside)
    t.eq(overlapping_writes(log), [], "no user was in two write calls at once")
    t.eq(json.loads(env.ctl("errors", "--json").out), [], "no item error")
finally:
    env.close()

# --- Moodle answers one call with a deadlock anyway ---------------------
d = WatchingDouble(max_input_vars=1000, cost={"call": 0.005, "item": 0.0005}, workers=2).start()
env = Env(feed=FEED, double=d, max_input_vars=1000, moodle={"max_concurrent_calls": "4"})
try:
    d.add_users(USERS)
    d.set_fault("error", count=1, function="enrol_manual_enrol_users", after=1, body=DEADLOCK)
    p = env.sync()
    t.eq(p.returncode, 0, "a deadlock answer: the run completes", p.err[-1500:])
    t.ok(holds(env, FEED), "a deadlock answer: Moodle holds exactly the feed")
    enrols = [e for e in d.log() if e["function"] == "enrol_manual_enrol_users"]
    victim = [e for e in enrols if e["errorcode"] == "dmlwriteexception"]
    t.eq(len(victim), 1, "one call got the deadlock answer")
    again = [e for e in enrols if victim and e["users"] == victim[0]["users"] and
             e["errorcode"] is None]
    t.eq(len(again), 1, "the same call, unsplit, went again and succeeded",
         [(e["items"], e["errorcode"]) for e in enrols])
    if again:
        others = [e for e in enrols if e is not again[0] and e is not victim[0]]
        t.ok(all(e["end"] <= again[0]["start"] for e in others),
             "it went alone, after every other enrol call had ended")
    t.eq(json.loads(env.ctl("errors", "--json").out), [], "no item was blamed for it")
    t.ok("database conflict" in p.err and "again, alone" in p.err, "the log says so",
         p.err[-1500:])
finally:
    env.close()

# --- a Moodle in trouble gets fewer calls at once, then more --------------
d = WatchingDouble(max_input_vars=100, cost={"call": 0.002, "item": 0.0002}).start()
env = Env(feed=FEED, double=d, max_input_vars=100, moodle={"max_concurrent_calls": "4"})
try:
    d.add_users(USERS)
    # HTTP 500: trouble.  (A 503 says Moodle is closed, moodle-ws 32e: the
    # breaker's business, not the pace's.)
    d.set_fault("http500", count=2, function="enrol_manual_enrol_users", after=3)
    p = env.sync()
    t.eq(p.returncode, 0, "two 500 answers mid-import: the run completes", p.err[-1500:])
    t.ok(holds(env, FEED), "and Moodle holds exactly the feed")
    t.ok("calls at once instead of 4" in p.err or "call at once instead of" in p.err,
         "the log says fewer calls go at once", p.err[-2000:])
    t.ok("answers normally again" in p.err, "and more again once Moodle recovers",
         p.err[-2000:])
finally:
    env.close()

# --- one look-up per category -------------------------------------------
cfeed = feed_sharing_users(40, 5, USERS, category=lambda c: 1 if c % 2 else 2)
d = WatchingDouble(max_input_vars=5000).start()
env = Env(feed=cfeed, double=d)
try:
    d.add_users(USERS)
    # An admin made CC000 already, in a category the feed does not use.
    d.add_course("CC000", "Made by hand", categoryid=d.add_category("Elsewhere"))
    p = env.sync()
    t.eq(p.returncode, 0, "40 courses in two categories", p.err[-1500:])
    looks = [e for e in d.log() if e["function"] == "core_course_get_courses_by_field"]
    t.eq(sorted(e["value"] for e in looks if e["field"] == "category"), ["1", "2"],
         "each category was listed once")
    t.eq([e["value"] for e in looks if e["field"] == "shortname"], ["CC000"],
         "only the course found in no category was looked up by shortname")
    sns = [c["shortname"] for c in env.state()["courses"] if c["shortname"].startswith("CC")]
    t.eq(len(sns), 40, "no course was made twice (CC000 adopted)", sorted(sns))
    t.ok(holds(env, cfeed), "Moodle holds exactly the feed")
    # A lost ledger: the categories again, every course adopted, no write.
    os.unlink(env.db)
    d.clear_log()
    p = env.sync()
    looks = [e for e in d.log() if e["function"] == "core_course_get_courses_by_field"]
    t.eq(p.returncode, 0, "a lost ledger", p.err[-1500:])
    t.eq(sorted((e["field"], e["value"]) for e in looks),
         [("category", "1"), ("category", "2"), ("shortname", "CC000")],
         "two category listings match 39 courses, one look-up the moved one")
    t.eq([(e["function"], e["errorcode"]) for e in env.writes()],
         [("core_course_create_courses", "shortnametaken")],
         "nothing is written again (the moved course is tried, refused, adopted)")
finally:
    env.close()

# --- a few new courses in known categories: looked up or created, not listed
d = WatchingDouble(max_input_vars=5000).start()
env = Env(feed=cfeed, double=d)
try:
    d.add_users(USERS)
    p = env.sync()
    t.eq(p.returncode, 0, "40 courses in two categories, first run", p.err[-1500:])
    grown = json.loads(json.dumps(cfeed))
    for k in (1, 2, 3):
        grown["courses"].append({"shortname": "CCNEW%d" % k, "name": "New %d" % k,
                                 "category": 1, "participants": [{"username": USERS[k]}]})
    grown["courses"].append({"shortname": "CCHAND", "name": "Made by hand first",
                             "category": 2, "participants": [{"username": USERS[9]}]})
    hand = d.add_course("CCHAND", "Made by hand", categoryid=2)
    env.set_feed(grown)
    d.clear_log()
    p = env.sync()
    t.eq(p.returncode, 0, "3 new courses in a category of 20 known ones, 1 in another",
         p.err[-1500:])
    # (field=ids is the drift check's share of the courses.)
    looks = [e for e in d.log() if e["function"] == "core_course_get_courses_by_field"]
    t.eq(sorted((e["field"], e["value"]) for e in looks if e["field"] != "ids"),
         [("shortname", "CCHAND"), ("shortname", "CCNEW1"), ("shortname", "CCNEW2"),
          ("shortname", "CCNEW3")],
         "three new shortnames are looked up; no category is listed; the single "
         "new one is created at once and looked up only when refused as taken")
    creates = [e for e in d.log() if e["function"] == "core_course_create_courses"]
    t.eq(sum(e["items"] for e in creates if e["errorcode"] is None), 3,
         "the three courses Moodle lacks are created")
    t.eq([e["errorcode"] for e in creates if e["items"] == 1 and e["errorcode"]],
         ["shortnametaken"], "the one made by hand is refused alone as taken")
    t.ok(holds(env, grown), "Moodle holds exactly the feed")
    sns = [c for c in env.state()["courses"] if c["shortname"].startswith("CC")]
    t.eq(len(sns), 44, "no course was made twice", sorted(c["shortname"] for c in sns))
    t.eq([c["id"] for c in sns if c["shortname"] == "CCHAND"], [hand],
         "the course made by hand is adopted")
finally:
    env.close()

# --- the daemon tells a long phase, with its rate --------------------------
# 1200 enrolments at 20 ms each over two workers: about 12 s of enrolling.
d = WatchingDouble(max_input_vars=200, cost={"call": 0.01, "item": 0.02}, workers=2).start()
env = Env(feed=FEED, double=d, max_input_vars=200, moodle={"max_concurrent_calls": "4"})
try:
    d.add_users(USERS)
    proc = env.daemon()
    lines = []

    def said(what):
        line = proc.stdout.readline().decode("utf-8", "replace")
        lines.append(line)
        return what in line
    wait_for(lambda: said("sync done"), 120, "the import to finish")
    phase = [l for l in lines if "sync: enrolling" in l]
    t.ok(phase, "a phase longer than 10 s is logged while it runs", "".join(lines[-20:]))
    t.ok(all("/s, about" in l and " left" in l for l in phase),
         "with its rate and the time left", "".join(phase))
    proc.terminate()
    proc.wait(30)
finally:
    env.close()

# --- max_input_vars = auto ------------------------------------------------
# One call at a time: calls as large as the measured limit allows.
d = WatchingDouble(max_input_vars=1000).start()
env = Env(feed=FEED, double=d, max_input_vars=1000, moodle={"max_concurrent_calls": "1"})
env.set("moodle", "max_input_vars", "auto")
try:
    d.add_users(USERS)
    p = env.sync()
    probes = [e for e in d.log() if e["function"] == "core_user_get_users_by_field"
              and e["nvars"] >= 1000]
    t.eq(p.returncode, 0, "auto on a PHP with max_input_vars 1000", p.err[-1500:])
    t.ok("takes 1000 form variables" in p.err, "the run says what it measured", p.err[-1500:])
    t.eq([e["cut"] for e in probes], [True, True, True, True, False],
         "5000, 4000, 3000, 2000 cut; 1000 not")
    t.eq([e for e in d.log() if e["nvars"] > 1000 and e not in probes], [],
         "no other call carried more than 1000 variables")
    t.ok(holds(env, FEED), "Moodle holds exactly the feed")
    d.clear_log()
    p = env.sync()
    t.eq(len([e for e in d.log() if e["function"] == "core_user_get_users_by_field"
              and e["nvars"] >= 1000]), 0, "the next run measures nothing: it is kept")
    # A new Moodle version: measured again.
    old = moodle_double.VERSION
    moodle_double.VERSION = "2024042204.00"
    try:
        d.configure(max_input_vars=5000)
        d.clear_log()
        p = env.sync()
        t.ok("takes 5000 form variables" in p.err, "a new Moodle version is measured again",
             p.err[-1500:])
        # PHP lowered behind our back: a cut is seen, the run stops saying
        # so, and the next run measures again and converges.
        d.configure(max_input_vars=1000)
        bigger = feed_sharing_users(24, 100, USERS)
        env.set_feed(bigger)
        p = env.sync()
        t.ok(p.returncode == 1 and "the next run measures it again" in p.err,
             "a cut: the run stops and says the limit is measured again", p.err[-1500:])
        p = env.sync()
        t.ok(p.returncode == 0 and "takes 1000 form variables" in p.err,
             "the next run measures again and completes", p.err[-1500:])
        t.ok(holds(env, bigger), "Moodle holds exactly the new feed")
    finally:
        moodle_double.VERSION = old
finally:
    env.close()
t.done()
