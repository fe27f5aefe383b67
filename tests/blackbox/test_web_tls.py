#!/usr/bin/env python3
"""The console over its own TLS (web.tls_cert, web.tls_key): HTTPS only,
the session cookie Secure with the __Host- prefix, forms only from the
https origin, and a public address allowed once a certificate is set."""
import os
import re
import shutil
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, WEBCOURSECTL, WEBCOURSED, wait_for  # noqa: E402
from tap import Tap  # noqa: E402
from webclient import Console, free_port  # noqa: E402

if shutil.which("openssl") is None:
    print("1..0 # SKIP openssl is not installed (make deps)")
    sys.exit(0)

t = Tap()
port = free_port()
env = Env(web={"listen": "127.0.0.1:%d" % port})
try:
    d = env.dir
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)
    env.set("web", "tls_cert", cert)
    env.set("web", "tls_key", key)
    env.set("web", "users_file", os.path.join(d, "web-users"))
    subprocess.run([WEBCOURSECTL, "-c", env.conf, "web-user", "add", "alice"],
                   input=b"tls password\n", check=True, capture_output=True)
    proc = env.daemon()
    web = Console(port, tls=True)

    def up():
        try:
            return web.get("/login").status == 200
        except OSError:
            return False
    wait_for(up, 30, "the console over TLS")
    plain = Console(port)
    try:
        r = plain.get("/login", timeout=5)
        spoke_plain = r.status < 400
    except Exception:  # a TLS server answers plain HTTP with an alert or a close
        spoke_plain = False
    t.ok(not spoke_plain, "plain HTTP gets no page from a TLS console")
    r = web.login("alice", "tls password")
    cookie = (r.headers.get("set-cookie") or [""])[0]
    t.ok(r.status == 303 and re.match(r"__Host-webcoursed=[0-9a-f]{64}; HttpOnly; "
                                      r"SameSite=Strict; Path=/; Secure$", cookie),
         "login over TLS: the cookie is Secure, with the __Host- prefix", r)
    r = web.get("/")
    t.eq(r.status, 200, "the overview over TLS")
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', r.text).group(1)
    r = web.post("/sync", {"csrf": csrf}, origin="http://127.0.0.1:%d" % port)
    t.eq(r.status, 403, "a form from the http origin of the same host: 403")
    r = web.post("/sync", {"csrf": csrf})
    t.eq(r.status, 303, "from the https origin: accepted")
    proc.terminate()
    proc.wait(timeout=30)

    env.set("web", "listen", "0.0.0.0:%d" % port)
    p = subprocess.run([WEBCOURSED, "-t", "-c", env.conf],
                       capture_output=True, text=True)
    t.ok(p.returncode == 0 and "configuration OK" in p.stdout + p.stderr,
         "with a certificate and key every address may be served", p.stderr)
finally:
    env.close()
t.done()
