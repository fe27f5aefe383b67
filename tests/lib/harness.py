"""Black-box test harness: temp config and state, the Moodle double and a
feed on loopback, the real binaries, and waiting on conditions with
deadlines (never a bare sleep)."""
import atexit
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TOP = os.environ.get("TOP") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD") or os.path.join(TOP, "build")
if not os.path.isabs(BUILD):
    BUILD = os.path.join(TOP, BUILD)
WEBCOURSED = os.environ.get("WEBCOURSED") or os.path.join(BUILD, "webcoursed")
WEBCOURSECTL = os.environ.get("WEBCOURSECTL") or os.path.join(BUILD, "webcoursectl")
SEED_FEED = os.path.join(TOP, "tests", "data", "seed-feed.json")

sys.path.insert(0, os.path.join(TOP, "tests", "moodle-double"))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
from moodle_double import MoodleDouble  # noqa: E402

WRITE_FUNCTIONS = {
    "core_course_create_courses", "core_course_update_courses",
    "enrol_manual_enrol_users", "enrol_manual_unenrol_users",
    "core_role_assign_roles", "core_role_unassign_roles",
}


# Under valgrind everything is several times slower: so are the deadlines.
SLOWDOWN = 6 if os.environ.get("WEBCOURSE_WRAPPER") else 1


def wait_for(cond, timeout=20.0, what="condition", interval=0.02):
    """Poll cond() until it returns a true value or the deadline passes."""
    timeout *= SLOWDOWN
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def wrapper():
    w = os.environ.get("WEBCOURSE_WRAPPER")
    return shlex.split(w) if w else []


# Every Env still open when the test ends, however it ends (an exception in
# the middle, a failed assertion at start-up): closed at exit, so no temp
# directory with a token file is left behind.
_open_envs = []


def _close_all():
    for env in list(_open_envs):
        env.close()


atexit.register(_close_all)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


class Env:
    """One test world: a temp dir with config, token, ledger and feed file,
    a Moodle double, and helpers to run the binaries."""

    def __init__(self, feed=None, double=None, max_input_vars=5000, **sections):
        self.dir = tempfile.mkdtemp(prefix="webcoursed-test-")
        self.procs = []
        _open_envs.append(self)
        self.double = double or MoodleDouble(max_input_vars=max_input_vars)
        if double is None:
            self.double.start()
        self.token = self.double.token
        self.token_file = os.path.join(self.dir, "moodle-token")
        with open(self.token_file, "w") as f:
            f.write(self.token + "\n")
        os.chmod(self.token_file, 0o600)
        self.feed_file = os.path.join(self.dir, "feed.json")
        self.set_feed(feed if feed is not None else json.load(open(SEED_FEED)))
        self.db = os.path.join(self.dir, "ledger.db")
        self.csv = os.path.join(self.dir, "missing-users.csv")
        self.conf = os.path.join(self.dir, "webcoursed.conf")
        self.sections = {
            "source": {"url": "file://" + self.feed_file, "timeout": "10s"},
            "moodle": {"url": self.double.url, "token_file": self.token_file,
                       "timeout": "10s", "max_input_vars": str(max_input_vars),
                       "retry_delay": "100ms", "retries": "3"},
            "sync": {"interval": "1h", "category_id": "2"},
            "state": {"database": self.db, "missing_users_csv": self.csv},
            "log": {"level": "info"},
        }
        for sec, kv in sections.items():
            self.sections.setdefault(sec, {}).update(kv)
        self.write_config()

    def write_config(self, path=None, extra=""):
        lines = []
        for sec, kv in self.sections.items():
            lines.append("[%s]" % sec)
            lines += ["%s = %s" % (k, v) for k, v in kv.items()]
            lines.append("")
        with open(path or self.conf, "w") as f:
            f.write("\n".join(lines) + extra)

    def set(self, section, key, value):
        self.sections.setdefault(section, {})[key] = value
        self.write_config()

    def set_feed(self, feed):
        data = feed if isinstance(feed, (bytes, str)) else json.dumps(feed, indent=1)
        if isinstance(data, str):
            data = data.encode()
        tmp = self.feed_file + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, self.feed_file)

    def ctl(self, *args, timeout=300):
        cmd = wrapper() + [WEBCOURSECTL, "-c", self.conf] + list(args)
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        p.out = p.stdout.decode("utf-8", "replace")
        p.err = p.stderr.decode("utf-8", "replace")
        return p

    def daemon_once(self, *args, timeout=300):
        cmd = wrapper() + [WEBCOURSED, "-c", self.conf, "--once"] + list(args)
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        p.out = p.stdout.decode("utf-8", "replace")
        p.err = p.stderr.decode("utf-8", "replace")
        return p

    def spawn(self, argv, env=None, **kw):
        e = dict(os.environ)
        e.pop("NOTIFY_SOCKET", None)
        e.pop("INVOCATION_ID", None)
        e.pop("JOURNAL_STREAM", None)
        if env:
            e.update(env)
        p = subprocess.Popen(wrapper() + argv, env=e, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, **kw)
        self.procs.append(p)
        return p

    def daemon(self, *args, env=None):
        return self.spawn([WEBCOURSED, "-c", self.conf, "-f"] + list(args), env=env)

    def sync(self, *args):
        return self.ctl("sync", *args)

    # Moodle side helpers
    def state(self):
        return self.double.state()

    def courses(self):
        return {c["shortname"]: c for c in self.state()["courses"]}

    def enrolments(self):
        """{(shortname, username): (status, tuple(sorted roles))}"""
        out = {}
        for c in self.state()["courses"]:
            for e in c.get("enrolments", []):
                out[(c["shortname"], e["username"])] = (e["status"], tuple(sorted(e["roles"])))
        return out

    def writes(self):
        return [r for r in self.double.log() if r["function"] in WRITE_FUNCTIONS]

    def csv_rows(self):
        if not os.path.exists(self.csv):
            return None
        import csv
        with open(self.csv, newline="") as f:
            return list(csv.reader(f))

    def close(self):
        if self in _open_envs:
            _open_envs.remove(self)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        try:
            self.double.stop()
        except Exception:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def feed_of(courses):
    """Build a feed from {shortname: (name, [(username, role|None)...])}."""
    out = []
    for sn, (name, parts) in courses.items():
        ps = []
        for u, r in parts:
            p = {"username": u}
            if r is not None:
                p["roleid"] = r
            ps.append(p)
        out.append({"shortname": sn, "name": name, "participants": ps})
    return {"courses": out}
