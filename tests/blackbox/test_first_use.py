#!/usr/bin/env python3
"""What a new user meets first: status before any run, check that says what
it could not check, a failure told once and kept for `errors`, one line for
a mass adoption, the demo's output in a file, and no temp files left by a
test that dies at start-up."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, TOP, feed_of  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()

env = Env()
try:
    # A fresh install: no ledger yet is not an error.
    p = env.ctl("status")
    t.eq(p.returncode, 0, "status before the first run exits 0", p.err)
    t.ok("no run has happened yet" in p.out, "and says no run has happened", p.out)
    p = env.ctl("status", "--json")
    st = json.loads(p.out)
    t.ok(p.returncode == 0 and st["runs"] == [], "status --json before the first run", p.out)
    p = env.ctl("missing-users")
    t.eq((p.returncode, p.out), (0, "username,course_shortname,role,first_seen\r\n"),
         "missing-users before the first run is the CSV header alone")
    p = env.ctl("errors")
    t.ok(p.returncode == 0 and "no run has happened yet" in p.out, "errors before the first run",
         p.out + p.err)
    t.ok(not os.path.exists(env.db), "reading creates no ledger")

    # Moodle unreachable: the token fails and nothing after it claims ok.
    env.double.configure(ws_enabled=False)
    p = env.ctl("check")
    lines = p.out.splitlines()
    t.eq(p.returncode, 1, "check with Moodle down exits 1")
    t.ok(any(l.startswith("NOT OK: token:") for l in lines), "the token check failed", p.out)
    for what in ("functions", "category", "roles", "debugging"):
        t.ok(any(l.startswith("skipped: %s:" % what) for l in lines),
             "%s is marked skipped" % what, p.out)
    t.ok(not any(l.startswith("ok: roles") for l in lines), "roles are not called ok", p.out)
    t.ok(lines[-1].startswith("1 passed, 1 failed, 4 skipped"), "the counts end it", p.out)

    # A failed run: told once, and `errors` says why.
    p = env.sync()
    msg = "web services are probably disabled"
    t.eq(p.returncode, 1, "sync fails while web services are off")
    t.eq((p.out + p.err).count(msg), 1, "the failure is printed once", p.out + p.err)
    p = env.ctl("errors")
    t.ok(p.returncode == 0 and "failed" in p.out and msg in p.out,
         "errors after a failed run says why", p.out)
    errs = json.loads(env.ctl("errors", "--json").out)
    t.ok(len(errs) == 1 and errs[0]["kind"] == "run" and errs[0]["code"] == "failed"
         and msg in errs[0]["message"], "errors --json has the failed run", errs)

    # Moodle up: roles are tried in a course of the category, writing nothing.
    env.double.configure(ws_enabled=True)
    before = env.state()
    env.double.clear_log()
    p = env.ctl("check")
    t.eq(p.returncode, 0, "check with Moodle up passes", p.out)
    t.ok(any(l.startswith("ok: roles:") for l in p.out.splitlines()), "roles checked live", p.out)
    t.eq(env.state(), before, "check changed nothing in Moodle")
    probes = [r for r in env.double.log() if r["function"] == "core_role_unassign_roles"]
    t.ok(len(probes) >= 1 and all(r["errorcode"] is None for r in probes),
         "the roles were tried with core_role_unassign_roles", probes)

    # A role the token may not give (wsclient may not give manager, 25c).
    env.set("roles", "manager", "1")
    with open(env.token_file, "w") as f:
        f.write(env.double.wsclient_token + "\n")
    p = env.ctl("check")
    t.eq(p.returncode, 1, "a role the token may not give fails the check", p.out)
    t.ok(any(l.startswith("NOT OK: roles:") and '"manager"' in l for l in p.out.splitlines()),
         "and names it", p.out)
    with open(env.token_file, "w") as f:
        f.write(env.double.token + "\n")
    del env.sections["roles"]

    # An empty category (category 1 of the double's seed holds no course).
    env.set("sync", "category_id", "1")
    p = env.ctl("check")
    t.ok(any(l.startswith("skipped: roles:") and "no course" in l for l in p.out.splitlines()),
         "an empty category: roles skipped, saying why", p.out)
    t.eq(p.returncode, 0, "a skipped check does not fail the command", p.out)
    env.set("sync", "category_id", "2")
finally:
    env.close()

# A lost ledger with many courses in Moodle: one info line, not one per course.
courses = {"AD%03d" % i: ("Adopted %d" % i, [("00000000023", None)]) for i in range(30)}
env = Env(feed=feed_of(courses))
try:
    p = env.sync()
    t.eq(p.returncode, 0, "initial sync of 30 courses", p.err)
    os.unlink(env.db)
    p = env.sync()
    t.eq(p.returncode, 0, "sync after losing the ledger", p.err)
    adopt_lines = [l for l in p.err.splitlines()
                   if "adopted" in l and "info:" in l and "sync done" not in l]
    t.eq(len(adopt_lines), 1, "one info line says how many courses were adopted", p.err)
    t.ok("30" in adopt_lines[0] if adopt_lines else False, "with the count", adopt_lines)
    p = env.ctl("-v", "sync")
    t.eq(p.returncode, 0, "a further sync", p.err)
finally:
    env.close()

# A test that dies at start-up leaves no temp directory with a token.
code = ("import sys; sys.path.insert(0, %r); from harness import Env; e = Env(); "
        "print(e.dir, flush=True); raise SystemExit('dying at start-up')"
        % os.path.join(TOP, "tests", "lib"))
p = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, env=dict(os.environ))
d = p.stdout.decode().strip()
t.ok(d.startswith("/") and p.returncode != 0, "the dying test ran", p.stderr.decode())
t.ok(d and not os.path.exists(d), "its temp directory is gone", d)

# The demo, into a file: the README's first command, no terminal codes.
p = subprocess.run([sys.executable, os.path.join(TOP, "tests", "demo.py")],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300,
                   env=dict(os.environ))
out = p.stdout.decode("utf-8", "replace")
t.eq(p.returncode, 0, "the demo runs", out[-2000:])
t.ok("\033[" not in out, "the demo writes no terminal codes into a file")
t.ok("username,course_shortname,role,first_seen" in out and "== webcoursectl status ==" in out,
     "the demo shows the status and the CSV", out[-2000:])
t.done()
