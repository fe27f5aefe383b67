#!/usr/bin/env python3
"""Control characters never reach a terminal (issue 20 item 5).

The feed: a shortname, name or idnumber holding ESC, BEL, a newline, DEL,
a tab or a C1 control is refused for that course, with one clear error
each; the others go on.  The output: a ledger written before that rule
(or by hand) may still hold such text: `webcoursectl history`, `plan`,
`status`, `errors` and `drift`, and the log, print it cleaned, one entry
per line."""
import copy
import json
import os
import re
import sqlite3
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, SEED_FEED  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
# a terminal title, a screen clear by C1 CSI, and a line break
EVIL = "evil\x1b]0;pwned\x07\u009b2J\nsecond line"
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\u0080-\u009f]")


def controls(text):
    return sorted(set(repr(c) for c in CONTROL.findall(text)))


seed = json.load(open(SEED_FEED))
feed = copy.deepcopy(seed)
feed["courses"] += [
    {"shortname": "esc\x1b]0;x\x07", "name": "title escape in the shortname"},
    {"shortname": "nl\nname", "name": "newline in the shortname"},
    {"shortname": "bel", "name": "ring\x07"},
    {"shortname": "c1", "name": "CSI \u009b2J"},
    {"shortname": "idn", "name": "n", "idnumber": "a\x7f"},
]
env = Env(feed=feed, sync={"on_removed_participant": "suspend"})
try:
    p = env.sync()
    t.eq(p.returncode, 0, "a feed with control characters in some names syncs", p.err[-800:])
    names = set(env.courses())
    t.eq(sorted(n for n in names if CONTROL.search(n)), [],
         "no course with a control character in its shortname reached Moodle")
    t.ok({"unique_field1", "unique_field2", "unique_field3"} <= names,
         "the good courses were created", names)
    t.ok("bel" not in names and "c1" not in names and "idn" not in names,
         "a course whose name or idnumber holds one is skipped", names)
    p = env.ctl("errors")
    t.eq(len(re.findall(r"control-character", p.out)), 5,
         "webcoursectl errors: one control-character error per course", p.out)
    t.eq(controls(p.out), [], "... printed without a control character")
    t.eq(controls(p.err), [], "the sync's log has no control character either")

    # A ledger from before the rule: names with controls, as stored.
    db = sqlite3.connect(env.db)
    with db:
        db.execute("UPDATE enrolments SET username = ? WHERE course = 'unique_field2'"
                   " AND username = '00000000076'", (EVIL,))
        db.execute("UPDATE courses SET fullname = ? WHERE shortname = 'unique_field3'",
                   (EVIL,))
        run = db.execute("SELECT max(id) FROM runs").fetchone()[0]
        db.execute("UPDATE runs SET message = ? WHERE id = ?", (EVIL, run))
        db.execute("INSERT INTO errors (run_id, kind, item, code, message)"
                   " VALUES (?, 'course', ?, 'x', ?)", (run, EVIL, EVIL))
        db.execute("INSERT INTO history (run_id, time, action, course, username, role,"
                   " reason) VALUES (?, 1700000000, 'enrol', ?, ?, 'student', ?)",
                   (run, EVIL, EVIL, EVIL))
    db.close()

    p = env.ctl("history")
    t.eq(p.returncode, 0, "webcoursectl history", p.err)
    t.eq(controls(p.out), [], "history prints no control character", p.out[-600:])
    evil_lines = [line for line in p.out.splitlines() if "evil" in line]
    t.eq(len(evil_lines), 1, "the entry stays on one line", p.out[-600:])
    t.ok(evil_lines and "second line" in evil_lines[0] and "pwned" in evil_lines[0],
         "... with its text shown, cleaned", evil_lines)

    p = env.ctl("plan")
    t.eq(p.returncode, 0, "webcoursectl plan", p.err[-600:])
    t.eq(controls(p.out), [], "plan prints no control character", p.out[-800:])
    gone = [line for line in p.out.splitlines() if "evil" in line and line.startswith("- ")]
    t.ok(len(gone) == 1 and gone[0].startswith("- suspend ") and
         gone[0].endswith(" in unique_field2"),
         "the enrolment line (plan_print_enrol) is one cleaned line", p.out[-800:])

    for args in (["status"], ["errors"], ["drift"]):
        p = env.ctl(*args)
        t.eq(controls(p.out + p.err), [], "webcoursectl %s prints no control character" %
             " ".join(args), (p.out + p.err)[-600:])
    p = env.ctl("status")
    t.eq(len([line for line in p.out.splitlines() if "evil" in line]), 1,
         "status: the run's message stays on one line", p.out)
    p = env.ctl("errors")
    t.eq(len([line for line in p.out.splitlines() if "evil" in line]), 1,
         "errors: the error stays on one line", p.out)
    for args, key in ((["history", "--json"], "reason"), (["errors", "--json"], "message")):
        p = env.ctl(*args)
        t.ok(any(e.get(key) == EVIL for e in json.loads(p.out)),
             "%s keeps the stored text as it is (JSON escapes it)" % " ".join(args),
             p.out[-400:])
finally:
    env.close()
t.done()
