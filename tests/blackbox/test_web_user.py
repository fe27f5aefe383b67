#!/usr/bin/env python3
"""webcoursectl web-user add|remove|list: the console's users file is
written atomically with mode 0600, holds yescrypt hashes that crypt(3)
checks, and the password is read without echo on a terminal or as one line
on stdin."""
import ctypes
import os
import pty
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, WEBCOURSECTL, SLOWDOWN  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
libcrypt = ctypes.CDLL("libcrypt.so.1")
libcrypt.crypt.restype = ctypes.c_char_p
libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]


def crypt_ok(password, hashed):
    return libcrypt.crypt(password.encode(), hashed.encode()) == hashed.encode()


def ctl(env, *args, stdin=b""):
    p = subprocess.run([WEBCOURSECTL, "-c", env.conf, "web-user"] + list(args),
                       input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def users(path):
    out = {}
    with open(path) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                name, h = line.rstrip("\n").split(":", 1)
                out[name] = h
    return out


def read_until(fd, want, timeout=20.0):
    """Read the pty's output until want shows up (or the deadline)."""
    buf = b""
    deadline = time.monotonic() + timeout * SLOWDOWN
    while want not in buf and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0, deadline - time.monotonic()))
        if not r:
            break
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        buf += data
    return buf


def on_terminal(env, name, first, second):
    """web-user add NAME on a terminal: the output seen, and the status."""
    master, slave = pty.openpty()
    p = subprocess.Popen([WEBCOURSECTL, "-c", env.conf, "web-user", "add", name],
                         stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    seen = read_until(master, b"New password for %s: " % name.encode())
    os.write(master, first.encode() + b"\n")
    seen += read_until(master, b"Again: ")
    os.write(master, second.encode() + b"\n")
    rc = p.wait(timeout=30 * SLOWDOWN)
    seen += read_until(master, b"\0", timeout=0.5)  # the rest, up to EOF
    os.close(master)
    return rc, seen.decode(errors="replace")


env = Env()
try:
    path = os.path.join(env.dir, "web-users")
    env.set("web", "users_file", path)

    rc, out, err = ctl(env, "list")
    t.ok(rc == 0 and out == "", "list without a users file: nobody", err)

    os.umask(0o022)
    rc, out, err = ctl(env, "add", "alice", stdin=b"correct horse\n")
    t.ok(rc == 0 and "alice" in out, "add alice, password on stdin", err)
    t.eq(os.stat(path).st_mode & 0o7777, 0o600, "the file is mode 0600 under umask 022")
    u = users(path)
    t.ok(u.get("alice", "").startswith("$y$"), "alice has a yescrypt hash", u)
    t.ok(crypt_ok("correct horse", u["alice"]), "crypt(3) checks the password against it")
    t.ok(not crypt_ok("correct horsE", u["alice"]), "and refuses another")
    t.ok("correct horse" not in open(path).read(), "the password is not in the file")

    rc, out, err = ctl(env, "add", "bob", stdin=b"battery staple\r\n")
    t.eq(rc, 0, "add bob (CRLF line)", err)
    t.ok(crypt_ok("battery staple", users(path)["bob"]), "the CR is not part of bob's password")
    rc, out, err = ctl(env, "list")
    t.eq(out, "alice\nbob\n", "list: alice and bob")

    old = users(path)["alice"]
    rc, out, err = ctl(env, "add", "alice", stdin=b"another password\n")
    t.ok(rc == 0 and crypt_ok("another password", users(path)["alice"])
         and users(path)["alice"] != old, "add again changes alice's password", err)
    t.eq(list(users(path)), ["alice", "bob"], "and adds nobody")

    before = open(path, "rb").read()
    for desc, args, stdin, want_rc, want in [
            ("a short password", ("add", "carol"), b"short\n", 1, "8 to 1024"),
            ("no password on stdin", ("add", "carol"), b"", 1, "no password"),
            ("a bad name", ("add", "ca:rol"), b"long enough\n", 2, "is not a user name"),
            ("remove an unknown user", ("remove", "carol"), b"", 1, "no web user carol"),
            ("add without a name", ("add",), b"", 2, "needs one NAME"),
            ("an unknown verb", ("rename", "alice"), b"", 2, "add NAME, remove NAME or list")]:
        rc, out, err = ctl(env, *args, stdin=stdin)
        t.ok(rc == want_rc and want in err, "%s is refused (exit %d)" % (desc, want_rc), err)
        t.ok(open(path, "rb").read() == before, "%s: the file is unchanged" % desc)

    rc, out, err = ctl(env, "remove", "bob")
    t.ok(rc == 0 and list(users(path)) == ["alice"], "remove bob", err)

    rc, seen = on_terminal(env, "dora", "typed secretly", "typed secretly")
    t.eq(rc, 0, "add on a terminal: asked twice", seen)
    t.ok("typed secretly" not in seen, "the password is not echoed", seen)
    t.ok(crypt_ok("typed secretly", users(path).get("dora", "")), "dora's password is set")
    before = open(path, "rb").read()
    rc, seen = on_terminal(env, "erin", "first attempt", "second attempt")
    t.ok(rc == 1 and "differ" in seen, "two different passwords are refused", seen)
    t.ok(open(path, "rb").read() == before, "and change nothing")

    names = ["u%d" % i for i in range(6)]
    procs = [subprocess.Popen([WEBCOURSECTL, "-c", env.conf, "web-user", "add", n],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for n in names]
    for p in procs:
        p.communicate(b"password of " + b"x" * 4 + b"\n", timeout=60)
    t.ok(set(names) <= set(users(path)), "six adds at once: none is lost", users(path))
    t.eq(sorted(f for f in os.listdir(env.dir) if ".tmp." in f), [],
         "no temp file is left behind")
finally:
    env.close()
t.done()
