#!/usr/bin/env python3
"""`make demo`: the seed feed and a Moodle double on loopback, the daemon in
the foreground for two cycles (the feed changes between them), then
`webcoursectl status` and the missing-users CSV."""
import copy
import functools
import http.server
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from harness import Env, SEED_FEED, WEBCOURSED, wait_for  # noqa: E402


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve_dir(path):
    handler = functools.partial(QuietHandler, directory=path)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def banner(text):
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print("\n%s== %s ==%s" % (bold, text, plain), flush=True)


def main():
    seed = json.load(open(SEED_FEED))
    env = Env(feed=seed)
    srv = serve_dir(env.dir)
    feed_url = "http://127.0.0.1:%d/feed.json" % srv.server_address[1]
    env.set("source", "url", feed_url)
    try:
        banner("configuration (%s)" % env.conf)
        print(open(env.conf).read().replace(env.token, "<secret>"))
        print("feed:   %s (the seed feed of the old plugin)" % feed_url)
        print("moodle: %s (the Moodle double, users 00000000077 and "
              "00000000087 do not exist)" % env.double.url)

        banner("webcoursed -t")
        os.system("%s -t -c %s" % (WEBCOURSED, env.conf))

        banner("webcoursed -f: first cycle")
        d = env.daemon()
        lines = []

        def reader():
            for raw in d.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                lines.append(line)
                print("  | " + line, flush=True)
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        done = lambda n: sum("sync done" in l or "sync failed" in l for l in lines) >= n
        wait_for(lambda: done(1), 60, "the first sync")

        banner("the feed changes: a new course, a participant leaves, a role changes")
        feed = copy.deepcopy(seed)
        feed["courses"][0]["participants"] = [
            p for p in feed["courses"][0]["participants"] if p["username"] != "00000000069"]
        feed["courses"][1]["participants"][0]["roleid"] = "student"
        feed["courses"].append({"shortname": "unique_field4",
                                "name": "Exemple name - Chemistry Course",
                                "participants": [{"username": "00000000074"},
                                                 {"username": "00000000099"}]})
        env.set_feed(feed)
        d.send_signal(signal.SIGUSR1)
        wait_for(lambda: done(2), 60, "the second sync")
        d.send_signal(signal.SIGTERM)
        d.wait(30)
        t.join(5)

        banner("webcoursectl status")
        print(env.ctl("status").out)
        banner("webcoursectl missing-users (%s)" % env.csv)
        print(open(env.csv).read())
        banner("Moodle (the double) now holds")
        for c in env.state()["courses"]:
            if c["shortname"].startswith("unique_field"):
                print("%-14s %-34s %s" % (c["shortname"], c["fullname"], ", ".join(
                    "%s:%s%s" % (e["username"], "/".join(map(str, e["roles"])),
                                 "" if e["status"] == "active" else "(suspended)")
                    for e in c["enrolments"])))
        print()
        return 0 if d.returncode == 0 else 1
    finally:
        srv.shutdown()
        env.close()


if __name__ == "__main__":
    sys.exit(main())
