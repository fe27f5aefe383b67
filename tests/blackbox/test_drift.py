#!/usr/bin/env python3
"""Drift: each kind made on the double between two runs is found by the
next run's check, exactly it, reported once; report leaves Moodle as it
is, repair puts back what we made and never an admin's suspension; a
deleted course with repair and new_courses = approve is held; a feed
change and a drift on the same enrolment resolve to one action; a lost
ledger followed by reconciling converges with no write; runs spread the
checks; webcoursectl drift, reconcile and status say it."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, feed_of  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
USERS = ["dr%03d" % i for i in range(40)]
COURSES = {"DA": ("Drift A", [(u, None) for u in USERS[:10]] + [("dr039", "teacher")]),
           "DB": ("Drift B", [(u, None) for u in USERS[10:20]]),
           "DC": ("Drift C", [(u, None) for u in USERS[20:25]])}
# Every run checks every course: reconcile_every equals the interval.
SYNC = {"interval": "1h", "category_id": "2", "reconcile_every": "1h"}


def world(**sync):
    env = Env(feed=feed_of(COURSES), sync=dict(SYNC, **sync))
    env.double.add_users(USERS)
    p = env.sync()
    t.eq(p.returncode, 0, "initial sync", p.err[-1500:])
    return env


def drift(env):
    p = env.ctl("drift", "--json")
    return sorted((d["course"], d["username"], d["kind"]) for d in json.loads(p.out))


def make_every_drift(env):
    d = env.double
    d.unenrol("DA", "dr001")                 # gone
    d.suspend("DA", "dr002")                 # suspended by an admin
    d.unassign_role("DA", "dr039", 3)         # role gone (still enrolled)
    d.delete_course("DC")                     # course gone
    d.update_course("DB", fullname="Renamed by an admin", visible=0)


EVERY = [("DA", "dr001", "gone"), ("DA", "dr002", "suspended"),
         ("DA", "dr039", "role_gone"), ("DB", None, "renamed"),
         ("DB", None, "visibility"), ("DC", None, "course_gone")]

# --- report: found once, Moodle left as it is -----------------------------
env = world()
try:
    make_every_drift(env)
    before = env.state()
    env.double.clear_log()
    p = env.sync()
    t.eq(p.returncode, 0, "report: the run after the changes", p.err[-1500:])
    t.eq(drift(env), EVERY, "report: every kind of drift is found, exactly it")
    t.eq(env.writes(), [], "report: nothing is written to Moodle")
    t.eq(env.state(), before, "report: Moodle is left as it is")
    h = json.loads(env.ctl("history", "--json").out)
    found = [x for x in h if x["action"] == "drift"]
    t.eq(len(found), len(EVERY), "each drift is one history row")
    t.ok(all("the ledger said" in x["reason"] and "Moodle has" in x["reason"] for x in found),
         "saying what the ledger said and what Moodle has", [x["reason"] for x in found][:2])
    st = json.loads(env.ctl("status", "--json").out)
    t.eq(st["drift"]["total"], len(EVERY), "status counts the drift")
    t.ok(st["drift"]["oldest_check"] is not None, "status says when the oldest check was")
    for _ in range(2):
        env.double.clear_log()
        p = env.sync()
        t.eq(env.writes(), [], "report: later runs write nothing either")
    h2 = json.loads(env.ctl("history", "--json").out)
    t.eq(len([x for x in h2 if x["action"] == "drift"]), len(EVERY),
         "drift is reported once, not on every run after")
    # The admin lifts the suspension: the drift goes, the ledger follows.
    env.double.enrol("DA", "dr002", status="active")
    p = env.sync()
    t.ok(("DA", "dr002", "suspended") not in drift(env), "a lifted suspension is no more drift")
    # The feed drops the user whose enrolment is gone: nothing more to do.
    courses = dict(COURSES)
    courses["DA"] = ("Drift A", [(u, None) for u in USERS[:10] if u != "dr001"] +
                     [("dr039", "teacher")])
    env.set_feed(feed_of(courses))
    env.double.clear_log()
    p = env.sync()
    t.ok(("DA", "dr001", "gone") not in drift(env),
         "drift of someone the feed no longer lists is moot")
    t.eq([w for w in env.writes() if w["function"] == "enrol_manual_enrol_users"], [],
         "a feed change and a drift on one enrolment: one action (none), not a suspension")
finally:
    env.close()

# --- repair: what we made is put back, never a suspension ------------------
env = world(on_drift="repair")
try:
    make_every_drift(env)
    env.double.clear_log()
    p = env.sync()
    t.eq(p.returncode, 0, "repair: the run after the changes finds and repairs",
         p.err[-1500:])
    en = env.enrolments()
    t.eq(en.get(("DA", "dr001")), ("active", (5,)), "repair: the gone enrolment is back")
    t.eq(en.get(("DA", "dr039")), ("active", (3,)), "repair: the role is back")
    t.eq(en.get(("DA", "dr002")), ("suspended", (5,)), "repair: the admin's suspension stays")
    t.ok("DC" in env.courses() and all(en.get(("DC", u)) == ("active", (5,))
                                       for u in USERS[20:25]),
         "repair: the deleted course is created again with its enrolments")
    roles = [w for w in env.writes() if w["function"] == "core_role_assign_roles"]
    t.eq(len(roles), 1, "the role is given back with a role call, not an enrolment")
    t.eq(sorted(k for _, _, k in drift(env)), ["renamed", "suspended", "visibility"],
         "repair: what remains is what repair does not touch")
    t.eq(env.courses()["DB"]["fullname"], "Renamed by an admin",
         "repair: the admin's course name stays")
    env.double.clear_log()
    p = env.sync()
    t.eq(env.writes(), [], "repair: the run after writes nothing")
finally:
    env.close()

# --- repair with new_courses = approve: a deleted course is held ------------
env = world(on_drift="repair", new_courses="create")
try:
    env.double.delete_course("DC")
    env.set("sync", "new_courses", "approve")
    env.sync()
    env.double.clear_log()
    p = env.sync()
    t.ok("DC" not in env.courses(), "approve: the deleted course is not created again")
    t.eq([w for w in env.writes() if w["function"] == "core_course_create_courses"], [],
         "approve: no create call")
    st = json.loads(env.ctl("status", "--json").out)
    t.eq([c["shortname"] for c in st["awaiting_approval"]], ["DC"], "approve: it is held")
finally:
    env.close()

# --- a lost ledger, then reconciling: no write -----------------------------
env = world()
try:
    os.unlink(env.db)
    env.double.clear_log()
    p = env.sync()
    t.eq(p.returncode, 0, "a lost ledger", p.err[-1500:])
    env.double.clear_log()
    p = env.ctl("reconcile", "--all")
    t.ok(p.returncode == 0 and "checked 3 courses" in p.out and "0 new drift" in p.out,
         "reconcile --all after a lost ledger finds nothing", p.out + p.err[-500:])
    t.eq(env.writes(), [], "and writes nothing")
    p = env.sync()
    t.eq(env.writes(), [], "nor does the next run")
    t.eq(drift(env), [], "no drift")
    p = env.ctl("reconcile")
    t.eq(p.returncode, 2, "reconcile without SHORTNAME or --all is a usage error")
    p = env.ctl("reconcile", "NOPE")
    t.ok(p.returncode == 1 and "NOPE" in p.err, "an unknown course is an error", p.err)
    env.double.unenrol("DB", "dr011")
    p = env.ctl("reconcile", "DB")
    t.ok(p.returncode == 0 and "checked 1 course" in p.out and "1 new drift" in p.out,
         "reconcile one course finds its drift", p.out)
finally:
    env.close()

# --- runs spread the checks -------------------------------------------------
many = {"S%02d" % c: ("Spread %d" % c, [(USERS[c % 40], None)]) for c in range(12)}
env = Env(feed=feed_of(many), sync=dict(SYNC, reconcile_every="3h"))
try:
    env.double.add_users(USERS)
    env.sync()
    # Make every course due: their last checks long ago.
    import sqlite3
    con = sqlite3.connect(env.db)
    con.execute("UPDATE courses SET checked = 0")
    con.commit()
    con.close()
    p = env.sync()
    t.ok("12 courses checked" in p.err, "overdue courses are all checked", p.err[-800:])
    p = env.sync()
    t.ok("4 courses checked" in p.err,
         "then each run checks its share: 12 courses x 1h / 3h = 4", p.err[-800:])
    env.set("sync", "reconcile_every", "0")
    p = env.sync()
    t.ok("courses checked" not in p.err, "reconcile_every = 0: no checks")
finally:
    env.close()
t.done()
