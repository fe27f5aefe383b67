#!/usr/bin/env python3
"""Hostile feeds: truncated and broken JSON, a 2 GB stream, deep nesting,
NUL bytes and invalid UTF-8, wrong types, 5 MB strings, 100,000 duplicate
shortnames, HTML with status 200, empty bodies, null, no courses, a feed
that halves overnight.  After a good sync (so there is a ledger to protect)
each one must end the run without a crash, write nothing to Moodle for a
rejected feed (a bad record skips only itself), log one line that says why,
and leave the ledger as it was.  The corpus is tests/feed/hostile/; the big
inputs are generated here, never written to disk whole."""
import glob
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Env, SEED_FEED, TOP, WEBCOURSECTL, WEBCOURSED, feed_of, wait_for  # noqa: E402
from hostile import crash_report, ledger_diff, ledger_dump, run_measured  # noqa: E402
from hostileserver import HostileServer  # noqa: E402
from feedserver import FeedServer  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
CORPUS = os.path.join(TOP, "tests", "feed", "hostile")
SEED = json.load(open(SEED_FEED))
MB = 1 << 20
GB2 = 2 << 30


def expected(path):
    with open(path) as f:
        return f.read().rstrip("\n")


def status_counts(env):
    p = env.ctl("status", "--json")
    try:
        st = json.loads(p.out)
    except ValueError:
        return ("status --json failed", p.out, p.err)
    return (st.get("courses"), st.get("enrolments"), st.get("missing_users"))


