"""A small client of the web console for the tests and the bench: one
request per connection, the session cookie kept, forms posted with the
console's own Origin, the CSRF token read from the page."""
import http.client
import json
import re
import socket
import ssl
import urllib.parse

from harness import SLOWDOWN


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_run_ended(env):
    """Whether a run has ended (the ledger may not exist yet)."""
    p = env.ctl("status", "--json")
    if p.returncode != 0:
        return False
    runs = json.loads(p.out)["runs"]
    return bool(runs) and runs[0]["ended"] is not None


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> list of values
        self.body = body
        self.text = body.decode("utf-8", "replace")

    def header(self, name):
        v = self.headers.get(name.lower())
        return v[0] if v else None

    def __repr__(self):
        return "<%d %r %r>" % (self.status, self.headers, self.text[:300])


class Console:
    def __init__(self, port, host="127.0.0.1", source=None, tls=False):
        self.port, self.host, self.source, self.tls = port, host, source, tls
        self.cookie = None  # "NAME=VALUE"

    @property
    def origin(self):
        return "%s://%s:%d" % ("https" if self.tls else "http", self.host, self.port)

    def request(self, method, path, form=None, headers=None, origin=True,
                cookie=True, timeout=20):
        if self.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(self.host, self.port, context=ctx,
                                               timeout=timeout * SLOWDOWN,
                                               source_address=self.source)
        else:
            conn = http.client.HTTPConnection(self.host, self.port,
                                              timeout=timeout * SLOWDOWN,
                                              source_address=self.source)
        h = {}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form, doseq=True)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        if method == "POST" and origin is True:
            h["Origin"] = self.origin
        elif isinstance(origin, str):
            h["Origin"] = origin
        if cookie and self.cookie:
            h["Cookie"] = self.cookie
        h.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            hdrs = {}
            for k, v in resp.getheaders():
                hdrs.setdefault(k.lower(), []).append(v)
            r = Reply(resp.status, hdrs, data)
        finally:
            conn.close()
        for c in r.headers.get("set-cookie", []):
            name_value = c.split(";", 1)[0]
            if "max-age=0" in c.lower():
                self.cookie = None
            else:
                self.cookie = name_value
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, form, **kw):
        return self.request("POST", path, form=form, **kw)

    def login(self, user, password):
        return self.post("/login", {"username": user, "password": password})

    def csrf(self, path="/"):
        m = re.search(r'name="csrf" value="([0-9a-f]+)"', self.get(path).text)
        return m.group(1) if m else None
