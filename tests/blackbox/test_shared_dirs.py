#!/usr/bin/env python3
"""State files in a directory others can write to (issue 20 item 3).

Another user (nobody, when we run as root) plants symbolic links where
webcoursed will create files: ledger.db.lock and the missing-users CSV's
temporary names, pointing at a file of ours.  A state path in a directory
that others can write to (0777, or 1777 like /tmp) is refused by
`webcoursed -t`, at start and by webcoursectl, with FILE:LINE, and the
link's target keeps its content; a token file there is not even read.  In a private directory a planted lock
link is not followed either, and the CSV is written 0640."""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, WEBCOURSED, wrapper  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
ROOT = os.geteuid() == 0
PRECIOUS = "root's file: must not change\n"


def plant(target, links):
    """Links to target at each of links, made by another user: a forked
    child that becomes nobody when we are root (stays us otherwise)."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            if ROOT:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            for link in links:
                os.symlink(target, link)
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    t.eq(os.waitstatus_to_exitcode(status), 0,
         "%s planted %d links" % ("nobody" if ROOT else "we", len(links)))
    t.eq(os.lstat(links[0]).st_uid, 65534 if ROOT else os.geteuid(),
         "... owned by %s" % ("nobody" if ROOT else "us"))


def daemon_test(env):
    p = subprocess.run(wrapper() + [WEBCOURSED, "-c", env.conf, "-t"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode() + p.stderr.decode()


env = Env()
os.umask(0o022)
precious = os.path.join(env.dir, "precious")
try:
    with open(precious, "w") as f:
        f.write(PRECIOUS)
    print("# running as %s" % ("root; links planted by nobody" if ROOT else "uid %d" % os.geteuid()))

    for mode in (0o777, 0o1777):
        shared = tempfile.mkdtemp(prefix="webcoursed-shared-")
        os.chmod(shared, mode)
        db = os.path.join(shared, "ledger.db")
        csv = os.path.join(shared, "missing.csv")
        # the lock, and the CSV's temporary names for the next pids
        plant(precious, [db + ".lock"] + ["%s.tmp.%d" % (csv, pid) for pid in
                                          range(os.getpid(), os.getpid() + 2000)])
        env.set("state", "database", db)
        env.set("state", "missing_users_csv", csv)
        lines = open(env.conf).read().splitlines()
        dbline = next(i + 1 for i, l in enumerate(lines) if l.startswith("database ="))
        csvline = next(i + 1 for i, l in enumerate(lines) if l.startswith("missing_users_csv ="))

        rc, out = daemon_test(env)
        t.ok(rc != 0, "webcoursed -t refuses state paths in a %04o directory" % mode, out)
        t.ok(re.search(r"^%s:%d: state\.database: .*%s.*others can write" % (
            re.escape(env.conf), dbline, re.escape(shared)), out, re.M),
             "... naming FILE:LINE of database and the directory", out)
        t.ok(re.search(r"^%s:%d: state\.missing_users_csv: .*others can write" % (
            re.escape(env.conf), csvline), out, re.M),
             "... and FILE:LINE of missing_users_csv", out)
        p = env.sync()
        t.ok(p.returncode != 0 and "others can write" in p.err,
             "webcoursectl sync refuses to run (%04o)" % mode, p.err[-800:])
        p = env.daemon_once()
        t.ok(p.returncode != 0 and "others can write" in p.err,
             "webcoursed --once refuses to start (%04o)" % mode, p.err[-800:])
        t.eq(open(precious).read(), PRECIOUS, "the links' target kept its content (%04o)" % mode)
        t.eq(env.writes(), [], "nothing was written to Moodle (%04o)" % mode)
        t.ok(not os.path.exists(db), "no ledger was created in the shared directory")
        subprocess.run(["rm", "-rf", shared])

    # The token file in a shared directory: another user's file (or a link
    # to one of ours) would be sent to Moodle as the token.  Not even read.
    shared = tempfile.mkdtemp(prefix="webcoursed-shared-")
    os.chmod(shared, 0o1777)
    planted = os.path.join(shared, "token")
    plant(precious, [planted])
    env.set("moodle", "token_file", planted)
    lines = open(env.conf).read().splitlines()
    tokline = next(i + 1 for i, l in enumerate(lines) if l.startswith("token_file ="))
    rc, out = daemon_test(env)
    t.ok(rc != 0 and re.search(r"^%s:%d: moodle\.token_file: the file's directory can be "
                               r"written by others" % (re.escape(env.conf), tokline), out, re.M),
         "a token file in a 1777 directory is refused at its line", out)
    t.ok(shared not in out, "... without showing its path (a token pasted there would be)",
         out)
    p = env.sync()
    t.ok(p.returncode != 0 and "written by others" in p.err,
         "webcoursectl sync refuses it too", p.err[-800:])
    t.ok(PRECIOUS.strip() not in json.dumps(env.double.log()) + p.err,
         "the linked file's content went nowhere")
    env.set("moodle", "token_file", env.token_file)
    subprocess.run(["rm", "-rf", shared])

    # A private directory: the config is accepted, but a lock file that is a
    # link (planted before the directory was closed, or by the admin) is
    # still not followed: it would be truncated and written.
    env.set("state", "database", env.db)
    env.set("state", "missing_users_csv", env.csv)
    rc, out = daemon_test(env)
    t.eq(rc, 0, "webcoursed -t accepts state paths in a private directory", out)
    os.symlink(precious, env.db + ".lock")
    p = env.sync()
    t.ok(p.returncode != 0 and "symbolic link" in p.err,
         "a lock file that is a symbolic link is refused, and said so", p.err[-800:])
    t.eq(open(precious).read(), PRECIOUS, "the lock link's target kept its content")
    os.unlink(env.db + ".lock")

    p = env.sync()
    t.eq(p.returncode, 0, "the sync runs once the link is gone", p.err[-800:])
    st = os.stat(env.csv)
    t.eq(oct(st.st_mode & 0o7777), oct(0o640),
         "the missing-users CSV is 0640 (it lists people), under umask 022")
    t.eq(sorted(n for n in os.listdir(env.dir) if ".tmp." in n), [],
         "no temporary file is left beside the CSV")
finally:
    env.close()
t.done()
