#!/usr/bin/env python3
"""Participants and courses leaving the feed, role changes, renames, the
removal guard, approval of new courses, and who owns what."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, feed_of  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
USERS = ["00000000023", "00000000069", "00000000074", "00000000076", "00000000078"]


def base():
    return {
        "C1": ("Course one", [(u, None) for u in USERS]),
        "C2": ("Course two", [("00000000023", "teacher"), ("00000000069", None)]),
        "C3": ("Course three", [("00000000074", None)]),
    }


# --- suspend (the default), come back, role change, rename --------------
env = Env(feed=feed_of(base()), sync={"removals_allowance": "100"})
try:
    t.eq(env.sync().returncode, 0, "initial sync")
    # An admin enrols someone by hand: never ours to remove.
    env.double.enrol("C1", "admin", 5)

    f = base()
    f["C1"] = ("Course one", [(u, None) for u in USERS if u != "00000000069"])
    f["C2"] = ("Course two (renamed)", [("00000000023", "student"), ("00000000069", None)])
    env.set_feed(feed_of(f))
    p = env.sync()
    t.eq(p.returncode, 0, "second sync", p.err)
    en = env.enrolments()
    t.eq(en[("C1", "00000000069")], ("suspended", (5,)), "a participant who left is suspended")
    t.eq(en[("C2", "00000000023")], ("active", (5,)), "a role change adds the new role and removes ours")
    t.eq(env.courses()["C2"]["fullname"], "Course two (renamed)", "a renamed course is renamed")
    t.eq(en.get(("C1", "admin")), ("active", (5,)), "a manual enrolment is left alone")

    env.set_feed(feed_of(base()))
    env.double.clear_log()
    env.sync()
    en = env.enrolments()
    t.eq(en[("C1", "00000000069")], ("active", (5,)), "a returning participant is re-activated")
    t.eq(en[("C2", "00000000023")], ("active", (3,)), "the role changes back")
    enrols = [r for r in env.double.log() if r["function"] == "enrol_manual_enrol_users"]
    t.eq(sum(r["items"] for r in enrols), 1, "only the returning participant is enrolled again")

    # An admin suspends one of our enrolments in Moodle: we never re-send it.
    env.double.enrol("C3", "00000000074", 5, status="suspended")
    env.set_feed(feed_of(dict(base(), C4=("Course four", [("00000000078", None)]))))
    env.sync()
    t.eq(env.enrolments()[("C3", "00000000074")][0], "suspended",
         "an admin's suspension of an enrolment we made is not undone")
finally:
    env.close()

# --- unenrol and hide policies; courses vanish ----------------------------
env = Env(feed=feed_of(base()), sync={"on_removed_participant": "unenrol",
                                      "on_removed_course": "hide",
                                      "removals_allowance": "100"})
try:
    env.sync()
    f = base()
    del f["C3"]
    f["C1"] = ("Course one", [(u, None) for u in USERS[:4]])
    env.set_feed(feed_of(f))
    env.sync()
    en = env.enrolments()
    t.ok(("C1", "00000000078") not in en, "unenrol policy unenrols a participant who left")
    c3 = env.courses()["C3"]
    t.eq((c3["visible"], len(c3["enrolments"])), (1, 1),
         "a vanished course is neither hidden nor emptied on first sight")
    env.set_feed(feed_of(dict(f, C5=("Course five", []))))
    env.sync()
    t.eq(env.courses()["C3"]["visible"], 0, "hidden after two consecutive feeds without it")
    t.eq(len(env.courses()["C3"]["enrolments"]), 1, "a hidden course keeps its participants")
    env.set_feed(feed_of(base()))
    env.sync()
    t.eq(env.courses()["C3"]["visible"], 1, "a course that comes back is shown again")
finally:
    env.close()

# --- the removal guard ---------------------------------------------------
many = {"G%02d" % i: ("Group %d" % i, [(u, None) for u in USERS]) for i in range(10)}
env = Env(feed=feed_of(many), sync={"max_removals": "10%", "removals_allowance": "5"})
try:
    env.sync()
    half = {k: v for k, v in many.items()}
    for k in list(half)[:5]:
        half[k] = (half[k][0], [])
    env.set_feed(feed_of(half))
    env.double.clear_log()
    p = env.sync()
    t.eq(p.returncode, 0, "a run with withheld removals still completes")
    t.eq([r for r in env.writes()], [], "a halved feed: removals withheld, nothing written")
    st = json.loads(env.ctl("status", "--json").out)
    t.ok(st.get("removals_withheld") and "25 of 50 enrolments" in st["removals_withheld"],
         "status says the removals are withheld", st.get("removals_withheld"))
    t.ok("removals withheld" in p.err, "the log says so", p.err)
    t.eq(st["runs"][0]["outcome"], "partial", "the run is partial")
    p = env.sync("--allow-removals")
    susp = [k for k, v in env.enrolments().items() if v[0] == "suspended"]
    t.eq(len(susp), 25, "--allow-removals applies them")
    st = json.loads(env.ctl("status", "--json").out)
    t.eq(st.get("removals_withheld"), None, "and the warning is gone")
finally:
    env.close()

# --- approval of new courses ----------------------------------------------
env = Env(feed=feed_of(base()), sync={"new_courses": "approve"})
try:
    env.sync()
    t.ok("C1" not in env.courses(), "with new_courses = approve nothing is created at first")
    st = json.loads(env.ctl("status", "--json").out)
    t.eq(sorted((c["shortname"], c["participants"]) for c in st["awaiting_approval"]),
         [("C1", 5), ("C2", 2), ("C3", 1)], "status lists held courses with participant counts")
    p = env.ctl("approve", "C1")
    t.eq(p.returncode, 0, "approve C1")
    p = env.ctl("reject", "C2")
    t.eq(p.returncode, 0, "reject C2")
    p = env.ctl("approve", "NOPE")
    t.ok(p.returncode != 0 and "NOPE" in p.err, "approving an unknown course fails clearly")
    env.sync()
    cs = env.courses()
    t.ok("C1" in cs and len(cs["C1"]["enrolments"]) == 5, "the approved course is created and filled")
    t.ok("C2" not in cs and "C3" not in cs, "rejected and still-held courses are not created")
    env.ctl("approve", "--all")
    env.sync()
    t.ok("C3" in env.courses() and "C2" not in env.courses(), "approve --all creates the rest")
finally:
    env.close()
t.done()
