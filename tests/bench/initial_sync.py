#!/usr/bin/env python3
"""Benchmark: an initial sync of 100,000 enrolments (2,000 courses x 50
participants over 20,000 users) into the Moodle double; prints Moodle
calls by function and wall time.  A figure, not a test."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env  # noqa: E402

COURSES, PER, USERS = 2000, 50, 20000


def main():
    users = ["u%06d" % i for i in range(USERS)]
    feed = {"courses": [{"shortname": "B%05d" % c, "name": "Bench course %d" % c,
                         "participants": [{"username": users[(c * 37 + k * 101) % USERS]}
                                          for k in range(PER)]}
                        for c in range(COURSES)]}
    for limit in (1000, 5000):
        env = Env(feed=feed, max_input_vars=limit)
        try:
            env.double.add_users(users)
            start = time.monotonic()
            p = env.sync()
            secs = time.monotonic() - start
            log = env.double.log()
            calls = {}
            for r in log:
                calls[r["function"]] = calls.get(r["function"], 0) + 1
            en = sum(len(c["enrolments"]) for c in env.state()["courses"])
            print("initial sync, max_input_vars %d: %s in %.1f s, %d requests, "
                  "%d enrolments in Moodle" % (limit, "ok" if p.returncode == 0 else "FAILED",
                                               secs, len(log), en))
            for f, n in sorted(calls.items()):
                print("  %-36s %6d" % (f, n))
            env.double.clear_log()
            start = time.monotonic()
            env.sync()
            print("  second run (unchanged feed): %.2f s, %d requests, %d write calls" % (
                time.monotonic() - start, len(env.double.log()), len(env.writes())))
        finally:
            env.close()


if __name__ == "__main__":
    main()