def csv_bytes(env):
    try:
        with open(env.csv, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def sync(env, daemon=False):
    argv = ([WEBCOURSED, "-c", env.conf, "--once"] if daemon
            else [WEBCOURSECTL, "-c", env.conf, "sync"])
    env.double.clear_log()
    return run_measured(argv)


def no_crash(label, r):
    bad = crash_report(r.err)
    return t.ok(r.returncode in (0, 1) and bad is None,
                "%s: exits %d, no crash" % (label, r.returncode),
                "exit %r; %s\n%s" % (r.returncode, bad, r.err[-1500:]))


def check_rejected(env, label, expect, daemon=False, r=None):
    """Run (unless r is given) and check a rejected feed's run."""
    before = ledger_dump(env.db)
    counts, csv = status_counts(env), csv_bytes(env)
    if r is None:
        r = sync(env, daemon)
    no_crash(label, r)
    lines = [line for line in r.err.splitlines() if "sync failed" in line]
    t.ok(r.returncode == 1 and len(lines) == 1 and expect in lines[0] and len(lines[0]) < 700,
         "%s: the run fails, one line says \"%s\"" % (label, expect),
         "exit %r, stderr %d bytes:\n%s" % (r.returncode, len(r.err), r.err[-1500:]))
    t.eq(env.writes(), [], "%s: nothing is written to Moodle" % label)
    after = ledger_dump(env.db)
    t.ok(after == before and status_counts(env) == counts and csv_bytes(env) == csv,
         "%s: ledger, status counts and CSV unchanged" % label,
         ledger_diff(before, after) or "status %r -> %r" % (counts, status_counts(env)))
    return r


def check_skipped(env, label, expect, r=None, tables_exclude=()):
    """Run and check a feed accepted with a bad record skipped: nothing
    written for it, the ledger unchanged but for last-seen bookkeeping."""
    before = ledger_dump(env.db, loose=True)
    if r is None:
        r = sync(env)
    no_crash(label, r)
    lines = [line for line in r.err.splitlines() if "record" in line and "skipped" in line]
    t.ok(r.returncode == 0 and len(lines) >= 1 and any(expect in line for line in lines)
         and len(r.err) < 8192,
         "%s: accepted; one line says \"%s\"" % (label, expect),
         "exit %r, stderr %d bytes:\n%s" % (r.returncode, len(r.err), r.err[-1500:]))
    t.eq([(w["function"], w["items"]) for w in env.writes()], [],
         "%s: the bad record causes no write" % label)
    after = ledger_dump(env.db, loose=True)
    for tb in tables_exclude:
        before.pop(tb, None)
        after.pop(tb, None)
    t.ok(after == before, "%s: ledger unchanged" % label, ledger_diff(before, after))
    return r


def feed_with(records):
    """The good feed with records replacing courses of the same shortname,
    or added."""
    courses = [dict(c) for c in SEED["courses"]]
    for rec in records:
        sn = rec.get("shortname") if isinstance(rec, dict) else None
        for i, c in enumerate(courses):
            if isinstance(sn, str) and c["shortname"] == sn:
                courses[i] = rec
                break
        else:
            courses.append(rec)
    return {"courses": courses}


env = Env()
srv = HostileServer().start()
try:
    # A good sync: the ledger we protect, and the memory a normal run needs.
    good = run_measured([WEBCOURSECTL, "-c", env.conf, "sync"])
    t.eq(good.returncode, 0, "a good sync first", good.err[-1500:])
    base_rss = good.maxrss_kb
    t.ok(len(env.enrolments()) >= 10, "Moodle holds the seed feed's enrolments")
    good_courses = env.courses()
    good_enrolments = env.enrolments()

    # --- the corpus of rejected feeds ------------------------------------
    files = sorted(glob.glob(os.path.join(CORPUS, "*.json")))
    t.ok(len(files) >= 20, "%d rejected feeds in tests/feed/hostile" % len(files))
    for i, path in enumerate(files):
        name = os.path.basename(path)[:-5]
        with open(path, "rb") as f:
            env.set_feed(f.read())
        # Every fourth through the daemon's --once, the rest through ctl.
        check_rejected(env, name, expected(path[:-5] + ".expected"), daemon=i % 4 == 3)

    # webcoursectl plan refuses a broken feed the same way.
    env.set_feed(b'{"courses": [{"shortname": "x", "name": ')
    p = env.ctl("plan")
    t.ok(p.returncode != 0 and "feed is not valid JSON" in p.err + p.out and not env.writes(),
         "plan on a truncated feed fails saying why, writes nothing", p.out + p.err)

    # --- generated: deep nesting -----------------------------------------
    N = 10000
    for label, body in [
            ("10,000-deep arrays in the courses array",
             b'{"courses":[' + b"[" * N + b"]" * N + b"]}"),
            ("10,000-deep objects in participants",
             b'{"courses":[{"shortname":"d","name":"d","participants":[' +
             b'{"a":' * N + b"1" + b"}" * N + b"]}]}"),
            ("10,000-deep arrays at the top", b"[" * N + b"]" * N),
            ("200,000-deep arrays at the top (issue 20: held)",
             b"[" * 200000 + b"]" * 200000),
            ("10,000 unclosed brackets", b"[" * N)]:
        env.set_feed(body)
        check_rejected(env, label, "maximum parsing depth reached"
                       if "unclosed" not in label else "feed is not valid JSON")

    # --- generated: 100,000 duplicate shortnames -------------------------
    env.set_feed(json.dumps({"courses": [{"shortname": "dup", "name": "Dup"}] * 100000},
                            separators=(",", ":")))
    check_rejected(env, "100,000 copies of one shortname",
                   "feed has no valid course (100000 records, first problem: dup: "
                   "shortname appears 100000 times in the feed; all copies skipped)")

    env.set_feed({"courses": SEED["courses"] + [
        {"shortname": "HXdup%05d" % (i % 50000), "name": "d"} for i in range(100000)]})
    check_skipped(env, "50,000 new shortnames twice each",
                  "(duplicate-shortname), e.g. HXdup")

    # --- generated: 5 MB strings -------------------------------------------
    big = "S" * (5 * MB)
    for label, records, expect in [
            ("a 5 MB shortname", [{"shortname": big, "name": "x"}],
             '"shortname" has 5242880 characters, more than 255'),
            ("a 5 MB summary", [{"shortname": "HXbigsum", "name": "x", "summary": big}],
             '"summary" has 5242880 characters, more than 65535'),
            ("a 5 MB username", [dict(SEED["courses"][1], participants=SEED["courses"][1]
                                      ["participants"] + [{"username": big}])],
             "(bad-username), e.g. unique_field2/SSSS"),
            ("a 5 MB role name", [dict(SEED["courses"][1], participants=SEED["courses"][1]
                                       ["participants"] + [{"username": "00000000069",
                                                            "roleid": big}])],
             "(unknown-role), e.g. unique_field2/00000000069: unknown role \"SSSS")]:
        env.set_feed(feed_with(records))
        check_skipped(env, label, expect)
    # An unknown field may be big: it is ignored, the course is unchanged.
    env.set_feed(feed_with([dict(SEED["courses"][2], notes=big)]))
    r = sync(env)
    no_crash("a 5 MB unknown field", r)
    t.ok(r.returncode == 0 and not env.writes() and len(r.err) < 4096,
         "a 5 MB unknown field is ignored: no write, a short log", r.err[-1500:])
    size = sum(os.path.getsize(f) for f in glob.glob(env.db + "*") if os.path.isfile(f))
    t.ok(size < 4 * MB, "the 5 MB strings did not go into the ledger (%d bytes)" % size)

    # --- the corpus of bad records ----------------------------------------
    recs = sorted(glob.glob(os.path.join(CORPUS, "records", "*.json")))
    t.ok(len(recs) >= 10, "%d bad-record feeds in tests/feed/hostile/records" % len(recs))
    for path in recs:
        with open(path) as f:
            records = json.load(f)
        env.set_feed(feed_with(records))
        check_skipped(env, "record " + os.path.basename(path)[:-5],
                      expected(path[:-5] + ".expected"))

    # --- a tracked course's record turns bad --------------------------------
    # unique_field1 is in the ledger with 4 enrolments and a missing user.
    # Skipping its record must not read as "the course left the feed":
    # nothing suspended, nothing renamed, its missing-user row kept.
    uf1 = SEED["courses"][0]
    missing_kept = []
    for label, records, expect in [
            ("unique_field1 100,001 times",
             [uf1] * 100001, "(duplicate-shortname), e.g. unique_field1: shortname "
                             "appears 100001 times in the feed; all copies skipped"),
            ("unique_field1 with a 5 MB name", [dict(uf1, name=big)],
             '(too-long), e.g. unique_field1: "name" has 5242880 characters'),
            ("unique_field1 with a NUL in its name",
             [dict(uf1, name="Geography\u0000<script>")],
             '(nul-byte), e.g. unique_field1: "name" contains a NUL byte'),
            ("unique_field1 with a numeric name", [dict(uf1, name=1234)],
             'e.g. unique_field1: "name" is a number, not a string')]:
        # The good feed, re-formatted so that it is decoded and planned
        # again: the missing-user row is back if it went.
        env.set_feed(json.dumps(SEED, indent=len(missing_kept) + 2))
        sync(env)
        if label.endswith("100,001 times"):
            courses = [uf1] * 100000 + SEED["courses"]
            env.set_feed({"courses": courses})
        else:
            env.set_feed(feed_with(records))
        before = ledger_dump(env.db, loose=True)
        check_skipped(env, label, expect, tables_exclude=("missing",))
        after = ledger_dump(env.db, loose=True)
        missing_kept.append((label, before["missing"] == after["missing"],
                             ledger_diff({"missing": before["missing"]},
                                         {"missing": after["missing"]})))
        t.eq(env.courses()["unique_field1"]["fullname"], good_courses["unique_field1"]["fullname"],
             "%s: the course is not renamed" % label)
    t.ok(all(ok for _, ok, _ in missing_kept),
         "a skipped tracked course keeps its missing-user rows (CSV, first_seen)",
         "\n".join("%s:\n%s" % (lb, d) for lb, ok, d in missing_kept if not ok))

    # The good feed again: nothing to do, the skipped records left nothing.
    env.set_feed(json.dumps(SEED, indent=5))
    r = sync(env)
    t.ok(r.returncode == 0 and env.writes() == [],
         "the good feed again: no write, the hostile runs left no residue",
         [(w["function"], w["items"]) for w in env.writes()])

    # A feed applied in part (a bad record skips, so its validators are not
    # kept), then the last fully applied feed again, byte for byte: that is
    # not "unchanged" any more, the ledger moved on since.
    env.set_feed(json.dumps(SEED, indent=7))
    sync(env)
    part = json.loads(json.dumps(SEED))
    part["courses"][0]["participants"] = [
        p for p in part["courses"][0]["participants"] if p["username"] != "00000000074"]
    part["courses"].append({"shortname": "HXbad\u0000", "name": "one bad record"})
    env.set_feed(part)
    r = sync(env)
    t.eq(env.enrolments()[("unique_field1", "00000000074")][0], "suspended",
         "a partly applied feed suspends someone who left it", r.err[-800:])
    env.set_feed(json.dumps(SEED, indent=7))  # the bytes of the last full apply
    r = sync(env)
    t.eq(env.enrolments()[("unique_field1", "00000000074")][0], "active",
         "the last fully applied feed back, byte for byte: the suspension is undone",
         r.err[-800:])

    # The same with a skipped tracked course (its missing-user row swept),
    # and the missing user then created in Moodle.
    env.set_feed({"courses": [uf1] + SEED["courses"]})
    sync(env)
    env.set_feed(json.dumps(SEED, indent=7))
    sync(env)
    env.double.add_users(["00000000077"])
    r = sync(env)
    t.eq(env.enrolments().get(("unique_field1", "00000000077")), ("active", (5,)),
         "a missing user of a course once skipped is enrolled when they appear",
         r.err[-800:])
    good_enrolments[("unique_field1", "00000000077")] = ("active", (5,))

    env.set_feed(json.dumps(SEED, indent=2))  # bytes not seen since: planned again
    sync(env)

    # --- over HTTP: a 2 GB stream and other misbehaving servers ---------------
    env.set("source", "url", srv.url)
    env.set("source", "max_size", "1M")
    env.set("source", "timeout", "3s")
    TOO_BIG = "body larger than source.max_size (1048576 bytes), transfer aborted"
    streams = [
        ("a 2 GB stream with Content-Length", dict(
            mode="stream", total=GB2, length="declared", prefix=b'{"courses":[', fill=b" "), False),
        ("a 2 GB stream of zeros until close", dict(
            mode="stream", total=GB2, length="close", fill=b"\0"), True),
        ("a 2 GB chunked stream of garbage", dict(
            mode="stream", total=GB2, length="chunked", fill=b"garbage!"), False),
        ("a gzip bomb expanding to 2 GB", dict(
            mode="gzip", total=GB2, prefix=b'{"courses":[', fill=b" "), False),
    ]
    for label, conf, daemon in streams:
        srv.set(**conf)
        n = len(srv.requests)
        env.double.clear_log()
        r = run_measured([WEBCOURSED, "-c", env.conf, "--once"] if daemon
                         else [WEBCOURSECTL, "-c", env.conf, "sync"])
        check_rejected(env, label, TOO_BIG, r=r)
        wait_for(lambda: len(srv.requests) > n and (srv.requests[-1]["done"] or
                                                     srv.requests[-1]["aborted"]),
                 60, "the stream to end")
        rec = srv.requests[-1]
        streamed = rec.get("expanded", rec["sent"])
        t.ok(rec["aborted"] and streamed < 64 * MB,
             "%s: the client hung up after %.1f MB of %d MB" % (label, streamed / MB, GB2 // MB),
             rec)
        t.ok(r.maxrss_kb < base_rss + 32 * 1024,
             "%s: peak memory %d kB (a normal run: %d kB)" % (label, r.maxrss_kb, base_rss))
        print("# %s: peak RSS %d kB, baseline %d kB, %.1f MB streamed" % (
            label, r.maxrss_kb, base_rss, streamed / MB))

    env.set("source", "url", "file:///dev/zero")
    r = run_measured([WEBCOURSECTL, "-c", env.conf, "sync"])
    check_rejected(env, "file:///dev/zero", TOO_BIG, r=r)
    t.ok(r.maxrss_kb < base_rss + 32 * 1024,
         "file:///dev/zero: peak memory %d kB (a normal run: %d kB)" % (r.maxrss_kb, base_rss))

    env.set("source", "url", srv.url)
    body = json.dumps(SEED).encode()
    for label, conf, expect in [
            ("a feed dripping one byte every 0.2 s",
             dict(mode="drip", body=body, step=1, interval=0.2), "Operation timed out"),
            ("a redirect to file:///etc/passwd",
             dict(mode="redirect", location="file:///etc/passwd"), 'Protocol "file" not supported'),
            ("a body cut short of its Content-Length",
             dict(mode="raw", raw=b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                  b"Content-Length: 5000\r\n\r\n" + body[:1000]),
             "transfer closed with"),
            ("headers that never end", dict(mode="headers", total=64 * MB), "header"),
            ("a connection closed without an answer", dict(mode="raw", raw=b""),
             "Empty reply from server"),
            ("a corrupt gzip body",
             dict(mode="raw", raw=b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                                  b"Content-Length: 10\r\n\r\n0123456789"), "unencoding")]:
        srv.set(**conf)
        r = check_rejected(env, label, expect)
        t.ok("root:" not in r.err + r.out, "%s: no local file content in the output" % label)
    env.set("source", "timeout", "10s")

    with FeedServer(body=body) as fs:
        env.set("source", "url", fs.url)
        for label, kw, expect in [
                ("an HTML login page, status 200, text/html",
                 dict(body=b"<html><head><title>Login</title></head><body><form>"
                           b"<input type=password></form></body></html>",
                      content_type="text/html; charset=utf-8"),
                 "sent an HTML page, not JSON (HTTP 200)"),
                ("an HTML page labelled application/json",
                 dict(body=b"\r\n<!DOCTYPE html><title>Maintenance</title>"),
                 "sent an HTML page, not JSON (HTTP 200)"),
                ("an empty body, status 200", dict(body=b""), "feed is empty"),
                ("null, status 200", dict(body=b"null"), "feed is null"),
                ("an empty courses array over HTTP", dict(body=b'{"courses":[]}'),
                 "feed has no courses")]:
            fs.set(status=200, content_type="application/json")
            fs.set(**kw)
            check_rejected(env, label, expect)
    env.set("source", "url", "file://" + env.feed_file)
    env.set("source", "max_size", "256M")
    env.set_feed(SEED)
    r = sync(env)
    t.ok(r.returncode == 0 and env.writes() == [] and env.enrolments() == good_enrolments,
         "after all that, the good feed syncs with nothing to do; Moodle is as it was",
         r.err[-1500:])
finally:
    srv.stop()
    env.close()

# --- a feed that halves overnight ------------------------------------------
# 60 courses of 5 participants.  With on_removed_course = hide, the courses
# that vanish are hidden on their second absence; 30 of 60 courses going at
# once is what sync.max_removals exists for.
USERS = ["hv%03d" % i for i in range(60)]


def halving_feed(ncourses=60, keep=5):
    return feed_of({"HV%02d" % c: ("Halving %d" % c,
                                   [(u, None) for u in USERS[c % 12 * 5:c % 12 * 5 + keep]])
                    for c in range(ncourses)})


env = Env(feed=halving_feed(), sync={"on_removed_course": "hide"})
try:
    env.double.add_users(USERS)
    r = sync(env)
    t.eq(r.returncode, 0, "halving: the full feed synced", r.err[-1500:])
    full = env.enrolments()

    # Every course loses 3 of its 5 participants: 180 suspensions, withheld.
    env.set_feed(halving_feed(keep=2))
    before = ledger_dump(env.db, loose=True)
    r = sync(env)
    no_crash("participants halve", r)
    t.ok(r.returncode == 0 and "removals withheld: 180 of" in r.err,
         "participants halve: the removals are withheld, loudly", r.err[-1500:])
    t.eq(env.writes(), [], "participants halve: nothing written to Moodle")
    after = ledger_dump(env.db, loose=True)
    t.eq(after["enrolments"], before["enrolments"], "participants halve: ledger enrolments unchanged")
    st = json.loads(env.ctl("status", "--json").out)
    t.ok(st["removals_withheld"], "participants halve: status shows the withheld removals", st)
    env.set_feed(halving_feed())  # the very bytes of the last full apply
    r = sync(env)
    st = json.loads(env.ctl("status", "--json").out)
    t.ok(r.returncode == 0 and not env.writes() and env.enrolments() == full,
         "the feed recovers: nothing written", r.err[-800:])
    t.eq(st["removals_withheld"], None,
         "the feed recovers (byte for byte): the withheld-removals warning is gone")

    # Half the courses vanish, night after night (the second body identical,
    # the third the same feed re-formatted).
    hidden_runs = []
    warned = []
    for night, body in enumerate([json.dumps(halving_feed(30)), json.dumps(halving_feed(30)),
                                  json.dumps(halving_feed(30), indent=1)]):
        env.set_feed(body)
        r = sync(env)
        no_crash("half the courses vanish, night %d" % (night + 1), r)
        hidden_runs.append(sorted(sn for sn, c in env.courses().items() if not c["visible"]))
        warned.append("removals withheld" in r.err)
    t.eq(hidden_runs[0], [], "half the courses vanish: none is hidden on first sight")
    t.ok(all(h == [] for h in hidden_runs),
         "half the courses vanish: the guard withholds hiding 30 of 60 courses",
         "hidden after each night: %s" % [len(h) for h in hidden_runs])
    t.ok(any(warned[1:]), "half the courses vanish: the withheld hides are logged",
         "warnings per night: %s" % warned)
finally:
    env.close()

# One course of 30 vanishes (well within the guard) and the feed then stays
# the same: the course is hidden on its second absence, as plan.c says, even
# though the body no longer changes.
env = Env(feed=halving_feed(30), sync={"on_removed_course": "hide"})
try:
    env.double.add_users(USERS)
    sync(env)
    gone = halving_feed(30)
    gone["courses"] = [c for c in gone["courses"] if c["shortname"] != "HV07"]
    env.set_feed(gone)
    sync(env)
    t.eq(env.courses()["HV07"]["visible"], 1, "a vanished course is kept on first sight")
    r = sync(env)  # same body: the second absence
    t.eq(env.courses()["HV07"]["visible"], 0,
         "an unchanged feed still counts the second absence: the course is hidden",
         r.err[-800:])
    env.set_feed(json.dumps(gone, indent=2))
    sync(env)
    print("# with the same feed re-formatted, HV07 visible = %s" % env.courses()["HV07"]["visible"])
finally:
    env.close()
t.done()
