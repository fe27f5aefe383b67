#!/usr/bin/env python3
"""The installed units under a real systemd booted in its own namespaces.

`make install DESTDIR=<staging>` is laid over the real paths inside a mount
namespace, Debian's systemd boots there as PID 1 (basic.target), and the
test drives webcoursed.service and webcoursed@.service against the Moodle
double and a feed server on loopback (the network namespace is shared):
enable --now and STATUS=, the journal's run summary, reload with a good and
a broken config, SIGUSR1, the state directory across a restart, the
watchdog and Restart=, stop mid-run, two sites side by side,
systemd-analyze security, and whether LoadCredential= delivers the token.

Nothing on the host may change.  The boot (tests/lib/sysboot.py) gives
the namespace its own /tmp, /run, /dev and /var (tmpfs); this test adds
overlays over /etc, /usr/local and the unit directory (their writes land
in this test's directory under $BUILD) and a fresh /etc/webcoursed.  The
host is compared before and after.  The checkout may lie anywhere (/tmp,
/var/tmp, a path with spaces).

Runs as root where /lib/systemd/systemd and unshare(1) work; otherwise it
prints a TAP skip plan saying why.  WEBCOURSED_TEST_PRIVATE_MOUNTS=1 leaves
/ private in the namespace (as a bare `unshare --mount` does): there
LoadCredential= delivers nothing, which exercises the drop-in that hands
the token over instead.
"""
import json
import os
import re
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import TOP, BUILD, SEED_FEED, MoodleDouble, wait_for  # noqa: E402
from feedserver import FeedServer  # noqa: E402
from hostile import crash_report  # noqa: E402
from tap import Tap  # noqa: E402
from sysboot import (Boot, conf_edit, credentials, diag, prepare_etc, run_test,  # noqa: E402
                     why_not, write, write_overlays)

UNIT = "webcoursed.service"

SITES = ("alpha", "beta")
WATCHDOG_SEC = 3

# What the test must leave as it found it (besides the mounts, the core
# pattern and /tmp, checked too).
WATCHED = ["/usr/local/sbin/webcoursed", "/usr/local/bin/webcoursectl",
           "/usr/local/share/man/man8/webcoursed.8", "/etc/webcoursed",
           "/etc/systemd/system", "/lib/systemd/system/webcoursed.service",
           "/lib/systemd/system/webcoursed@.service", "/var/lib/webcoursed",
           "/var/lib/private/webcoursed", "/run/webcoursed", "/run/credentials",
           "/run/systemd/system", "/dev/log", "/var/log/journal"] + [
    p % s for s in SITES for p in ("/var/lib/webcoursed-%s", "/var/lib/private/webcoursed-%s",
                                   "/etc/webcoursed/%s.conf")]


def prepare(work, stage):
    """The directories laid over the host's inside the namespace; returns
    the notes worth a diagnostic."""
    notes = prepare_etc(work, "etc.upper", hide="webcoursed")
    os.makedirs(os.path.join(work, "etc.upper", "webcoursed"))  # the mount point
    overlays = [("/etc", "etc.upper")]
    # The staged installation over the real directories it goes to: for
    # each staged file, the nearest directory that exists on the host.
    roots = set()
    for root, _, files in os.walk(stage):
        for name in files:
            d = os.path.dirname(os.path.relpath(os.path.join(root, name), stage))
            while not os.path.isdir("/" + d):
                d = os.path.dirname(d)
            if not (d == "etc" or d.startswith("etc/")):  # /etc/webcoursed is fresh
                roots.add(d)
    for d in sorted(roots):
        if not any(d.startswith(r + "/") for r in roots):
            overlays.append((os.path.realpath("/" + d), os.path.join("stage", d)))
    notes += write_overlays(work, overlays)
    os.makedirs(os.path.join(work, "etc-webcoursed"))
    return notes


