#!/usr/bin/env python3
"""Crash safety and convergence: a sync killed with SIGKILL at many points
(before Moodle handles a request, after Moodle committed it but before the
answer left, after the answer arrived but before our ledger commit), then
run again, leaves Moodle holding exactly the feed — no duplicate course,
no missing enrolment, no enrolment sent again to someone Moodle already
holds (which would undo an admin's suspension and mail them again).  Also:
a lost ledger converges the same way, and a Moodle that fails half-way."""
import os
import signal
import subprocess
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, MoodleDouble, WEBCOURSECTL, feed_of, wrapper  # noqa: E402
from moodle_double import Reply  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()

USERS = ["00000000023", "00000000069", "00000000074", "00000000076", "00000000078"]
EXTRA = ["crash%03d" % i for i in range(60)]
FEED = {
    "K%d" % c: ("Kill course %d" % c,
                [(u, None) for u in EXTRA[c * 10:(c + 1) * 10]] +
                [(USERS[c % 5], "teacher"), ("ghost%d" % c, None)])
    for c in range(6)
}
EXPECTED = {("K%d" % c, u): ("active", (5,))
            for c in range(6) for u in EXTRA[c * 10:(c + 1) * 10]}
EXPECTED.update({("K%d" % c, USERS[c % 5]): ("active", (3,)) for c in range(6)})


