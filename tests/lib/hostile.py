"""Helpers shared by the hostile-input, secrets and soak black-box tests:
running a binary while measuring its peak memory, reading the ledger
behind the daemon's back, and collecting a daemon's output lines."""
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

from harness import wrapper

# What a sanitizer or a crash leaves in stderr.  An ASan build exits 1 on an
# error, like a failed run, so the exit code alone cannot tell them apart.
_CRASH = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
                    r"runtime error:|Segmentation fault|core dumped|"
                    r"==\d+==ERROR|Invalid (read|write) of size|"
                    r"definitely lost in")


def crash_report(text):
    """The first line of text that looks like a crash or sanitizer report."""
    for line in text.splitlines():
        if _CRASH.search(line):
            return line
    return None


class Result:
    pass


# Fork and exec from a fresh, small interpreter: Linux counts the memory of
# the process that called exec(2) in the child's ru_maxrss, so a child forked
# straight from a test that holds a big feed would report the test's size.
_MEASURE = r"""
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write("%d %d\n" % (os.waitstatus_to_exitcode(status), ru.ru_maxrss))
"""


def run_measured(argv, timeout=300, env=None):
    """Run argv (behind WEBCOURSE_WRAPPER) to its end; return a Result with
    returncode (negative: killed by that signal), out, err and maxrss_kb, the
    peak resident memory of that one process (its rusage from wait4; a fresh
    python3 -S, about 10 MB, is the floor of the figure)."""
    with tempfile.TemporaryFile() as o, tempfile.TemporaryFile() as e, \
            tempfile.NamedTemporaryFile("r") as st:
        p = subprocess.Popen([sys.executable, "-S", "-c", _MEASURE, st.name] +
                             wrapper() + list(argv), stdout=o, stderr=e, env=env,
                             start_new_session=True)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        o.seek(0)
        e.seek(0)
        r = Result()
        fields = st.read().split()
        r.returncode = int(fields[0]) if fields else -signal.SIGKILL
        r.maxrss_kb = int(fields[1]) if fields else 0
        r.out = o.read().decode("utf-8", "replace")
        r.err = e.read().decode("utf-8", "replace")
        return r


# Columns that change on every run that reads the feed, whatever it holds.
_VOLATILE = {"courses": {"last_seen", "checked"}, "missing": {"mark"},
             "decisions": {"mark"}}
_VOLATILE_META = {"feed_digest", "feed_etag", "feed_last_modified"}


def ledger_dump(db, loose=False):
    """Every table of the ledger but runs and errors, as sorted rows.  With
    loose, the columns a run that accepted the feed updates anyway
    (last_seen, checked, mark, the feed's validators) are left out, and the history
    and the decisions in force keep only rows other than skipped records
    ("skip")."""
    con = sqlite3.connect(db, timeout=10)
    try:
        out = {}
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND "
            "name NOT IN ('runs', 'errors') AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        for t in tables:
            cols = [r[1] for r in con.execute("PRAGMA table_info(%s)" % t)]
            if loose:
                cols = [c for c in cols if c not in _VOLATILE.get(t, ())]
            rows = con.execute("SELECT %s FROM %s" % (", ".join(cols), t)).fetchall()
            if loose and t == "meta":
                rows = [r for r in rows if r[0] not in _VOLATILE_META]
            if loose and t in ("history", "decisions"):
                rows = [r for r in rows if r[cols.index("action")] != "skip"]
            out[t] = (cols, sorted(rows, key=repr))
        return out
    finally:
        con.close()


def ledger_diff(a, b):
    """A short description of how two ledger_dump()s differ ("" if equal)."""
    lines = []
    for t in sorted(set(a) | set(b)):
        ra = set(a.get(t, ([], []))[1])
        rb = set(b.get(t, ([], []))[1])
        if ra == rb:
            continue
        lines.append("table %s (%s): %d rows gone, %d new" % (
            t, ", ".join(b.get(t, a.get(t))[0]), len(ra - rb), len(rb - ra)))
        for r in sorted(ra - rb, key=repr)[:5]:
            lines.append("  - %r" % (r,))
        for r in sorted(rb - ra, key=repr)[:5]:
            lines.append("  + %r" % (r,))
    return "\n".join(lines)


def ledger_enrolments(db):
    """The ledger's enrolments in env.enrolments() form:
    {(shortname, username): (status, tuple(sorted roles))}."""
    con = sqlite3.connect(db, timeout=10)
    try:
        rows = con.execute("SELECT course, username, roleid, status FROM enrolments").fetchall()
    finally:
        con.close()
    out = {}
    for course, user, role, status in rows:
        _, roles = out.get((course, user), (None, ()))
        out[(course, user)] = ("active" if status == 1 else "suspended",
                               tuple(sorted(roles + (role,))))
    return out


class Lines:
    """Collects a process's output lines on a thread (so its pipe never
    fills) and lets the test wait for them."""

    def __init__(self, stream):
        self.lines = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        for raw in iter(stream.readline, b""):
            with self.lock:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def count(self, needle):
        with self.lock:
            return sum(1 for line in self.lines if needle in line)

    def text(self):
        with self.lock:
            return "\n".join(self.lines)

    def matching(self, needle):
        with self.lock:
            return [line for line in self.lines if needle in line]
