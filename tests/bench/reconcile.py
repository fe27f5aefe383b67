#!/usr/bin/env python3
"""Benchmark: the cost of drift checks.  A full `webcoursectl reconcile
--all` of 2,000 courses x 50 enrolments in the Moodle double with a cost
model (two php-fpm workers), at 1 and 4 calls in flight; then the share a
run checks at 20,000 courses with a 15-minute interval and
reconcile_every = 1d.  Figures, not tests.

Usage: tests/bench/reconcile.py [--quick]   (--quick: 500 courses, 5,000)
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, MoodleDouble  # noqa: E402

QUICK = "--quick" in sys.argv
COURSES, PER = (500, 50) if QUICK else (2000, 50)
SLICE_COURSES = 5000 if QUICK else 20000
# Per call and per user listed: a core_enrol_get_enrolled_users of 50
# users then takes 20 ms + 50 x 0.2 ms = 30 ms (the real site: 0.1-0.2 s a
# course, two calls; scaled down 3-5x to keep the bench short).
COST = {"call": 0.02, "item": 0.0002}


def calls_by_function(log):
    out = {}
    for r in log:
        out[r["function"]] = out.get(r["function"], 0) + 1
    return out


def full_reconcile():
    users = ["r%06d" % i for i in range(COURSES * PER // 5)]
    feed = {"courses": [{"shortname": "RC%05d" % c, "name": "Reconcile %d" % c,
                         "participants": [{"username": users[(c * 37 + k * 101) % len(users)]}
                                          for k in range(PER)]}
                        for c in range(COURSES)]}
    print("full reconcile: %d courses x %d enrolments" % (COURSES, PER))
    print("  %-12s %10s %10s  %s" % ("in flight", "wall s", "requests", "by function"))
    for concurrency in (1, 4):
        d = MoodleDouble(max_input_vars=5000).start()
        env = Env(feed=feed, double=d, moodle={"max_concurrent_calls": str(concurrency)},
                  sync={"interval": "1h", "category_id": "2", "reconcile_every": "0"})
        try:
            d.add_users(users)
            p = env.sync()
            if p.returncode != 0:
                print("  import failed: %s" % p.err[-500:])
                return
            d.configure(cost=COST, workers=2)
            d.clear_log()
            start = time.monotonic()
            p = env.ctl("reconcile", "--all")
            secs = time.monotonic() - start
            log = d.log()
            byf = calls_by_function(log)
            print("  %-12d %10.1f %10d  %s%s" % (
                concurrency, secs, len(log),
                ", ".join("%s %d" % (f, n) for f, n in sorted(byf.items())),
                "" if p.returncode == 0 else "  FAILED: " + p.err[-300:]))
        finally:
            env.close()


def daily_slice():
    """20,000 courses of one enrolment each: what one run of a 15-minute
    interval checks with reconcile_every = 1d, once every course is due
    on schedule (none overdue)."""
    users = ["s%06d" % i for i in range(1000)]
    feed = {"courses": [{"shortname": "SL%05d" % c, "name": "Slice %d" % c,
                         "participants": [{"username": users[c % len(users)]}]}
                        for c in range(SLICE_COURSES)]}
    env = Env(feed=feed, sync={"interval": "15m", "category_id": "2",
                               "reconcile_every": "1d"})
    try:
        env.double.add_users(users)
        p = env.sync()
        if p.returncode != 0:
            print("  import failed: %s" % p.err[-500:])
            return
        env.double.clear_log()
        start = time.monotonic()
        p = env.sync()
        secs = time.monotonic() - start
        log = env.double.log()
        checked = [l for l in p.err.splitlines() if "courses checked" in l]
        byf = calls_by_function(log)
        print("daily slice: %d courses, interval 15m, reconcile_every 1d" % SLICE_COURSES)
        print("  a run checks: %s" % (checked[0].split("drift check: ")[-1] if checked
                                      else "nothing (none due)"))
        print("  requests of the run: %d (%s), %.1f s in the double without a cost model"
              % (len(log), ", ".join("%s %d" % (f, n) for f, n in sorted(byf.items())), secs))
    finally:
        env.close()


if __name__ == "__main__":
    full_reconcile()
    daily_slice()
