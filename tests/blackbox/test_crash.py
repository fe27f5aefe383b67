#!/usr/bin/env python3
"""Crash safety and convergence: a sync killed with SIGKILL at many points
(before Moodle handles a request, after Moodle committed it but before the
answer left, after the answer arrived but before our ledger commit), with
one call at a time and with several in flight, then run again, leaves
Moodle holding exactly the feed — no duplicate course, no missing
enrolment, no enrolment sent again to someone Moodle already holds (which
would undo an admin's suspension and mail them again).  The same when
Moodle goes on with a call after its client died and commits it seconds
later (late commit), or after a call timed out.  Also: a lost ledger
converges the same way, and a Moodle that fails half-way."""
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, MoodleDouble, WEBCOURSECTL, feed_of, wait_for, wrapper  # noqa: E402
from moodle_double import Reply, max_concurrency  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()

USERS = ["00000000023", "00000000069", "00000000074", "00000000076", "00000000078"]
EXTRA = ["crash%03d" % i for i in range(120)]
FEED = {
    "K%d" % c: ("Kill course %d" % c,
                [(u, None) for u in EXTRA[c * 20:(c + 1) * 20]] +
                [(USERS[c % 5], "teacher"), ("ghost%d" % c, None)])
    for c in range(6)
}
EXPECTED = {("K%d" % c, u): ("active", (5,))
            for c in range(6) for u in EXTRA[c * 20:(c + 1) * 20]}
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
        if self.kill_at == ("enrol", fields.get("wsfunction")):
            self._kill()  # the client dies; this call goes on (late commit)
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


# Small calls (max_input_vars 100) make many requests to kill at; a short
# moodle.timeout keeps the wait for a call that may still be at work short.
MIV = 100
MOODLE = {"timeout": "3s"}


def world(concurrency):
    d = KillingDouble(max_input_vars=MIV).start()
    # Calls take a moment, as Moodle's do, so that several overlap.
    d.configure(cost={"call": 0.01, "item": 0.001})
    env = Env(feed=feed_of(FEED), double=d, max_input_vars=MIV,
              moodle=dict(MOODLE, max_concurrent_calls=str(concurrency)))
    d.add_users(EXTRA)
    return d, env


for concurrency in (1, 4):
    # A reference run tells how many requests a full sync makes.
    d, ref = world(concurrency)
    try:
        p = ref.sync()
        t.eq(p.returncode, 0, "reference sync, %d calls at once" % concurrency, p.err)
        total = ref.double.count
        check_converged(ref, "reference")
        t.ok(total >= 10, "a full sync makes %d requests at max_input_vars %d" % (total, MIV))
        most = max_concurrency(ref.double.log())
        t.ok(most <= concurrency and (concurrency == 1 or most >= 2),
             "at most %d calls were in flight at once (%d seen)" % (concurrency, most))
    finally:
        ref.close()

    # Kill points spread over the run, in each phase.
    phases = ["before", "handled", "answered"]
    points = [(i, phase) for i in range(1, total) for phase in phases]
    t.ok(len(points) >= 27, "%d kill points" % len(points))
    for n, phase in points:
        d, env = world(concurrency)
        try:
            d.kill_at = (n, phase)
            proc = sync_proc(env)
            d.victim = proc.pid
            proc.communicate(timeout=120)
            d.kill_at = None
            killed = proc.returncode == -signal.SIGKILL
            # Calls still in the double finish before we look.
            wait_for(lambda: not d.inflight(), 30, "the calls in flight to end")
            before = active_pairs(env)
            first_sent = len(d.sent_enrolments)
            p = env.sync()
            resent = [(c, u) for c, u, s in d.sent_enrolments[first_sent:]
                      if s is None and (c, u) in before]
            label = "%d at once, killed at request %d (%s)%s" % (
                concurrency, n, phase, "" if killed else " [finished first]")
            t.ok(p.returncode == 0, label + ": the next sync succeeds", p.err[-2000:])
            check_converged(env, label)
            t.eq(resent, [], label + ": no enrolment Moodle held was sent again")
        finally:
            env.close()

# Moodle goes on after its client died: the sync is killed while its enrol
# calls are at work in Moodle, which commits them seconds later.  The next
# run, started at once, must not take "not there yet" for "not applied".
for concurrency in (1, 4):
    d, env = world(concurrency)
    try:
        d.set_fault("latecommit", count=-1, function="enrol_manual_enrol_users", seconds=1.5)
        d.kill_at = ("enrol", "enrol_manual_enrol_users")
        proc = sync_proc(env)
        d.victim = proc.pid
        proc.communicate(timeout=120)
        d.kill_at = None
        d.clear_faults()
        label = "late commit, %d at once" % concurrency
        t.eq(proc.returncode, -signal.SIGKILL, label + ": the sync was killed mid-call")
        t.ok(d.inflight(), label + ": Moodle is still at work on a call of the dead sync")
        first_sent = len(d.sent_enrolments)
        p = env.sync()
        t.eq(p.returncode, 0, label + ": the next sync succeeds", p.err[-2000:])
        check_converged(env, label)
        again = [(c, u) for c, u, s in d.sent_enrolments[first_sent:]
                 if s is None and (c, u) in set((c2, u2) for c2, u2, _ in
                                                d.sent_enrolments[:first_sent])]
        t.eq(again, [], label + ": no enrolment of the dead sync's calls was sent again")
        t.ok("may still be applied by Moodle: held back" in p.err,
             label + ": the run held them back until Moodle had finished", p.err[-1500:])
    finally:
        env.close()

# A call that times out while Moodle is still at work: the run does not
# send it again blindly, looks once the call cannot be at work any more,
# and records what Moodle applied.
d, env = world(4)
try:
    d.set_fault("latecommit", count=1, function="enrol_manual_enrol_users", seconds=4)
    p = env.sync()
    t.eq(p.returncode, 0, "a timed-out call that Moodle commits later: the run completes",
         p.err[-2000:])
    check_converged(env, "a timed-out call committed late")
    sent = [(c, u) for c, u, s in d.sent_enrolments if s is None]
    t.eq(len(sent), len(set(sent)), "no enrolment was sent twice", sorted(sent))
    t.ok("no answer to a call" in p.err, "the log says a call got no answer", p.err[-1500:])
finally:
    env.close()

# A lost ledger: the next run adopts the courses and sends nothing twice.
d, env = world(4)
try:
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
