#!/usr/bin/env python3
"""The Debian package under a real systemd: install, configure, upgrade,
remove and purge, as a sysadmin does them.

`make lintian` builds the package (from `make dist`, unpacked in this
test's directory) and runs lintian on it; a second package one version
higher is built the same way with a changelog entry on top.  Debian's
systemd then boots in namespaces (tests/lib/sysboot.py) whose /usr and
/var are overlays over the host's with their writes in memory, and /etc an
overlay whose writes land in this test's directory, so apt-get and dpkg
work on the host's own database without changing it:

1. apt-get install ./webcoursed_V.deb: the package's runtime libraries
   come from the host or Debian's archive (downloads are kept under
   $BUILD/apt-cache, so a rerun needs no network; the test says so when the
   archive is unreachable); the unit is enabled and stays inactive,
   saying why, until the token exists;
2. the token and an edited config; the service syncs against the Moodle
   double;
3. apt-get install of the higher version: the ledger, the history and the
   edited config survive, and the service runs the new binary;
4. apt-get remove: the service stops; the config, token and state stay;
5. apt-get purge: /etc/webcoursed and the DynamicUser state go;
6. nothing else on the host changed.

Runs as root where systemd, unshare(1), dpkg-buildpackage, lintian and
apt-get are there; otherwise it prints a TAP skip plan saying why.  It
builds its own packages without sanitizers, so under SANITIZE=1 or
valgrind it skips (the plain make check runs it).
"""
import email.utils
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import TOP, BUILD, SEED_FEED, MoodleDouble, wait_for  # noqa: E402
from feedserver import FeedServer  # noqa: E402
from hostile import crash_report  # noqa: E402
from tap import Tap  # noqa: E402
from sysboot import (Boot, conf_edit, credentials, diag, prepare_etc, run_test,  # noqa: E402
                     why_not, write, write_overlays)

UNIT = "webcoursed.service"
TOKEN = "/etc/webcoursed/moodle-token"
CONF = "/etc/webcoursed/webcoursed.conf"
CACHE = os.path.join(BUILD, "apt-cache")
# The host paths a package install would touch.
WATCHED = ["/usr/sbin/webcoursed", "/usr/bin/webcoursectl", "/etc/webcoursed",
           "/lib/systemd/system/webcoursed.service", "/lib/systemd/system/webcoursed@.service",
           "/usr/share/doc/webcoursed", "/usr/share/man/man8/webcoursed.8.gz",
           "/etc/systemd/system", "/var/lib/private/webcoursed", "/var/lib/webcoursed",
           "/var/lib/dpkg/status", "/var/lib/dpkg/info/webcoursed.list",
           "/var/lib/dpkg/info/webcoursed.postrm", "/var/lib/systemd/deb-systemd-helper-enabled",
           "/var/lib/apt/extended_states", "/var/log/dpkg.log", "/var/log/apt",
           "/usr/sbin/policy-rc.d", "/run/systemd/system", "/run/credentials"]
# Make variables of this run the package builds must not inherit.
ENV = {k: v for k, v in os.environ.items()
       if k not in ("BUILD", "SANITIZE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "WERROR",
                    "SOURCE_DATE_EPOCH", "CFLAGS", "LDFLAGS", "CPPFLAGS")}
APT = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-y", "-q",
       "--no-install-recommends", "-o", "Dpkg::Use-Pty=0"]


