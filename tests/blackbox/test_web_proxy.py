#!/usr/bin/env python3
"""The README's nginx snippet, run: nginx terminates TLS in front of the
console on loopback; a login through it gets a Secure __Host- cookie, the
pages come with the console's headers, a form with the proxy's origin
works and one from another site does not."""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, TOP, WEBCOURSECTL, wait_for  # noqa: E402
from tap import Tap  # noqa: E402
from webclient import Console, free_port  # noqa: E402

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
if NGINX is None or shutil.which("openssl") is None:
    print("1..0 # SKIP nginx or openssl is not installed (make deps: nginx-light)")
    sys.exit(0)

t = Tap()
readme = open(os.path.join(TOP, "README.md")).read()
snippet = re.search(r"```nginx\n(.*?)```", readme, re.S)
t.ok(snippet is not None, "the README has an nginx snippet")
snippet = snippet.group(1)

web_port, tls_port = free_port(), free_port()
env = Env(web={"listen": "127.0.0.1:%d" % web_port})
proc = None
try:
    d = env.dir
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", os.path.join(d, "key.pem"),
                    "-out", os.path.join(d, "cert.pem")], check=True, capture_output=True)
    site = (snippet.replace("listen 443 ssl;", "listen 127.0.0.1:%d ssl;" % tls_port)
            .replace("/etc/ssl/certs/sync.example.edu.pem", os.path.join(d, "cert.pem"))
            .replace("/etc/ssl/private/sync.example.edu.key", os.path.join(d, "key.pem"))
            .replace("127.0.0.1:8089", "127.0.0.1:%d" % web_port))
    t.ok(site != snippet and "127.0.0.1:%d ssl" % tls_port in site,
         "the snippet's address, port and files are the only things changed")
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write("user root;\nworker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log;\n"
                "events {}\nhttp {\naccess_log off;\nclient_body_temp_path %s;\n"
                "proxy_temp_path %s;\n%s\n}\n" % (d, d, d, d, site))
    p = subprocess.run([NGINX, "-t", "-p", d, "-c", os.path.join(d, "nginx.conf")],
                       capture_output=True)
    t.eq(p.returncode, 0, "nginx -t accepts the snippet", p.stderr)
    proc = subprocess.Popen([NGINX, "-p", d, "-c", os.path.join(d, "nginx.conf"),
                             "-g", "daemon off;"], stderr=subprocess.DEVNULL)

    env.set("web", "users_file", os.path.join(d, "web-users"))
    subprocess.run([WEBCOURSECTL, "-c", env.conf, "web-user", "add", "alice"],
                   input=b"proxy password\n", check=True, capture_output=True)
    env.daemon()
    web = Console(tls_port, tls=True)

    def up():
        try:
            return web.get("/login").status == 200
        except OSError:
            return False
    wait_for(up, 30, "the console through nginx")
    r = web.login("alice", "proxy password")
    cookie = (r.headers.get("set-cookie") or [""])[0]
    t.ok(r.status == 303 and re.match(r"__Host-webcoursed=[0-9a-f]{64}; HttpOnly; "
                                      r"SameSite=Strict; Path=/; Secure$", cookie),
         "a login through the proxy: a Secure __Host- cookie", r)
    r = web.get("/")
    t.ok(r.status == 200 and "Overview" in r.text, "the overview through the proxy", r)
    t.ok("frame-ancestors 'none'" in (r.header("Content-Security-Policy") or "")
         and r.header("Cache-Control") == "no-store",
         "with the console's headers passed on")
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', r.text).group(1)
    r = web.post("/sync", {"csrf": csrf})
    t.ok(r.status == 303, "a form from the proxy's own origin works", r)
    r = web.post("/sync", {"csrf": csrf}, origin="http://127.0.0.1:%d" % tls_port)
    t.eq(r.status, 403, "the same host over http is another origin: 403")
    r = web.post("/sync", {"csrf": csrf}, origin="https://evil.example")
    t.eq(r.status, 403, "another site: 403")
finally:
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=20)
    env.close()
t.done()
