#!/usr/bin/env python3
"""make dist: a reproducible source tarball that builds on its own.

Two `make dist` runs into different directories, under different umasks,
give the same bytes, and so does one in the unpacked tarball (no git); every member has
owner 0/0 and SOURCE_DATE_EPOCH (the changelog's date) as its mtime; the
members are the files git tracks; unpacked in an empty directory it
builds, and its binaries report the changelog's version.  (.ci/run runs
the whole `make check` in such an unpacked tarball.)"""
import email.utils
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import TOP  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
with open(os.path.join(TOP, "debian", "changelog")) as f:
    changelog = f.read()
version = re.match(r"webcoursed \(([^)]+)\)", changelog).group(1)
date = re.search(r"^ -- .*>  (.*)$", changelog, re.M).group(1)
epoch = int(email.utils.parsedate_to_datetime(date).timestamp())
name = "webcoursed-%s" % version
# The build must not see this run's BUILD or make variables.
ENV = {k: v for k, v in os.environ.items()
       if k not in ("BUILD", "SANITIZE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL",
                    "SOURCE_DATE_EPOCH", "CFLAGS", "LDFLAGS", "CPPFLAGS")}
work = tempfile.mkdtemp(prefix="webcoursed-dist-")


def dist(out, umask):
    old = os.umask(umask)
    try:
        p = subprocess.run(["make", "-s", "-C", TOP, "dist", "BUILD=" + out], env=ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    finally:
        os.umask(old)
    path = os.path.join(out, name + ".tar.gz")
    t.eq(p.returncode, 0, "make dist BUILD=%s" % os.path.basename(out), p.stdout.decode())
    with open(path, "rb") as f:
        return f.read()


try:
    a = dist(os.path.join(work, "a"), 0o022)
    b = dist(os.path.join(work, "b"), 0o077)
    t.ok(len(a) > 10000 and a == b, "two builds give the same %d bytes" % len(a))
    with tarfile.open(os.path.join(work, "a", name + ".tar.gz")) as tar:
        members = tar.getmembers()
        t.ok(members and all(m.name.startswith(name + "/") for m in members),
             "every member is under %s/" % name)
        odd = [m.name for m in members if (m.uid, m.gid, m.uname, m.gname, m.mtime)
               != (0, 0, "", "", epoch)]
        t.eq(odd, [], "every member has owner 0/0 and the changelog's date as mtime (%d)"
             % epoch)
        t.ok(all(m.mode & 0o022 == 0 and m.mode & 0o444 == 0o444 for m in members
                 if m.isfile()), "modes are normalised (readable by all, written by owner)")
        names = sorted(m.name[len(name) + 1:] for m in members)
        tar.extractall(os.path.join(work, "unpacked"))
    if os.path.isdir(os.path.join(TOP, ".git")) or os.path.isfile(os.path.join(TOP, ".git")):
        p = subprocess.run(["git", "-C", TOP, "ls-files"], stdout=subprocess.PIPE)
        t.eq(names, sorted(p.stdout.decode().splitlines()), "its files are those git tracks")
    else:
        t.ok(all(n in names for n in ("Makefile", "debian/changelog", "src/daemon.c")),
             "it holds the sources (no git here to compare with)")
    t.ok(not any(re.match(r"build(-\w+)?/", n) for n in names), "and nothing built")
    src = os.path.join(work, "unpacked", name)
    p = subprocess.run(["make", "-s", "-C", src, "all"], env=ENV,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t.eq(p.returncode, 0, "the unpacked tarball builds in an empty directory",
         p.stdout.decode()[-2000:])
    for prog in ("webcoursed", "webcoursectl"):
        p = subprocess.run([os.path.join(src, "build", prog), "--version"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        t.eq(p.stdout.decode().strip(), "%s %s" % (prog, version),
             "and its %s reports the changelog's version" % prog)
    p = subprocess.run(["make", "-s", "-C", src, "dist", "BUILD=" + os.path.join(work, "c")],
                       env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with open(os.path.join(work, "c", name + ".tar.gz"), "rb") as f:
        again = f.read()
    t.ok(p.returncode == 0 and again == a,
         "make dist in the unpacked tarball (no git) gives the same bytes again",
         p.stdout.decode())
finally:
    shutil.rmtree(work, ignore_errors=True)
t.done()
