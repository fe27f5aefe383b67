#!/usr/bin/env python3
"""Issue 20, item 1: slow and idle clients against /metrics, then against
the web console, under systemd's default descriptor limit (ulimit -n 1024).  1,100 connections from 20
addresses (more than the cap, and more than each address's share) trickle a
byte every 2 s and reconnect when cut; meanwhile scrapes
from another address are answered, a sync runs and its process holds none
of the server's sockets, a client trickling a byte a second is cut at the
whole-request deadline, and the log grows by a few lines.  And a run that
cannot write the missing-users CSV is a failed run, not "sync done"."""
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, SLOWDOWN, WEBCOURSED, wait_for  # noqa: E402
from hostile import Lines  # noqa: E402
from scrapeclient import metric, sample, scrape  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
HERE = os.path.dirname(os.path.abspath(__file__))
SLOWCLIENTS = os.path.join(HERE, "..", "lib", "slowclients.py")
NOFILE = 1024
ATTACKERS = 1100
ATTACK_S = 40 * SLOWDOWN


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nofile_1024():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def syncs_ok(port):
    return metric(port, "webcoursed_syncs_total", outcome="ok") or 0


def children(pid):
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def socket_inodes(pid):
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", link)
        if m:
            inodes.add(m.group(1))
    return inodes


