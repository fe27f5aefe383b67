#!/usr/bin/env python3
"""Moodle calls are counted: an initial run of N enrolments uses at most
ceil(N / capacity) enrol calls, no request is over max_input_vars, and a
second run on the same feed writes nothing."""
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, feed_of  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
MARGIN = 10  # moodle.c's safety margin, in form variables
for limit in (1000, 5000):
    users = ["eff%05d" % i for i in range(2500)]
    feed = feed_of({"E%02d" % c: ("Efficiency %d" % c,
                                  [(u, None) for u in users[c * 100:(c + 1) * 100]])
                    for c in range(25)})
    env = Env(feed=feed, max_input_vars=limit)
    try:
        env.double.add_users(users)
        p = env.sync()
        t.eq(p.returncode, 0, "initial sync of 2500 enrolments at max_input_vars %d" % limit, p.err)
        log = env.double.log()
        enrols = [r for r in log if r["function"] == "enrol_manual_enrol_users"]
        capacity = (limit - MARGIN - 3) // 3
        want = math.ceil(2500 / capacity)
        t.eq(sum(r["items"] for r in enrols), 2500, "every enrolment sent once")
        t.eq(len(enrols), want, "%d enrol calls = ceil(2500 / %d)" % (want, capacity))
        over = [r for r in log if r["nvars"] > limit - MARGIN]
        t.eq(over, [], "no request carries more than max_input_vars less the margin")
        lookups = [r for r in log if r["function"] == "core_user_get_users_by_field"]
        t.eq(len(lookups), math.ceil(2500 / (limit - MARGIN - 4)),
             "users are looked up in as few calls as the limit allows")
        env.double.clear_log()
        env.sync()
        t.eq(env.writes(), [], "a second run makes no write call")
    finally:
        env.close()
t.done()
