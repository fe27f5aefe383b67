#!/usr/bin/env python3
"""Feed redirects and TLS (issue 20 item 2, and what held).

With source.auth_header_file, the header goes to the feed's own origin
(scheme, host, port) only: a redirect to another port, another host name
or another scheme is refused before any request is made there, and the
run says so.  A redirect within the origin is followed with the header.
Without an auth header, redirects to another origin are followed as
before.  An https feed is never redirected down to http.  A self-signed
certificate is refused without source.ca_file and accepted with it."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, SEED_FEED, TOP  # noqa: E402
from feedserver import FeedServer  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
SECRET = "redirsecret-0c3f1b9e77a24d"
CERT = os.path.join(TOP, "tests", "data", "tls", "feed-cert.pem")
KEY = os.path.join(TOP, "tests", "data", "tls", "feed-key.pem")
BODY = open(SEED_FEED, "rb").read()


def secret_seen(srv, since=0):
    return [r["path"] for r in srv.requests[since:]
            if SECRET in json.dumps(r["headers"])]


env = Env()
a = FeedServer(body=BODY).start()   # the feed's host
b = FeedServer(body=BODY).start()   # another port of the same host
tls = FeedServer(body=BODY, tls=(CERT, KEY)).start()
try:
    header_file = os.path.join(env.dir, "feed-auth")
    with open(header_file, "w") as f:
        f.write("X-Api-Key: %s\n" % SECRET)
    os.chmod(header_file, 0o600)
    env.set("source", "auth_header_file", header_file)

    # Within the origin: followed, with the header.
    a.set(redirects={"/old.json": "/feed.json"})
    env.set("source", "url", a.origin + "/old.json")
    p = env.sync()
    t.eq(p.returncode, 0, "a redirect within the feed's origin is followed", p.err[-800:])
    t.eq(secret_seen(a), ["/old.json", "/feed.json"],
         "... and both requests carried the auth header")

    # To another port, and to another host name of the same server.  (The
    # https server's certificate is trusted, so that only the origin rule
    # can refuse the last one.)
    env.set("source", "ca_file", CERT)
    for label, target, other in [
            ("another port", b.url, b),
            ("another host name", "http://localhost:%d/feed.json" % a.port, a),
            ("another scheme and port", tls.url, tls)]:
        na, no = len(a.requests), len(other.requests)
        a.set(redirects={"/old.json": target})
        p = env.sync()
        t.ok(p.returncode != 0 and "another origin: not followed" in p.err,
             "a redirect to %s is refused, and said so" % label, p.err[-800:])
        t.ok(target.split("/feed.json")[0] in p.err,
             "... the message names where it pointed", p.err[-800:])
        t.eq(secret_seen(other, no if other is not a else na + 1), [],
             "... the auth header never reached %s" % label)
        t.eq(len(other.requests) - (no if other is not a else na + 1), 0,
             "... no request at all was made there")
        t.ok(SECRET not in p.err + p.out, "... and the secret is not in the output")

    # Without an auth header, another origin is fine: nothing to leak.
    del env.sections["source"]["auth_header_file"]
    env.write_config()
    a.set(redirects={"/old.json": b.url})
    nb = len(b.requests)
    p = env.sync()
    t.eq(p.returncode, 0, "without an auth header, a redirect to another port is followed",
         p.err[-800:])
    t.eq(len(b.requests) - nb, 1, "... to the other server")

    # https: a self-signed certificate, then a downgrade.
    del env.sections["source"]["ca_file"]
    env.set("source", "url", tls.url)
    p = env.sync()
    t.ok(p.returncode != 0 and "certificate" in p.err.lower(),
         "a self-signed certificate is refused without source.ca_file", p.err[-800:])
    env.set("source", "ca_file", CERT)
    p = env.sync()
    t.eq(p.returncode, 0, "... and accepted with it as source.ca_file", p.err[-800:])
    for with_header in (False, True):
        if with_header:
            env.set("source", "auth_header_file", header_file)
        tls.set(redirects={"/old.json": b.url})
        env.set("source", "url", tls.origin + "/old.json")
        nb = len(b.requests)
        p = env.sync()
        t.ok(p.returncode != 0 and "from https to another protocol: not followed" in p.err,
             "an https feed redirected to http is refused (%s auth header)" %
             ("with an" if with_header else "without"), p.err[-800:])
        t.eq(len(b.requests) - nb, 0, "... no request went out over http")
    tls.set(redirects={"/old.json": tls.origin + "/feed.json"})
    p = env.sync()
    t.eq(p.returncode, 0, "an https redirect within the origin is followed", p.err[-800:])
    t.eq(secret_seen(tls)[-2:], ["/old.json", "/feed.json"],
         "... with the header on both requests")
finally:
    for s in (a, b, tls):
        s.stop()
    env.close()
t.done()
