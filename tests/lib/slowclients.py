#!/usr/bin/env python3
"""Slow HTTP clients, as an attacker runs them: COUNT connections from
ADDRESSES loopback addresses from BIND on (127.0.0.2, 127.0.0.3, ...) to
127.0.0.1:PORT, each sending one byte of an endless request
head every EVERY seconds, for SECONDS; a connection the server closes is
opened again at the next round.  Its own process, so that the test's
scrapes do not wait on it.  Prints one JSON line at the end:
{"opened", "cut", "open_max", "rounds"}.  Only loopback addresses."""
import argparse
import errno
import json
import resource
import selectors
import socket
import time

HEAD = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=1100)
    ap.add_argument("--bind", default="127.0.0.2")
    ap.add_argument("--addresses", type=int, default=1)
    ap.add_argument("--every", type=float, default=2.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    a = ap.parse_args()
    first = [int(x) for x in a.bind.split(".")]
    if first[0] != 127 or first[3] + a.addresses > 255:
        raise SystemExit("slowclients: loopback addresses only")
    sources = ["127.%d.%d.%d" % (first[1], first[2], first[3] + i)
               for i in range(a.addresses)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    sel = selectors.DefaultSelector()
    socks = {}  # socket -> bytes of HEAD sent
    stats = {"opened": 0, "cut": 0, "open_max": 0, "rounds": 0}

    def drop(s, cut):
        if cut:
            stats["cut"] += 1
        sel.unregister(s)
        del socks[s]
        s.close()

    def refill():
        while len(socks) < a.count:
            s = socket.socket()
            s.setblocking(False)
            s.bind((sources[stats["opened"] % len(sources)], 0))
            err = s.connect_ex(("127.0.0.1", a.port))
            if err not in (0, errno.EINPROGRESS):
                s.close()
                break
            socks[s] = 0
            sel.register(s, selectors.EVENT_READ)
            stats["opened"] += 1
        stats["open_max"] = max(stats["open_max"], len(socks))

    end = time.monotonic() + a.seconds
    next_round = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_round:
            stats["rounds"] += 1
            refill()
            for s in list(socks):
                try:
                    s.send(HEAD[socks[s]:socks[s] + 1])
                    socks[s] += 1
                except BlockingIOError:
                    pass  # still connecting
                except OSError:
                    drop(s, True)
            next_round = now + a.every
        for key, _ in sel.select(timeout=max(0.0, min(next_round, end) - time.monotonic())):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                drop(s, True)
    for s in list(socks):
        drop(s, False)
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
