#!/usr/bin/env python3
"""A full sync of the seed feed into the Moodle double, then the runs that
follow: nothing to do, a user who appears, the CSV."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, SEED_FEED  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
env = Env()
try:
    p = env.sync()
    t.eq(p.returncode, 0, "first sync exits 0")
    t.ok("sync done in" in p.err, "the summary line is logged", p.err)

    courses = env.courses()
    for sn, name in [("unique_field1", "Exemple name - Geography Course"),
                     ("unique_field2", "Exemple name - Physics Course"),
                     ("unique_field3", "Exemple name - Math Course")]:
        c = courses.get(sn)
        t.ok(c is not None, "course %s created" % sn)
        if c:
            t.eq(c["fullname"], name, "%s has the feed's name as fullname" % sn)
            t.eq(c["idnumber"], "webcoursed:" + sn, "%s idnumber marks it as ours" % sn)
            t.eq(c["categoryid"], 2, "%s is in the configured category" % sn)

    en = env.enrolments()
    want = {
        ("unique_field1", "00000000074"): ("active", (5,)),
        ("unique_field1", "00000000076"): ("active", (5,)),
        ("unique_field1", "00000000078"): ("active", (3,)),
        ("unique_field1", "00000000069"): ("active", (5,)),
        ("unique_field2", "00000000023"): ("active", (3,)),
        ("unique_field2", "00000000076"): ("active", (5,)),
        ("unique_field2", "00000000078"): ("active", (5,)),
        ("unique_field3", "00000000023"): ("active", (3,)),
        ("unique_field3", "00000000076"): ("active", (5,)),
        ("unique_field3", "00000000078"): ("active", (5,)),
    }
    got = {k: v for k, v in en.items() if k[0].startswith("unique_field")}
    t.eq(got, want, "enrolments and roles match the feed (teacher and professor -> 3)")

    rows = env.csv_rows()
    t.eq(rows, [["username", "course_shortname", "role", "first_seen"],
                ["00000000077", "unique_field1", "student", rows[1][3] if rows and len(rows) > 1 else ""],
                ["00000000087", "unique_field2", "student", rows[2][3] if rows and len(rows) > 2 else ""],
                ["00000000087", "unique_field3", "student", rows[3][3] if rows and len(rows) > 3 else ""]],
         "missing-users CSV lists the two missing users per course, sorted")
    t.ok(rows and all(r[3].endswith("Z") for r in rows[1:]), "first_seen is an ISO time")

    st = json.loads(env.ctl("status", "--json").out)
    t.eq(st["missing_users"], 2, "status counts 2 missing users")
    t.eq(st["runs"][0]["outcome"], "ok", "status shows the run as ok")
    t.eq(st["enrolments"]["active"], 10, "status counts 10 active enrolments")

    enrol_calls = [r for r in env.double.log() if r["function"] == "enrol_manual_enrol_users"]
    t.eq(len(enrol_calls), 1, "10 enrolments take one enrol call")

    # An unchanged feed: no write call at all.
    env.double.clear_log()
    p = env.sync()
    t.eq(p.returncode, 0, "second sync exits 0")
    t.eq(env.writes(), [], "a second run on an unchanged feed makes no write call")
    lookups = [r for r in env.double.log() if r["function"] == "core_user_get_users_by_field"]
    t.eq(len(lookups), 1, "missing users are looked up again in one batched call")

    # A changed feed with the same content for existing courses: still no
    # write (the plan is empty), though the body differs.
    feed = json.load(open(SEED_FEED))
    env.set_feed(json.dumps(feed, indent=4))
    env.double.clear_log()
    p = env.sync()
    t.eq(env.writes(), [], "a re-formatted feed gives an empty plan: no write call")

    # The missing user appears in Moodle: enrolled on the next run.
    env.double.add_users(["00000000077"])
    env.double.clear_log()
    p = env.sync()
    en = env.enrolments()
    t.eq(en.get(("unique_field1", "00000000077")), ("active", (5,)),
         "a user created in Moodle after the first run is enrolled by the next")
    rows = env.csv_rows()
    t.eq([r[0] for r in rows[1:]], ["00000000087", "00000000087"],
         "the CSV no longer lists the user who appeared")
    t.eq(len(env.writes()), 1, "one enrol call for the user who appeared")

    # webcoursectl missing-users prints the same CSV.
    p = env.ctl("missing-users")
    t.eq(p.out.replace("\r\n", "\n"), open(env.csv, newline="").read().replace("\r\n", "\n"),
         "missing-users prints the CSV file's content")
    js = json.loads(env.ctl("missing-users", "--json").out)
    t.eq(sorted((r["username"], r["course_shortname"]) for r in js),
         [("00000000087", "unique_field2"), ("00000000087", "unique_field3")],
         "missing-users --json lists the same rows")
finally:
    env.close()
t.done()
