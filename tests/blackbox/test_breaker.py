#!/usr/bin/env python3
"""When Moodle is down, stop (issue 19).  A first import meets Moodle's
database stopping (moodle-ws 32a-32d), maintenance mode set from the CLI
(32e/32f) or the admin pages (32i/32j), PHP-FPM down behind nginx
(32g/32h) and a gateway timeout, at the look-ups, the course creation or
the enrolments: the run stops within a few requests, blames no item,
marks no user missing, and the next run, Moodle back, converges exactly
without sending any enrolment twice.  Then the daemon: its retries back
off, STATUS= and the metrics say Moodle is down, the journal gets a line
a minute at most, and one when Moodle is back."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import SLOWDOWN, wait_for  # noqa: E402
from hostile import Lines  # noqa: E402
from outage import (OUTAGES, Checks, outage_log, reference_functions,  # noqa: E402
                    world)
from tap import Tap  # noqa: E402
from scrape import free_port, parse, scrape, value  # noqa: E402
from sdnotify import Notify  # noqa: E402

t = Tap()

order = reference_functions()
PHASES = {"look-ups": "core_user_get_users_by_field",
          "course creation": "core_course_create_courses",
          "enrolments": "enrol_manual_enrol_users"}
# The outage starts just after the first request of its phase.
START = {phase: order.index(fn) + 1 for phase, fn in PHASES.items()}
print("# a clean import: %d requests; outages start after request %s" % (len(order), START))

for mode, cause in OUTAGES.items():
    for phase, after in START.items():
        # Under valgrind every run is slow: each kind once, at the enrolments.
        if (mode == "http504" or SLOWDOWN > 1) and phase != "enrolments":
            continue
        label = "%s during the %s" % (mode, phase)
        env = world()
        try:
            c = Checks(t, env, label)
            env.double.set_fault(mode, count=-1, after=after)
            c.run(expect_cause=cause)
            c.converges()
        finally:
            env.close()

# --- still down at the next run: one request -------------------------------
env = world()
try:
    c = Checks(t, env, "still down")
    env.double.set_fault("dbdown", count=-1, after=START["enrolments"])
    c.run(expect_cause=OUTAGES["dbdown"])
    env.double.clear_faults()
    env.double.set_fault("dbdown", count=-1)
    _, log = c.run(expect_cause=OUTAGES["dbdown"])
    t.eq([e["function"] for e in log], ["core_webservice_get_site_info"],
         "still down at the next run: it stops at its first request (the last run "
         "found Moodle down)")
    c.converges()
finally:
    env.close()

# --- a blip, and the cache race: the run goes on ---------------------------
for label, fault in [
        ("two dbconnectionfailed answers mid-enrolments",
         dict(mode="dbdown", count=2, function="enrol_manual_enrol_users", after=2)),
        ("the cache race of the first calls (32k)",
         dict(mode="cacherace", count=1, function="core_user_get_users_by_field"))]:
    env = world()
    try:
        c = Checks(t, env, label)
        env.double.set_fault(**fault)
        p, log = c.run()
        t.eq(p.returncode, 0, "%s: the run completes, sending it again" % label, p.err[-1500:])
        t.ok(len(outage_log(log)) + sum(1 for e in log if e["fault"] == "cacherace")
             == fault["count"], "%s: the fault fired" % label)
        c.converges()
    finally:
        env.close()

# --- the daemon while Moodle is down, and when it is back -------------------
port = free_port()
env = world()
env.set("sync", "outage_retry", "1s")
env.set("sync", "outage_retry_max", "3s")
env.set("metrics", "listen", "127.0.0.1:%d" % port)
try:
    sock = os.path.join(env.dir, "notify.sock")
    n = Notify(sock)
    env.double.set_fault("dbdown", count=-1, after=START["enrolments"])
    d = env.daemon(env={"NOTIFY_SOCKET": sock})
    out = Lines(d.stdout)

    def site_infos():
        n.poll()  # as systemd would: a full socket would block the daemon
        return [e for e in env.double.log() if e["function"] == "core_webservice_get_site_info"]

    wait_for(lambda: len(site_infos()) >= 6, 60, "five tries after the first sync")
    tries = site_infos()
    gaps = [b["arrived"] - a["arrived"] for a, b in zip(tries[1:], tries[2:])]
    want = [2, 3, 3, 3]  # the first try came 1 s after the first sync ended
    print("# the tries came %s s apart (outage_retry 1s, doubled, at most 3s)"
          % ["%.2f" % g for g in gaps])
    t.ok(all(g >= w - 0.05 for g, w in zip(gaps, want)),
         "the retries back off: at least 2, 3, 3, 3 s apart", gaps)
    t.ok(len(gaps) >= 4 and all(g < 3 * 6 for g in gaps),
         "and keep coming (not at the next interval, an hour away)", gaps)
    status = n.has("STATUS=Moodle unavailable: its database connection failed (since ")
    t.ok(status and "; next try " in status[-1], "STATUS= says Moodle is down, since when, "
         "and the next try", n.poll()[-5:])
    m = parse(scrape(port) or "")
    t.eq(value(m, "webcoursed_moodle_up"), 0.0, "webcoursed_moodle_up is 0")
    down_lines = out.matching("Moodle unavailable")
    t.ok(1 <= len(down_lines) <= 2, "%d lines about the outage in %d tries (the run's, the "
         "daemon's)" % (len(down_lines), len(tries) - 1), out.text()[-3000:])
    t.eq(out.count("sync started"), 1, "a try is not worth a line: only the first sync's")
    t.eq(out.count("pace"), 0, "no pacing lines")
    # Moodle comes back.
    env.double.clear_faults()
    back = time.monotonic()
    mark = len(n.poll())
    n.wait("STATUS=idle; last sync", after=mark, timeout=60)
    noticed = [e["arrived"] for e in env.double.log()
               if e["function"] == "core_webservice_get_site_info" and e["arrived"] > back]
    print("# Moodle back: the next try came %.1f s later (outage_retry_max 3 s; goal: "
          "at most twice that)" % ((noticed[0] - back) if noticed else -1))
    # The line comes before STATUS=, but through another pipe.
    wait_for(lambda: out.count("Moodle is available again"), 10, "the line of the return")
    t.eq(out.count("Moodle is available again"), 1, "one line when Moodle is back",
         out.text()[-2000:])
    m = parse(scrape(port) or "")
    t.eq(value(m, "webcoursed_moodle_up"), 1.0, "webcoursed_moodle_up is 1 again")
    moo = {k: v for k, v in env.enrolments().items() if k[0].startswith("BR")}
    from outage import EXPECTED
    t.eq(moo, EXPECTED, "and the import completed")
    d.send_signal(signal.SIGTERM)
    d.wait(30)
finally:
    env.close()

t.done()