class KillingDouble(MoodleDouble):
    """Kills the sync process at the Nth web-service request, in a phase:
    "before" (not handled), "handled" (Moodle committed, no answer) or
    "answered" (answer sent; the client has not committed it yet).  Also
    keeps every enrolment item sent."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.victim = None
        self.kill_at = None
        self.count = 0
        self.sent_enrolments = []

    def _kill(self):
        if self.victim is not None:
            try:
                os.kill(self.victim, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def handle_ws(self, method, query, headers, body):
        n = self.count
        self.count += 1
        fields = dict(urllib.parse.parse_qsl(body.decode("latin-1")))
        if fields.get("wsfunction") == "enrol_manual_enrol_users":
            i = 0
            while "enrolments[%d][userid]" % i in fields:
                self.sent_enrolments.append((int(fields["enrolments[%d][courseid]" % i]),
                                             int(fields["enrolments[%d][userid]" % i]),
                                             fields.get("enrolments[%d][suspend]" % i)))
                i += 1
        if self.kill_at == (n, "before"):
            self._kill()
            return Reply(reset=True), {"function": fields.get("wsfunction"), "items": 0,
                                       "nvars": 0, "status": 0, "errorcode": None,
                                       "fault": "killed"}
        reply, entry = super().handle_ws(method, query, headers, body)
        if self.kill_at == (n, "handled"):
            self._kill()
            reply = Reply(reset=True)
        elif self.kill_at == (n, "answered"):
            # The answer goes out; the kill follows a moment later, while
            # the client is between reading it and committing.
            threading.Timer(0.002, self._kill).start()
        return reply, entry


def moodle_enrolments(env):
    return {k: v for k, v in env.enrolments().items() if k[0].startswith("K")}


def active_pairs(env):
    ids = {c["shortname"]: c["id"] for c in env.state()["courses"]}
    users = {u["username"]: u["id"] for u in env.state()["users"]}
    return {(ids[c], users[u]) for (c, u), (st, _) in moodle_enrolments(env).items()
            if st == "active"}


def sync_proc(env):
    return subprocess.Popen(wrapper() + [WEBCOURSECTL, "-c", env.conf, "sync"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def check_converged(env, label):
    cs = [c["shortname"] for c in env.state()["courses"] if c["shortname"].startswith("K")]
    ok = sorted(cs) == sorted(FEED) and moodle_enrolments(env) == EXPECTED
    return t.ok(ok, "%s: Moodle holds exactly the feed" % label,
                "courses %s\nenrolments differ: %s" % (
                    sorted(cs), set(moodle_enrolments(env).items()) ^ set(EXPECTED.items())))


# A reference run tells how many requests a full sync makes.
ref = Env(feed=feed_of(FEED), double=KillingDouble(max_input_vars=100).start(),
          max_input_vars=100)
try:
    ref.double.add_users(EXTRA)
    p = ref.sync()
    t.eq(p.returncode, 0, "reference sync", p.err)
    total = ref.double.count
    check_converged(ref, "reference")
    t.ok(total >= 12, "a full sync makes %d requests at max_input_vars 100" % total)
finally:
    ref.close()

# Kill points spread over the run, in each phase.
phases = ["before", "handled", "answered"]
points = [(i, phase) for i in range(1, total) for phase in phases]
t.ok(len(points) >= 20, "%d kill points" % len(points))
for n, phase in points:
    d = KillingDouble(max_input_vars=100).start()
    env = Env(feed=feed_of(FEED), double=d, max_input_vars=100)
    try:
        d.add_users(EXTRA)
        d.kill_at = (n, phase)
        proc = sync_proc(env)
        d.victim = proc.pid
        proc.communicate(timeout=120)
        d.kill_at = None
        killed = proc.returncode == -signal.SIGKILL
        before = active_pairs(env)
        first_sent = len(d.sent_enrolments)
        p = env.sync()
        resent = [(c, u) for c, u, s in d.sent_enrolments[first_sent:]
                  if s is None and (c, u) in before]
        label = "killed at request %d (%s)%s" % (n, phase, "" if killed else " [finished first]")
        t.ok(p.returncode == 0, label + ": the next sync succeeds", p.err[-2000:])
        check_converged(env, label)
        t.eq(resent, [], label + ": no enrolment Moodle held was sent again")
    finally:
        env.close()

# A lost ledger: the next run adopts the courses and sends nothing twice.
d = KillingDouble(max_input_vars=100).start()
env = Env(feed=feed_of(FEED), double=d, max_input_vars=100)
try:
    d.add_users(EXTRA)
    env.sync()
    d.enrol("K0", EXTRA[0], 5, status="suspended")  # an admin's change
    for f in os.listdir(env.dir):
        if f.startswith("ledger.db"):
            os.unlink(os.path.join(env.dir, f))
    d.clear_log()
    p = env.sync()
    t.eq(p.returncode, 0, "sync with a deleted ledger", p.err)
    creates = [r for r in d.log() if r["function"] == "core_course_create_courses"]
    t.eq(creates, [], "no course is created twice: all are adopted by shortname")
    cs = [c["shortname"] for c in env.state()["courses"] if c["shortname"].startswith("K")]
    t.eq(sorted(cs), sorted(FEED), "no duplicate course")
    st = dict(moodle_enrolments(env))
    t.eq(len(st), len(EXPECTED), "every enrolment still there")
    t.eq(st[("K0", EXTRA[0])][0], "suspended",
         "an admin's suspension survives the lost ledger (nothing re-sent)")
    enrols = [r for r in d.log() if r["function"] == "enrol_manual_enrol_users"]
    t.eq(enrols, [], "no enrolment is sent again after a lost ledger")
finally:
    env.close()

# Moodle answers 503 half-way through, then recovers within the retries.
env = Env(feed=feed_of(FEED), max_input_vars=100)
try:
    env.double.add_users(EXTRA)
    env.double.set_fault("http503", count=2, function="enrol_manual_enrol_users", after=1)
    p = env.sync()
    t.eq(p.returncode, 0, "a 503 half-way is retried and the run completes", p.err)
    check_converged(env, "after 503s")
    statuses = [r["status"] for r in env.double.log()
                if r["function"] == "enrol_manual_enrol_users"]
    t.eq(statuses.count(503), 2, "two 503 answers were retried")
    # Moodle down for longer than the retries: the run fails, the next converges.
    env2 = Env(feed=feed_of(FEED), max_input_vars=100)
    try:
        env2.double.add_users(EXTRA)
        env2.double.set_fault("http503", count=-1, function="enrol_manual_enrol_users", after=2)
        p = env2.sync()
        t.ok(p.returncode != 0 and "503" in p.out + p.err, "Moodle down: the run fails saying why",
             p.out + p.err[-1500:])
        env2.double.clear_faults()
        p = env2.sync()
        t.eq(p.returncode, 0, "the next run after recovery succeeds")
        check_converged(env2, "after an outage")
    finally:
        env2.close()
finally:
    env.close()
t.done()
