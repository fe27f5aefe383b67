#!/usr/bin/env python3
"""One version everywhere: debian/changelog sets it (the Makefile reads
it), and webcoursed --version, webcoursectl --version, the metric
webcoursed_build_info{version=...}, NEWS and the README all say the same.  The package's version is checked where the
package is built (tests/system/test_package.py)."""
import http.client
import os
import re
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, SLOWDOWN, TOP, WEBCOURSECTL, WEBCOURSED, wait_for, wrapper  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()


def read(name):
    with open(os.path.join(TOP, name)) as f:
        return f.read()


m = re.match(r"webcoursed \(([^)]+)\) \S+; urgency=\w+\n", read("debian/changelog"))
t.ok(m is not None, "debian/changelog starts with a webcoursed entry")
version = m.group(1) if m else None
t.ok(version and re.fullmatch(r"\d+\.\d+\.\d+(\+[a-z0-9.]+)?", version),
     "a native version without a Debian revision (%s)" % version)

for prog, name in ((WEBCOURSED, "webcoursed"), (WEBCOURSECTL, "webcoursectl")):
    p = subprocess.run(wrapper() + [prog, "--version"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    t.eq(p.stdout.decode().strip(), "%s %s" % (name, version), "%s --version" % name,
         p.stderr.decode())

news = re.search(r"^(\d+\.\d+\.\d+\S*) \(\d{4}-\d\d-\d\d\)$", read("NEWS"), re.M)
t.eq(news and news.group(1), version, "NEWS's newest entry is this version")
readme = re.search(r"^This is webcoursed (\S+)\. ", read("README.md"), re.M)
t.eq(readme and readme.group(1), version, "the README names this version")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SLOWDOWN)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        return r.read().decode() if r.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


port = free_port()
env = Env(metrics={"listen": "127.0.0.1:%d" % port})
try:
    env.daemon()
    text = wait_for(lambda: scrape(port), 20, "/metrics to answer")
    info = re.findall(r'^webcoursed_build_info\{version="([^"]*)"\} 1$', text, re.M)
    t.eq(info, [version], "webcoursed_build_info{version=...} is 1 for this version")
finally:
    env.close()
t.done()
