#!/usr/bin/env python3
"""Moodle calls are counted: an initial run of N enrolments uses
ceil(N / capacity) enrol calls one after another, or spreads them over the
calls allowed in flight as their courses and users become known (each
carrying at least 25 enrolments unless fewer are ready), no
request is over max_input_vars, and a second run on the same feed writes
nothing."""
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, feed_of  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
MARGIN = 10  # moodle.c's safety margin, in form variables
SPREAD = 25  # apply_int.h: fewest enrolments worth a call of their own
for limit, concurrency in ((1000, 1), (5000, 1), (5000, 4)):
    users = ["eff%05d" % i for i in range(2500)]
    feed = feed_of({"E%02d" % c: ("Efficiency %d" % c,
                                  [(u, None) for u in users[c * 100:(c + 1) * 100]])
                    for c in range(25)})
    env = Env(feed=feed, max_input_vars=limit,
              moodle={"max_concurrent_calls": str(concurrency)})
    at = "at max_input_vars %d, %d call%s at once" % (limit, concurrency,
                                                      "" if concurrency == 1 else "s")
    try:
        env.double.add_users(users)
        p = env.sync()
        t.eq(p.returncode, 0, "initial sync of 2500 enrolments " + at, p.err)
        log = env.double.log()
        enrols = [r for r in log if r["function"] == "enrol_manual_enrol_users"]
        capacity = (limit - MARGIN - 3) // 3
        want = max(math.ceil(2500 / capacity), min(concurrency, 2500 // SPREAD))
        t.eq(sum(r["items"] for r in enrols), 2500, "every enrolment sent once " + at)
        if concurrency == 1:
            t.eq(len(enrols), want, "%d enrol calls = ceil(2500 / %d), one after another"
                 % (want, capacity))
        else:
            # Enrolments go as their courses are created and their users
            # looked up: each answer may release a wave over the lanes.
            waves = len([r for r in log if r["function"] in (
                "core_user_get_users_by_field", "core_course_create_courses")])
            t.ok(want <= len(enrols) <= want + waves * concurrency,
                 "%d enrol calls: at least max(ceil(2500 / %d), min(%d, 2500 / %d)) = %d, "
                 "at most %d more (%d waves over %d lanes)"
                 % (len(enrols), capacity, concurrency, SPREAD, want, waves * concurrency,
                    waves, concurrency))
        small = [r["items"] for r in enrols if r["items"] < SPREAD]
        if concurrency == 1:
            t.eq(small, [], "each carries at least %d" % SPREAD)
        else:
            # Fewer than SPREAD go only when no more are ready: one such
            # call per wave at most (graph.c shares what is ready).
            t.ok(len(small) <= waves, "calls under %d enrolments: %d, at most one a wave (%d)"
                 % (SPREAD, len(small), waves), small)
        over = [r for r in log if r["nvars"] > limit - MARGIN]
        t.eq(over, [], "no request carries more than max_input_vars less the margin")
        lookups = [r for r in log if r["function"] == "core_user_get_users_by_field"]
        want = max(math.ceil(2500 / (limit - MARGIN - 4)), min(concurrency, 2500 // 50))
        if concurrency == 1:
            t.eq(len(lookups), want, "users are looked up in as few calls as the limit "
                 "allows")
        else:
            # Beside course creates, look-ups carry 500 names at most.
            t.eq(len(lookups), math.ceil(2500 / 500),
                 "users are looked up in calls of 500 while courses are created")
        env.double.clear_log()
        env.sync()
        t.eq(env.writes(), [], "a second run makes no write call")
    finally:
        env.close()
t.done()
