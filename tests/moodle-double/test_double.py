#!/usr/bin/env python3
"""Focused tests of the Moodle double: fault injection, control endpoints,
get_enrolled_users paging, the max_input_vars cut, the wwwroot redirect,
PHP form parsing, tokens, and the command line."""
import http.client
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.environ.get("TOP") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
sys.path.insert(0, HERE)

from tap import Tap  # noqa: E402
from moodle_double import MoodleDouble, php_parse_form  # noqa: E402

t = Tap()


def request(d, method, path, body=b"", host=None, ctype="application/x-www-form-urlencoded"):
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host or "127.0.0.1:%d" % d.port)
        if method == "POST":
            conn.putheader("Content-Type", ctype)
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body if method == "POST" else None)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def form(pairs):
    return "&".join("%s=%s" % (k, urllib.parse.quote(str(v), safe="")) for k, v in pairs)


def ws(d, function, pairs=(), token=None, fmt="json", host=None, head=True):
    """Call a web-service function; returns (status, headers, body bytes)."""
    ws_pairs = [("wstoken", token or d.token), ("wsfunction", function)]
    if fmt:
        ws_pairs.append(("moodlewsrestformat", fmt))
    all_pairs = ws_pairs + list(pairs) if head else list(pairs) + ws_pairs
    return request(d, "POST", "/webservice/rest/server.php", form(all_pairs).encode(), host)


def wsj(d, function, pairs=(), **kw):
    status, _, body = ws(d, function, pairs, **kw)
    return json.loads(body)


def control(d, path, obj=None, method="POST"):
    status, _, body = request(d, method, path, json.dumps(obj or {}).encode(),
                              ctype="application/json")
    return status, json.loads(body)


def enrol_pairs(items):
    out = []
    for i, it in enumerate(items):
        for k, v in it.items():
            out.append(("enrolments[%d][%s]" % (i, k), v))
    return out


def course_state(d, shortname):
    return next(c for c in d.state()["courses"] if c["shortname"] == shortname)


def enrolled(d, shortname):
    return {e["username"]: e for e in course_state(d, shortname)["enrolments"]}


