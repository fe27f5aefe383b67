"""Booting Debian's systemd as PID 1 of new namespaces, for the system
tests (tests/system/).  Shared by test_systemd_boot.py and test_package.py.

Nothing on the host may change.  Before systemd starts, the namespace gets
its own /tmp, /run and /dev (tmpfs), and /var (a tmpfs, or an overlay over
the host's whose writes stay in memory), the overlays listed by the caller
(their writes land in the test's directory or stay in memory), read-only
/proc/sys and /sys, and a cgroup2 tree of its own (a child of ours,
removed at the end).
systemd runs in container mode, so that it neither remounts shared file
systems nor detaches or remounts anything at power-off; units that would
reach the shared kernel or devices (udev, sysctl, binfmt, modules, the
clock, the timers...) are masked.

The checkout may lie anywhere, /tmp, /var/tmp or a path with spaces
included: the build directory ($BUILD, which holds the test's directory)
is opened before anything is replaced and bound at /run/webcoursed-test
once the namespace's /run is mounted, and everything inside the namespace
names it there (Boot.inside).
"""
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD, wait_for  # noqa: E402

SYSTEMD = "/lib/systemd/systemd"
KEEP = {"systemd-journald.service", "systemd-journald.socket", "dbus.socket",
        "dbus.service"}
# Masked besides everything the early targets want: units that reach past
# the namespace (kernel settings, devices, the clock, disks, the network).
MASK = ["ldconfig.service", "systemd-hwdb-update.service",
        "systemd-update-done.service", "systemd-journal-catalog-update.service",
        "systemd-udevd.service", "systemd-udev-trigger.service",
        "systemd-udev-settle.service", "systemd-udevd-control.socket",
        "systemd-udevd-kernel.socket", "systemd-remount-fs.service",
        "systemd-fsck-root.service", "systemd-networkd.service",
        "networking.service", "systemd-journald-dev-log.socket",
        "systemd-tmpfiles-clean.timer", "systemd-timesyncd.service",
        "systemd-pstore.service", "systemd-sysctl.service",
        "systemd-binfmt.service", "systemd-modules-load.service"]
EARLY_TARGETS = ["sysinit", "basic", "sockets", "timers", "paths", "local-fs",
                 "local-fs-pre", "remote-fs", "network", "network-online",
                 "network-pre", "slices"]
UNIT_PATHS = ["/etc/systemd/system", "/usr/local/lib/systemd/system",
              "/lib/systemd/system", "/usr/lib/systemd/system"]
# Where the namespace sees $BUILD.
INSIDE = "/run/webcoursed-test"

