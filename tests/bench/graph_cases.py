#!/usr/bin/env python3
"""`make bench`: issue 16's cases on the Moodle double's model of a real
Moodle 4.4 (moodle_double.MODEL_*), webcoursed next to the ideal client.
Figures, not a test: nothing here fails the build.

The feed has the issue's shape: 300 courses, 5,148 usernames (2% of them
absent from Moodle), about 11,875 participants (40 a course, 1 in 10 a
teacher).  The double has 2 php-fpm workers (the 2 cores) and
model={"scale": S}: every modelled second takes S seconds, and the
figures below are given back in real seconds (divided by S).

  first import, welcome message on / off: `webcoursectl sync` with
      max_concurrent_calls = 4, and the ideal client (ideal_client.py,
      phases in order, 4 calls at once), each on a fresh double;
  unchanged feed, small change (+4/-2 enrolments, 1 rename, 1 new
      course): after webcoursed's import, with the model at scale 1 (real
      time: webcoursed's own time is not scaled), the drift share
      included (reconcile_every = 1d, interval = 15m);
  the same small change with 2,700 more courses in the category (3,000).

Usage: graph_cases.py [--scale 0.25] [--quick (scale 0.1, no welcome-off)]
Writes $BUILD/bench/graph/results.json and each run's double log.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
from harness import Env, BUILD  # noqa: E402
import moodle_double  # noqa: E402
from moodle_double import MoodleDouble, max_concurrency  # noqa: E402

OUT = os.path.join(BUILD, "bench", "graph")
CATEGORY = 2


def issue_feed(seed=16):
    """300 courses over 5,148 users, ~11,875 participants; the absent 2%."""
    rng = random.Random(seed)
    users = ["%011d" % (70000000000 + i) for i in range(5148)]
    absent = set(rng.sample(users, len(users) // 50))
    courses, used = [], set()
    for c in range(300):
        size = 38 + rng.randint(-8, 7)
        centre = rng.randrange(len(users))
        people = set()
        while len(people) < size:
            people.add(users[(centre + int(rng.gauss(0, 400))) % len(users)])
        people = sorted(people)
        used.update(people)
        parts = [{"username": u} if i % 10 else {"username": u, "roleid": "teacher"}
                 for i, u in enumerate(people)]
        courses.append({"shortname": "T16-%03d" % c, "name": "Course %d" % c,
                        "category": CATEGORY, "participants": parts})
    # Every username appears at least once.
    for i, u in enumerate(sorted(set(users) - used)):
        courses[i % 300]["participants"].append({"username": u})
    present = [u for u in users if u not in absent]
    return {"courses": courses}, present


def small_change(feed):
    """+4/-2 enrolments, 1 rename, 1 new course."""
    f = json.loads(json.dumps(feed))
    c = f["courses"]
    spare = [p["username"] for p in c[200]["participants"][-4:]]
    c[0]["participants"].extend({"username": u} for u in spare
                                if u not in {p["username"] for p in c[0]["participants"]})
    del c[1]["participants"][-2:]
    c[2]["name"] = "Course 2, renamed"
    c.append({"shortname": "T16-NEW", "name": "New course", "category": CATEGORY,
              "participants": [{"username": u} for u in spare]})
    return f


class FieldDouble(MoodleDouble):
    """The double, with the field of each course look-up in its log."""

    def handle_ws(self, method, query, headers, body):
        reply, entry = super().handle_ws(method, query, headers, body)
        if entry.get("function") == "core_course_get_courses_by_field":
            form = urllib.parse.parse_qs((body or b"").decode("latin-1"))
            entry["field"] = (form.get("field") or [""])[0]
        return reply, entry


def new_double(users, scale, welcome):
    d = FieldDouble(max_input_vars=5000, workers=2,
                     model={"scale": scale, "welcome": welcome}).start()
    d.add_users(users)
    return d


def busy(log, t0, t1):
    return sum(e["end"] - e["start"] for e in log if e.get("start")) / (2 * (t1 - t0))


def by_function(log):
    out = {}
    for e in log:
        out[e["function"]] = out.get(e["function"], 0) + 1
    return out


def modelled(log):
    return sum(e.get("modelled", 0) for e in log)


def run_webcoursed_import(feed, users, scale, welcome, tag):
    d = new_double(users, scale, welcome)
    env = Env(feed=feed, double=d,
              moodle={"max_concurrent_calls": "4", "timeout": "600s"},
              sync={"interval": "15m", "category_id": str(CATEGORY),
                    "reconcile_every": "1d"})
    t0 = time.monotonic()
    p = env.sync()
    t1 = time.monotonic()
    log = d.log()
    res = {"client": "webcoursed", "case": "first import", "welcome": welcome,
           "exit": p.returncode, "wall_real_s": (t1 - t0) / scale,
           "workers_busy": busy(log, t0, t1), "requests": by_function(log),
           "max_running": max_concurrency(log),
           "moodle_work_real_s": modelled(log) / scale,
           "errors": p.returncode and p.err[-500:]}
    with open(os.path.join(OUT, tag + ".log.json"), "w") as f:
        json.dump(log, f)
    return res, env, d


def run_ideal(feed_path, users, scale, welcome, tag):
    d = new_double(users, scale, welcome)
    try:
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, os.path.join(HERE, "ideal_client.py"),
                            "--url", d.url, "--token", d.token, "--feed", feed_path,
                            "--concurrency", "4", "--max-input-vars", "5000",
                            "--category", str(CATEGORY)], stdout=subprocess.PIPE)
        t1 = time.monotonic()
        log = d.log()
        out = json.loads(p.stdout) if p.stdout.strip() else {}
        with open(os.path.join(OUT, tag + ".log.json"), "w") as f:
            json.dump(log, f)
        return {"client": "ideal", "case": "first import", "welcome": welcome,
                "exit": p.returncode, "wall_real_s": (t1 - t0) / scale,
                "workers_busy": busy(log, t0, t1), "requests": by_function(log),
                "max_running": max_concurrency(log),
                "moodle_work_real_s": modelled(log) / scale,
                "errors": out.get("nerrors")}
    finally:
        d.stop()


def steady(env, d, feed, case):
    """One more sync, the model at real time (scale 1)."""
    env.set_feed(feed)
    d.clear_log()
    t0 = time.monotonic()
    p = env.sync()
    t1 = time.monotonic()
    log = d.log()
    looks = [e.get("field") for e in log
             if e["function"] == "core_course_get_courses_by_field"]
    return {"client": "webcoursed", "case": case, "exit": p.returncode,
            "wall_real_s": t1 - t0, "requests": by_function(log),
            "moodle_work_real_s": modelled(log), "course_lookups": looks,
            "errors": p.returncode and p.err[-500:]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    scale = 0.1 if args.quick else args.scale
    os.makedirs(OUT, exist_ok=True)
    feed, users = issue_feed()
    feed_path = os.path.join(OUT, "feed.json")
    with open(feed_path, "w") as f:
        json.dump(feed, f)
    nparts = sum(len(c["participants"]) for c in feed["courses"])
    print("graph_cases: 300 courses, %d participants, %d users in Moodle, scale %g"
          % (nparts, len(users), scale), flush=True)
    results = []
    for welcome in ((True,) if args.quick else (True, False)):
        w = "on" if welcome else "off"
        results.append(run_ideal(feed_path, users, scale, welcome, "ideal-welcome-" + w))
        print(json.dumps(results[-1]), flush=True)
        res, env, d = run_webcoursed_import(feed, users, scale, welcome,
                                            "webcoursed-welcome-" + w)
        results.append(res)
        print(json.dumps(res), flush=True)
        if welcome:
            d.configure(model={"scale": 1.0, "welcome": True})
            results.append(steady(env, d, feed, "unchanged feed"))
            print(json.dumps(results[-1]), flush=True)
            results.append(steady(env, d, small_change(feed), "small change, 300 courses"))
            print(json.dumps(results[-1]), flush=True)
            for i in range(2700):
                d.add_course("FILL%04d" % i, categoryid=CATEGORY)
            again = small_change(feed)
            again["courses"][-1]["shortname"] = "T16-NEW2"
            again["courses"][2]["name"] = "Course 2, renamed again"
            results.append(steady(env, d, again, "small change, 3,000 courses"))
            print(json.dumps(results[-1]), flush=True)
        env.close()
    listing = {n: moodle_double.MODEL_CALL + moodle_double.MODEL_LIST_PER_COURSE * n
               for n in (300, 3000)}
    summary = {"results": results, "scale": scale,
               "listing_real_s": listing}
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print()
    print("| case | client | wall s (real) | Moodle's work s | workers busy | requests |")
    print("|---|---|---:|---:|---:|---|")
    for r in results:
        case = r["case"] + (" (welcome %s)" % ("on" if r.get("welcome") else "off")
                            if "welcome" in r else "")
        print("| %s | %s | %.1f | %.1f | %s | %s |" % (
            case, r["client"], r["wall_real_s"], r["moodle_work_real_s"],
            "%.0f%%" % (100 * r["workers_busy"]) if "workers_busy" in r else "–",
            ", ".join("%s %d" % (k.split("_", 1)[1], v)
                      for k, v in sorted(r["requests"].items()))))
    print("listing the category instead (model): %.1f s at 300 courses, %.1f s at 3,000"
          % (listing[300], listing[3000]))


if __name__ == "__main__":
    main()