d = MoodleDouble(max_input_vars=5000).start()
try:
    # --- seed ------------------------------------------------------------------------------
    st = d.state()
    users = {u["username"]: u["id"] for u in st["users"]}
    t.eq([users[u] for u in ("admin", "00000000023", "00000000069", "00000000074",
                             "00000000076", "00000000078")], [2, 3, 4, 5, 6, 7],
         "seed: admin 2, lab users 3-7")
    t.ok("00000000077" not in users and "00000000087" not in users, "seed: 077, 087 absent")
    t.eq([(c["id"], c["shortname"], c["manual"]) for c in st["courses"]],
         [(2, "LAB-NOMANUAL", "none"), (3, "LAB-MANUALOFF", "disabled")], "seed: courses")
    t.eq([(c["id"], c["idnumber"]) for c in st["categories"]], [(1, None), (2, "LABCAT")],
         "seed: categories")
    info = wsj(d, "core_webservice_get_site_info")
    t.eq((info["siteurl"], info["release"], info["version"], len(info["functions"])),
         (d.url, "4.4.3+ (Build: 20240910)", "2024042203.03", 12), "site info, admin token")

    # --- tokens ----------------------------------------------------------------------------
    lim = wsj(d, "core_webservice_get_site_info", token=d.limited_token)
    names = [f["name"] for f in lim["functions"]]
    t.ok("enrol_manual_unenrol_users" not in names and "core_role_unassign_roles" not in names
         and len(names) == 10, "limited token: 10 functions, no unenrol/unassign", names)
    r = wsj(d, "enrol_manual_unenrol_users", enrol_pairs([{"userid": 3, "courseid": 3}]),
            token=d.limited_token)
    t.eq(r.get("errorcode"), "accessexception", "limited token: unenrol -> accessexception")
    r = wsj(d, "core_role_unassign_roles", [("unassignments[0][roleid]", 5),
                                            ("unassignments[0][userid]", 3),
                                            ("unassignments[0][contextid]", 18)],
            token=d.limited_token)
    t.eq(r.get("errorcode"), "accessexception", "limited token: role unassign -> accessexception")
    t.eq(wsj(d, "core_webservice_get_site_info", token="f" * 32)["errorcode"], "invalidtoken",
         "unknown token")
    status, hdr, body = ws(d, "core_webservice_get_site_info", token="f" * 32, fmt=None)
    t.ok(body.startswith(b'<?xml version="1.0" encoding="UTF-8" ?>\n<EXCEPTION')
         and b"<ERRORCODE>invalidtoken</ERRORCODE>" in body, "no format: XML error", body)
    status, hdr, body = ws(d, "core_webservice_get_site_info", fmt=None)
    t.ok(body.startswith(b'<?xml version="1.0" encoding="UTF-8" ?>\n<RESPONSE>\n<SINGLE>\n')
         and b'<KEY name="release"><VALUE>4.4.3+ (Build: 20240910)</VALUE>\n</KEY>' in body
         and hdr["Content-Type"] == "application/xml; charset=utf-8", "no format: XML answer",
         body[:300])
    t.eq(wsj(d, "local_nosuch")["errorcode"], "invalidrecord", "unknown function")
    t.eq(wsj(d, "core_user_delete_users", [("userids[0]", 7)])["errorcode"], "accessexception",
         "function outside the service")

    # --- control endpoints -----------------------------------------------------------------
    s, r = control(d, "/__double/users", {"users": [{"username": "ctl%02d" % i}
                                                    for i in range(30)]})
    t.eq((s, r["users"][0]["username"], r["users"][1]["id"] - r["users"][0]["id"]),
         (200, "ctl00", 1), "POST /__double/users creates users with increasing ids")
    ctl_ids = [u["id"] for u in r["users"]]
    s, r = control(d, "/__double/courses", {"courses": [
        {"shortname": "CTL1", "fullname": "Control one", "manual": "enabled", "visible": 1},
        {"shortname": "CTL-OFF", "fullname": "Control off", "manual": "disabled"},
        {"shortname": "CTL-HIDDEN", "manual": "enabled", "visible": 0}]})
    t.eq([c["shortname"] for c in r["courses"]], ["CTL1", "CTL-OFF", "CTL-HIDDEN"],
         "POST /__double/courses")
    ctl1 = r["courses"][0]["id"]
    t.eq(course_state(d, "CTL-HIDDEN")["visible"], 0, "a hidden course")
    s, r = control(d, "/__double/enrol", {"shortname": "CTL1", "username": "ctl00",
                                          "roleid": 3, "status": "suspended"})
    t.eq(s, 200, "POST /__double/enrol")
    t.eq(enrolled(d, "CTL1")["ctl00"], {"userid": ctl_ids[0], "username": "ctl00",
                                        "status": "suspended", "roles": [3]},
         "the admin's enrolment shows in the state")
    s, r = control(d, "/__double/users", {"users": [{"username": "Upper"}]})
    t.eq(s, 400, "no username Moodle would not store")
    s, r = control(d, "/__double/enrol", {"shortname": "LAB-NOMANUAL", "username": "ctl00"})
    t.eq(s, 400, "no enrolment where there is no manual instance")
    s, r = control(d, "/__double/unenrol", {"shortname": "CTL1", "username": "ctl00"})
    t.ok(s == 200 and "ctl00" not in enrolled(d, "CTL1"), "POST /__double/unenrol")
    s, st = control(d, "/__double/state", method="GET")
    t.ok(s == 200 and {"courses", "users", "categories"} <= set(st), "GET /__double/state")
    s, r = control(d, "/__double/info", method="GET")
    t.eq((r["url"], r["token"], r["limited_token"]), (d.url, d.token, d.limited_token),
         "GET /__double/info")
    s, r = control(d, "/__double/nosuch")
    t.eq(s, 404, "unknown control endpoint: 404")
    s, r = control(d, "/__double/fault", {"mode": "bogus"})
    t.eq(s, 400, "unknown fault mode: 400")

    control(d, "/__double/log/clear")
    ws(d, "enrol_manual_enrol_users", enrol_pairs([{"roleid": 5, "userid": i, "courseid": ctl1}
                                                   for i in ctl_ids[:3]]))
    s, log = control(d, "/__double/log", method="GET")
    t.eq([{k: v for k, v in e.items() if k not in ("seq", "arrived", "start", "end")}
          for e in log],
         [{"function": "enrol_manual_enrol_users", "items": 3, "nvars": 12,
           "nvars_post": 12, "nvars_get": 0, "cut": False, "status": 200,
           "errorcode": None, "fault": None, "format": "json", "already_enrolled": 0,
           "deadlock": False, "conflict": None, "waited_for": [], "committed": True}],
         "GET /__double/log")
    e = log[0]
    t.ok(isinstance(e["seq"], int) and e["arrived"] <= e["start"] <= e["end"],
         "log: request number and monotonic arrival, start and end times", e)
    ws(d, "enrol_manual_enrol_users", enrol_pairs([{"roleid": 5, "userid": i, "courseid": ctl1}
                                                   for i in ctl_ids[1:5]]))
    t.eq(d.log()[-1]["already_enrolled"], 2, "log: enrol items that hit an enrolment")
    ws(d, "enrol_manual_unenrol_users", enrol_pairs([{"userid": i, "courseid": ctl1}
                                                     for i in ctl_ids[3:5]]))
    ws(d, "core_user_get_users_by_field", [("field", "username"), ("values[0]", "Admin")])
    t.eq([(e["function"], e["items"], e["errorcode"]) for e in d.log(since=3)],
         [("core_user_get_users_by_field", 1, "invalidparameter")], "log: since, errorcode")
    d.clear_log()
    t.eq(d.log(), [], "clear_log")

    # --- faults ----------------------------------------------------------------------------
    def site_info_status():
        return ws(d, "core_webservice_get_site_info")[0]

    for code in (500, 502, 503):
        control(d, "/__double/fault", {"mode": "http%d" % code})
        s, h, b = ws(d, "core_webservice_get_site_info")
        t.ok(s == code and b"<html>" in b, "fault http%d" % code, (s, b))
    t.eq(site_info_status(), 200, "a fault fires once by default")
    t.eq([(e["status"], e["fault"]) for e in d.log()[-4:]],
         [(500, "http500"), (502, "http502"), (503, "http503"), (200, None)], "faults are logged")

    d.set_fault("http503", count=2)
    t.eq([site_info_status() for _ in range(3)], [503, 503, 200], "count=2")
    d.set_fault("http502", count=-1)
    t.eq([site_info_status() for _ in range(4)], [502] * 4, "count=-1 until cleared")
    control(d, "/__double/fault", {"mode": "none"})
    t.eq(site_info_status(), 200, "mode none clears")
    d.set_fault("http500", function="enrol_manual_enrol_users", after=1)
    t.eq(site_info_status(), 200, "function filter: other functions untouched")
    s1 = ws(d, "enrol_manual_enrol_users", enrol_pairs([{"roleid": 5, "userid": ctl_ids[3],
                                                         "courseid": ctl1}]))[0]
    s2 = ws(d, "enrol_manual_enrol_users", enrol_pairs([{"roleid": 5, "userid": ctl_ids[4],
                                                         "courseid": ctl1}]))[0]
    t.eq((s1, s2), (200, 500), "after=1 skips the first matching call")
    t.ok("ctl04" not in enrolled(d, "CTL1"), "an http500 fault changes nothing")

    d.set_fault("reset")
    try:
        got = ws(d, "core_webservice_get_site_info")
        t.ok(False, "reset: connection dropped", got)
    except (ConnectionError, http.client.HTTPException) as e:
        t.ok(True, "reset: connection dropped (%s)" % type(e).__name__)
    t.eq(d.log()[-1]["status"], None, "reset: logged without a status")

    d.set_fault("delay", seconds=0.3)
    started = time.monotonic()
    s, h, b = ws(d, "core_webservice_get_site_info")
    t.ok(s == 200 and time.monotonic() - started >= 0.3, "delay: answers, but not before 0.3 s")

    d.set_fault("sitemaintenance")
    t.eq(wsj(d, "core_webservice_get_site_info"),
         {"exception": "moodle_exception", "errorcode": "sitemaintenance",
          "message": "The site is undergoing maintenance and is currently not available"},
         "sitemaintenance")
    d.set_fault("invalidtoken")
    t.eq(wsj(d, "core_webservice_get_site_info")["errorcode"], "invalidtoken", "invalidtoken")

    d.set_fault("mailfail", function="enrol_manual_enrol_users")
    s, h, b = ws(d, "enrol_manual_enrol_users", enrol_pairs([{"roleid": 5, "userid": ctl_ids[5],
                                                              "courseid": ctl1}]))
    t.eq(b, b'{"exception":"moodle_exception","errorcode":"Message was not sent.",'
            b'"message":"error\\/Message was not sent."}', "mailfail: the recorded body")
    t.ok("ctl05" in enrolled(d, "CTL1"), "mailfail: the enrolment was committed")

    d.set_fault("garbage")
    s, h, b = ws(d, "core_webservice_get_site_info")
    try:
        json.loads(b)
        parsed = True
    except ValueError:
        parsed = False
    t.ok(s == 200 and not parsed, "garbage: 200, not JSON", b)
    d.set_fault("html")
    s, h, b = ws(d, "core_webservice_get_site_info")
    t.ok(s == 200 and h["Content-Type"].startswith("text/html") and b"login" in b,
         "html: a login page")
    d.set_fault("nulllist", function="core_user_get_users_by_field")
    s, h, b = ws(d, "core_user_get_users_by_field", [("field", "username"),
                                                     ("values[0]", "admin")])
    t.eq((s, b), (200, b"null"), "nulllist")
    body = {"exception": "moodle_exception", "errorcode": "servicerequireslogin",
            "message": "Web service login required"}
    control(d, "/__double/fault", {"mode": "error", "body": body})
    t.eq(wsj(d, "core_webservice_get_site_info"), body, "error: the given body")
    t.eq(d.log()[-1]["errorcode"], "servicerequireslogin", "error: logged errorcode")

    # --- config ----------------------------------------------------------------------------
    control(d, "/__double/config", {"ws_enabled": False})
    s, h, b = ws(d, "core_webservice_get_site_info")
    t.eq((s, b), (403, b""), "web services disabled: 403, empty body")
    control(d, "/__double/config", {"ws_enabled": True})
    s, r = control(d, "/__double/config", {"max_input_vars": 10, "bogus": 1})
    t.eq(s, 400, "config: unknown key refused")

    # --- max_input_vars cut ----------------------------------------------------------------
    control(d, "/__double/config", {"max_input_vars": 10})
    five = [{"roleid": 5, "userid": i, "courseid": ctl1} for i in ctl_ids[10:15]]
    t.eq(wsj(d, "enrol_manual_enrol_users", enrol_pairs(five))["errorcode"], "invalidparameter",
         "cut inside a required field: invalidparameter (20a)")
    e = d.log()[-1]
    t.eq((e["nvars"], e["cut"], e["items"]), (18, True, 3),
         "log: 18 sent, cut, 3 records survived")
    t.ok(not any(u in enrolled(d, "CTL1") for u in ("ctl10", "ctl11")), "20a: nothing enrolled")
    d.configure(debug=True)
    t.eq(wsj(d, "enrol_manual_enrol_users", enrol_pairs(five)).get("debuginfo"),
         "enrolments => Invalid parameter value detected: Missing required key in single "
         "structure: courseid", "debug: debuginfo names the missing key (26b)")
    d.configure(debug=False)
    with_times = [dict(x, timestart=0, timeend=0) for x in five]
    s, h, b = ws(d, "enrol_manual_enrol_users", enrol_pairs(with_times))
    t.eq(b, b"null", "cut inside optional fields: success (20c)")
    t.eq(sorted(u for u in enrolled(d, "CTL1") if u >= "ctl10"), ["ctl10", "ctl11"],
         "20c: only the first 2 of 5 enrolled (3 ws + 5 + 3 fields kept)")
    s, h, b = ws(d, "enrol_manual_enrol_users", enrol_pairs(five), head=False)
    t.ok(b.startswith(b"<?xml") and b"invalidtoken" in b, "ws fields cut off: XML invalidtoken")
    query = form([("wstoken", d.token), ("wsfunction", "core_course_get_courses_by_field"),
                  ("moodlewsrestformat", "json")])
    s, h, b = request(d, "POST", "/webservice/rest/server.php?" + query,
                      form([("field", "shortname"), ("value", "CTL1")] +
                           [("x%d" % i, i) for i in range(9)]).encode())
    t.eq(json.loads(b).get("errorcode"), "invalidparameter",
         "GET and POST counted separately: 11 POST vars kept, stray keys refused")
    t.eq((d.log()[-1]["nvars_get"], d.log()[-1]["nvars_post"], d.log()[-1]["cut"]),
         (3, 11, False), "log: GET and POST counts")
    s, h, b = request(d, "POST", "/webservice/rest/server.php?" + query,
                      form([("field", "shortname"), ("value", "CTL1")]).encode())
    t.eq(json.loads(b)["courses"][0]["shortname"], "CTL1", "token in the query string")
    s, h, b = request(d, "GET", "/webservice/rest/server.php?" + query + "&field=id&value=%d"
                      % ctl1)
    t.eq(json.loads(b)["courses"][0]["id"], ctl1, "plain GET (23)")
    s, h, b = request(d, "POST", "/webservice/rest/server.php",
                      form([("wstoken", d.token), ("wsfunction", "core_webservice_get_site_info"),
                            ("moodlewsrestformat", "json")]).encode(), ctype="text/plain")
    t.ok(b.startswith(b"<?xml") and b"invalidtoken" in b,
         "a body that is not form-encoded is ignored, as PHP does")
    d.configure(max_input_vars=5000)

    # --- PHP form parsing ------------------------------------------------------------------
    arr, sent, kept = php_parse_form(b"a%5B0%5D%5Bk%5D=x+y&a[0][v]=%C3%9C&b[]=1&b[]=2&c.d=3"
                                     b"&e=1&e=2&f[x=4&g[1]junk=5&&", 100, True)
    t.eq(json.loads(json.dumps(arr)), {"a": {"0": {"k": "x y", "v": "\u00dc"}},
                                       "b": {"0": "1", "1": "2"}, "c_d": "3", "e": "2",
                                       "f_x": "4", "g": {"1": "5"}},
         "PHP parsing: encoded keys, +, [], '.', duplicates, broken brackets")
    t.eq((sent, kept), (10, 10), "PHP parsing: an empty POST segment counts, a trailing & not")
    t.eq(list(arr["b"].keys()), [0, 1], "PHP parsing: numeric keys are ints")
    arr, sent, kept = php_parse_form(b"a=1&&b=2", 100, False)
    t.eq((sent, sorted(arr)), (2, ["a", "b"]), "query string: empty segments skipped")

    # --- users -----------------------------------------------------------------------------
    t.eq(wsj(d, "core_user_get_users_by_field", [("field", "username"),
                                                 ("values[0]", " admin")])["errorcode"],
         "invalidparameter", "untrimmed username: invalidparameter for the whole call")
    r = wsj(d, "core_user_get_users_by_field", [("field", "username"), ("values[0]", "ctl02"),
                                                ("values[1]", "nosuch"), ("values[2]", "ctl01")])
    t.eq([u["username"] for u in r], ["ctl01", "ctl02"], "lookup: sorted by id, missing absent")
    r = wsj(d, "core_user_create_users", [("users[0][username]", "newone"),
                                          ("users[0][password]", "Good-Passw0rd"),
                                          ("users[0][firstname]", "New"),
                                          ("users[0][lastname]", "One"),
                                          ("users[0][email]", "newone@example.com")])
    t.eq(r[0]["username"], "newone", "create_users")

    # --- courses ---------------------------------------------------------------------------
    r = wsj(d, "core_course_create_courses", [
        ("courses[0][fullname]", "Z"), ("courses[0][shortname]", "ZZ"),
        ("courses[0][categoryid]", 1), ("courses[1][fullname]", "A"),
        ("courses[1][shortname]", "AA"), ("courses[1][categoryid]", 1)])
    t.ok([c["shortname"] for c in r] == ["ZZ", "AA"] and r[1]["id"] == r[0]["id"] + 1,
         "create_courses: request order", r)
    r = wsj(d, "core_course_update_courses", [("courses[0][id]", r[0]["id"]),
                                              ("courses[0][visible]", 0),
                                              ("courses[0][fullname]", "Zed")])
    t.eq(r, {"warnings": []}, "update_courses: hide and rename")
    t.eq((course_state(d, "ZZ")["visible"], course_state(d, "ZZ")["fullname"]), (0, "Zed"),
         "the update is in the state")
    r = wsj(d, "core_course_get_courses_by_field", [("field", "shortname"), ("value", "ZZ")])
    t.eq(r["courses"][0]["visible"], 0, "a hidden course is still returned")

    # --- get_enrolled_users paging ---------------------------------------------------------
    pg = d.add_course("PAGED")
    for i, name in enumerate("ctl%02d" % k for k in range(20, 30)):
        d.enrol("PAGED", name, 5, "suspended" if i % 3 == 0 else "active")

    def page(*opts):
        pairs = [("courseid", pg)]
        for i, (k, v) in enumerate(opts):
            pairs += [("options[%d][name]" % i, k), ("options[%d][value]" % i, v)]
        return [u["id"] for u in wsj(d, "core_enrol_get_enrolled_users", pairs)]

    every = page()
    t.eq(every, ctl_ids[20:30], "enrolled users: all ten, by id")
    pages = [page(("limitfrom", f), ("limitnumber", 4), ("userfields", "id"))
             for f in (0, 4, 8, 12)]
    t.eq(pages, [every[0:4], every[4:8], every[8:10], []], "paging with limitfrom/limitnumber")
    active = page(("onlyactive", 1))
    t.eq(active, [u for i, u in enumerate(every) if i % 3], "onlyactive")
    t.eq(page(("onlyactive", 1), ("limitfrom", 2), ("limitnumber", 2)), active[2:4],
         "onlyactive and paging")
    t.eq(page(("sortby", "id"), ("sortdirection", "DESC"), ("limitnumber", 3)),
         every[::-1][:3], "sortdirection DESC")
    r = wsj(d, "core_enrol_get_enrolled_users", [("courseid", pg), ("options[0][name]",
                                                                    "userfields"),
                                                 ("options[0][value]", "id,username")])
    t.eq(sorted(r[0]), ["fullname", "id", "username"], "userfields: id and fullname always")

    # --- wwwroot ---------------------------------------------------------------------------
    s, h, b = ws(d, "core_webservice_get_site_info", host="localhost:%d" % d.port)
    t.eq((s, h.get("Location"), h.get("X-Redirect-By")),
         (303, d.url + "/webservice/rest/server.php", "Moodle"), "another Host: 303 to wwwroot")
    t.ok(b.startswith(b"<!DOCTYPE html>") and b"<title>Redirect</title>" in b,
         "the redirect page is HTML")
    t.eq(d.log()[-1]["status"], 303, "redirect logged")

    # --- a second server on the same site; concurrency -------------------------------------
    d2 = MoodleDouble(max_input_vars=1000, site=d.site).start()
    try:
        d2.add_course("SHARED")
        t.ok(any(c["shortname"] == "SHARED" for c in d.state()["courses"]),
             "site= shares the database")
        base = d.add_users(["conc%03d" % i for i in range(200)])
        cc = d.add_course("CONC")
        errors = []

        def worker(k):
            try:
                for j in range(5):
                    items = [{"roleid": 5, "userid": base[k * 50 + j * 10 + i], "courseid": cc}
                             for i in range(10)]
                    target = d if k % 2 else d2
                    if ws(target, "enrol_manual_enrol_users", enrol_pairs(items))[2] != b"null":
                        errors.append(k)
            except Exception as e:  # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        t.eq((errors, len(enrolled(d, "CONC"))), ([], 200), "concurrent enrol calls")
    finally:
        d2.stop()

    # --- reset -----------------------------------------------------------------------------
    token = d.token
    s, r = control(d, "/__double/reset")
    st = d.state()
    t.ok(s == 200 and [c["id"] for c in st["courses"]] == [2, 3] and d.log() == [],
         "POST /__double/reset: back to the seed")
    t.eq(wsj(d, "core_webservice_get_site_info")["username"], "admin",
         "tokens survive a reset (%s...)" % token[:6])