# PID 1 of the new namespaces: set up the mounts, then become systemd.
# /tmp comes first: systemd-tmpfiles empties /tmp at boot, and it must never
# be the host's.  $BUILD ($1) is held open (fd 3) before anything is
# replaced, since the checkout may lie under /tmp, /var or /run, and bound
# at INSIDE once /run is the namespace's; from then on only that name is used
# (a path with spaces or commas would not survive overlayfs options).  $B
# is the test's directory ($2, relative to $BUILD).  Any failure stops
# before systemd.  mount -n: no utab in the host's /run.
BOOT_SH = r"""
I=%s
B="$I/$2"
exec 3<"$1" || exit 1
mount -n -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp || exit 1
mount -n --make-rprivate / || exit 1
""" % INSIDE + r"""mount -n -t tmpfs -o mode=755,nosuid,nodev tmpfs /run || exit 1
mkdir -p "$I" && mount -n --bind /proc/self/fd/3 "$I" || exit 1
exec 3<&-
cd "$B" || exit 1
mount -n -t tmpfs -o mode=755,nosuid tmpfs /dev || exit 1
mknod -m 666 /dev/null c 1 3 && mknod -m 666 /dev/zero c 1 5 &&
  mknod -m 666 /dev/full c 1 7 && mknod -m 666 /dev/random c 1 8 &&
  mknod -m 666 /dev/urandom c 1 9 && mknod -m 666 /dev/tty c 5 0 &&
  mknod -m 600 /dev/console c 1 3 && mkdir /dev/pts /dev/shm &&
  mount -n -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts &&
  ln -s pts/ptmx /dev/ptmx &&
  mount -n -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm &&
  ln -s /proc/self/fd /dev/fd && ln -s fd/0 /dev/stdin &&
  ln -s fd/1 /dev/stdout && ln -s fd/2 /dev/stderr || exit 1
mount -n --bind /proc/sys /proc/sys &&
  mount -n -o remount,bind,ro,nosuid,nodev,noexec /proc/sys || exit 1
mount -n -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup || exit 1
mount -n -o remount,bind,ro,nosuid,nodev,noexec /sys || exit 1
# /var: empty, or (VAR=overlay: dpkg's database, apt's lists) the host's
# with the writes in the namespace's memory.
if [ "$VAR" = overlay ]; then
  mkdir -p /run/webcoursed-var/upper /run/webcoursed-var/work &&
    mount -n -t overlay overlay -o \
      lowerdir=/var,upperdir=/run/webcoursed-var/upper,workdir=/run/webcoursed-var/work \
      /var || exit 1
else
  mount -n -t tmpfs -o mode=755 tmpfs /var || exit 1
  mkdir -p /var/lib/private /var/log /var/cache /var/tmp /var/spool &&
    chmod 700 /var/lib/private && chmod 1777 /var/tmp &&
    ln -s ../run /var/run && ln -s ../run/lock /var/lock || exit 1
fi
# The caller's overlays: "target upper work", upper and work relative to
# $B, or upper "-": the writes stay in the namespace's memory.
while read -r target upper work; do
  if [ "$upper" = - ]; then
    upper=/run/webcoursed-layers/$work/upper work=/run/webcoursed-layers/$work/work
  else
    upper=$B/$upper work=$B/$work
  fi
  mkdir -p "$upper" "$work" &&
  mount -n -t overlay overlay \
    -o "lowerdir=$target,upperdir=$upper,workdir=$work" "$target" || exit 1
done < "$B/overlays"
if [ -d "$B/etc-webcoursed" ]; then
  mount -n --bind "$B/etc-webcoursed" /etc/webcoursed || exit 1
fi
# Outside a container systemd makes / shared itself, and the credentials it
# mounts for a service only reach the service that way; in a container
# (container= below; on a host with /.dockerenv systemd assumes one anyway)
# it leaves / as it finds it, and unshare leaves it private.
if [ -z "$PRIVATE_MOUNTS" ]; then mount -n --make-rshared / || exit 1; fi
export container=webcoursed-test
exec /lib/systemd/systemd --system --unit=basic.target
"""


def diag(text):
    for line in str(text).splitlines() or [""]:
        print("# " + line, flush=True)