def tcp_inodes(port, remote=False):
    """Inodes of the TCP sockets whose local (or remote) port is port: for
    the server's port, the listener and the server's side of each
    connection."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if int(fields[2 if remote else 1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except OSError:
            pass
    inodes.discard("0")
    return inodes


def trickle(port, src, result):
    """One client from src sending a request head a byte a second: how many
    bytes it sent before the server closed it (None: never closed)."""
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    s.settimeout(1.0)
    sent = 0
    start = time.monotonic()
    while sent < len(head):
        try:
            s.send(head[sent:sent + 1])
            sent += 1
            if s.recv(1) == b"":
                break
        except socket.timeout:
            continue
        except OSError:
            break
    result["sent"] = sent
    result["of"] = len(head)
    result["seconds"] = time.monotonic() - start
    s.close()


# --- 1,100 slow connections ------------------------------------------------
port, wport = free_port(), free_port()
env = Env(metrics={"listen": "127.0.0.1:%d" % port}, web={"listen": "127.0.0.1:%d" % wport},
          moodle={"timeout": "120s"})
try:
    d = env.spawn([WEBCOURSED, "-c", env.conf, "-f"], preexec_fn=nofile_1024)
    out = Lines(d.stdout)
    wait_for(lambda: syncs_ok(port) >= 1, 60, "the first sync to end")
    cap = metric(port, "webcoursed_http_connections_max", server="metrics")
    t.eq(cap, 64.0, "under ulimit -n 1024 /metrics takes at most 64 connections")
    lines_before = len(out.lines)

    attacker = subprocess.Popen(
        [sys.executable, SLOWCLIENTS, "--port", str(port), "--count", str(ATTACKERS),
         "--bind", "127.0.0.2", "--addresses", "20", "--every", "2",
         "--seconds", str(ATTACK_S)],
        stdout=subprocess.PIPE)
    wait_for(lambda: (metric(port, "webcoursed_http_connections_cut_total",
                             server="metrics", reason="evicted") or 0) >= ATTACKERS - cap,
             60, "the attack to pass the cap")
    t.ok(True, "the attack is on: more than %d connections cut" % (ATTACKERS - cap))

    # Scrapes from another address, one after another for 8 s (four of
    # the attacker's rounds): every one answered.
    results, conns = [], []
    end = time.monotonic() + 8
    while time.monotonic() < end and len(results) < 2000:
        r = scrape(port)
        results.append(r)
        if r is not None and r[0] == 200:
            conns.append(sample(r[1], "webcoursed_http_connections", server="metrics"))
    answered = [r for r in results if r is not None and r[0] == 200]
    t.eq(len(answered), len(results),
         "%d scrapes during the attack: all answered" % len(results))
    latencies = sorted(r[2] * 1000 for r in answered)
    if latencies:
        print("# scrape latency under attack: median %.1f ms, max %.1f ms" %
              (statistics.median(latencies), latencies[-1]))
    t.ok(all(c is not None and c <= cap for c in conns),
         "connections never above the cap (max seen %s)" % max(conns or [None]))

    # A sync during the attack: its process starts, holds none of the
    # server's sockets, and ends ok.
    before = syncs_ok(port)
    env.double.set_fault("delay", seconds=3 * SLOWDOWN, function="core_webservice_get_site_info")
    os.kill(d.pid, signal.SIGUSR1)
    wait_for(lambda: children(d.pid), 30, "the sync process")
    child = children(d.pid)[0]
    # Once it talks to Moodle it is well past closing what it inherited.
    moodle_port = int(env.double.url.rsplit(":", 1)[1].split("/")[0])
    wait_for(lambda: socket_inodes(child) & tcp_inodes(moodle_port, remote=True), 30,
             "the sync process to connect to Moodle")
    leaked = socket_inodes(child) & tcp_inodes(port)
    t.eq(sorted(leaked), [], "the sync process holds none of the server's sockets")
    wait_for(lambda: syncs_ok(port) > before, 60, "the sync to end")
    t.ok(True, "a sync runs and ends ok during the attack")

    stats = json.loads(attacker.communicate(timeout=120 * SLOWDOWN)[0])
    print("# attacker: %d connections opened, %d cut by the server, %d open at most" %
          (stats["opened"], stats["cut"], stats["open_max"]))
    t.ok(stats["open_max"] >= ATTACKERS, "the attacker held %d sockets open on its side" %
         stats["open_max"])
    wait_for(lambda: (metric(port, "webcoursed_http_connections", server="metrics") or 9) <= 1,
             30, "the connections to go once the attack ends")
    t.ok(True, "after the attack the server holds no connection")

    # Alone, a client sending a byte a second (each byte would restart a
    # per-byte timeout) is cut at the whole-request deadline.
    slow = {}
    trickle(port, "127.0.1.1", slow)
    t.ok(slow["sent"] < slow["of"],
         "a client sending a byte a second is cut before its head is whole "
         "(%d of %d bytes, %.1f s)" % (slow["sent"], slow["of"], slow["seconds"]))
    t.ok((metric(port, "webcoursed_http_connections_cut_total",
                 server="metrics", reason="deadline") or 0) >= 1,
         "counted as cut at the deadline")
    grown = out.lines[lines_before:]
    t.ok(len(grown) <= 12, "the log grew by %d lines during the attack (sync included)" %
         len(grown))
    if len(grown) > 12:
        print("# " + "\n# ".join(grown[:20]))

    # --- the same against the web console ------------------------------
    lines_before = len(out.lines)
    wcap = metric(port, "webcoursed_http_connections_max", server="web")
    t.ok(wcap is not None and wcap + cap <= NOFILE / 4,
         "the console's cap (%s) and /metrics' fit the descriptors with room" % wcap)
    attacker = subprocess.Popen(
        [sys.executable, SLOWCLIENTS, "--port", str(wport), "--count", str(ATTACKERS),
         "--bind", "127.0.0.2", "--addresses", "20", "--every", "2",
         "--seconds", str(ATTACK_S / 2)],
        stdout=subprocess.PIPE)
    wait_for(lambda: (metric(port, "webcoursed_http_connections_cut_total",
                             server="web", reason="evicted") or 0) >= ATTACKERS - wcap,
             60, "the attack on the console to pass its cap")
    pages, scrapes = [], []
    end = time.monotonic() + 8
    while time.monotonic() < end and len(pages) < 1000:
        pages.append(scrape(wport, path="/login"))
        scrapes.append(scrape(port))
    t.eq([r[0] if r else None for r in pages], [200] * len(pages),
         "%d requests for the console's login page during the attack: all answered" %
         len(pages))
    t.eq([r[0] if r else None for r in scrapes], [200] * len(scrapes),
         "%d scrapes of /metrics meanwhile: all answered" % len(scrapes))
    before = syncs_ok(port)
    os.kill(d.pid, signal.SIGUSR1)
    wait_for(lambda: syncs_ok(port) > before, 60, "the sync to end")
    t.ok(True, "a sync runs and ends ok during the attack on the console")
    attacker.communicate(timeout=120 * SLOWDOWN)
    grown = out.lines[lines_before:]
    t.ok(len(grown) <= 12, "the log grew by %d lines during it (sync included)" % len(grown))
    if len(grown) > 12:
        print("# " + "\n# ".join(grown[:20]))
    t.eq(d.poll(), None, "the daemon is still running")
finally:
    env.close()

# --- a run that cannot write the CSV has failed ----------------------------
env = Env()
try:
    blocker = os.path.join(env.dir, "not-a-dir")
    open(blocker, "w").close()
    env.set("state", "missing_users_csv", os.path.join(blocker, "missing.csv"))
    p = env.sync()
    t.eq(p.returncode, 1, "webcoursectl sync exits 1 when the CSV cannot be written")
    t.ok("cannot write the missing-users CSV" in p.err + p.out,
         "and says why")
    t.ok("sync done" not in p.err + p.out, "and does not say \"sync done\"")
    runs = json.loads(env.ctl("status", "--json").out)["runs"]
    t.eq(runs[0]["outcome"] if runs else None, "failed", "the run is recorded as failed")
    t.ok(len(env.enrolments()) > 0, "Moodle got its changes all the same")
finally:
    env.close()

t.done()
