#!/usr/bin/env python3
"""The history: a row for every change made in Moodle and every decision
not to (withheld, held, skipped, missing, refused), written once when the
state changes, with its reason in words; `webcoursectl history` filters
and --json; pruning by state.history_days; and after a kill -9 between
Moodle's answer and the ledger commit, history and ledger agree."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, MoodleDouble, WEBCOURSECTL, feed_of, wrapper  # noqa: E402
from moodle_double import Reply  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()

USERS = ["h%03d" % i for i in range(40)]


def rows(env, *args):
    p = env.ctl("history", "--json", *args)
    t.ok(p.returncode == 0, "history --json %s exits 0" % " ".join(args), p.err)
    return json.loads(p.out or "[]")


def actions(hist, **match):
    return [h for h in hist if all(h.get(k) == v for k, v in match.items())]


def feed(roles=None, drop=(), extra=None, rename=None, bad_role=False):
    roles = roles or {}
    courses = {
        "HA": ("History A", [(u, roles.get(u)) for u in USERS[:20] if u not in drop]),
        "HB": ("History B" if rename is None else rename,
               [(u, roles.get(u)) for u in USERS[10:30] if u not in drop] +
               [("ghost1", None)]),
    }
    if extra:
        courses.update(extra)
    f = feed_of(courses)
    if bad_role:
        f["courses"][0]["participants"].append({"username": "h039", "roleid": "professr"})
    return f


env = Env(feed=feed(bad_role=True),
          sync={"interval": "1h", "category_id": "2", "max_removals": "50%"})
try:
    env.double.add_users(USERS)
    p = env.sync()
    t.eq(p.returncode, 0, "first run", p.err[-1500:])
    h = rows(env)
    t.eq(len(actions(h, action="enrol")), 40, "one enrol row per enrolment made")
    t.ok(all(r["reason"] == "listed in the feed" and r["role"] == "student"
             for r in actions(h, action="enrol")), "each: listed in the feed, as student")
    t.eq(sorted(r["course"] for r in actions(h, action="create")), ["HA", "HB"],
         "one create row per course")
    t.eq([(r["course"], r["username"]) for r in actions(h, action="missing")],
         [("HB", "ghost1")], "the missing user, once")
    skip = actions(h, action="skip")
    t.ok(len(skip) == 1 and skip[0]["reason"] ==
         'feed record skipped: unknown role "professr" (not in [roles])'
         and skip[0]["username"] == "h039", "the skipped record, with why", skip)
    first_run = h[0]["run"]
    t.ok(all(r["run"] == first_run for r in h), "all rows carry the run number")

    # Nothing changed: no new row.
    env.double.clear_log()
    p = env.sync()
    t.eq(len(rows(env)), len(h), "an unchanged run writes no row")
    env.set_feed(feed(bad_role=True, extra={"HC": ("History C", [("h000", None)])}))
    p = env.sync()
    h2 = rows(env)
    t.eq([r["action"] for r in h2[:len(h2) - len(h)]].count("skip"), 0,
         "a skipped record is not written again on the next full run")

    # Role change, a participant dropped, a rename.
    env.set_feed(feed(roles={"h005": "teacher"}, drop=("h001",), rename="History B, renamed",
                      extra={"HC": ("History C", [("h000", None)])}))
    p = env.sync()
    t.eq(p.returncode, 0, "a run with changes", p.err[-1500:])
    h3 = rows(env, "--run", str(rows(env)[0]["run"]))
    change = [r for r in h3 if r["username"] == "h005" and r["course"] == "HA"]
    t.eq(sorted((r["action"], r["role"], r["reason"]) for r in change),
         [("role_add", "teacher", "role changed in the feed: student → teacher"),
          ("role_remove", "student", "role changed in the feed: student → teacher")],
         "a role change: both rows say student → teacher")
    sus = actions(h3, action="suspend", username="h001")
    t.ok(len(sus) == 1 and sus[0]["reason"].startswith("absent from the feed since run %d ("
                                                       % sus[0]["run"])
         and sus[0]["reason"].endswith("; policy suspend"),
         "a suspension: absent since this run; policy suspend", sus)
    ren = actions(h3, action="rename")
    t.eq([r["reason"] for r in ren],
         ['renamed in the feed: "History B" → "History B, renamed"'], "a rename, old → new")

    # Back in the feed: reactivated.
    env.set_feed(feed(roles={"h005": "teacher"}, rename="History B, renamed",
                      extra={"HC": ("History C", [("h000", None)])}))
    p = env.sync()
    back = actions(rows(env, "--user", "h001"), action="reactivate")
    t.eq([r["reason"] for r in back], ["back in the feed after our suspension"],
         "back in the feed: reactivated")

    # The missing user appears.
    env.double.add_users(["ghost1"])
    p = env.sync()
    g = actions(rows(env, "--user", "ghost1"), action="enrol")
    t.eq([r["reason"] for r in g], ["listed in the feed; the Moodle account now exists"],
         "a missing user who appears is enrolled, saying so")

    # Withheld removals: written once, and the suspension dates back to them.
    env.set("sync", "max_removals", "2")
    env.set("sync", "removals_allowance", "0")
    dropped = USERS[:6]
    env.set_feed(feed(roles={"h005": "teacher"}, drop=dropped, rename="History B, renamed",
                      extra={"HC": ("History C", [("h000", None)])}))
    p = env.sync()
    w1 = actions(rows(env), action="withhold")
    t.ok(len(w1) >= 6 and all("withheld by the guard" in r["reason"] for r in w1),
         "withheld removals: one row each", [r["reason"] for r in w1][:3])
    withheld_run = w1[0]["run"] if w1 else None
    p = env.sync()
    t.eq(len(actions(rows(env), action="withhold")), len(w1),
         "withheld again next run: no new row")
    p = env.sync("--allow-removals")
    t.eq(p.returncode, 0, "removals allowed", p.err[-1500:])
    sus = actions(rows(env, "--user", "h002"), action="suspend")
    t.ok(sus and sus[0]["reason"].startswith("absent from the feed since run %s ("
                                             % withheld_run),
         "the suspension says since when: the run that first withheld it",
         [r["reason"] for r in sus])

    # Held for approval, approved, created.
    env.set("sync", "new_courses", "approve")
    env.set("sync", "max_removals", "50%")
    env.set_feed(feed(roles={"h005": "teacher"}, drop=dropped, rename="History B, renamed",
                      extra={"HC": ("History C", [("h000", None)]),
                             "HD": ("History D", [("h000", None)])}))
    env.sync()
    env.sync()
    hd = rows(env, "--course", "HD")
    t.eq([r["action"] for r in hd], ["hold"], "a held course: one hold row over two runs")
    p = env.ctl("approve", "HD")
    t.eq(p.returncode, 0, "approve", p.err)
    env.sync()
    hd = rows(env, "--course", "HD")
    t.eq([r["action"] for r in hd if r["username"] is None], ["create", "approve", "hold"],
         "then approve (run 0: an operator) and create")
    t.eq([r["run"] for r in hd if r["action"] == "approve"], [0], "approve is run 0")

    # Moodle refuses an enrolment: written once, not on every run.
    env.set("sync", "new_courses", "create")
    env.double.add_course("HNOM", "No manual", manual="none", categoryid=2)
    env.set_feed(feed(roles={"h005": "teacher"}, drop=dropped, rename="History B, renamed",
                      extra={"HC": ("History C", [("h000", None)]),
                             "HD": ("History D", [("h000", None)]),
                             "HNOM": ("No manual", [("h000", None)])}))
    env.sync()
    env.sync()
    err = actions(rows(env, "--course", "HNOM"), action="error")
    t.ok(len(err) == 1 and "wsnoinstance" in err[0]["reason"],
         "a refused enrolment: one error row over two runs", err)
    t.ok(actions(rows(env, "--course", "HNOM"), action="adopt"),
         "the course that existed was adopted, saying so")

    # Filters.
    all_rows = rows(env)
    ids = [r["id"] for r in all_rows]
    t.eq(ids, sorted(ids, reverse=True), "newest first")
    t.eq(set(all_rows[0]), {"id", "run", "time", "action", "course", "username", "role",
                            "reason"}, "--json: every field")
    u = rows(env, "--user", "h005")
    t.ok(u and all(r["username"] == "h005" for r in u), "--user keeps one user's rows")
    c = rows(env, "--course=HA")
    t.ok(c and all(r["course"] == "HA" for r in c), "--course=SN too")
    t.eq(rows(env, "--since", "2099-01-01"), [], "--since a future date: nothing")
    t.eq(len(rows(env, "--since", "1d")), len(all_rows), "--since 1d: everything of today")
    t.eq(len(rows(env, "--since", "1970-01-01T00:00Z")), len(all_rows), "--since a time")
    p = env.ctl("history", "--since", "yesterday")
    t.ok(p.returncode == 2 and "yesterday" in p.err, "a bad date is a usage error", p.err)
    p = env.ctl("history", "--user", "h005")
    lines = p.out.splitlines()
    t.ok(p.returncode == 0 and len(lines) == len(u) + 1 and lines[0].startswith("time (UTC)"),
         "text: a header and one line per event", p.out[:500])

    # Pruning: rows older than history_days go at the start of a run.
    con = sqlite3.connect(env.db)
    old = int(time.time()) - 3 * 86400
    con.execute("INSERT INTO history (run_id, time, action, course, username, role, reason)"
                " VALUES (1, ?, 'enrol', 'OLD', 'x', NULL, 'three days ago')", (old,))
    con.commit()
    con.close()
    env.set("state", "history_days", "2")
    env.sync()
    t.eq(rows(env, "--course", "OLD"), [], "rows older than history_days are pruned")
    t.ok(len(rows(env)) > 0, "and the recent ones kept")
finally:
    env.close()


# --- kill -9 between Moodle's answer and the ledger commit -----------------
class KillOnAnswer(MoodleDouble):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.victim = None
        self.armed = False

    def handle_ws(self, method, query, headers, body):
        reply, entry = super().handle_ws(method, query, headers, body)
        f = dict(urllib.parse.parse_qsl(body.decode("latin-1")))
        if self.armed and f.get("wsfunction") == "enrol_manual_enrol_users":
            self.armed = False
            threading.Timer(0.002, lambda: os.kill(self.victim, signal.SIGKILL)).start()
        return reply, entry


d = KillOnAnswer(max_input_vars=100).start()
env = Env(feed=feed(), double=d, max_input_vars=100, moodle={"timeout": "3s"})
try:
    d.add_users(USERS)
    d.armed = True
    proc = subprocess.Popen(wrapper() + [WEBCOURSECTL, "-c", env.conf, "sync"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    d.victim = proc.pid
    proc.communicate(timeout=120)
    t.eq(proc.returncode, -signal.SIGKILL, "the sync was killed after an enrol answer")
    p = env.sync()
    t.eq(p.returncode, 0, "the next run completes", p.err[-1500:])
    con = sqlite3.connect(env.db)
    ledger = set(con.execute("SELECT course, username FROM enrolments"))
    hist = set(con.execute("SELECT course, username FROM history WHERE action IN"
                           " ('enrol', 'reactivate', 'role_add')"))
    con.close()
    t.eq(ledger, hist, "every enrolment in the ledger has its history row, and no other",
         "only ledger: %s\nonly history: %s" % (sorted(ledger - hist)[:5],
                                               sorted(hist - ledger)[:5]))
    t.eq(len(ledger), 40, "all 40 enrolments")
finally:
    env.close()
t.done()
