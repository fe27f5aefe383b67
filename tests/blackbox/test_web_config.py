#!/usr/bin/env python3
"""[web]: the console is off by default, plain HTTP is allowed on loopback
only, and `webcoursed -t` refuses any other address without a certificate
and key, naming the file and line."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, TOP, WEBCOURSED  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()


def check(env):
    p = subprocess.run([WEBCOURSED, "-t", "-c", env.conf],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode() + p.stderr.decode()


def line_of(path, text):
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.startswith(text):
                return n
    return None


env = Env()
try:
    rc, out = check(env)
    t.ok(rc == 0 and "configuration OK" in out, "no [web] section: OK (off)", out)

    for listen in ("127.0.0.1:8089", "[::1]:8089"):
        env.set("web", "listen", listen)
        rc, out = check(env)
        t.ok(rc == 0 and "configuration OK" in out,
             "plain HTTP on loopback %s is allowed" % listen, out)

    for listen in ("0.0.0.0:8089", "[::]:8089", "192.0.2.7:443"):
        env.set("web", "listen", listen)
        rc, out = check(env)
        where = "%s:%s:" % (env.conf, line_of(env.conf, "listen = " + listen))
        t.ok(rc == 1 and where in out and "not a loopback address" in out
             and "tls_cert" in out,
             "%s without TLS is refused at FILE:LINE" % listen, out)

    env.set("web", "tls_cert", os.path.join(env.dir, "web.pem"))
    rc, out = check(env)
    where = "%s:%s:" % (env.conf, line_of(env.conf, "tls_cert ="))
    t.ok(rc == 1 and where in out and "tls_key is not" in out,
         "a certificate without its key is refused", out)
    env.set("web", "tls_key", os.path.join(env.dir, "web.key"))
    rc, out = check(env)
    t.ok(rc == 0 and "configuration OK" in out,
         "a public address with certificate and key is allowed", out)
finally:
    env.close()

# The units let the console bind the example's port, and give the daemon
# the users file as a credential with a default for a site without one.
example = open(os.path.join(TOP, "etc", "webcoursed.conf")).read()
web = example[example.index("[web]"):]
port = re.search(r"^# listen = 127\.0\.0\.1:(\d+)$", web, re.M)
t.ok(port is not None, "the example shows a loopback console address")
for unit, rule in (("webcoursed.service", "tcp:%s" % port.group(1)),
                   ("webcoursed@.service", "tcp:%s-" % port.group(1))):
    text = open(os.path.join(TOP, "systemd", unit)).read()
    allow = re.findall(r"^SocketBindAllow=(\S+)$", text, re.M)
    t.ok(any(a == rule or (rule.endswith("-") and a.startswith(rule)) for a in allow),
         "%s allows the console's port (%s)" % (unit, allow))
    t.ok(re.search(r"^LoadCredential=web-users:/etc/webcoursed/\S+$", text, re.M)
         and "SetCredential=web-users:#none" in text.splitlines(),
         "%s passes the users file as a credential, with a default" % unit)
t.done()
