#!/usr/bin/env python3
"""What held at /metrics in issue 20's second hardening round, kept as
tests: pipelined requests are all answered; clients that send requests and
never read the answers cost a bounded amount of memory, and the daemon
keeps answering others; 20,000 scrapes leave the memory flat; an oversized
URI or header, HTTP/0.9, an HTTP/2 preface, a method that is not one, and
a request with both Content-Length and Transfer-Encoding are refused, and
the daemon answers normally after each.

Attackers connect from 127.0.0.1, the observer from 127.0.0.2: a defence
that penalises the heaviest address must still answer the others."""
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, SLOWDOWN, WEBCOURSED, wait_for, wrapper  # noqa: E402
from hostile import crash_report  # noqa: E402
from scrape import free_port, scrape  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
# An ASan build keeps freed memory in quarantine: run it without, and allow
# its allocator (and valgrind's) a little more, as test_soak does.
with open(WEBCOURSED, "rb") as f:
    ASAN = b"__asan_init" in f.read()
FLAT_KB = 4096 if ASAN or wrapper() else 2048
GET = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))


def connect(port, source="127.0.0.1"):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(10 * SLOWDOWN)
    s.connect(("127.0.0.1", port))
    return s


def observe(port):
    """One scrape from another address: the status line, or None."""
    s = connect(port, "127.0.0.2")
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        return data.split(b"\r\n", 1)[0].decode("latin-1") if data else None
    except OSError:
        return None
    finally:
        s.close()


def exchange(port, raw, wait_close=True):
    """Send raw bytes; what came back before the server closed or went
    quiet for 3 s."""
    s = connect(port)
    out = b""
    try:
        s.sendall(raw)
        s.settimeout(3 * SLOWDOWN)
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except OSError:
        pass
    finally:
        s.close()
    return out


def responses(data):
    return re.findall(rb"^HTTP/1\.[01] (\d{3})", data, re.M)


port = free_port()
env = Env(metrics={"listen": "127.0.0.1:%d" % port})
try:
    denv = None
    if ASAN:
        denv = {"ASAN_OPTIONS": ":".join(filter(None, [
            os.environ.get("ASAN_OPTIONS"),
            "quarantine_size_mb=0:thread_local_quarantine_size_kb=0"]))}
    d = env.daemon(env=denv)
    wait_for(lambda: scrape(port), 20, "/metrics to answer")
    wait_for(lambda: observe(port), 20, "/metrics to answer from 127.0.0.2")

    # --- pipelining ---------------------------------------------------------
    s = connect(port)
    s.sendall(GET * 5)
    data = b""
    deadline = time.monotonic() + 20 * SLOWDOWN
    while len(responses(data)) < 5 and time.monotonic() < deadline:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    t.eq(responses(data), [b"200"] * 5, "5 pipelined requests get 5 answers, in order")

    # --- refused requests -------------------------------------------------------
    refused = [
        ("a 100 KB URI", b"GET /metrics?" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("a 100 KB header", b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100000 +
         b"\r\n\r\n"),
        ("HTTP/0.9", b"GET /metrics\r\n\r\n"),
        ("an HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ("a method that is not one", b"BREW /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("Content-Length and Transfer-Encoding both",
         b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + GET),
    ]
    for label, raw in refused:
        got = exchange(port, raw)
        codes = responses(got)
        t.ok(b"200" not in codes and b"webcoursed_" not in got,
             "%s: refused (%s), no metrics sent" % (
                 label, b",".join(codes).decode() or "connection closed"), got[:300])
        t.ok(observe(port) == "HTTP/1.1 200 OK", "... and /metrics answers normally after")

    # --- 40 clients that never read ---------------------------------------------
    base = rss_kb(d.pid)
    hogs = []
    for _ in range(40):
        s = connect(port)
        s.setblocking(False)
        hogs.append(s)
    sent = 0
    for _round in range(50):
        for s in hogs:
            try:
                s.send(GET * 20)
                sent += 20
            except (BlockingIOError, OSError):
                pass
    grown = rss_kb(d.pid)
    answered = observe(port)
    for _round in range(50):
        for s in hogs:
            try:
                s.send(GET * 20)
            except (BlockingIOError, OSError):
                pass
    later = rss_kb(d.pid)
    print("# 40 non-reading clients, %d requests sent: RSS %d kB -> %d kB -> %d kB" % (
        sent, base, grown, later))
    t.eq(answered, "HTTP/1.1 200 OK", "with 40 clients not reading, another is answered")
    t.ok(grown - base < 32 * 1024, "... the daemon grew by %d kB (< 32 MB)" % (grown - base))
    t.ok(later - grown < 2 * FLAT_KB, "... and stayed flat after more of it (%+d kB)" % (later - grown))
    for s in hogs:
        s.close()
    wait_for(lambda: observe(port) == "HTTP/1.1 200 OK", 20, "the daemon after the hogs")

    # --- 20,000 scrapes -----------------------------------------------------------
    def scrapes(n, batch=50):
        done = 0
        while done < n:
            s = connect(port)
            s.sendall(GET * batch)
            data = b""
            while data.count(b"HTTP/1.1 200") < batch:
                b = s.recv(1 << 20)
                if not b:
                    break
                data += b
            s.close()
            done += data.count(b"HTTP/1.1 200")
            if data.count(b"HTTP/1.1 200") < batch:
                return done
        return done

    n1 = scrapes(2000)
    after_2k = rss_kb(d.pid)
    n2 = scrapes(18000)
    after_20k = rss_kb(d.pid)
    print("# scrapes: RSS %d kB after 2,000, %d kB after 20,000" % (after_2k, after_20k))
    t.eq(n1 + n2, 20000, "20,000 scrapes answered")
    t.ok(after_20k - after_2k < FLAT_KB,
         "the memory stays flat over 18,000 more scrapes (%+d kB)" % (after_20k - after_2k))
    t.ok(d.poll() is None, "the daemon is still running")
    d.terminate()
    out = d.communicate(timeout=30)[0].decode("utf-8", "replace")
    t.eq(crash_report(out), None, "no crash report in the daemon's log")
finally:
    env.close()
t.done()
