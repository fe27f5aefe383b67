#!/usr/bin/env python3
"""Benchmark: /metrics under slow-client attack (issue 20).  The daemon runs
under ulimit -n 1024 (systemd's default soft limit); a scraper on
127.0.0.1 scrapes one request after another for SECONDS while 1,100
connections trickle a byte every 2 s (and reconnect when cut) from one
address, then from 20.  Prints the connection cap, scrape latencies
(median, 99th percentile, max), unanswered scrapes, what the server
cut, and the daemon's descriptors.  Figures, not tests.

Usage: tests/bench/http_attack.py [--quick]   (--quick: 5 s per scenario)
"""
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from harness import Env, WEBCOURSED, wait_for  # noqa: E402
from scrapeclient import metric, scrape  # noqa: E402

QUICK = "--quick" in sys.argv
SECONDS = 5 if QUICK else 15
SLOWCLIENTS = os.path.join(HERE, "..", "lib", "slowclients.py")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nofile_1024():
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def cut(port, reason):
    return metric(port, "webcoursed_http_connections_cut_total",
                  server="metrics", reason=reason) or 0


def scenario(port, pid, name, addresses):
    attacker = None
    if addresses:
        attacker = subprocess.Popen(
            [sys.executable, SLOWCLIENTS, "--port", str(port), "--count", "1100",
             "--bind", "127.0.0.2", "--addresses", str(addresses), "--every", "2",
             "--seconds", str(SECONDS + 10)], stdout=subprocess.PIPE)
        wait_for(lambda: cut(port, "evicted") >= 1100 - 64, 60, "the attack to pass the cap")
    evicted0 = cut(port, "evicted")
    lat, failed, fds = [], 0, 0
    start = time.monotonic()
    while time.monotonic() - start < SECONDS:
        fds = max(fds, len(os.listdir("/proc/%d/fd" % pid)))
        r = scrape(port)
        if r is None or r[0] != 200:
            failed += 1
        else:
            lat.append(r[2] * 1000)
    elapsed = time.monotonic() - start
    evicted = cut(port, "evicted") - evicted0
    if attacker:
        attacker.kill()
        attacker.wait()
    lat.sort()
    p99 = lat[int(len(lat) * 0.99)] if lat else float("nan")
    print("| %s | %d | %d | %.2f | %.2f | %.1f | %.0f | %d |" %
          (name, len(lat) + failed, failed, statistics.median(lat) if lat else float("nan"),
           p99, lat[-1] if lat else float("nan"), evicted / elapsed, fds))


def main():
    port = free_port()
    env = Env(metrics={"listen": "127.0.0.1:%d" % port})
    try:
        d = env.spawn([WEBCOURSED, "-c", env.conf, "-f"], preexec_fn=nofile_1024)
        wait_for(lambda: metric(port, "webcoursed_http_connections_max", server="metrics"),
                 30, "/metrics")
        print("/metrics under attack, ulimit -n 1024: connection cap %d, %d per address;"
              " %d s of back-to-back scrapes per row" %
              (metric(port, "webcoursed_http_connections_max", server="metrics"), 64 // 4 + 1,
               SECONDS))
        print("| attack | scrapes | unanswered | median ms | p99 ms | max ms | evicted/s"
              " | daemon fds (max) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        scenario(port, d.pid, "none", 0)
        scenario(port, d.pid, "1,100 slow connections, 1 address", 1)
        scenario(port, d.pid, "1,100 slow connections, 20 addresses", 20)
    finally:
        env.close()


if __name__ == "__main__":
    main()
