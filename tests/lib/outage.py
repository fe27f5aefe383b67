"""A first import into a Moodle that goes down in the middle (issue 19):
the world, and what must hold of every run, shared by test_breaker.py and
test_breaker_chaos.py."""
import json
import os

from harness import Env, feed_of
from hostile import crash_report, ledger_enrolments

# Faults that put the double in the states of moodle-ws 32*, and what the
# run's message must then name.
OUTAGES = {
    "dbdown": "Moodle unavailable: its database connection failed",
    "maintenance": "Moodle unavailable: it is in maintenance mode or overloaded (HTTP 503)",
    "sitemaintenance": "Moodle unavailable: it is in maintenance mode",
    "http502": "Moodle unavailable: its web server cannot reach PHP (HTTP 502)",
    "http504": "Moodle unavailable: its web server gave up waiting for PHP (HTTP 504)",
}
# Requests an outage may cost a run: the breaker's 3 and the other calls in
# flight with them (4), with some room for a good answer in between.
MAX_OUTAGE_REQUESTS = 10

USERS = ["br%03d" % i for i in range(160)]
MISSING = ["gone01", "gone02"]  # in the feed, never in Moodle
COURSES = 16
FEED = feed_of({"BR%02d" % c: ("Breaker %d" % c,
                               [(USERS[(c * 10 + k) % len(USERS)], None) for k in range(30)] +
                               ([(MISSING[c % 2], None)] if c < 4 else []))
                for c in range(COURSES)})
EXPECTED = {("BR%02d" % c, USERS[(c * 10 + k) % len(USERS)]): ("active", (5,))
            for c in range(COURSES) for k in range(30)}
MISSING_ROWS = {(MISSING[c % 2], "BR%02d" % c) for c in range(4)}


def world(**moodle):
    """A fresh double holding the users, and a config with 4 calls in
    flight and small calls (many of them)."""
    # A short timeout: a call left unsure settles that much later.
    m = {"max_concurrent_calls": "4", "timeout": "2s"}
    m.update(moodle)
    env = Env(feed=FEED, max_input_vars=150, moodle=m)
    env.double.add_users(USERS)
    return env


def missing_rows(env):
    rows = env.csv_rows()
    return set() if not rows else {(r[0], r[1]) for r in rows[1:]}


def outage_log(entries):
    return [e for e in entries if e["fault"] in OUTAGES]


def sent_twice(entries):
    """Enrolments sent to Moodle while it already held them."""
    return sum(e.get("already_enrolled") or 0 for e in entries
               if e["function"] == "enrol_manual_enrol_users")


class Checks:
    """What every run of an import that meets an outage must keep."""

    def __init__(self, t, env, label):
        self.t, self.env, self.label = t, env, label
        self.twice = 0

    def run(self, expect_cause=None):
        """One sync; its log entries.  expect_cause: the run must stop
        and say so; None: whatever the run does, nothing may break."""
        t, env, label = self.t, self.env, self.label
        mark = len(env.double.log())
        p = env.sync()
        log = env.double.log(since=mark)
        self.twice += sent_twice(log)
        bad = crash_report(p.err)
        t.ok(p.returncode in (0, 1) and bad is None, "%s: exit %d, no crash" % (
            label, p.returncode), "%s\n%s" % (bad, p.err[-1500:]))
        if expect_cause is not None:
            failed = [line for line in p.err.splitlines() if "sync failed" in line]
            t.ok(p.returncode == 1 and len(failed) == 1 and expect_cause in failed[0]
                 and "<" not in failed[0],
                 "%s: the run stops; one plain line names the cause" % label, p.err[-1500:])
        out = outage_log(log)
        t.ok(len(out) <= MAX_OUTAGE_REQUESTS, "%s: %d requests during the outage (at most %d)"
             % (label, len(out), MAX_OUTAGE_REQUESTS),
             [(e["function"], e["items"]) for e in out])
        errs = json.loads(env.ctl("errors", "--json").out)
        t.eq([e for e in errs if e["kind"] != "run"], [], "%s: no item error" % label)
        t.ok(missing_rows(env) <= MISSING_ROWS, "%s: no user marked missing who is not"
             % label, sorted(missing_rows(env) - MISSING_ROWS)[:5])
        led = ledger_enrolments(env.db) if os.path.exists(env.db) else {}
        moo = {k: v for k, v in env.enrolments().items() if k[0].startswith("BR")}
        wrong = {k: (v, moo.get(k)) for k, v in led.items() if moo.get(k) != v}
        t.ok(not wrong, "%s: the ledger records nothing Moodle does not hold" % label,
             sorted(wrong.items())[:5])
        return p, log

    def converges(self):
        """The outage over: the next run completes exactly, and no
        enrolment went to Moodle twice in all the runs."""
        t, env, label = self.t, self.env, self.label
        env.double.clear_faults()
        p, _ = self.run()
        moo = {k: v for k, v in env.enrolments().items() if k[0].startswith("BR")}
        diff = sorted(set(moo.items()) ^ set(EXPECTED.items()))
        t.ok(p.returncode == 0 and not diff,
             "%s: after recovery the next run converges exactly" % label,
             "exit %d; %d differ, e.g. %s\n%s" % (p.returncode, len(diff), diff[:5],
                                                   p.err[-1000:]))
        t.eq(missing_rows(env), MISSING_ROWS, "%s: the missing users, exactly" % label)
        sns = [c["shortname"] for c in env.state()["courses"] if c["shortname"].startswith("BR")]
        t.eq(len(sns), len(set(sns)), "%s: no course created twice" % label)
        t.eq(self.twice, 0, "%s: no enrolment sent twice" % label)


def reference_functions():
    """The functions of a clean first import, in the order they arrived."""
    env = world()
    try:
        p = env.sync()
        if p.returncode != 0:
            raise RuntimeError("the clean import failed: %s" % p.err[-1000:])
        return [e["function"] for e in sorted(env.double.log(), key=lambda e: e["seq"])]
    finally:
        env.close()
