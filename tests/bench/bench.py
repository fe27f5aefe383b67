#!/usr/bin/env python3
"""`make bench`: time decode+plan of big feeds against jansson's bare parse.

For each size (enrolments) it generates a feed and a 1%-churn variant with
gen_feed.py, fills a ledger as if the feed had been applied, then measures:
  parse-only   json_load_file of the feed (the floor: no validation, no plan)
  plan         read + feed_decode + plan_build against the ledger
  digest       feed_digest of the body (how an unchanged feed is spotted)
Fastest wall time of --runs interleaved runs; peak RSS from getrusage in
each process.
Targets (goals reported, not asserted): plan <= 1.5x parse-only time and
<= 1.3x its peak RSS; digest <= 5% of parse-only time.

Usage: bench.py [--sizes 100000,1000000,2000000] [--runs 3] [--keep]
Files go to $BUILD/bench (generated feeds and ledgers are reused while
gen_feed.py is unchanged).
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(TOP, os.environ.get("BUILD", "build"))
OUT = os.path.join(BUILD, "bench")
HERE = os.path.join(TOP, "tests", "bench")
PKGS = "libcurl jansson libevent libsystemd sqlite3 inih"


def sh(cmd):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE,
                          text=True).stdout


def compile_tools():
    lib = os.path.join(BUILD, "libwebcoursed.a")
    if not os.path.exists(lib):
        sys.exit("bench: %s is missing; run make first" % lib)
    cc = os.environ.get("CC", "cc")
    flags = shlex.split(sh(["pkg-config", "--cflags", "--libs"] + PKGS.split()))
    common = [cc, "-O2", "-g", "-std=gnu11", "-D_GNU_SOURCE", "-Wall",
              "-Wextra", "-I" + os.path.join(TOP, "include")]
    sh(common + [os.path.join(HERE, "parse_only.c"), "-o",
                 os.path.join(OUT, "parse_only")] + flags)
    sh(common + [os.path.join(HERE, "plan_bench.c"), lib, "-o",
                 os.path.join(OUT, "plan_bench")] + flags + ["-lm"])


def fresh(path, *deps):
    return os.path.exists(path) and all(
        os.path.getmtime(path) >= os.path.getmtime(d) for d in deps)


def prepare(size):
    gen = os.path.join(HERE, "gen_feed.py")
    base = os.path.join(OUT, "feed-%d.json" % size)
    churn = os.path.join(OUT, "feed-%d-churn.json" % size)
    db = os.path.join(OUT, "ledger-%d.db" % size)
    if not fresh(base, gen):
        sh([sys.executable, gen, "--enrolments", str(size), base])
    if not fresh(churn, gen):
        sh([sys.executable, gen, "--enrolments", str(size), "--churn", "1",
            churn])
    if not fresh(db, base):
        # Fill a new file and rename it: a fill cut short leaves no ledger
        # that a later run would take for a good one.
        for path in (db, db + ".new"):
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.unlink(path + suffix)
        fill = json.loads(sh([os.path.join(OUT, "plan_bench"), "fill", base,
                              db + ".new"]))
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + ".new" + suffix):
                os.rename(db + ".new" + suffix, db + suffix)
        print("  ledger for %d: %d courses, %d enrolments, %d users "
              "(filled in %.1f s)" % (size, fill["courses"],
                                     fill["enrolments"], fill["users"],
                                     fill["seconds"]), flush=True)
    return base, churn, db


def measure(cmds, runs):
    """Run the commands in turn, runs times, so that a busy machine slows
    them alike; keep the fastest run of each (noise only ever adds)."""
    res = {name: [] for name in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            res[name].append(json.loads(sh(cmd)))
    out = {}
    for name, rs in res.items():
        best = dict(min(rs, key=lambda r: r["seconds"]))
        for k in rs[0]:
            if isinstance(rs[0][k], float):
                best[k] = min(r[k] for r in rs)
        best["maxrss_kb"] = max(r.get("maxrss_kb", 0) for r in rs)
        out[name] = best
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000,2000000")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    compile_tools()
    po = os.path.join(OUT, "parse_only")
    pb = os.path.join(OUT, "plan_bench")
    rows = []
    for size in [int(s) for s in a.sizes.split(",")]:
        print("size %d: preparing" % size, flush=True)
        base, churn, db = prepare(size)
        mb = os.path.getsize(base) / 1e6
        m = measure({"parse": [po, base], "digest": [pb, "digest", base],
                     "no change": [pb, "plan", base, db],
                     "1% churn": [pb, "plan", churn, db]}, a.runs)
        parse, digest = m["parse"], m["digest"]
        for name in ("no change", "1% churn"):
            p = m[name]
            rows.append((size, mb, name, parse, p, digest))
            print("  %-9s plan %.3f s (decode %.3f, plan %.3f), %.0f MB; "
                  "parse-only %.3f s, %.0f MB; %d enrol, %d suspend, "
                  "%d role changes" % (
                      name, p["seconds"], p["decode"], p["plan"],
                      p["maxrss_kb"] / 1024, parse["seconds"],
                      parse["maxrss_kb"] / 1024, p["enrol"], p["suspend"],
                      p["role_add"] + p["role_remove"]), flush=True)
        print("  digest %.4f s (generic C %.4f s) = %.1f%% of parse-only" % (
            digest["seconds"], digest["generic_seconds"],
            100 * digest["seconds"] / parse["seconds"]), flush=True)

    print()
    print("| enrolments | feed MB | feed | parse-only s | plan s "
          "(decode + plan) | time ratio | parse-only RSS MB | plan RSS MB "
          "| RSS ratio | digest s (generic) | digest / parse |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    ok = True
    for size, mb, name, parse, p, d in rows:
        tr = p["seconds"] / parse["seconds"]
        rr = p["maxrss_kb"] / parse["maxrss_kb"]
        dr = d["seconds"] / parse["seconds"]
        ok = ok and tr <= 1.5 and rr <= 1.3 and dr <= 0.05
        print("| %d | %.1f | %s | %.3f | %.3f (%.3f + %.3f) | %.2f | %.0f "
              "| %.0f | %.2f | %.4f (%.4f) | %.1f%% |" % (
                  size, mb, name, parse["seconds"], p["seconds"],
                  p["decode"], p["plan"], tr, parse["maxrss_kb"] / 1024,
                  p["maxrss_kb"] / 1024, rr, d["seconds"],
                  d["generic_seconds"], 100 * dr))
    print()
    print("targets (time <= 1.5x, RSS <= 1.3x, digest <= 5%%): %s" % (
        "met" if ok else "NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
