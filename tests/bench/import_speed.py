#!/usr/bin/env python3
"""`make bench`: an initial import at Moodle's speed, webcoursed against the
ideal client (ideal_client.py) on the same Moodle double.  Figures, not a
test: nothing here fails the build.

Part 1 (the cost model on): gen_feed.py's feed of --enrolments (100,000:
2,000 courses over 20,000 users) into a fresh double with
cost={"call": CALL, "item": ITEM} and --workers php-fpm workers (2), once
per max_concurrent_calls in --concurrency (1,2,4) for `webcoursectl sync`
and once per concurrency for the ideal client.
Part 2 (cost model off, so the double is as fast as Python lets it be):
--big enrolments (1,000,000) with `webcoursectl sync` at --big-concurrency
(1,4):
webcoursed's own peak RSS and CPU time (os.wait4's rusage of that process)
next to the double's CPU time (this process's, which is the double's).

Per run it prints: wall time (and the enrolment phase's: first enrol call
arrived .. last one answered), requests by function,
core_course_get_courses_by_field calls by field, deadlock answers in the
double's log, item errors (webcoursectl errors --json), the most requests
running in the double at once and the most held by it (queued + running),
how busy the php-fpm workers were, and for webcoursed its peak RSS and CPU.
Everything also goes to $BUILD/bench/import/ (results.json, each run's
double log and webcoursed's stderr).

Usage: import_speed.py [--quick] [--enrolments N] [--big N (0: skip)]
                       [--concurrency 1,2,4] [--big-concurrency 1,4]
                       [--cost CALL,ITEM] [--workers 2] [--no-ideal]
                       [--stall SECONDS]
--stall S: in part 1 the double's whole site stalls S seconds once 20 enrol
calls were answered (how the pace of calls reacts; not in make bench).
--quick (or WEBCOURSE_BENCH_QUICK=1): 20,000 and 100,000 enrolments.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
from harness import Env, WEBCOURSECTL, BUILD  # noqa: E402
from moodle_double import MoodleDouble, max_concurrency  # noqa: E402

OUT = os.path.join(BUILD, "bench")
RUNS = os.path.join(OUT, "import")
# A real 4.4 site on 2 cores (DESIGN.md 4, moodle-ws 21b): 12 ms of Moodle's
# work per enrolment with the welcome message (7 ms without), a few tens of
# ms per call, 2 php-fpm workers.  Scaled down 20 times so that a run takes
# a minute, not twenty: multiply the seconds below by 20 for that site.
COST_CALL, COST_ITEM, SCALE = 0.0015, 0.0006, 20
ENROL = "enrol_manual_enrol_users"


class BenchDouble(MoodleDouble):
    """The double, with the field of each core_course_get_courses_by_field
    call in its log entry (the plain log does not keep parameters)."""

    def handle_ws(self, method, query, headers, body):
        reply, entry = super().handle_ws(method, query, headers, body)
        if entry.get("function") == "core_course_get_courses_by_field":
            form = urllib.parse.parse_qs((query or b"").decode("latin-1") + "&" +
                                         (body or b"").decode("latin-1"))
            entry["field"] = (form.get("field") or [""])[0]
        return reply, entry


def prepare_feed(n):
    gen = os.path.join(HERE, "gen_feed.py")
    path = os.path.join(OUT, "feed-%d.json" % n)
    if not (os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(gen)):
        subprocess.run([sys.executable, gen, "--enrolments", str(n), path + ".new"],
                       check=True)
        os.replace(path + ".new", path)
    return path


STALL = {"seconds": 0, "after": 20}


def stall(d):
    """A stall of the whole site (a checkpoint, a lock): the double's site
    lock held for STALL seconds once `after` enrol calls were answered.
    Calls keep their modelled time, but none commits or answers."""
    while sum(1 for e in d.log() if e["function"] == ENROL) < STALL["after"]:
        if d.stopping.wait(0.05):
            return
    with d.site.lock:
        time.sleep(STALL["seconds"])


def new_double(n, cost, workers):
    d = BenchDouble(max_input_vars=5000, cost=cost, workers=workers).start()
    if STALL["seconds"] > 0 and cost is not None:
        threading.Thread(target=stall, args=(d,), daemon=True).start()
    # gen_feed.py draws from n/5 users named by eleven digits (the seed
    # site has five of them already).
    have = d.site.by_username
    d.add_users([u for u in ("%011d" % i for i in range(max(10, n // 5))) if u not in have])
    return d


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# The peak RSS of a child that Python started is at least Python's own at
# the time (vfork or fork, then exec: Linux keeps the old mm's high-water
# mark), and this process holds the double.  GNU time forks from a process
# of 1 MB, so its %M is webcoursed's own.
TIME_OUT = os.path.join(RUNS, "time.out")
TIME = (["/usr/bin/time", "-o", TIME_OUT, "-f", "%M %U %S"]
        if os.access("/usr/bin/time", os.X_OK) else [])


class Usage:
    def __init__(self, maxrss_kb, utime, stime):
        self.ru_maxrss, self.ru_utime, self.ru_stime = maxrss_kb, utime, stime


def own_rusage(ru):
    """webcoursed's rusage: from GNU time, else wait4's (its RSS then an
    upper bound only)."""
    if not TIME:
        return ru
    with open(TIME_OUT) as f:
        k, u, s = f.read().split()[-3:]
    return Usage(int(k), float(u), float(s))


def wait_rusage(p):
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return ru


def enrolments_in(d):
    with d.site.lock:
        return sum(len(v) for v in d.site.enrolments.values())


def analyse(log, t0, t1, workers):
    """Figures of one run from the double's log (times: time.monotonic())."""
    a = {"requests": len(log), "by_function": {}, "items": {}, "lookup_fields": {},
         "deadlocks": 0, "errorcodes": {}}
    for e in log:
        f = e["function"]
        a["by_function"][f] = a["by_function"].get(f, 0) + 1
        a["items"][f] = a["items"].get(f, 0) + e.get("items", 0)
        if "field" in e:
            a["lookup_fields"][e["field"]] = a["lookup_fields"].get(e["field"], 0) + 1
        if e.get("deadlock") or e.get("errorcode") == "dmlwriteexception":
            a["deadlocks"] += 1
        if e.get("errorcode") or e.get("status") != 200:
            k = e.get("errorcode") or "http %s" % e.get("status")
            a["errorcodes"][k] = a["errorcodes"].get(k, 0) + 1
    a["max_running"] = max_concurrency(log)
    a["max_held"] = max_concurrency([dict(e, start=e["arrived"]) for e in log])
    busy = sum(e["end"] - e["start"] for e in log if e.get("start") is not None)
    a["worker_busy_s"] = busy
    wall = t1 - t0
    a["worker_use"] = busy / (workers * wall) if workers and wall > 0 else None
    a["queue_wait_s"] = sum(e["start"] - e["arrived"] for e in log
                            if e.get("start") is not None)
    enrol = [e for e in log if e["function"] == ENROL]
    if enrol:
        a["enrol_phase_s"] = max(e["end"] for e in enrol) - min(e["arrived"] for e in enrol)
        a["before_enrol_s"] = min(e["arrived"] for e in enrol) - t0
        sizes = sorted(e["items"] for e in enrol)
        a["enrol_calls"] = len(enrol)
        a["enrol_items_min_median_max"] = [sizes[0], sizes[len(sizes) // 2], sizes[-1]]
        # Enrol calls held by the double (queued or running), on average
        # over the enrol phase: the concurrency the client kept up.
        a["enrol_mean_held"] = (sum(e["end"] - e["arrived"] for e in enrol) /
                                a["enrol_phase_s"] if a["enrol_phase_s"] > 0 else 0)
        busy_e = sum(e["end"] - e["start"] for e in enrol if e.get("start") is not None)
        a["enrol_worker_use"] = (busy_e / (workers * a["enrol_phase_s"])
                                 if workers and a["enrol_phase_s"] > 0 else None)
    return a


def run_webcoursed(feed, n, conc, cost, workers, tag):
    d = new_double(n, cost, workers)
    env = Env(feed={"courses": []}, double=d,
              moodle={"max_concurrent_calls": str(conc), "timeout": "300s"})
    try:
        env.set("source", "url", "file://" + feed)
        errpath = os.path.join(RUNS, tag + ".stderr")
        with open(errpath, "wb") as err:
            c0 = cpu()
            t0 = time.monotonic()
            p = subprocess.Popen(TIME + [WEBCOURSECTL, "-c", env.conf, "sync"],
                                 stdout=subprocess.DEVNULL, stderr=err)
            ru = wait_rusage(p)
            t1 = time.monotonic()
            c1 = cpu()
        ru = own_rusage(ru)
        log = d.log()
        a = analyse(log, t0, t1, workers)
        e = env.ctl("errors", "--json")
        try:
            errs = json.loads(e.out) if e.out.strip() else []
        except ValueError:
            errs = {"unparsed": e.out[:200]}
        errs = errs if isinstance(errs, list) else [errs]
        items = [x for x in errs if isinstance(x, dict) and x.get("kind") != "run"]
        failed = [x for x in errs if not isinstance(x, dict) or x.get("kind") == "run"]
        with open(errpath, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        a.update(client="webcoursed", concurrency=conc, exit=p.returncode, wall_s=t1 - t0,
                 client_cpu_s=ru.ru_utime + ru.ru_stime, client_user_s=ru.ru_utime,
                 client_sys_s=ru.ru_stime, client_maxrss_mb=ru.ru_maxrss / 1024,
                 double_cpu_s=c1 - c0, enrolments_in_moodle=enrolments_in(d),
                 item_errors=len(items), item_errors_sample=items[:10],
                 run_error=failed,
                 pace_lowered=[ln for ln in text.splitlines() if "at once instead of" in ln],
                 pace_raised=sum(1 for ln in text.splitlines()
                                 if "answers normally again" in ln),
                 sent_alone=[ln for ln in text.splitlines() if "again, alone" in ln])
        with open(os.path.join(RUNS, tag + ".log.json"), "w") as f:
            json.dump(log, f)
        return a
    finally:
        env.close()


def run_ideal(feed, n, conc, cost, workers, tag):
    d = new_double(n, cost, workers)
    try:
        c0 = cpu()
        t0 = time.monotonic()
        p = subprocess.Popen(TIME + [sys.executable, os.path.join(HERE, "ideal_client.py"),
                              "--url", d.url, "--token", d.token, "--feed", feed,
                              "--concurrency", str(conc), "--max-input-vars", "5000",
                              "--category", "2"], stdout=subprocess.PIPE)
        out = p.stdout.read()
        ru = own_rusage(wait_rusage(p))
        t1 = time.monotonic()
        c1 = cpu()
        log = d.log()
        a = analyse(log, t0, t1, workers)
        res = json.loads(out) if out.strip() else {}
        a.update(client="ideal", concurrency=conc, exit=p.returncode, wall_s=t1 - t0,
                 client_cpu_s=ru.ru_utime + ru.ru_stime, client_maxrss_mb=ru.ru_maxrss / 1024,
                 double_cpu_s=c1 - c0, enrolments_in_moodle=enrolments_in(d),
                 item_errors=res.get("nerrors"), ideal=res)
        with open(os.path.join(RUNS, tag + ".log.json"), "w") as f:
            json.dump(log, f)
        return a
    finally:
        d.stop()


def fmt_calls(a):
    short = {"core_webservice_get_site_info": "site_info",
             "core_user_get_users_by_field": "users_by_field",
             "core_course_get_courses_by_field": "courses_by_field",
             "core_course_create_courses": "create_courses",
             "core_course_get_categories": "get_categories",
             ENROL: "enrol"}
    return ", ".join("%s %d" % (short.get(f, f), k) for f, k in sorted(
        a["by_function"].items(), key=lambda x: -x[1]))


def show(a):
    print("  %-10s c=%d: %s, %.1f s (enrol phase %.1f s, before it %.1f s), %d requests: %s"
          % (a["client"], a["concurrency"], "ok" if a["exit"] == 0 else
             "EXIT %s" % a["exit"], a["wall_s"], a.get("enrol_phase_s", 0),
             a.get("before_enrol_s", 0), a["requests"], fmt_calls(a)), flush=True)
    print("      %d enrolments in Moodle; enrol call sizes min/median/max %s; "
          "courses_by_field by field %s; deadlocks %d; errorcodes %s; item errors %s"
          % (a["enrolments_in_moodle"], a.get("enrol_items_min_median_max"),
             a["lookup_fields"] or "{}", a["deadlocks"], a["errorcodes"] or "{}",
             a["item_errors"]), flush=True)
    use = a.get("worker_use")
    print("      running at once (max) %d, held by the double (max) %d, enrol calls held "
          "(mean) %.2f, workers busy %s (enrol phase %s), client CPU %.2f s, peak RSS %.0f MB, "
          "double CPU %.1f s"
          % (a["max_running"], a["max_held"], a.get("enrol_mean_held", 0),
             "%.0f%%" % (100 * use) if use is not None else "-",
             "%.0f%%" % (100 * a["enrol_worker_use"]) if a.get("enrol_worker_use") else "-",
             a["client_cpu_s"], a["client_maxrss_mb"], a["double_cpu_s"]), flush=True)
    for x in a.get("run_error", []):
        print("      run failed: %s" % json.dumps(x)[:300], flush=True)
    for ln in a.get("pace_lowered", [])[:5]:
        print("      webcoursed: " + ln.strip(), flush=True)
    if a.get("pace_lowered"):
        print("      (pace lowered %d times, raised %d times)" % (
            len(a["pace_lowered"]), a.get("pace_raised", 0)), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    default=os.environ.get("WEBCOURSE_BENCH_QUICK") not in (None, "", "0"))
    ap.add_argument("--enrolments", type=int)
    ap.add_argument("--big", type=int)
    ap.add_argument("--big-concurrency", default="1,4")
    ap.add_argument("--concurrency", default="1,2,4")
    ap.add_argument("--cost", default="%g,%g" % (COST_CALL, COST_ITEM))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-ideal", action="store_true")
    ap.add_argument("--stall", type=float, default=0,
                    help="part 1: the site stalls this many seconds after 20 enrol calls")
    a = ap.parse_args()
    STALL["seconds"] = a.stall
    n = a.enrolments or (20000 if a.quick else 100000)
    big = a.big if a.big is not None else (100000 if a.quick else 1000000)
    call_s, item_s = (float(x) for x in a.cost.split(","))
    cost = {"call": call_s, "item": item_s}
    concs = [int(x) for x in a.concurrency.split(",")]
    os.makedirs(RUNS, exist_ok=True)
    results = {"cost": cost, "workers": a.workers, "enrolments": n, "runs": []}

    feed = prepare_feed(n)
    print("import at Moodle's speed: %d enrolments, cost call %.1f ms + %.2f ms per item, "
          "%d php-fpm workers (x%d: %.0f ms + %.0f ms per item)" % (
              n, 1000 * call_s, 1000 * item_s, a.workers, SCALE,
              SCALE * 1000 * call_s, SCALE * 1000 * item_s), flush=True)
    by = {}
    for conc in concs:
        for client in (("webcoursed",) if a.no_ideal else ("webcoursed", "ideal")):
            tag = "%s-%d-c%d" % (client, n, conc)
            run = run_webcoursed if client == "webcoursed" else run_ideal
            r = run(feed, n, conc, cost, a.workers, tag)
            show(r)
            results["runs"].append(r)
            by[(client, conc)] = r

    print()
    print("| client | max_concurrent_calls | wall s | enrol phase s | vs ideal | speed-up "
          "vs c=1 | requests | enrol calls | courses_by_field (field) | deadlocks | "
          "item errors | max running | enrol calls held (mean) | workers busy | client CPU s "
          "| peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for (client, conc), r in sorted(by.items(), key=lambda x: (x[0][0] != "webcoursed",
                                                                x[0][1])):
        ideal = by.get(("ideal", conc))
        base = by.get((client, concs[0]))
        print("| %s | %d | %.1f | %.1f | %s | %s | %d | %d | %s | %d | %s | %d | %.2f | %.0f%% | "
              "%.2f | %.0f |" % (
                  client, conc, r["wall_s"], r.get("enrol_phase_s", 0),
                  "%.2f×" % (r["wall_s"] / ideal["wall_s"]) if ideal else "-",
                  "%.2f×" % (base["wall_s"] / r["wall_s"]) if base else "-",
                  r["requests"], r.get("enrol_calls", 0),
                  ", ".join("%d %s" % (v, k) for k, v in r["lookup_fields"].items()) or "0",
                  r["deadlocks"], r["item_errors"], r["max_running"],
                  r.get("enrol_mean_held", 0), 100 * (r["worker_use"] or 0), r["client_cpu_s"], r["client_maxrss_mb"]))
    if ("webcoursed", 1) in by and ("webcoursed", 4) in by:
        s = by[("webcoursed", 1)]["wall_s"] / by[("webcoursed", 4)]["wall_s"]
        print("\nwebcoursed concurrency 4 vs 1: %.2f× (goal >= 1.8× at 100,000 enrolments: "
              "%s%s)" % (s, "met" if s >= 1.8 else "NOT met",
                         "" if n == 100000 else "; this run had %d" % n))

    if big:
        feed = prepare_feed(big)
        print("\n%d enrolments, cost model off (webcoursed's own RSS and CPU):" % big,
              flush=True)
        results["big"] = []
        for conc in [int(x) for x in a.big_concurrency.split(",")]:
            r = run_webcoursed(feed, big, conc, None, None,
                               "webcoursed-%d-c%d-nocost" % (big, conc))
            show(r)
            results["big"].append(r)
        print("\n| enrolments | max_concurrent_calls | wall s | webcoursed CPU s (user + sys) "
              "| webcoursed peak RSS MB | double CPU s | requests | enrol calls | enrol calls "
              "held (mean) | pace lowered | item errors |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results["big"]:
            print("| %d | %d | %.1f | %.1f (%.1f + %.1f) | %.0f | %.1f | %d | %d | %.2f | %d "
                  "| %s |" % (
                      big, r["concurrency"], r["wall_s"], r["client_cpu_s"],
                      r["client_user_s"], r["client_sys_s"], r["client_maxrss_mb"],
                      r["double_cpu_s"], r["requests"], r.get("enrol_calls", 0),
                      r.get("enrol_mean_held", 0), len(r["pace_lowered"]),
                      r["item_errors"]))
    with open(os.path.join(RUNS, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
