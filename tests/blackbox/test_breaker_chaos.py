#!/usr/bin/env python3
"""Chaos for the breaker (issue 19): outages of each kind begin at every
request of a first import, in turn (two each), and last two answers (absorbed by the
retries, or not), half a second (the retries may outlast it), or until the
run gives up (then Moodle comes back).  Each time: at most a few requests
during the outage, no item error, no user marked missing, the ledger true
to Moodle; then the next run converges exactly, and no enrolment was ever
sent twice.  Time is sped up by the config (retry_delay 100 ms)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import SLOWDOWN  # noqa: E402
from outage import OUTAGES, Checks, reference_functions, world  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()

order = reference_functions()
modes = sorted(OUTAGES)
LASTING = [("until the run gives up", {"count": -1}),
           ("for two answers", {"count": 2}),
           ("for 0.5 s", {"count": -1, "duration": 0.5})]
stopped = completed = 0
# Two outages per start point, the kinds and lengths rotating (under
# valgrind, where every run is slow, one at every other start point).
cases = [(start, modes[(start + 2 * v) % len(modes)], LASTING[(start + v) % len(LASTING)])
         for start in range(1, len(order)) for v in range(1 if SLOWDOWN > 1 else 2)]
if SLOWDOWN > 1:
    cases = cases[::2]
for start, mode, (lasting, how) in cases:
    label = "%s from request %d (%s) %s" % (mode, start + 1, order[start], lasting)
    env = world()
    try:
        c = Checks(t, env, label)
        env.double.set_fault(mode, after=start, **how)
        p, _ = c.run()
        if p.returncode == 0:
            completed += 1
        else:
            stopped += 1
            t.ok(OUTAGES[mode] in p.err, "%s: the run names the cause" % label, p.err[-800:])
        c.converges()
    finally:
        env.close()
print("# %d outages: %d runs stopped, %d completed through them" % (
    len(cases), stopped, completed))
t.ok(stopped > 0 and completed > 0, "some outages stopped the run, some were ridden out")
t.done()