def why_not_here():
    if os.environ.get("SANITIZE") == "1" or os.path.basename(BUILD) == "build-san" \
            or os.environ.get("WEBCOURSE_WRAPPER"):
        return "it builds its own package without sanitizers; plain make check runs it"
    reason = why_not()
    if reason:
        return reason
    for tool in ("dpkg-buildpackage", "dh", "lintian", "apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            return "%s is not installed (make deps installs it)" % tool
    return None


def sh(argv, **kw):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    p.out = p.stdout.decode(errors="replace")
    return p


def deb_version(src):
    with open(os.path.join(src, "debian", "changelog")) as f:
        return re.match(r"webcoursed \(([^)]+)\)", f.read()).group(1)


class PackageTest:
    def __init__(self, t, work):
        self.t = t
        self.work = work
        self.servers = []
        self.boot = Boot(work, var="overlay")

    # -- on the host --------------------------------------------------------
    def build(self):
        """Two packages: this tree's version (with lintian) and one higher."""
        t = self.t
        arch = sh(["dpkg", "--print-architecture"]).out.strip()
        # Relative: make cannot take a BUILD with spaces (the checkout's
        # path may have some), and the test's directory is in $BUILD.
        p = sh(["make", "-s", "-C", TOP, "dist", "BUILD=" + os.path.relpath(self.work, TOP)],
               env=ENV)
        tarballs = [f for f in os.listdir(self.work) if f.endswith(".tar.gz")]
        if not t.ok(p.returncode == 0 and len(tarballs) == 1, "make dist", p.out[-2000:]):
            return False
        self.debs = {}
        for tag in ("old", "new"):
            d = os.path.join(self.work, tag)
            with tarfile.open(os.path.join(self.work, tarballs[0])) as tar:
                tar.extractall(d)
            src = os.path.join(d, tarballs[0][:-len(".tar.gz")])
            version = deb_version(src)
            if tag == "new":
                version += "+upgradetest1"
                path = os.path.join(src, "debian", "changelog")
                with open(path) as f:
                    old = f.read()
                write(path, "webcoursed (%s) unstable; urgency=medium\n\n"
                      "  * Test upgrade.\n\n -- webcoursed test <test@webcoursed.example>  %s\n\n"
                      % (version, email.utils.formatdate(time.time())) + old)
            start = time.monotonic()
            target = "lintian" if tag == "old" else "deb"
            p = sh(["make", "-s", "-C", src, target], env=ENV)
            deb = os.path.join(src, "build", "deb", "webcoursed_%s_%s.deb" % (version, arch))
            if not t.ok(p.returncode == 0 and os.path.exists(deb),
                        "make %s builds webcoursed_%s_%s.deb (%.0f s)%s" % (
                            target, version, arch, time.monotonic() - start,
                            "; lintian --fail-on error,warning passes on the .deb, "
                            ".changes and .dsc" if tag == "old" else ""), p.out[-3000:]):
                return False
            self.debs[tag] = (version, deb)
        version, deb = self.debs["old"]
        t.eq(version, deb_version(TOP), "the package's version is the changelog's")
        f = sh(["dpkg-deb", "-f", deb, "Package", "Version"]).out
        t.eq(f.split(), ["Package:", "webcoursed", "Version:", version],
             "dpkg-deb -f: Package webcoursed, Version %s" % version)
        c = sh(["dpkg-deb", "-c", deb]).out
        for path in ("./usr/sbin/webcoursed", "./usr/bin/webcoursectl",
                     "./lib/systemd/system/webcoursed.service",
                     "./lib/systemd/system/webcoursed@.service",
                     "./usr/share/doc/webcoursed/copyright",
                     "./usr/share/doc/webcoursed/changelog.gz",
                     "./usr/share/doc/webcoursed/NEWS.gz",
                     "./usr/share/man/man8/webcoursed.8.gz",
                     "./usr/share/man/man5/webcoursed.conf.5.gz",
                     "./usr/share/man/man1/webcoursectl.1.gz", "." + CONF):
            t.ok(re.search(r" %s$" % re.escape(path), c, re.M), "the package holds %s" % path)
        ctrl = os.path.join(self.work, "control")
        sh(["dpkg-deb", "-e", deb, ctrl])
        with open(os.path.join(ctrl, "conffiles")) as f:
            t.eq(f.read().split(), [CONF], "its one conffile is %s" % CONF)
        with open(os.path.join(ctrl, "postinst")) as f:
            t.ok("deb-systemd-helper" in f.read(), "postinst enables the unit through "
                 "deb-systemd-helper")
        return True

    def prepare(self):
        notes = prepare_etc(self.work, "etc.upper", hide="webcoursed")
        if os.path.lexists("/etc/webcoursed"):  # a host make install: hide it
            os.mknod(os.path.join(self.work, "etc.upper", "webcoursed"),
                     stat.S_IFCHR | 0o600, os.makedev(0, 0))
            notes.append("hid the host's /etc/webcoursed")
        notes += write_overlays(self.work, [("/etc", "etc.upper"), ("/usr", None)])
        for d in ("archives/partial", "lists/partial"):
            os.makedirs(os.path.join(CACHE, d), exist_ok=True)
        for n in notes:
            diag(n)
        self.feed = FeedServer(file=SEED_FEED).start()
        self.moodle = MoodleDouble().start()
        self.servers += [self.feed, self.moodle]

    # -- inside -------------------------------------------------------------
    def cmd(self, argv, **kw):
        return self.boot.run(argv, **kw)

    def show(self, prop):
        return self.boot.show(UNIT, prop)

    def exists(self, path):
        return self.cmd(["test", "-e", path]).returncode == 0 or \
            self.cmd(["test", "-L", path]).returncode == 0

    def cat(self, path):
        return self.cmd(["cat", path]).out

    def apt(self, *args):
        """apt-get with the package cache under $BUILD/apt-cache; the lists
        of an `apt-get update` this test needed go there too, so that a
        rerun needs no network.  Says when the archive is what failed."""
        lists = os.path.join(CACHE, "lists")
        cache = ["-o", "Dir::Cache::archives=" + self.boot.inside(os.path.join(CACHE, "archives")),
                 "-o", "APT::Sandbox::User=root"]
        with_lists = ["-o", "Dir::State::Lists=" + self.boot.inside(lists)]
        if any(n.endswith("Packages") or n.endswith("Packages.lz4")
               for n in os.listdir(lists)):
            cache += with_lists
        p = self.cmd(APT + cache + list(args), timeout=600)
        text = p.out + p.err
        if p.returncode != 0 and args[0] == "install" and re.search(
                r"Unable to locate|has no installation candidate|Unmet dependencies|"
                r"Failed to fetch|Unable to fetch|held broken packages", text):
            diag("apt-get %s needs Debian's archive:\n%s" % (" ".join(args), text[-1500:]))
            u = self.cmd(APT + with_lists + ["update"], timeout=600)
            if u.returncode != 0 or re.search(r"^(W|E): .*(Failed to fetch|Temporary failure)",
                                              u.out + u.err, re.M):
                self.t.ok(False, "Debian's archive is unreachable: the first run fetches "
                          "webcoursed's runtime libraries from it (later runs use "
                          "%s)" % CACHE, (u.out + u.err)[-1500:])
            elif with_lists[1] not in cache:
                cache += with_lists
            p = self.cmd(APT + cache + list(args), timeout=600)
            text = p.out + p.err
        p.text = text
        return p

    def summaries(self, after=0):
        return [e for e in self.boot.journal("-u", UNIT)
                if "WEBCOURSED_RUN" in e and int(e["WEBCOURSED_RUN"]) > after]

    def last_run(self):
        return max([int(e["WEBCOURSED_RUN"]) for e in self.summaries()], default=0)

    def run_after(self, after, timeout=30):
        try:
            return wait_for(lambda: (self.summaries(after) or [None])[0], timeout,
                            "a run after run %d" % after)
        except TimeoutError:
            return None

    def recent(self, n=20):
        return "\n".join(str(m) for m in self.boot.messages(UNIT)[-n:])

    def ctl_status(self):
        p = self.cmd(["webcoursectl", "status", "--json"])
        try:
            return json.loads(p.out)
        except ValueError:
            return None

    def history(self):
        p = self.cmd(["webcoursectl", "history", "--json"])
        try:
            return json.loads(p.out)
        except ValueError:
            return None

    # -- the steps ------------------------------------------------------------
    def install(self):
        t = self.t
        if self.exists("/usr/sbin/policy-rc.d"):
            # A container image's "start no service" (exit 101); this
            # system is booted: it goes, in the namespace only.
            self.cmd(["rm", "-f", "/usr/sbin/policy-rc.d"])
            diag("removed the host's /usr/sbin/policy-rc.d inside the namespace")
        version, deb = self.debs["old"]
        start = time.monotonic()
        p = self.apt("install", self.boot.inside(deb))
        if not t.eq(p.returncode, 0, "apt-get install ./webcoursed_%s.deb (%.0f s)"
                    % (version, time.monotonic() - start), p.text[-3000:]):
            return False
        t.eq(self.cmd(["dpkg-query", "-W", "-f", "${Status} ${Version}", "webcoursed"]).out,
             "install ok installed %s" % version, "dpkg: installed, version %s" % version)
        for prog in ("webcoursed", "webcoursectl"):
            t.eq(self.cmd([prog, "--version"]).out.strip(), "%s %s" % (prog, version),
                 "%s --version is the package's" % prog)
        t.eq(self.cmd(["systemctl", "is-enabled", UNIT]).out.strip(), "enabled",
             "the unit is enabled")
        t.eq(self.show("ActiveState"), "inactive", "and inactive: the site is not configured")
        t.eq(self.show("ConditionResult"), "no", "its start condition was checked and not met")
        t.eq(self.show("NRestarts"), "0", "no restarts")
        st = self.cmd(["systemctl", "status", "--no-pager", UNIT]).out
        # systemd 252 words it the first way, later ones the second.
        t.ok(re.search(r"unmet condition check \(ConditionPathExists=%s\)|"
                       r"ConditionPathExists=%s was not met" % (TOKEN, TOKEN), st),
             "systemctl status says the unit was skipped: ConditionPathExists=%s "
             "unmet" % TOKEN, st)
        t.eq(self.cmd(["dpkg-query", "-W", "-f", "${Conffiles}", "webcoursed"]).out.split()[:1],
             [CONF], "dpkg lists %s as a conffile" % CONF)
        return True

    def configure(self):
        t = self.t
        self.conf = conf_edit(self.cat(CONF), {
            ("source", "url"): self.feed.url, ("source", "timeout"): "10s",
            ("moodle", "url"): self.moodle.url, ("moodle", "timeout"): "10s",
            ("moodle", "retries"): "2", ("moodle", "retry_delay"): "200ms",
            ("sync", "interval"): "1h", ("sync", "category_id"): "2"})
        self.conf += "# edited by the site's admin\n"
        self.cmd(["sh", "-c", 'umask 077 && cat > "$1"', "sh", TOKEN],
                 input=self.moodle.token + "\n")
        self.boot.write(CONF, self.conf)
        self.creds = credentials(self.boot, len(self.moodle.token) + 1,
                                 self.cmd(["sed", "-n", "s/^ExecStartPre=//p",
                                           "/lib/systemd/system/" + UNIT]).out.strip())
        p = self.cmd(["systemctl", "start", UNIT])
        t.eq(p.returncode, 0, "systemctl start webcoursed once configured", p.err)
        e = self.run_after(0) or {}
        t.eq((e.get("WEBCOURSED_COURSES_CREATED"), e.get("WEBCOURSED_ERRORS")), ("3", "0"),
             "it syncs against the Moodle double (3 courses created, no errors)", self.recent())
        t.ok(len(self.moodle.state()["courses"]) >= 3, "the feed's courses are in Moodle")
        t.eq(self.show("ActiveState"), "active", "the service is active")

    def upgrade(self):
        t = self.t
        st = self.ctl_status() or {"runs": []}
        runs = {r["id"] for r in st["runs"]}
        hist = self.history() or []
        t.ok(runs and hist, "before the upgrade: %d runs, %d history entries"
             % (len(runs), len(hist)))
        old_pid = self.show("MainPID")
        version, deb = self.debs["new"]
        last = self.last_run()
        p = self.apt("install", self.boot.inside(deb))
        t.eq(p.returncode, 0, "apt-get install ./webcoursed_%s.deb upgrades" % version,
             p.text[-3000:])
        t.eq(self.cmd(["dpkg-query", "-W", "-f", "${Version}", "webcoursed"]).out, version,
             "dpkg: version %s" % version)
        t.eq(self.cat(CONF), self.conf, "the edited config is kept")
        t.eq(self.cmd(["stat", "-c", "%a %U", TOKEN]).out.strip(), "600 root",
             "the token is kept, root's, 0600")
        t.eq(self.show("ActiveState"), "active", "the service is active")
        pid = self.show("MainPID")
        t.ok(pid not in ("0", old_pid), "as a new process (MainPID %s -> %s)" % (old_pid, pid))
        exe = self.cmd(["readlink", "/proc/%s/exe" % pid]).out.strip()
        t.eq(exe, "/usr/sbin/webcoursed", "running the installed binary, not a deleted one")
        t.ok(any(m.startswith("webcoursed %s started" % version)
                 for m in self.boot.messages(UNIT)),
             "the journal says webcoursed %s started" % version, self.recent())
        self.cmd(["systemctl", "kill", "-s", "USR1", UNIT])
        e = self.run_after(last) or {}
        t.eq((e.get("WEBCOURSED_COURSES_CREATED"), e.get("WEBCOURSED_ERRORS")), ("0", "0"),
             "its next run creates nothing again: the ledger was kept", self.recent())
        st = self.ctl_status() or {"runs": []}
        after = {r["id"] for r in st["runs"]}
        t.ok(runs and runs <= after and len(after) > len(runs),
             "webcoursectl status lists the runs from before the upgrade and the new one "
             "(%s, then %s)" % (sorted(runs), sorted(after)))
        h2 = self.history() or []
        t.ok(hist and all(h in h2 for h in hist), "the history from before is kept "
             "(%d entries, now %d)" % (len(hist), len(h2)))

    def remove(self):
        t = self.t
        p = self.apt("remove", "webcoursed")
        t.eq(p.returncode, 0, "apt-get remove webcoursed", p.text[-2000:])
        t.eq(self.show("ActiveState"), "inactive", "the service is stopped")
        t.ok(not self.exists("/usr/sbin/webcoursed"), "the binary is gone")
        t.eq(self.cat(CONF), self.conf, "the edited config stays")
        t.ok(self.exists(TOKEN), "the token stays")
        t.ok(self.exists("/var/lib/private/webcoursed/ledger.db"), "the ledger stays")
        t.eq(self.cmd(["dpkg-query", "-W", "-f", "${Status}", "webcoursed"]).out,
             "deinstall ok config-files", "dpkg: config-files")

    def purge(self):
        t = self.t
        p = self.apt("purge", "webcoursed")
        t.eq(p.returncode, 0, "apt-get purge webcoursed", p.text[-2000:])
        for path in ("/etc/webcoursed", "/var/lib/private/webcoursed", "/var/lib/webcoursed",
                     "/etc/systemd/system/multi-user.target.wants/" + UNIT):
            t.ok(not self.exists(path), "purge removed %s" % path)
        p = self.cmd(["dpkg-query", "-W", "-f", "${Status}", "webcoursed"])
        t.ok(p.returncode != 0 or p.out.startswith("unknown ok not-installed"),
             "dpkg knows webcoursed no more", p.out + p.err)
        left = self.cmd(["find", "/etc", "/usr", "/lib", "/var/lib", "-xdev",
                         "-name", "*webcoursed*"]).out.split()
        t.eq(sorted(set(left) - self.host_left), [],
             "nothing named webcoursed is left in /etc, /usr or /var/lib")
        text = "\n".join(self.boot.messages(UNIT))
        t.eq(crash_report(text), None, "no crash in the journal")

    def run(self):
        self.host_left = set(sh(["find", "/etc", "/usr", "/lib", "/var/lib", "-xdev",
                                 "-name", "*webcoursed*"]).out.split())
        if not self.build():
            return
        self.prepare()
        start = time.monotonic()
        state = self.boot.start()
        self.t.ok(True, "systemd boots in its namespaces over the host's /usr and /var "
                  "(%s, %.1f s)" % (state, time.monotonic() - start))
        if not self.install():
            return
        self.configure()
        self.upgrade()
        self.remove()
        self.purge()


def main():
    reason = why_not_here()
    if reason:
        print("1..0 # SKIP %s" % reason, flush=True)
        return 0
    t = Tap()
    run_test(t, "package-", WATCHED, "dpkg's database and logs, /usr, /etc, units, "
             "state directories", lambda work: PackageTest(t, work))
    t.done()


if __name__ == "__main__":
    sys.exit(main())