class SystemTest:
    """The steps, in order, sharing the booted system and the servers."""

    def __init__(self, t, work, boot):
        self.t = t
        self.work = work
        self.boot = boot
        self.servers = []
        self.etcdir = os.path.join(work, "etc-webcoursed")

    # -- helpers ----------------------------------------------------------
    def summaries(self, unit, after=0):
        """The journal's run summaries of unit for runs after number after."""
        return [e for e in self.boot.journal("-u", unit)
                if "WEBCOURSED_RUN" in e and int(e["WEBCOURSED_RUN"]) > after]

    def last_run(self, unit=UNIT):
        return max([int(e["WEBCOURSED_RUN"]) for e in self.summaries(unit)], default=0)

    def run_after(self, after, unit=UNIT, timeout=20):
        """The summary of the first run after number after, once it is in."""
        try:
            return wait_for(lambda: (self.summaries(unit, after) or [None])[0], timeout,
                            "%s: a run after run %d" % (unit, after))
        except TimeoutError:
            diag("no run after run %d of %s within %d s; its processes:" % (after, unit, timeout))
            for e in self.boot.journal("WEBCOURSED_RUN=%d" % (after + 1)):
                diag("unfiltered: %r" % {k: e.get(k) for k in ("_PID", "_SYSTEMD_UNIT", "_UID",
                                                            "_SYSTEMD_CGROUP", "MESSAGE")})
            diag(self.boot.run(["sh", "-c", 'for p in $(cat "/sys/fs/cgroup$1/cgroup.procs"); '
                                'do echo "$p $(cat /proc/$p/wchan) $(cat /proc/$p/syscall)"; '
                                'ls -l /proc/$p/fd | tail -n +2; done', "sh",
                                self.boot.show(unit, "ControlGroup")]).out)
            return None

    def recent(self, unit=UNIT, n=20):
        """The unit's last journal lines, timed, for a diagnostic."""
        out = []
        for e in self.boot.journal("-u", unit)[-n:]:
            t = int(e.get("__REALTIME_TIMESTAMP", 0)) / 1e6
            out.append("%s.%03d [%s] %s" % (time.strftime("%H:%M:%S", time.localtime(t)),
                                            t % 1 * 1000, e.get("_PID", "?"),
                                            e.get("MESSAGE")))
        return "\n".join(out)

    def active(self, unit=UNIT):
        return self.boot.show(unit, "ActiveState")

    def status_text(self):
        return self.boot.show(UNIT, "StatusText")

    def ctl_status(self):
        p = self.boot.run(["webcoursectl", "status", "--json"])
        try:
            return json.loads(p.out), p
        except ValueError:
            return None, p

    def conf_for(self, double, extra=None):
        changes = {("source", "url"): self.feed.url, ("source", "timeout"): "10s",
                   ("moodle", "url"): double.url, ("moodle", "timeout"): "10s",
                   ("moodle", "retries"): "2", ("moodle", "retry_delay"): "200ms",
                   ("sync", "interval"): "1h", ("sync", "category_id"): "2"}
        changes.update(extra or {})
        return conf_edit(self.template, changes)

    def set_conf(self, text):
        write(os.path.join(self.etcdir, "webcoursed.conf"), text, self.conf_mode)

    def reload(self, text, what):
        """Write the config, systemctl reload; the journal lines since."""
        n = len(self.boot.messages(UNIT))
        self.set_conf(text)
        p = self.boot.run(["systemctl", "reload", UNIT])
        try:
            wait_for(lambda: [m for m in self.boot.messages(UNIT)[n:] if what in m], 15, what)
        except TimeoutError:
            pass
        return p, self.boot.messages(UNIT)[n:]

    def hold_moodle(self, seconds):
        """SIGUSR1 with Moodle answering slowly: the run waits on Moodle."""
        self.moodle.set_fault("delay", seconds=seconds, count=-1,
                              function="core_webservice_get_site_info")
        self.boot.run(["systemctl", "kill", "-s", "USR1", UNIT])
        wait_for(lambda: "checking Moodle" in self.status_text(), 10,
                 "the run waiting on Moodle")

    # -- the steps --------------------------------------------------------
    def install(self):
        """make install into the staging directory; the files a sysadmin
        then writes: the token and the edited config."""
        t = self.t
        stage = os.path.join(self.work, "stage")
        p = subprocess.run(["make", "-s", "-C", TOP, "BUILD=" + os.path.relpath(BUILD, TOP),
                            "install", "DESTDIR=" + stage],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if not t.eq(p.returncode, 0, "make install DESTDIR=<staging>", p.stdout.decode()):
            return False
        conf = os.path.join(stage, "etc", "webcoursed", "webcoursed.conf")
        self.conf_mode = stat.S_IMODE(os.stat(conf).st_mode)
        t.eq(oct(self.conf_mode), oct(0o644),
             "the installed config is mode 0644 (it holds no secret)")
        with open(conf) as f:
            self.template = f.read()
        for root, _, files in os.walk(stage):
            if UNIT in files:
                with open(os.path.join(root, UNIT)) as f:
                    self.exec_pre = re.search(r"^ExecStartPre=(.*)$", f.read(), re.M).group(1)
        with open(stage + self.exec_pre.split()[0], "rb") as f:
            self.sanitized = b"__asan_init" in f.read()
        for note in prepare(self.work, stage):
            diag(note)

        # Loopback servers on the host side: the feed and three Moodle sites.
        self.feed = FeedServer(file=SEED_FEED).start()
        self.moodle = MoodleDouble().start()
        self.sites = {s: MoodleDouble().start() for s in SITES}
        self.servers += [self.feed, self.moodle] + list(self.sites.values())

        write(os.path.join(self.etcdir, "moodle-token"), self.moodle.token + "\n", 0o600)
        self.good_conf = self.conf_for(self.moodle)
        self.set_conf(self.good_conf)
        for s in SITES:
            write(os.path.join(self.etcdir, s + ".token"), self.sites[s].token + "\n", 0o600)
            write(os.path.join(self.etcdir, s + ".conf"), self.conf_for(self.sites[s], {
                ("moodle", "token_file"): "/etc/webcoursed/%s.token" % s,
                ("state", "database"): "/var/lib/webcoursed-%s/ledger.db" % s,
                ("state", "missing_users_csv"): "/var/lib/webcoursed-%s/missing-users.csv" % s,
            }), self.conf_mode)
        return True

    def credentials(self):
        self.creds = credentials(self.boot, len(self.moodle.token) + 1, self.exec_pre)

    def sanitizer(self):
        """LeakSanitizer stops the world with ptrace(2), which the units'
        SystemCallFilter= forbids: in an ASan build it would fail every
        exit.  ASan and UBSan still watch; the other tests check leaks."""
        if not self.sanitized:
            return
        diag("sanitizer build: detect_leaks=0 for the units (ptrace is filtered)")
        for unit in (UNIT, "webcoursed@.service"):
            self.boot.write("/run/systemd/system/%s.d/40-sanitizer.conf" % unit,
                            "[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n")
        self.boot.run(["systemctl", "daemon-reload"])

    def start(self):
        t, boot = self.t, self.boot
        p = boot.run(["systemctl", "enable", "--now", UNIT])
        t.eq(p.returncode, 0, "systemctl enable --now webcoursed",
             p.err + p.out + self.recent())
        t.eq(self.active(), "active", "webcoursed is active", self.recent())
        t.eq(boot.run(["systemctl", "is-enabled", UNIT]).out.strip(), "enabled", "and enabled")
        try:
            status = wait_for(lambda: (lambda s: s if s.startswith("idle; last sync") else None)(
                self.status_text()), 30, "the first run")
        except TimeoutError:
            status = self.status_text()
        t.ok(re.match(r"idle; last sync \d\d:\d\d ok: .*; next \d\d:\d\d$", status),
             "systemctl show -p StatusText carries the daemon's STATUS= (%s)" % status,
             self.recent())
        t.ok(len(self.moodle.state()["courses"]) >= 3, "the feed's courses are in Moodle")
        st = os.stat(os.path.join(self.etcdir, "moodle-token"))
        t.ok(stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0,
             "the token file stays root's, mode 0600")
        if self.creds:
            p = boot.run(["cmp", "-s", "/run/credentials/%s/moodle-token" % UNIT,
                          "/etc/webcoursed/moodle-token"])
            t.eq(p.returncode, 0, "the token reached the service as its credential "
                 "moodle-token (the service user cannot read the file)")
            p = boot.run(["cat", "/run/credentials/%s/web-users" % UNIT])
            t.eq(p.out.strip(), "#none", "without a console users file the unit starts, "
                 "with the web-users credential of its SetCredential= default (no users)",
                 p.err)
        else:
            p = boot.run(["stat", "-c", "%a %U", "/run/webcoursed-token/token"])
            t.eq(p.out.strip(), "600 webcoursed", "the token reached the service by the "
                 "drop-in (a copy only the service user can read)", p.err)

    def journal(self):
        t = self.t
        e = self.run_after(0) or {}
        t.eq(self.boot.journal("-u", UNIT, "WEBCOURSED_RUN=1")[-1:], [e] if e else [None],
             "journalctl -u webcoursed WEBCOURSED_RUN=1 finds the summary of run 1")
        t.ok(e.get("MESSAGE", "").startswith("sync done in"), "its message is the summary", e)
        fields = {k: e.get(k) for k in ("WEBCOURSED_COURSES_CREATED", "WEBCOURSED_ENROLLED",
                                        "WEBCOURSED_REMOVED", "WEBCOURSED_MISSING_USERS",
                                        "WEBCOURSED_ERRORS")}
        t.eq(fields, {"WEBCOURSED_COURSES_CREATED": "3", "WEBCOURSED_ENROLLED": "10",
                      "WEBCOURSED_REMOVED": "0", "WEBCOURSED_MISSING_USERS": "2",
                      "WEBCOURSED_ERRORS": "0"}, "with its counts as fields (-o json)")
        t.eq(e.get("_SYSTEMD_UNIT"), UNIT, "attributed to the unit")

    def reloads(self):
        t, boot = self.t, self.boot
        last = self.last_run()
        p, new = self.reload(self.conf_for(self.moodle, {("log", "level"): "debug"}),
                             "reloaded")
        t.eq(p.returncode, 0, "systemctl reload with a good config")
        t.ok(any("configuration /etc/webcoursed/webcoursed.conf reloaded" in m for m in new),
             "the journal says it was reloaded", "\n".join(new))
        t.eq(self.active(), "active", "still active")
        t.ok(self.run_after(last) is not None, "a run follows the reload", self.recent())
        mainpid = boot.show(UNIT, "MainPID")
        p, new = self.reload(self.good_conf + "\n[sync]\nintervall = 5m\n", "not reloading")
        t.eq(p.returncode, 0, "systemctl reload with a broken config")
        t.ok(any("has errors, not reloading" in m for m in new),
             "the journal says it has errors, not reloading", "\n".join(new))
        t.ok(any("intervall" in m for m in new), "and names the error", "\n".join(new))
        t.eq(self.active(), "active", "still active")
        t.eq(boot.show(UNIT, "MainPID"), mainpid, "the same process")

        # SIGUSR1: another run, still under the old (debug) config.
        last = self.last_run()
        debug = len(boot.journal("-u", UNIT, "PRIORITY=7"))
        p = boot.run(["systemctl", "kill", "-s", "USR1", UNIT])
        t.eq(p.returncode, 0, "systemctl kill -s USR1 webcoursed")
        e = self.run_after(last)
        t.ok(e is not None, "SIGUSR1 starts a sync (run %s)" % (e or {}).get("WEBCOURSED_RUN"),
             self.recent())
        t.ok(len(boot.journal("-u", UNIT, "PRIORITY=7")) > debug,
             "the old config stays in force after the broken reload (the run logs at debug)")
        last = self.last_run()
        self.reload(self.good_conf, "reloaded")
        self.run_after(last)

    def restart(self):
        """The DynamicUser state directory across a restart."""
        t, boot = self.t, self.boot
        st, p = self.ctl_status()
        t.ok(st is not None, "webcoursectl status --json reads the ledger (as root)", p.err)
        before = {r["id"] for r in st["runs"]} if st else set()
        last = self.last_run()
        p = boot.run(["systemctl", "restart", UNIT])
        t.eq(p.returncode, 0, "systemctl restart webcoursed")
        e = self.run_after(last) or {}
        t.ok(e, "the restarted daemon runs again (run %s)" % e.get("WEBCOURSED_RUN"),
             self.recent())
        t.eq(e.get("WEBCOURSED_COURSES_CREATED"), "0",
             "creating nothing again: the ledger was kept")
        p = boot.run(["sh", "-c", "ls -l /var/lib/private/webcoursed/ledger.db && "
                      "readlink /var/lib/webcoursed"])
        t.ok(p.returncode == 0 and p.out.strip().endswith("private/webcoursed"),
             "the ledger is in the DynamicUser state directory", p.out + p.err)
        st, p = self.ctl_status()
        after = {r["id"] for r in st["runs"]} if st else set()
        t.ok(before and max(before) in after and max(after) > max(before),
             "webcoursectl status lists the runs from before the restart and the new one "
             "(%s, then %s)" % (sorted(before), sorted(after)), p.out[-1500:] + p.err)

    def watchdog(self):
        """A hung sync: no WATCHDOG=1, systemd kills, Restart= restarts."""
        t, boot = self.t, self.boot
        boot.write("/run/systemd/system/%s.d/60-watchdog.conf" % UNIT,
                   "[Service]\nWatchdogSec=%ds\nRestartSec=1s\nLimitCORE=0\n" % WATCHDOG_SEC)
        boot.run(["systemctl", "daemon-reload"])
        last = self.last_run()
        boot.run(["systemctl", "restart", UNIT])
        t.eq(boot.show(UNIT, "WatchdogUSec"), "%ds" % WATCHDOG_SEC,
             "a drop-in shortens WatchdogSec")
        self.run_after(last)
        restarts = int(boot.show(UNIT, "NRestarts") or 0)
        old_pid = boot.show(UNIT, "MainPID")
        last = self.last_run()
        self.hold_moodle(60)
        # A slow Moodle alone is no hang (the waiting request still reports
        # progress, and moodle.timeout ends it): freeze the sync process,
        # the way a real hang looks.
        child = boot.run(["pgrep", "-P", old_pid]).out.split()
        boot.run(["kill", "-STOP"] + child)
        diag("the sync process (pid %s in the namespace) is stopped mid-request"
             % " ".join(child))
        try:
            wait_for(lambda: boot.journal("-u", UNIT, "UNIT_RESULT=watchdog"),
                     WATCHDOG_SEC * 4 + 10, "the watchdog")
            fired = True
        except TimeoutError:
            fired = False
        self.moodle.clear_faults()
        t.ok(fired, "the watchdog fires on the hung sync (Result=watchdog in the journal)",
             self.recent())
        try:
            wait_for(lambda: int(boot.show(UNIT, "NRestarts") or 0) > restarts and
                     self.active() == "active", 20, "the restart")
        except TimeoutError:
            pass
        n = boot.show(UNIT, "NRestarts")
        t.eq(n, str(restarts + 1), "Restart= brings it back (NRestarts %d -> %s)"
             % (restarts, n))
        t.eq(self.active(), "active", "and it is active again")
        t.ok(boot.show(UNIT, "MainPID") not in (old_pid, "0"), "as a new process")
        e = self.run_after(last) or {}
        t.eq(e.get("WEBCOURSED_ERRORS"), "0", "which syncs again", self.recent())

    def stop(self):
        t, boot = self.t, self.boot
        self.hold_moodle(30)
        start = time.monotonic()
        p = boot.run(["systemctl", "stop", UNIT])
        took = time.monotonic() - start
        self.moodle.clear_faults()
        diag("systemctl stop in the middle of a run took %.2f s (TimeoutStopSec %s)"
             % (took, boot.show(UNIT, "TimeoutStopUSec")))
        t.eq(p.returncode, 0, "systemctl stop mid-run exits 0", p.err)
        t.eq(boot.show(UNIT, "Result"), "success", "the daemon stopped by itself, "
             "not by the timeout kill (Result=success)")
        t.eq(self.active(), "inactive", "and it is inactive")
        # An admin reads the ledger of the stopped service as root; the
        # service must start all the same afterwards.
        st, p = self.ctl_status()
        t.ok(st is not None and st["next_run"] is None,
             "webcoursectl status reads the stopped service's ledger", p.out[-500:] + p.err)
        last = self.last_run()
        p = boot.run(["systemctl", "start", UNIT])
        t.eq(p.returncode, 0, "systemctl start webcoursed again", p.err)
        e = self.run_after(last) or {}
        t.eq(e.get("WEBCOURSED_ERRORS"), "0", "its next run goes through", self.recent())

    def instances(self):
        """webcoursed@SITE: two sites side by side, next to webcoursed."""
        t, boot = self.t, self.boot
        units = ["webcoursed@%s.service" % s for s in SITES]
        p = boot.run(["systemctl", "start"] + units)
        t.eq(p.returncode, 0, "systemctl start %s" % " ".join(units), p.err)
        for u in units + [UNIT]:
            t.eq(self.active(u), "active", "%s is active" % u, self.recent(u))
        for s, u in zip(SITES, units):
            e = self.run_after(0, unit=u) or {}
            t.eq(e.get("WEBCOURSED_COURSES_CREATED"), "3", "%s synced its own site" % u,
                 self.recent(u))
            t.ok(len(self.sites[s].state()["courses"]) >= 3, "site %s has the courses" % s)
        p = boot.run(["ls"] + ["/var/lib/private/webcoursed-%s/ledger.db" % s for s in SITES])
        t.eq(p.returncode, 0, "each instance has its own state directory", p.err)

    def security(self):
        t = self.t
        for u in (UNIT, "webcoursed@%s.service" % SITES[0]):
            p = self.boot.run(["systemd-analyze", "security", "--no-pager", u])
            m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.out)
            t.ok(m is not None, "systemd-analyze security rates the loaded %s" % u,
                 p.out[-500:] + p.err)
            if m:
                t.ok(float(m.group(1)) <= 1.5, "%s exposure %s <= 1.5" % (u, m.group(1)))
        units = [UNIT] + ["webcoursed@%s.service" % s for s in SITES]
        p = self.boot.run(["systemctl", "stop"] + units)
        t.eq(p.returncode, 0, "systemctl stop of all three exits 0", p.err)

    def no_crash(self):
        """No sanitizer report, crash or core dump in the units' journal."""
        text = "\n".join(m for u in [UNIT] + ["webcoursed@%s.service" % s for s in SITES]
                         for m in self.boot.messages(u))
        self.t.eq(crash_report(text), None, "no crash or sanitizer report in the journal")
        # A sync process may be gone before journald reads its records: it
        # logs through the daemon, or journalctl -u would miss some.
        lost = [e.get("MESSAGE") for e in self.boot.journal("SYSLOG_IDENTIFIER=webcoursed")
                if not e.get("_SYSTEMD_UNIT", "").startswith("webcoursed")]
        self.t.eq(lost, [], "every record of webcoursed is filed under its unit")

    def run(self):
        if not self.install():
            return
        start = time.monotonic()
        state = self.boot.start()
        self.t.ok(True, "systemd boots to basic.target in its namespaces (%s, %.1f s)"
                  % (state, time.monotonic() - start))
        if state != "running":
            diag(self.boot.run(["systemctl", "--failed", "--no-pager"]).out)
        self.credentials()
        self.sanitizer()
        self.start()
        self.journal()
        self.reloads()
        self.restart()
        self.watchdog()
        self.stop()
        self.instances()
        self.security()
        self.no_crash()


def main():
    reason = why_not()
    if reason:
        print("1..0 # SKIP %s" % reason, flush=True)
        return 0
    t = Tap()
    private = os.environ.get("WEBCOURSED_TEST_PRIVATE_MOUNTS") == "1"
    run_test(t, "systemd-boot-", WATCHED, "installed files, /etc/webcoursed, units, "
             "state directories", lambda work: SystemTest(t, work, Boot(work, private)))
    t.done()


if __name__ == "__main__":
    sys.exit(main())
