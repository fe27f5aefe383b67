#!/usr/bin/env python3
"""The command lines: help, version, -t, usage errors, and the man pages
kept true to the code's tables."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, TOP, WEBCOURSED, WEBCOURSECTL  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()


def run(*argv):
    p = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def man(name):
    return open(os.path.join(TOP, "man", name)).read()


rc, out, _ = run(WEBCOURSED, "--version")
t.ok(rc == 0 and re.match(r"webcoursed \d+\.\d+", out), "webcoursed --version", out)
rc, out, _ = run(WEBCOURSECTL, "--version")
t.ok(rc == 0 and out.startswith("webcoursectl "), "webcoursectl --version", out)
rc, help_out, _ = run(WEBCOURSED, "--help")
t.eq(rc, 0, "webcoursed --help exits 0")
options, _, keys_part = help_out.partition("configuration keys")
t.ok(keys_part, "--help lists the configuration keys")
page = man("webcoursed.8")
for opt in re.findall(r"(?<![a-z])(--?[a-z][a-z-]*)", options):
    if opt in ("-c", "-f", "-t", "-v", "-h"):
        t.ok("\\fB" + opt in page or ".BR " + opt.replace("-", "\\-") in page or
             opt.replace("-", "\\-") in page, "webcoursed.8 documents %s" % opt)
    else:
        t.ok(opt.replace("-", "\\-") in page, "webcoursed.8 documents %s" % opt)
t.eq([l for l in help_out.splitlines() if len(l) > 79], [],
     "webcoursed --help stays within 80 columns")
rc, _, err = run(WEBCOURSED, "--bogus")
t.eq(rc, 2, "an unknown option is a usage error (2)")
t.ok("--bogus" in err and "--help" in err and len(err.splitlines()) <= 2,
     "it names the option and where to get help, in two lines", err)

rc, out, _ = run(WEBCOURSECTL, "--help")
t.eq(rc, 0, "webcoursectl --help exits 0")
t.eq([l for l in out.splitlines() if len(l) > 79], [],
     "webcoursectl --help stays within 80 columns")
for argv in (["--bogus"], ["status", "--bogus"], ["-c"]):
    rc, _, err = run(WEBCOURSECTL, *argv)
    t.ok(rc == 2 and argv[-1] in err and "--help" in err and len(err.splitlines()) <= 2,
         "webcoursectl %s: says what was wrong and where to get help" % " ".join(argv), err)
commands = re.findall(r"^  ([a-z-]+)(?: |$)", out, re.M)
t.eq(commands, ["status", "plan", "sync", "approve", "reject", "missing-users",
                "errors", "check", "drift", "reconcile", "history", "web-user"],
     "the command table has DESIGN.md's commands")
page = man("webcoursectl.1")
readme = open(os.path.join(TOP, "README.md")).read()
for c in commands:
    t.ok(".B " + c.replace("-", "\\-") in page, "webcoursectl.1 documents %s" % c)
    t.ok("webcoursectl " + c in readme, "README documents %s" % c)
rc, _, err = run(WEBCOURSECTL, "frobnicate")
t.ok(rc == 2 and "unknown command" in err, "an unknown command is a usage error", err)

env = Env()
try:
    # Every config key from the code's table is in webcoursed.conf(5) and
    # in the example config.
    page = man("webcoursed.conf.5").replace("\\-", "-")
    example = open(os.path.join(TOP, "etc", "webcoursed.conf")).read()
    rc, out, err = run(WEBCOURSED, "-t", "-c", env.conf)
    t.ok(rc == 0 and out.strip() == "configuration OK", "-t prints configuration OK", out + err)
    section = None
    for line in keys_part.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if not line.startswith("  ") or line.startswith("   ") or section is None:
            continue
        name = line.split()[0]
        key = "%s.%s" % (section, name)
        t.ok(re.search(r"\b%s\b" % re.escape(name), page), "webcoursed.conf.5 documents %s" % key)
        t.ok(re.search(r"^#?\s*%s\s*=" % re.escape(name), example, re.M),
             "etc/webcoursed.conf shows %s" % key)

    with open(env.conf, "a") as f:
        f.write("\n[sync]\nintervall = 5m\n[moodel]\nurl = x\n[source]\ntimeout = soon\n")
    rc, out, err = run(WEBCOURSED, "-t", "-c", env.conf)
    lines = [l for l in err.splitlines() if l.startswith(env.conf + ":")]
    t.eq(rc, 1, "-t with three mistakes exits 1")
    t.eq(len(lines), 3, "and prints three FILE:LINE: errors", err)
    t.ok(env.token not in out + err, "the token never appears in errors")

    os.chmod(env.token_file, 0o644)
    rc, out, err = run(WEBCOURSED, "-t", "-c", env.conf)
    t.ok(rc == 1 and "readable by group or others" in err, "a world-readable token file is refused", err)
finally:
    env.close()
t.done()
