#!/usr/bin/env python3
"""Header values kept from the feed are valid field values (issue 20 item 7).

An ETag (or Last-Modified) holding a bare CR, as in `"abc"\\rX-Injected: yes`,
was stored and sent back in If-None-Match on the next request.  Now such a
value is dropped when it arrives, and one already stored (by an older
version) is not sent.  A valid ETag still makes the next fetch
conditional (304: feed unchanged)."""
import json
import os
import sqlite3
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, SEED_FEED  # noqa: E402
from feedserver import FeedServer  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
SEED = json.load(open(SEED_FEED))
VERSION = [0]


def new_body():
    """The seed feed with one course renamed: a feed the run has not seen,
    so that it is applied and its validators saved."""
    VERSION[0] += 1
    feed = json.loads(json.dumps(SEED))
    feed["courses"][0]["name"] += " (version %d)" % VERSION[0]
    return json.dumps(feed).encode()


BAD_ETAG = b'ETag: "abc"\rX-Injected: yes'
BAD_LM = b"Last-Modified: Tue, 01 Dec 2026 10:00:00 GMT\rX-Injected: yes"


def conditional(req):
    return {k: v for k, v in req["headers"].items()
            if k.lower() in ("if-none-match", "if-modified-since", "x-injected")}


def meta(env, key):
    db = sqlite3.connect(env.db)
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    db.close()
    return row[0] if row else None


env = Env()
fs = FeedServer(body=new_body()).start()
try:
    env.set("source", "url", fs.url)
    for label, raw in (("an ETag", BAD_ETAG), ("a Last-Modified", BAD_LM)):
        fs.set(raw_headers=[raw], body=new_body())
        p = env.sync()
        t.eq(p.returncode, 0, "%s with a bare CR: the feed is still read" % label, p.err[-600:])
        t.ok(all("X-Injected" not in (meta(env, k) or "") for k in
                 ("feed_etag", "feed_last_modified")),
             "... the value is not stored", [meta(env, k) for k in ("feed_etag", "feed_last_modified")])
        fs.set(raw_headers=None, body=new_body())
        p = env.sync()
        t.eq(p.returncode, 0, "... the next run", p.err[-600:])
        t.eq(conditional(fs.requests[-1]), {},
             "... whose request carries no validator and no injected header")

    # A valid ETag: stored, sent back, 304.
    fs.set(etag="auto", body=new_body())
    p = env.sync()
    t.eq(p.returncode, 0, "a valid ETag", p.err[-600:])
    etag = meta(env, "feed_etag")
    t.ok(etag and etag.startswith('"'), "... is stored", etag)
    p = env.sync()
    t.eq(conditional(fs.requests[-1]), {"If-None-Match": etag},
         "... and sent back in If-None-Match")
    t.eq(fs.requests[-1]["status"], 304, "... the feed answers 304")

    # A bad value stored by an older version is not sent.
    db = sqlite3.connect(env.db)
    with db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'feed_etag'",
                   ('"abc"\rX-Injected: yes',))
    db.close()
    p = env.sync()
    t.eq(p.returncode, 0, "a stored ETag with a CR: the run still works", p.err[-600:])
    t.eq(conditional(fs.requests[-1]), {},
         "... its request carries no If-None-Match and no injected header")
finally:
    fs.stop()
    env.close()
t.done()