def why_not():
    """Why this machine cannot run the test, or None."""
    if os.geteuid() != 0:
        return "not root: booting systemd in namespaces needs root"
    if not os.access(SYSTEMD, os.X_OK):
        return "%s is not installed" % SYSTEMD
    for tool in ("unshare", "nsenter", "setpriv"):  # util-linux
        if shutil.which(tool) is None:
            return "%s is not installed" % tool
    p = subprocess.run(["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc",
                        "--cgroup", "--mount-proc", "true"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        return "unshare cannot create the namespaces here: %s" % (
            p.stdout.decode(errors="replace").strip() or "exit %d" % p.returncode)
    return None


def cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if post.split()[0] == "cgroup2":
                return pre.split()[4]
    return None


def host_state(paths):
    """Each path (recursively) with its type, mode, owner and content hash
    or link target; the mounts; the core pattern (which PID 1 writes when
    it is not in a container)."""
    out = {}

    def one(p):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            out[p] = None
            return
        what = None
        if stat.S_ISLNK(st.st_mode):
            what = os.readlink(p)
        elif stat.S_ISREG(st.st_mode):
            with open(p, "rb") as f:
                what = hashlib.sha256(f.read()).hexdigest()
        out[p] = (stat.filemode(st.st_mode), st.st_uid, st.st_gid, what)
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(p)):
                one(os.path.join(p, name))

    for p in paths:
        one(p)
    with open("/proc/self/mountinfo") as f:
        out["mounts"] = sorted(" ".join(line.split()[3:]) for line in f)
    with open("/proc/sys/kernel/core_pattern") as f:
        out["core_pattern"] = f.read()
    return out

def write(path, data, mode=0o644):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def unit_masks():
    names = set(MASK)
    for d in UNIT_PATHS:
        for t in EARLY_TARGETS:
            wants = os.path.join(d, t + ".target.wants")
            if os.path.isdir(wants):
                names.update(os.listdir(wants))
    return sorted(names - KEEP)

def conf_edit(text, changes):
    """Set keys the way a person edits the installed file: replace the line
    (commented out or not) in its section, or add it under the header."""
    lines = text.splitlines()
    for (section, key), value in changes.items():
        sec, header, done = None, None, False
        for i, line in enumerate(lines):
            m = re.match(r"\s*\[(\w+)\]", line)
            if m:
                sec = m.group(1)
                header = i if sec == section else header
            elif sec == section and re.match(r"[#;]?\s*%s\s*=" % re.escape(key), line):
                lines[i] = "%s = %s" % (key, value)
                done = True
                break
        if not done:
            if header is None:
                lines += ["", "[%s]" % section]
                header = len(lines) - 1
            lines.insert(header + 1, "%s = %s" % (key, value))
    return "\n".join(lines) + "\n"


def credentials(boot, size, exec_pre):
    """Does LoadCredential= deliver here?  If not, say so and give the
    token by a drop-in: root copies it into a runtime directory of the
    service user, bound over the configured path; nothing secret goes
    into argv, the environment or the log.  size: the token file's bytes;
    exec_pre: the installed unit's ExecStartPre= command.  Returns whether
    LoadCredential= works."""
    p = boot.run([
        "systemd-run", "--quiet", "--wait", "--pipe", "-p", "DynamicUser=yes",
        "-p", "LoadCredential=probe:/etc/webcoursed/moodle-token", "/bin/sh", "-c",
        'if [ -r "$CREDENTIALS_DIRECTORY/probe" ]; then '
        'wc -c < "$CREDENTIALS_DIRECTORY/probe"; else echo nothing; fi'])
    if p.out.strip() == str(size):
        diag("credentials: LoadCredential= works here: a probe unit read its "
             "%d-byte credential as its dynamic user" % size)
        return True
    diag("credentials: LoadCredential= delivered nothing on this machine (a probe "
         "unit with LoadCredential= found %r%s); token given by drop-in instead" % (
             p.out.strip() + p.err.strip(),
             "; / is private in the namespace" if boot.private_mounts else ""))
    for unit, rt, src in (("webcoursed.service", "webcoursed-token",
                           "/etc/webcoursed/moodle-token"),
                          ("webcoursed@.service", "webcoursed-token/%i",
                           "/etc/webcoursed/%i.token")):
        pre = exec_pre.replace("webcoursed.conf", "%i.conf") if "@" in unit else exec_pre
        boot.write("/run/systemd/system/%s.d/50-token.conf" % unit, (
            "[Service]\n"
            "LoadCredential=\n"
            "RuntimeDirectory=%s\n"
            "RuntimeDirectoryMode=0700\n"
            "ExecStartPre=\n"
            "ExecStartPre=+/bin/sh -c 'umask 077 && cp %s \"$$RUNTIME_DIRECTORY/token\" && "
            "chown --reference=\"$$RUNTIME_DIRECTORY\" \"$$RUNTIME_DIRECTORY/token\"'\n"
            "ExecStartPre=%s\n"
            "BindReadOnlyPaths=-/run/%s/token:%s\n") % (rt, src, pre, rt, src))
    boot.run(["systemctl", "daemon-reload"])
    return False


def prepare_etc(work, upper, hide):
    """The upper layer of the namespace's /etc, work/upper: the masks and a
    volatile journal; the host's units in /etc/systemd/system whose names
    start with hide are whited out (they would win over the ones under
    test).  Returns the notes worth a diagnostic."""
    notes = []
    etc = os.path.join(work, upper)
    os.makedirs(os.path.join(etc, "systemd", "system"))
    os.makedirs(os.path.join(etc, "systemd", "journald.conf.d"))
    for name in unit_masks():
        os.symlink("/dev/null", os.path.join(etc, "systemd", "system", name))
    write(os.path.join(etc, "systemd", "journald.conf.d", "50-test.conf"),
          "[Journal]\nStorage=volatile\n")
    # An overlay whiteout is a 0/0 character device.
    for name in os.listdir("/etc/systemd/system"):
        if name.startswith(hide):
            os.mknod(os.path.join(etc, "systemd", "system", name),
                     stat.S_IFCHR | 0o600, os.makedev(0, 0))
            notes.append("hid the host's /etc/systemd/system/%s" % name)
    return notes


def write_overlays(work, overlays):
    """The overlays the boot mounts: (target, upper) pairs, upper relative
    to work, or None for writes that stay in the namespace's memory (and
    an upper layer that can never lie inside the target, wherever the
    checkout is); returns their notes."""
    lines, notes = [], []
    for i, (target, upper) in enumerate(overlays):
        if re.search(r"[\s,:]", target):
            raise RuntimeError("overlayfs options cannot name %r" % target)
        if upper is None:
            lines.append("%s - ovl%d" % (target, i))
            notes.append("overlay on %s: writes stay in memory" % target)
            continue
        os.makedirs(os.path.join(work, upper), exist_ok=True)
        lines.append("%s %s ovl%d" % (target, upper, i))
        notes.append("overlay on %s: writes go to %s" % (target, upper))
    write(os.path.join(work, "overlays"), "\n".join(lines) + "\n")
    return notes


class Boot:
    """systemd as PID 1 of new pid, mount, uts, ipc and cgroup namespaces."""

    def __init__(self, work, private_mounts=False, var="tmpfs"):
        if os.path.dirname(os.path.realpath(work)) != os.path.realpath(BUILD):
            raise RuntimeError("the test's directory %s is not in $BUILD" % work)
        self.work = work
        self.private_mounts = private_mounts
        self.var = var
        self.proc = None
        self.pid = None  # systemd's, as the host sees it
        self.cgroup = None
        self.log = os.path.join(work, "boot.log")

    def start(self):
        """Boot; returns `systemctl is-system-running` once it settled."""
        if cgroup2_mount() is None:
            raise RuntimeError("no cgroup2 file system is mounted: systemd needs one")
        with open("/proc/self/cgroup") as f:
            mine = [ln.split(":", 2)[2].strip() for ln in f if ln.startswith("0::")][0]
        self.cgroup = os.path.join(cgroup2_mount() + mine.rstrip("/"),
                                   "webcoursed-test-%d" % os.getpid())
        os.mkdir(self.cgroup)
        script = os.path.join(self.work, "boot.sh")
        write(script, BOOT_SH)
        env = dict(os.environ, PRIVATE_MOUNTS="1" if self.private_mounts else "",
                   VAR=self.var)
        # Into our cgroup, then unshare; if this test dies, unshare dies
        # (pdeathsig) and takes PID 1 and so the whole namespace with it.
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                ["sh", "-c", 'echo 0 > "$1/cgroup.procs" && shift && exec "$@"', "sh",
                 self.cgroup, "setpriv", "--pdeathsig", "KILL",
                 "unshare", "--kill-child", "--cgroup", "--fork", "--pid", "--mount",
                 "--uts", "--ipc", "--mount-proc", "sh", script, BUILD,
                 os.path.basename(self.work)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd="/", env=env)

        def init():
            if self.proc.poll() is not None:
                raise RuntimeError("the namespace ended early:\n" + self.boot_log())
            try:
                with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                    kids = f.read().split()
                with open("/proc/%s/comm" % kids[0]) as f:
                    return int(kids[0]) if f.read().strip() == "systemd" else None
            except (OSError, IndexError):
                return None

        self.pid = wait_for(init, 20, "systemd to start in the namespace")

        def settled():
            s = self.run(["systemctl", "is-system-running"]).out.strip()
            return s if s in ("running", "degraded") else None

        return wait_for(settled, 60, "the boot to finish", interval=0.1)

    def inside(self, path):
        """Where the namespace sees path, a host path under $BUILD."""
        rel = os.path.relpath(os.path.realpath(path), os.path.realpath(BUILD))
        if rel.startswith(".."):
            raise ValueError("%s is not under $BUILD" % path)
        return INSIDE + "/" + rel

    def boot_log(self):
        try:
            with open(self.log) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def run(self, argv, input=None, timeout=60):
        """A command inside the namespaces, as root."""
        p = subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-p", "-u", "-i"] + argv,
                           input=input.encode() if input is not None else None,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        p.out = p.stdout.decode(errors="replace")
        p.err = p.stderr.decode(errors="replace")
        return p

    def write(self, path, text):
        """A file inside the namespace (e.g. a drop-in under /run)."""
        return self.run(["sh", "-c", 'mkdir -p "${1%/*}" && cat > "$1"', "sh", path],
                        input=text)

    def show(self, unit, prop):
        return self.run(["systemctl", "show", "-p", prop, "--value", unit]).out.strip()

    def journal(self, *args):
        p = self.run(["journalctl", "--no-pager", "-o", "json"] + list(args))
        out = []
        for line in p.out.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def messages(self, unit):
        return [e["MESSAGE"] for e in self.journal("-u", unit)
                if isinstance(e.get("MESSAGE"), str)]

    def poweroff(self):
        """SIGRTMIN+4 (systemctl poweroff's signal); every process in the
        namespace ends with its PID 1.  Returns the seconds it took."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        start = time.monotonic()
        try:
            if self.pid is not None:
                os.kill(self.pid, signal.SIGRTMIN + 4)
            else:
                self.proc.kill()
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # --kill-child: systemd gets SIGKILL, and all with it
            self.proc.wait(30)
        return time.monotonic() - start

    def remove_cgroup(self):
        """rmdir systemd's leftovers under our cgroup, deepest first."""
        if self.cgroup is None or not os.path.isdir(self.cgroup):
            return True

        def gone():
            for root, dirs, _ in os.walk(self.cgroup, topdown=False):
                for d in dirs:
                    try:
                        os.rmdir(os.path.join(root, d))
                    except OSError:
                        pass
            try:
                os.rmdir(self.cgroup)
                return True
            except OSError:
                return False

        try:
            return wait_for(gone, 10, "the test cgroup to empty", interval=0.1)
        except TimeoutError:
            return False



def run_test(t, prefix, watched, what, make):
    """The frame of a system test.  Takes the host's state (watched paths,
    mounts, core pattern) and puts a canary in its /tmp; make(work), work a
    fresh directory in $BUILD, returns the test: an object with .boot (a
    Boot), .servers (to stop at the end) and .run().  Whatever happens,
    cleans up first and reports after (a broken stdout must not leave the
    namespace, the cgroup or the work directory behind): power off, stop
    the servers, remove the cgroup and the work directory; then checks
    that nothing on the host changed (what names the watched things)."""
    t0 = time.monotonic()
    before = host_state(watched)
    canary = tempfile.NamedTemporaryFile(prefix="webcoursed-canary-", dir="/tmp")
    work = tempfile.mkdtemp(prefix=prefix, dir=BUILD)
    test = make(work)
    boot = test.boot
    try:
        test.run()
    except Exception:  # a step broke: say where, then clean up all the same
        t.ok(False, "the system test ran to its end", traceback.format_exc()[-3000:])
        diag("boot log:\n" + boot.boot_log())
    finally:
        secs = boot.poweroff()
        for s in test.servers:
            try:
                s.stop()
            except Exception:
                pass
        ended = boot.proc is None or boot.proc.poll() is not None
        cgroup_gone = boot.remove_cgroup()
        if ended:
            shutil.rmtree(work, ignore_errors=True)
        tmp_kept = os.path.exists(canary.name)
        try:
            canary.close()
        except FileNotFoundError:
            pass
        after = host_state(watched)
        diag("powered off in %.1f s" % secs)
        t.ok(ended, "the namespace has ended: no process is left")
        t.ok(cgroup_gone, "the test's cgroup is removed")
        t.ok(tmp_kept, "the host's /tmp was not touched")
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        t.eq(changed, [], "nothing changed on the host (%s, mounts, core pattern)" % what,
             "\n".join("%s: %r -> %r" % (k, before.get(k), after.get(k)) for k in changed))
        diag("wall time %.1f s" % (time.monotonic() - t0))
