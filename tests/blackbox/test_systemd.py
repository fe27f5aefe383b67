#!/usr/bin/env python3
"""The unit files: systemd-analyze verify is clean and the security
exposure stays at or under 1.5 (when systemd-analyze is installed), and
make install/uninstall put and remove every file under DESTDIR."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import TOP, BUILD  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
units = ["webcoursed.service", "webcoursed@.service"]
dest = tempfile.mkdtemp(prefix="webcoursed-install-")
try:
    build = os.path.relpath(BUILD, TOP)
    p = subprocess.run(["make", "-s", "-C", TOP, "BUILD=" + build, "install",
                        "DESTDIR=" + dest, "PREFIX=/usr", "SYSTEMDUNITDIR=/lib/systemd/system"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t.eq(p.returncode, 0, "make install DESTDIR=... succeeds", p.stdout.decode())
    files = ["usr/sbin/webcoursed", "usr/bin/webcoursectl", "etc/webcoursed/webcoursed.conf",
             "lib/systemd/system/webcoursed.service", "lib/systemd/system/webcoursed@.service",
             "usr/share/man/man8/webcoursed.8", "usr/share/man/man5/webcoursed.conf.5",
             "usr/share/man/man1/webcoursectl.1"]
    for f in files:
        t.ok(os.path.exists(os.path.join(dest, f)), "installed " + f)
    mode = os.stat(os.path.join(dest, "etc/webcoursed/webcoursed.conf")).st_mode & 0o7777
    t.eq(oct(mode), oct(0o644), "the config is installed 0644: the service's dynamic user "
         "reads it, and it holds no secret")
    unit = open(os.path.join(dest, "lib/systemd/system/webcoursed.service")).read()
    t.ok("ExecStart=/usr/sbin/webcoursed " in unit, "the unit points at the installed binary")

    sa = shutil.which("systemd-analyze")
    if sa is None:
        print("# systemd-analyze not installed: unit checks not run")
    else:
        for u in units:
            path = os.path.join(dest, "lib/systemd/system", u)
            if "@" in u:
                inst = os.path.join(dest, "webcoursed@site.service")
                shutil.copy(path, inst)
                path = inst
            p = subprocess.run([sa, "verify", "--man=no", path],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            out = p.stdout.decode()
            # The binaries are installed under DESTDIR, not at their paths.
            out = "\n".join(l for l in out.splitlines()
                            if "is not executable" not in l and l.strip())
            t.eq(out, "", "systemd-analyze verify %s is clean" % u)
            p = subprocess.run([sa, "security", "--offline=true", path],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout.decode())
            t.ok(m is not None, "systemd-analyze security rates %s" % u)
            if m:
                print("# exposure of %s: %s" % (u, m.group(1)))
                t.ok(float(m.group(1)) <= 1.5, "%s exposure %s <= 1.5" % (u, m.group(1)))

    p = subprocess.run(["make", "-s", "-C", TOP, "BUILD=" + build, "uninstall",
                        "DESTDIR=" + dest, "PREFIX=/usr", "SYSTEMDUNITDIR=/lib/systemd/system"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t.eq(p.returncode, 0, "make uninstall succeeds")
    left = [f for f in files if os.path.exists(os.path.join(dest, f))
            and not f.startswith("etc/")]
    t.eq(left, [], "make uninstall removes what install put (the config stays)")
finally:
    shutil.rmtree(dest, ignore_errors=True)
t.done()
