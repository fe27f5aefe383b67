#!/usr/bin/env python3
"""The daemon under a fake systemd: sd_notify messages, signals, reload,
interval and back-off, stop mid-run, one daemon per state directory."""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, SLOWDOWN, wait_for, feed_of  # noqa: E402
from hostile import Lines  # noqa: E402
from sdnotify import Notify  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()


def syncs(env):
    return [r for r in env.double.log() if r["function"] == "core_webservice_get_site_info"]


env = Env(sync={"interval": "2s"})
try:
    sockpath = os.path.join(env.dir, "notify.sock")
    n = Notify(sockpath)
    d = env.daemon(env={"NOTIFY_SOCKET": sockpath, "WATCHDOG_USEC": str(3000000 * SLOWDOWN)})
    output = Lines(d.stdout)  # drained all along: a full pipe would block the daemon
    n.wait("READY=1")
    t.ok(True, "READY=1 is sent")
    n.wait("STATUS=idle; last sync", timeout=30)
    t.ok(True, "STATUS= says idle with the last sync after the first run")
    st = [m for m in n.poll() if m.startswith("STATUS=syncing")]
    t.ok(len(st) > 0, "STATUS= says syncing during a run", n.poll()[:10])
    t.ok("ok" in n.has("STATUS=idle; last sync")[-1], "the last sync is ok")
    n.wait("WATCHDOG=1", timeout=10)
    t.ok(True, "WATCHDOG=1 is sent while healthy")
    t.ok(len(env.courses()) >= 3, "the first run happened shortly after start")

    # The interval: further runs come by themselves.
    wait_for(lambda: len(syncs(env)) >= 3, 30, "two more runs on the interval")
    t.ok(True, "runs repeat on the interval")

    # SIGHUP with a broken config: old config kept, errors logged.
    mark = len(n.poll())
    good = open(env.conf).read()
    with open(env.conf, "a") as f:
        f.write("\n[sync]\nintervall = 5m\n")
    d.send_signal(signal.SIGHUP)
    n.wait("RELOADING=1", after=mark)
    n.wait("READY=1", after=mark)
    t.ok(any("MONOTONIC_USEC=" in m for m in n.has("RELOADING=1", mark)),
         "RELOADING=1 carries MONOTONIC_USEC")
    with open(env.conf, "w") as f:
        f.write(good)

    # SIGHUP with a good config that changes the feed: used by the next run.
    env.set_feed(feed_of({"NEW1": ("New course", [("00000000023", None)])}))
    mark = len(n.poll())
    d.send_signal(signal.SIGHUP)
    n.wait("READY=1", after=mark)
    wait_for(lambda: "NEW1" in env.courses(), 30, "the new feed applied")
    t.ok(True, "after a good reload the daemon keeps syncing")

    # SIGUSR1: a run now.
    before = len(syncs(env))
    mark = len(n.poll())
    d.send_signal(signal.SIGUSR1)
    try:
        wait_for(lambda: len(syncs(env)) > before, 10, "a run after SIGUSR1")
        t.ok(True, "SIGUSR1 starts a run")
    except TimeoutError:
        d.kill()
        t.ok(False, "SIGUSR1 starts a run", output.text()[-3000:] +
             "\n" + "\n".join(n.poll()[mark - 5:]))
        t.done()

    # A hung sync (stopped with SIGSTOP mid-request) stops the watchdog
    # pings, so that systemd would restart the service.
    env.double.set_fault("delay", seconds=8, count=-1)
    mark = len(n.poll())
    d.send_signal(signal.SIGUSR1)
    n.wait("STATUS=syncing: checking Moodle", after=mark)
    kids = "/proc/%d/task/%d/children" % (d.pid, d.pid)
    child = int(wait_for(lambda: open(kids).read().split(), 10, "the sync process")[0])
    os.kill(child, signal.SIGSTOP)
    first = n.wait("STATUS=syncing: no progress", after=mark)[0]
    at = n.poll().index(first)
    later = n.wait("STATUS=syncing: no progress", after=at + 1)[0]
    between = n.poll()[at:n.poll().index(later)]
    t.eq([m for m in between if m == "WATCHDOG=1"], [], "a hung sync gets no WATCHDOG=1")
    env.double.clear_faults()
    os.kill(child, signal.SIGCONT)
    idle = n.wait("STATUS=idle", after=at)[0]
    n.wait("WATCHDOG=1", after=n.poll().index(idle), timeout=10)
    t.ok(True, "the watchdog resumes once the sync ends")

    # A second daemon on the same state directory.
    d2 = env.spawn([os.environ.get("WEBCOURSED", ""), "-c", env.conf, "-f"])
    out = d2.communicate(timeout=30 * SLOWDOWN)[0].decode()
    t.ok(d2.returncode != 0 and "locked by pid %d" % d.pid in out,
         "a second daemon exits naming the first one's pid", out)
    p = env.ctl("sync")
    t.ok(p.returncode != 0 and "locked" in p.err, "webcoursectl sync refuses too", p.err)

    # SIGTERM mid-run: Moodle stalls, the daemon still stops in time.
    env.double.set_fault("delay", seconds=30, count=-1)
    mark = len(n.poll())
    d.send_signal(signal.SIGUSR1)
    # The run's first Moodle request now stalls for 30 s.
    n.wait("STATUS=syncing: checking Moodle", after=mark)
    start = time.monotonic()
    d.send_signal(signal.SIGTERM)
    rc = d.wait(20 * SLOWDOWN)
    took = time.monotonic() - start
    env.double.clear_faults()
    output.thread.join(10)
    out = output.text()
    t.eq(rc, 0, "SIGTERM mid-run exits 0")
    t.ok(took < 10 * SLOWDOWN, "and within 10 s (took %.1f s)" % took)
    t.ok(n.has("STOPPING=1"), "STOPPING=1 is sent")
    t.ok("config file %s has errors, not reloading" % env.conf in out,
         "a broken reload is logged as such", out[-3000:])
    t.ok("unknown key" in out and "intervall" in out, "with each error", out[-3000:])
    p = env.sync()
    t.eq(p.returncode, 0, "the next run after a stop converges", p.err)
    msgs = n.poll()
    order = [m.split("=")[0] for m in msgs if m.split("=")[0] in ("READY", "STOPPING")]
    t.eq(order[0], "READY", "READY comes first")
    t.eq(order[-1], "STOPPING", "STOPPING comes last")
finally:
    env.close()

# --- back-off after failures ---------------------------------------------
env = Env(sync={"interval": "8s"})
try:
    # HTTP 500: a failure, not an outage (test_breaker.py has those).
    env.double.set_fault("http500", count=-1)
    d = env.daemon()
    output = Lines(d.stdout)
    wait_for(lambda: len([r for r in env.double.log() if r["status"] == 500]) >= 9, 40,
             "three failed runs")
    # Each failed run makes `retries` (3) attempts at site info; group them.
    log = env.double.log()
    t.ok(all(r["function"] == "core_webservice_get_site_info" for r in log),
         "a failing Moodle gets only the site-info check per run")
    env.double.clear_faults()
    wait_for(lambda: "C1" in env.courses() or "unique_field1" in env.courses(), 40,
             "recovery")
    t.ok(True, "the daemon recovers when Moodle does")
    d.send_signal(signal.SIGTERM)
    d.wait(20 * SLOWDOWN)
    output.thread.join(10)
    out = output.text()
    t.ok("will retry in 1 s" in out and "will retry in 2 s" in out,
         "the back-off doubles (1 s, 2 s, ...)", out[-2000:])
finally:
    env.close()
t.done()
