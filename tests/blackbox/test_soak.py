#!/usr/bin/env python3
"""Soak: one daemon, 200 runs back to back (SIGUSR1 as soon as the last run
has logged its end) against the Moodle double, with a feed that changes
every few runs (renames, new courses, participants coming and going) and
a SIGHUP reload every 10 runs.  The
daemon's resident memory and open descriptors are sampled after run 20 and
after run 200 and must stay flat; no run may fail, no child may be left a
zombie, and Moodle must end up holding exactly the last feed."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import WEBCOURSED, Env, feed_of, wait_for, wrapper  # noqa: E402
from hostile import Lines, crash_report  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
RUNS = int(os.environ.get("SOAK_RUNS", "60" if wrapper() else "200"))
SAMPLE = 20
# An ASan build keeps freed memory in quarantine and its allocator grows
# by a few kB a run even then (a glibc build: +8 kB over 180 runs), so it
# runs without quarantine and is allowed a little more.
with open(WEBCOURSED, "rb") as f:
    ASAN = b"__asan_init" in f.read()
RSS_SLACK_KB = 4096 if ASAN or wrapper() else 2048
USERS = ["sk%03d" % i for i in range(80)]


def feed_for(run):
    """The feed as it is at run `run`: it changes every 5 runs."""
    gen = run // 5
    courses = {}
    for c in range(8 + gen % 3):  # courses come and go
        parts = [(USERS[(c * 7 + k + gen) % len(USERS)], None) for k in range(8)]
        parts.append((USERS[(c * 11 + gen) % len(USERS)], "teacher"))
        name = "Soak course %d%s" % (c, " (rev %d)" % gen if c == gen % 8 else "")
        courses["SK%02d" % c] = (name, parts)
    return feed_of(courses)


def expected(feed):
    out = {}
    for c in feed["courses"]:
        for p in c["participants"]:
            role = 3 if p.get("roleid") == "teacher" else 5
            key = (c["shortname"], p["username"])
            st, roles = out.get(key, ("active", ()))
            out[key] = ("active", tuple(sorted(set(roles) | {role})))
    return out


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def fds(pid):
    return sorted(os.readlink("/proc/%d/fd/%s" % (pid, fd)) for fd in os.listdir("/proc/%d/fd" % pid))


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append((int(p), fields[0]))
    return out


env = Env(feed=feed_for(1), sync={"interval": "1h", "on_removed_participant": "unenrol",
                                  "on_removed_course": "keep", "max_removals": "1000"})
try:
    env.double.add_users(USERS)
    denv = None
    if ASAN:
        denv = {"ASAN_OPTIONS": ":".join(filter(None, [
            os.environ.get("ASAN_OPTIONS"),
            "quarantine_size_mb=0:thread_local_quarantine_size_kb=0"]))}
    d = env.daemon(env=denv)
    lines = Lines(d.stdout)
    ends = lambda: lines.count("sync done") + lines.count("sync failed")  # noqa: E731
    try:
        wait_for(lambda: ends() >= 1, 60, "the first run")
    except TimeoutError:
        print("# daemon output so far:\n# " + lines.text()[-3000:].replace("\n", "\n# "))
        raise
    samples = {}
    start = time.monotonic()
    for run in range(2, RUNS + 1):
        if run % 5 == 0:
            env.set_feed(feed_for(run))
        if run % 10 == 0:  # a reload now and then: the parent's own work
            n = lines.count("reloaded")
            d.send_signal(signal.SIGHUP)
            wait_for(lambda: lines.count("reloaded") > n, 30, "the reload before run %d" % run)
        d.send_signal(signal.SIGUSR1)
        wait_for(lambda: ends() >= run, 60, "run %d to end" % run)
        if run in (SAMPLE, RUNS):
            # The child has logged its end; wait until the daemon has reaped
            # it, so the sample is the idle daemon's.
            wait_for(lambda: not children(d.pid), 10, "the sync child to be reaped")
            samples[run] = (rss_kb(d.pid), fds(d.pid))
    took = time.monotonic() - start
    print("# %d runs in %.1f s (%.0f ms a run)" % (RUNS - 1, took, took * 1000 / (RUNS - 1)))
    failed = lines.matching("sync failed")
    t.eq(failed, [], "%d runs, none failed" % RUNS)
    t.eq(ends(), RUNS, "exactly %d runs ended (no run lost or doubled)" % RUNS)
    t.eq(lines.count("reloaded"), len(range(10, RUNS + 1, 10)),
         "a reload every 10 runs")
    writes = env.writes()
    t.ok(len(writes) >= RUNS // 5, "the changing feed made %d write calls over the soak"
         % len(writes))
    r20, f20 = samples[SAMPLE]
    r200, f200 = samples[RUNS]
    print("# rss after %d runs: %d kB, after %d runs: %d kB (%+d kB)" % (
        SAMPLE, r20, RUNS, r200, r200 - r20))
    print("# open fds after %d runs: %d, after %d runs: %d" % (SAMPLE, len(f20), RUNS, len(f200)))
    t.ok(r200 - r20 < RSS_SLACK_KB, "the daemon's RSS stays flat (< %d kB more):" % RSS_SLACK_KB +
         " %d kB after run %d, %d kB after run %d"
         % (r20, SAMPLE, r200, RUNS))
    t.eq(f200, f20, "the daemon's open descriptors are the same after run %d and run %d"
         % (SAMPLE, RUNS))
    t.eq([c for c in children(d.pid) if c[1] == "Z"], [], "no zombie child")
    final = expected(feed_for(RUNS))
    got = {k: v for k, v in env.enrolments().items() if k[0].startswith("SK") and v[0] == "active"}
    # Courses that left the feed are kept (on_removed_course = keep), with
    # their enrolments: compare the courses that are in the last feed.
    got = {k: v for k, v in got.items() if k[0] in {c for c, _ in final}}
    t.eq(got, final, "Moodle holds exactly the last feed's enrolments")
    d.send_signal(signal.SIGTERM)
    t.eq(d.wait(30), 0, "the daemon stops cleanly after the soak")
    lines.thread.join(5)
    bad = crash_report(lines.text())
    t.ok(bad is None, "no sanitizer or crash report in the daemon's log", bad)
finally:
    env.close()
t.done()