finally:
    d.stop()

# --- the command line ----------------------------------------------------------------
with tempfile.TemporaryDirectory() as tmp:
    port_file = os.path.join(tmp, "port")
    token_file = os.path.join(tmp, "token")
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "moodle_double.py"), "--port", "0",
                          "--port-file", port_file, "--token-file", token_file,
                          "--max-input-vars", "1000", "--users", "cli1,cli2"],
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().strip()
        port = int(open(port_file).read())
        t.eq(line, "listening on http://127.0.0.1:%d" % port, "CLI: prints where it listens")
        t.eq(stat.S_IMODE(os.stat(token_file).st_mode), 0o600, "CLI: token file is 0600")

        class Remote:
            pass
        rd = Remote()
        rd.port = port
        rd.token = open(token_file).read().strip()
        r = wsj(rd, "core_user_get_users_by_field", [("field", "username"),
                                                     ("values[0]", "cli2")])
        t.eq([u["username"] for u in r], ["cli2"], "CLI: --users created, token works")
        s, info = control(rd, "/__double/info", method="GET")
        t.eq(info["max_input_vars"], 1000, "CLI: --max-input-vars")
        p.send_signal(signal.SIGTERM)
        t.eq(p.wait(30), 0, "CLI: exits 0 on SIGTERM")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()

t.done()
