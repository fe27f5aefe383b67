#!/usr/bin/env python3
"""webcoursectl plan: what a run would do, for a person and as JSON;
writes nothing to Moodle and leaves the ledger as it was."""
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, feed_of  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()


def ledger_digest(env):
    h = hashlib.sha256()
    for f in sorted(os.listdir(env.dir)):
        # -shm is sqlite's shared index, which readers update too.
        if f in ("ledger.db", "ledger.db-wal"):
            h.update(open(os.path.join(env.dir, f), "rb").read())
    return h.hexdigest()


env = Env()
try:
    p = env.ctl("plan")
    t.eq(p.returncode, 0, "plan before the first run works without a ledger", p.err)
    t.ok("3 to create" in p.out and "+ create unique_field1" in p.out,
         "it lists the courses to create", p.out)
    t.eq(env.writes(), [], "plan writes nothing to Moodle")
    t.ok(not os.path.exists(env.db), "and creates no ledger")
    t.ok(not os.path.exists(":memory:"), "nor any file where it runs")
    js = json.loads(env.ctl("plan", "--json").out)
    t.ok(isinstance(js, dict), "plan --json prints one JSON object")

    env.sync()
    env.double.clear_log()
    before = ledger_digest(env)
    p = env.ctl("plan")
    t.eq(p.returncode, 0, "plan after a sync")
    enrols = [l for l in p.out.splitlines() if l.startswith("+ ")]
    t.ok("0 to create" in p.out and
         all("00000000077" in l or "00000000087" in l for l in enrols),
         "an unchanged feed plans only the enrolments of missing users", p.out)
    env.set_feed(feed_of({"unique_field1": ("Renamed", [("00000000074", None)])}))
    p = env.ctl("plan", "--verbose")
    t.ok("1 to rename" in p.out and "to suspend" in p.out, "a change shows up", p.out)
    t.eq(env.writes(), [], "still no write to Moodle")
    t.eq(ledger_digest(env), before, "and the ledger is unchanged")
    p = env.ctl("plan", "--bogus")
    t.eq(p.returncode, 2, "an unknown plan option is a usage error")
finally:
    env.close()
t.done()
