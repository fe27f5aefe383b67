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

from harness import wait_for  # noqa: E402
from tap import Tap  # noqa: E402
from moodle_double import MoodleDouble, max_concurrency, php_parse_form  # noqa: E402

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

    # Moodle down or closed (moodle-ws 32*): nothing is done, whatever the call.
    d.set_fault("dbdown", count=-1)
    s, h, b = ws(d, "enrol_manual_enrol_users", enrol_pairs([{"roleid": 5, "userid": ctl_ids[6],
                                                              "courseid": ctl1}]))
    t.ok(s == 200 and json.loads(b)["errorcode"] == "dbconnectionfailed"
         and b'"message":"<p>Error: Database connection failed<\\/p>' in b,
         "dbdown: HTTP 200, dbconnectionfailed, HTML in the message (32b)", b)
    t.eq(wsj(d, "core_course_create_courses", [("courses[0][fullname]", "Down"),
                                              ("courses[0][shortname]", "DOWN1"),
                                              ("courses[0][categoryid]", "1")])["errorcode"],
         "dbconnectionfailed", "dbdown: every function (32d)")
    d.clear_faults()
    t.ok("ctl06" not in enrolled(d, "CTL1") and "DOWN1" not in
         [c["shortname"] for c in d.state()["courses"]], "dbdown changes nothing")
    d.set_fault("maintenance")
    s, h, b = ws(d, "core_webservice_get_site_info")
    t.ok(s == 503 and h.get("Retry-After") == "300" and b"under maintenance" in b
         and h.get("Content-Type") == "text/html; charset=utf-8",
         "maintenance: 503, Retry-After and Moodle's page (32e)", (s, h, b[:80]))
    d.set_fault("http504")
    t.eq(site_info_status(), 504, "http504")
    d.set_fault("cacherace", function="core_user_get_users_by_field")
    t.eq(wsj(d, "core_user_get_users_by_field", [("field", "username"),
                                                 ("values[0]", "ctl00")])["errorcode"],
         "ex_configcannotsave", "cacherace (32k)")
    t.eq(len(wsj(d, "core_user_get_users_by_field", [("field", "username"),
                                                     ("values[0]", "ctl00")])), 1,
         "cacherace: the same call answers when sent again")
    # An outage that ends by itself: duration seconds from its first answer.
    d.set_fault("dbdown", count=-1, after=1, duration=0.5)
    t.eq(site_info_status(), 200, "duration: after=1 lets the first through")
    first = time.monotonic()
    t.eq(wsj(d, "core_webservice_get_site_info").get("errorcode"), "dbconnectionfailed",
         "duration: then the outage")
    statuses = []
    deadline = first + 10
    while time.monotonic() < deadline:
        j = wsj(d, "core_webservice_get_site_info")
        statuses.append(j.get("errorcode"))
        if j.get("errorcode") is None:
            break
    t.ok(statuses[-1] is None and time.monotonic() - first >= 0.5,
         "duration: the outage ends by itself after 0.5 s", statuses[-3:])
    t.eq(d.faults, [], "duration: the spent fault is gone")

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

# --- helpers for the blocks below ------------------------------------------------------
def wait_until(cond, what):
    return wait_for(cond, timeout=30.0, what=what, interval=0.005)


def options(*opts):
    pairs = []
    for i, (k, v) in enumerate(opts):
        pairs += [("options[%d][name]" % i, k), ("options[%d][value]" % i, v)]
    return pairs


def enrolled_users(dd, courseid, *opts, token=None):
    return wsj(dd, "core_enrol_get_enrolled_users", [("courseid", courseid)] + options(*opts),
               token=token)


def ids(r):
    return [u["id"] for u in r] if isinstance(r, list) else r


def started(dd, mark):
    """Requests since log entry mark that a worker has taken (log read first: one
    that ends in between is missed, never counted twice)."""
    done = sum(1 for e in dd.log(since=mark) if e["start"] is not None)
    return done + sum(1 for a in dd.inflight() if a["start"] is not None)


def send_in_turn(dd, calls):
    """Send the calls [(function, pairs)] from threads, each once the one before it
    runs in the double; wait for every answer. Returns [(status, body)] and the
    log entries of these calls in arrival order."""
    mark = len(dd.log())
    answers = [None] * len(calls)

    def go(i, fn, pairs):
        try:
            s, _, b = ws(dd, fn, pairs)
            answers[i] = (s, b)
        except Exception as e:  # reported by the caller's checks
            answers[i] = e

    threads = []
    for i, (fn, pairs) in enumerate(calls):
        th = threading.Thread(target=go, args=(i, fn, pairs))
        th.start()
        threads.append(th)
        wait_until(lambda: answers[i] is not None or started(dd, mark) > i,
                   "call %d to start" % i)
    for th in threads:
        th.join(60)
    wait_until(lambda: len(dd.log()) - mark >= len(calls), "the log entries")
    log = sorted(dd.log(since=mark), key=lambda e: e["seq"])
    return answers, log


def enrol_call(courseid, uids, roleid=5):
    return ("enrol_manual_enrol_users",
            enrol_pairs([{"roleid": roleid, "userid": u, "courseid": courseid} for u in uids]))


DML_WRITE = (b'{"exception":"dml_write_exception","errorcode":"dmlwriteexception",'
             b'"message":"Error writing to database"}')


# --- core_enrol_get_enrolled_users options (enrol/externallib.php, lib/enrollib.php) ---
e = MoodleDouble().start()
try:
    names = [("Ann", "Zed"), ("Bob", "Alpha"), ("Cy", "Alpha"), ("Al", "Alpha"),
             ("Dee", "Moe"), ("Ed", "Moe"), ("Ann", "Zed")]
    u = e.add_users([{"username": "opt%d" % i, "firstname": f, "lastname": n}
                     for i, (f, n) in enumerate(names)])
    oc = e.add_course("OPTS")
    now = int(time.time())
    r = wsj(e, "enrol_manual_enrol_users", enrol_pairs([
        {"roleid": 5, "userid": u[0], "courseid": oc},
        {"roleid": 5, "userid": u[1], "courseid": oc, "suspend": 1},
        {"roleid": 3, "userid": u[2], "courseid": oc},
        {"roleid": 4, "userid": u[3], "courseid": oc, "timestart": now + 86400},
        {"roleid": 5, "userid": u[4], "courseid": oc, "timeend": now - 86400},
        {"roleid": 5, "userid": u[5], "courseid": oc},
        {"roleid": 1, "userid": u[5], "courseid": oc},
        {"roleid": 5, "userid": u[6], "courseid": oc}]))
    t.eq(r, None, "options: eight enrolments")
    every = list(u)
    active = [u[0], u[2], u[5], u[6]]
    t.eq(ids(enrolled_users(e, oc)), every,
         "no option: every enrolment, suspended, not started and ended ones too")
    t.eq(ids(enrolled_users(e, oc, ("onlyactive", "1"))), active,
         "onlyactive: active status, started, not ended")
    t.eq(ids(enrolled_users(e, oc, ("onlyactive", "false"))), active,
         "onlyactive is PHP's !empty(): \"false\" counts as set")
    t.eq(ids(enrolled_users(e, oc, ("onlyactive", "0"))), every, "onlyactive 0: not set")
    t.eq(ids(enrolled_users(e, oc, ("onlysuspended", "1"))), [u[1], u[3], u[4]],
         "onlysuspended: suspended, not started yet, ended")
    r = enrolled_users(e, oc, ("onlyactive", "1"), ("onlysuspended", "1"))
    t.eq(r, {"exception": "coding_exception", "errorcode": "codingerror",
             "message": "Coding error detected, it must be fixed by a programmer: Both "
                        "onlyactive and onlysuspended are set, this is probably not what you "
                        "want!"}, "onlyactive with onlysuspended: get_enrolled_join's error")
    r = enrolled_users(e, oc, ("onlysuspended", "1"), ("userfields", "id,roles"))
    t.eq(r[0], {"id": u[1], "fullname": "Bob Alpha",
                "roles": [{"roleid": 5, "name": "", "shortname": "student", "sortorder": 0}]},
         "a suspended enrolment keeps its roles")
    t.eq([x["roles"] for x in enrolled_users(e, oc, ("userfields", "roles"))
          if x["id"] == u[5]][0],
         [{"roleid": 1, "name": "", "shortname": "manager", "sortorder": 0},
          {"roleid": 5, "name": "", "shortname": "student", "sortorder": 0}],
         "roles: every role in the course, by role order")
    r = enrolled_users(e, oc, ("userfields", " user name, roles "))
    t.eq(sorted(r[0]), ["fullname", "id", "roles", "username"],
         "userfields are PARAM_ALPHANUMEXT-cleaned (\" user name\" is username)")
    r = enrolled_users(e, oc, ("userfields", "username"), ("userfields", "email"))
    t.eq(sorted(r[0]), ["email", "fullname", "id", "username"], "userfields options add up")
    t.eq(ids(enrolled_users(e, oc, ("limitfrom", "-5"), ("limitnumber", "2"))), every[:2],
         "a negative limitfrom counts as 0")
    t.eq(ids(enrolled_users(e, oc, ("limitnumber", "-1"))), every, "a negative limitnumber: all")
    site = [u[3], u[1], u[2], u[4], u[5], u[0], u[6]]
    t.eq(ids(enrolled_users(e, oc, ("sortby", "siteorder"))), site,
         "siteorder: lastname, firstname, id")
    t.eq(ids(enrolled_users(e, oc, ("sortby", "siteorder"), ("sortdirection", "desc"))),
         site[:5] + [u[6], u[0]], "siteorder DESC turns only the id round (users_order_by_sql)")
    t.eq(ids(enrolled_users(e, oc, ("sortby", "firstname"), ("sortdirection", "DESC"))),
         [u[5], u[4], u[2], u[1], u[0], u[6], u[3]], "sortby firstname DESC")
    t.eq(ids(enrolled_users(e, oc, ("nosuchoption", "1"))), every, "an unknown option is ignored")
    r = enrolled_users(e, 999, ("sortby", "name"))
    t.eq(r.get("errorcode"), "invalidparameter",
         "a bad sortby fails before the course is looked up")
    t.eq(enrolled_users(e, 999).get("errorcode"), "invalidrecord", "an unknown course (13c)")
    e.configure(debug=True)
    t.eq(enrolled_users(e, oc, ("sortby", "name")).get("debuginfo"),
         "Invalid value for sortby parameter (value: name),allowed values are: "
         "id,firstname,lastname,siteorder", "sortby: Moodle's debuginfo")
    t.eq(enrolled_users(e, oc, ("sortdirection", "up")).get("debuginfo"),
         "Invalid value for sortdirection parameter\n                        (value: UP),"
         "allowed values are: ASC,DESC", "sortdirection: Moodle's debuginfo")
    e.configure(debug=False)
    t.eq(ids(enrolled_users(e, oc, ("withcapability", "moodle/course:update"))), [u[2], u[5]],
         "withcapability: editingteacher and manager may update the course")
    t.eq(ids(enrolled_users(e, oc, ("withcapability", "mod/assign:submit"))),
         [u[0], u[1], u[4], u[5], u[6]], "withcapability: the students, suspended ones too")
    t.eq(ids(enrolled_users(e, oc, ("withcapability", "mod/assign:submit"),
                            ("onlyactive", "1"))),
         [u[0], u[5], u[6]], "withcapability with onlyactive")
    t.eq(enrolled_users(e, oc, ("withcapability", "local/nosuch:thing")), [],
         "a capability no role has: nobody")
    t.eq(e.log()[-1].get("capability_unmodelled"), "local/nosuch:thing",
         "the log names a capability the double has no roles for")
    t.eq(enrolled_users(e, oc, ("groupid", "3")), [], "groupid: the double has no groups")
    t.eq(ids(enrolled_users(e, oc, ("groupid", "-1"))), every,
         "groupid -1 (users without a group): everybody")
    r = enrolled_users(e, 1, ("userfields", "id"))
    t.eq(ids(r), sorted(x["id"] for x in e.state()["users"]),
         "the frontpage: every user participates")
    t.eq(enrolled_users(e, 1, ("onlysuspended", "1")).get("errorcode"), "codingerror",
         "onlysuspended on the frontpage: codingerror")
finally:
    e.stop()

# --- core_course_get_courses_by_field: category and ids (course/externallib.php) ----------
c2 = MoodleDouble(seed="lab2").start()
try:
    r = wsj(c2, "core_course_create_courses", [
        ("courses[0][fullname]", "Second"), ("courses[0][shortname]", "B2"),
        ("courses[0][categoryid]", 2), ("courses[1][fullname]", "First"),
        ("courses[1][shortname]", "A1"), ("courses[1][categoryid]", 2),
        ("courses[2][fullname]", "Elsewhere"), ("courses[2][shortname]", "X9"),
        ("courses[2][categoryid]", 1)])
    t.eq([(x["id"], x["shortname"]) for x in r], [(4, "B2"), (5, "A1"), (6, "X9")],
         "lab2: new courses from id 4 (30_prep)")
    cat = wsj(c2, "core_course_get_courses_by_field", [("field", "category"), ("value", "2")])
    t.eq([(x["id"], x["shortname"], x["sortorder"], x["categoryname"])
          for x in cat["courses"]],
         [(2, "LABNOMANUAL", 20004, "Imported"), (3, "LABDISABLED", 20003, "Imported"),
          (4, "B2", 20002, "Imported"), (5, "A1", 20001, "Imported")],
         "field=category: every course of it, by id (get_records ... 'id ASC'), as 31a")
    t.eq(cat["courses"][2]["courseimage"].split("/")[-4], "5893",
         "lab2: the first new course has context 5893 (31a)")
    for x in cat["courses"]:
        one = wsj(c2, "core_course_get_courses_by_field", [("field", "shortname"),
                                                           ("value", x["shortname"])])
        t.eq(one["courses"], [x], "field=category gives %s as field=shortname does"
             % x["shortname"])
    t.eq(wsj(c2, "core_course_get_courses_by_field", [("field", "category"),
                                                      ("value", "999")]),
         {"courses": [], "warnings": []}, "an unknown category: empty (31b)")
    r = wsj(c2, "core_course_get_courses_by_field", [("field", "category"), ("value", "x")])
    t.eq([x["id"] for x in r["courses"]], [1],
         "a value PARAM_INT makes 0: category 0, the site course")

    def by_ids(v):
        return wsj(c2, "core_course_get_courses_by_field", [("field", "ids"), ("value", v)])

    t.eq([x["id"] for x in by_ids("5,2,4")["courses"]], [5, 2, 4],
         "field=ids: several ids, in the order asked (validate_courses)")
    t.eq([x["id"] for x in by_ids("4,4,5")["courses"]], [4, 5], "field=ids: duplicates once")
    crash = {"exception": "Error",
             "message": "Attempt to assign property \"contextvalidated\" on null"}
    t.eq(by_ids("4,999,5"), crash, "field=ids with a missing id: PHP's error (05c, 26f)")
    t.eq(by_ids("04"), crash, "field=ids with a leading zero: the same")
    t.eq(by_ids("4,,5").get("errorcode"), "dmlreadexception",
         "field=ids with an empty element: PostgreSQL refuses ''")
    t.eq(wsj(c2, "core_course_get_courses_by_field", [("field", "id"), ("value", "999")]),
         {"courses": [], "warnings": []}, "field=id, missing (05h)")
    t.eq(wsj(c2, "core_course_get_courses_by_field",
             [("field", "sectionid"), ("value", "1")]).get("errorcode"),
         "invalidparameter", "field=sectionid is not a 4.4 field")
    r = enrolled_users(c2, 3, ("userfields", "id"))
    t.eq(r, [], "lab2: LABDISABLED has nobody")
    r = wsj(c2, "core_user_get_users_by_field", [("field", "username"),
                                                 ("values[0]", "00000000023"),
                                                 ("values[1]", "00000000512")])
    t.eq([(x["id"], x["fullname"]) for x in r],
         [(4, "Seed User 00000000023"), (503, "Bulk User 00000000512")],
         "lab2: seed and bulk users where 30f has them")
finally:
    c2.stop()

# --- an administrator's changes (drift) ---------------------------------------------------
dr = MoodleDouble().start()
try:
    du = dr.add_users(["drift1", "drift2"])
    r = wsj(dr, "core_course_create_courses", [("courses[0][fullname]", "Drift"),
                                               ("courses[0][shortname]", "DRIFT"),
                                               ("courses[0][categoryid]", 2)])
    dc = r[0]["id"]
    wsj(dr, "enrol_manual_enrol_users", enrol_pairs([
        {"roleid": 5, "userid": du[0], "courseid": dc},
        {"roleid": 3, "userid": du[1], "courseid": dc}]))
    dr.enrol("DRIFT", "drift2", status="suspended")
    t.eq(enrolled(dr, "DRIFT")["drift2"]["status"], "suspended", "enrol status=suspended on "
         "an existing enrolment suspends it")
    t.eq(enrolled(dr, "DRIFT")["drift2"]["roles"], [3], "... and changes nothing else")
    t.eq(ids(enrolled_users(dr, dc, ("onlyactive", "1"))), [du[0]],
         "the suspended enrolment is left out with onlyactive")
    t.eq([x["roles"][0]["roleid"] for x in enrolled_users(dr, dc, ("userfields", "roles"))],
         [5, 3], "... and listed with its role without it")
    s_, r = control(dr, "/__double/enrol", {"shortname": "DRIFT", "username": "drift2"})
    t.eq((s_, enrolled(dr, "DRIFT")["drift2"]), (200, {"userid": du[1], "username": "drift2",
                                                       "status": "active", "roles": [3]}),
         "POST /__double/enrol without roleid re-activates, roles unchanged")
    dr.suspend("DRIFT", "drift1")
    t.eq(enrolled(dr, "DRIFT")["drift1"]["status"], "suspended", "suspend()")
    dr.enrol("DRIFT", "drift1", roleid=4)
    t.eq((enrolled(dr, "DRIFT")["drift1"]["status"], enrolled(dr, "DRIFT")["drift1"]["roles"]),
         ("active", [4, 5]), "enrol with a roleid on an existing enrolment adds the role")
    dr.unassign_role("DRIFT", "drift1", 5)
    t.eq(enrolled(dr, "DRIFT")["drift1"]["roles"], [4], "unassign_role: the role goes")
    s_, r = control(dr, "/__double/unassign_role", {"shortname": "DRIFT",
                                                    "username": "drift1", "roleid": 4})
    t.ok(s_ == 200 and enrolled(dr, "DRIFT")["drift1"]["roles"] == [],
         "POST /__double/unassign_role: an enrolment without a role stays")
    s_, r = control(dr, "/__double/assign_role", {"shortname": "DRIFT",
                                                  "username": "drift1", "roleid": 5})
    t.eq(enrolled(dr, "DRIFT")["drift1"]["roles"], [5], "POST /__double/assign_role")
    before = wsj(dr, "core_course_get_courses_by_field",
                 [("field", "id"), ("value", dc)])["courses"][0]
    dr.update_course("DRIFT", fullname="Drifted <b>away</b>")
    s_, r = control(dr, "/__double/update_course", {"shortname": "DRIFT", "visible": 0})
    after = wsj(dr, "core_course_get_courses_by_field",
                [("field", "id"), ("value", dc)])["courses"][0]
    t.eq((s_, after["fullname"], after["displayname"], after["visible"]),
         (200, "Drifted away", "Drifted away", 0),
         "update_course and POST /__double/update_course: renamed and hidden")
    t.ok(after["timemodified"] >= before["timemodified"], "the course's timemodified moves")
    t.eq(control(dr, "/__double/update_course", {"shortname": "DRIFT", "fullname": " "})[0],
         400, "a course without a full name is refused")
    dr.clear_log()
    gone = dr.delete_course("DRIFT")
    t.eq(gone, dc, "delete_course returns the id")
    st = dr.state()
    t.ok("DRIFT" not in [x["shortname"] for x in st["courses"]], "delete_course: it is gone")
    t.ok(set(du) <= set(st["dirty_users"]), "its unenrolments marked the users dirty")
    t.eq(wsj(dr, "core_course_get_courses_by_field", [("field", "id"), ("value", dc)]),
         {"courses": [], "warnings": []}, "a deleted course is not found by id")
    t.eq(wsj(dr, "core_course_get_courses_by_field", [("field", "shortname"),
                                                      ("value", "DRIFT")]),
         {"courses": [], "warnings": []}, "... nor by shortname")
    t.eq(wsj(dr, "enrol_manual_enrol_users", enrol_pairs([
        {"roleid": 5, "userid": du[0], "courseid": dc}])).get("errorcode"), "invalidparameter",
        "enrolling into a deleted course: invalidparameter (10c)")
    t.eq(enrolled_users(dr, dc).get("errorcode"), "invalidrecord",
         "listing a deleted course: invalidrecord")
    t.eq([x["coursecount"] for x in st["categories"] if x["id"] == 2], [2],
         "the category counts one course less")
    s_, r = control(dr, "/__double/delete_course", {"shortname": "DRIFT"})
    t.eq(s_, 400, "POST /__double/delete_course of an unknown course: 400")
    dr.add_course("DRIFT2")
    s_, r = control(dr, "/__double/delete_course", {"shortname": "DRIFT2"})
    t.ok(s_ == 200 and r["id"] > dc, "POST /__double/delete_course; ids are not reused")
finally:
    dr.stop()


# --- calls under way: deadlocks, waits, blocked re-sends (README, 30a-30f) ---------------
cc = MoodleDouble(cost={"call": 0.5, "item": 0.005}).start()
try:
    cu = cc.add_users(["cc%03d" % i for i in range(80)])
    made = wsj(cc, "core_course_create_courses", [
        x for i in range(8) for x in (("courses[%d][fullname]" % i, "Conc %d" % i),
                                      ("courses[%d][shortname]" % i, "CC%d" % i),
                                      ("courses[%d][categoryid]" % i, 1))])
    K = [x["id"] for x in made]
    first = cu[:20]
    t.eq(cc.state()["dirty_users"], [], "no user's access is dirty yet")

    # 30a/30b: the same users, flags not there yet: both commit, the later waits.
    ans, log = send_in_turn(cc, [enrol_call(K[0], first), enrol_call(K[1], first[::-1])])
    t.eq([a[1] for a in ans], [b"null", b"null"], "no flags yet: both calls succeed (30a/30b)")
    t.eq(max_concurrency(log), 2, "they were under way together")
    t.eq((log[0]["waited_for"], log[1]["waited_for"]), ([], [log[0]["seq"]]),
         "the later one waited for the earlier one")
    t.ok(log[1]["end"] >= log[0]["end"], "... and ended after it")
    t.eq((len(enrolled(cc, "CC0")), len(enrolled(cc, "CC1"))), (20, 20), "both committed")
    t.ok(set(first) <= set(cc.state()["dirty_users"]),
         "each enrolment set the user's dirty flag")

    # 30d/30e: now the flags exist: the later call is the deadlock victim.
    ans, log = send_in_turn(cc, [enrol_call(K[2], first), enrol_call(K[3], first[::-1])])
    t.eq(max_concurrency(log), 2, "under way together again")
    t.eq([a[1] for a in ans], [b"null", DML_WRITE],
         "flags exist: the later call gets Moodle's dmlwriteexception, HTTP %d" % ans[1][0])
    t.eq((ans[1][0], log[1]["deadlock"], log[1]["deadlock_with"], log[1]["conflict"],
          log[1]["errorcode"], log[1]["committed"]),
         (200, True, log[0]["seq"], "deadlock", "dmlwriteexception", False),
         "the log: deadlock, with whom, nothing committed")
    t.eq((log[0]["deadlock"], log[0]["committed"]), (False, True), "the other one committed")
    t.eq((len(enrolled(cc, "CC2")), len(enrolled(cc, "CC3"))), (20, 0),
         "the victim's whole batch was rolled back (30f)")
    t.eq(cc.stats()["deadlocks"], 1, "stats: one deadlock")

    # One shared user is enough under the default rule.
    ans, log = send_in_turn(cc, [enrol_call(K[3], first[:10]),
                                 enrol_call(K[4], cu[40:49] + [first[9]])])
    t.eq([a[1] for a in ans], [b"null", DML_WRITE], "one shared user with a flag: deadlock")
    t.eq(len(enrolled(cc, "CC4")), 0, "... the victim's batch is not applied")

    # Users with flags, but no user in both calls: no deadlock, no wait.
    wsj(cc, "enrol_manual_enrol_users", enrol_pairs(
        [{"roleid": 5, "userid": x, "courseid": K[5]} for x in cu[20:40]]))
    ans, log = send_in_turn(cc, [enrol_call(K[6], cu[20:30]), enrol_call(K[7], cu[30:40])])
    t.eq([a[1] for a in ans], [b"null", b"null"], "flags but no shared user: both succeed")
    t.eq((max_concurrency(log), log[1]["waited_for"], log[1]["deadlock"]), (2, [], False),
         "under way together, nobody waited")

    # Unenrolment marks the user dirty too.
    ans, log = send_in_turn(cc, [("enrol_manual_unenrol_users", enrol_pairs(
        [{"userid": x, "courseid": K[6]} for x in cu[20:25]])), enrol_call(K[4], cu[20:25])])
    t.eq([a[1] for a in ans], [b"null", DML_WRITE],
         "an unenrolment and an enrolment of the same users: deadlock")
    # Role assignments mark the user dirty as well.
    ans, log = send_in_turn(cc, [("core_role_assign_roles", [
        ("assignments[0][roleid]", 4), ("assignments[0][userid]", first[0]),
        ("assignments[0][contextlevel]", "course"), ("assignments[0][instanceid]", K[1])]),
        enrol_call(K[5], first[:3])])
    t.eq([a[1] for a in ans], [b"null", DML_WRITE],
         "a role assignment and an enrolment of the same user: deadlock")
    # Re-enrolling as before changes nothing, marks nobody: no conflict.
    ans, log = send_in_turn(cc, [enrol_call(K[0], first), enrol_call(K[1], first)])
    t.eq([a[1] for a in ans], [b"null", b"null"],
         "enrolments that change nothing take no lock: both succeed")

    # Rule "order": PostgreSQL's cycle.
    s_, r = control(cc, "/__double/config", {"deadlock_rule": "order"})
    t.eq(cc.info()["deadlock_rule"], "order", "POST /__double/config deadlock_rule")
    ans, log = send_in_turn(cc, [("enrol_manual_unenrol_users", enrol_pairs(
        [{"userid": x, "courseid": K[2]} for x in first])),
        ("enrol_manual_unenrol_users", enrol_pairs(
            [{"userid": x, "courseid": K[0]} for x in first]))])
    t.eq([a[1] for a in ans], [b"null", b"null"],
         "rule order: the same users in the same order: both succeed")
    t.eq(log[1]["waited_for"], [log[0]["seq"]], "... the later one waited")
    ans, log = send_in_turn(cc, [enrol_call(K[2], first), enrol_call(K[0], first[::-1])])
    t.eq([a[1] for a in ans], [b"null", DML_WRITE], "rule order: opposite orders: deadlock")
    cc.configure(deadlock_rule="overlap")
    t.eq(control(cc, "/__double/config", {"deadlock_rule": "random"})[0], 400,
         "an unknown deadlock rule: 400")
finally:
    cc.stop()

# --- cost model: php-fpm workers ------------------------------------------------------
w = MoodleDouble(workers=2, cost={"call": 0.4, "item": 0.0}).start()
try:
    t.eq((w.info()["workers"], w.info()["cost"]), (2, {"call": 0.4, "item": 0.0}),
         "workers and cost from the constructor")
    got = []
    threads = [threading.Thread(target=lambda: got.append(
        ws(w, "core_webservice_get_site_info")[0])) for _ in range(5)]
    for th in threads:
        th.start()
    def two_and_three():
        s = w.stats()
        return s if (s["running"], s["queued"]) == (2, 3) else None

    st_ = wait_until(two_and_three, "two running, three queued")
    t.eq((st_["running"], st_["queued"]), (2, 3), "two workers: two run, three queue")
    t.eq(sorted(a["state"] for a in w.inflight()), ["queued"] * 3 + ["running"] * 2,
         "inflight() shows who waits for a worker")
    for th in threads:
        th.join(30)
    log = sorted(w.log(), key=lambda e: e["seq"])
    t.eq((got, max_concurrency(log), w.stats()["max_running"]), ([200] * 5, 2, 2),
         "all answered, never more than two at once")
    starts = [e["start"] for e in log]
    t.eq(starts, sorted(starts), "first come, first served")
    t.ok(all(log[k]["start"] >= min(x["end"] for x in log[:k]) for k in range(2, 5)),
         "a queued request starts only once an earlier one has ended")
    s_, r = control(w, "/__double/config", {"workers": None, "cost": None})
    t.eq((s_, w.info()["workers"], w.info()["cost"]), (200, None, None),
         "POST /__double/config: workers and cost off")
    for bad in ({"workers": 0}, {"cost": {"call": -1}}, {"cost": {"bogus": 1}}, {"cost": 3}):
        t.eq(control(w, "/__double/config", bad)[0], 400, "config refused: %s" % bad)
    w.configure(workers=1, cost={"item": 0.01})
    t.eq((w.workers, w.cost), (1, {"call": 0.0, "item": 0.01}), "configure(workers, cost)")
    w.reset()
    t.eq((w.workers, w.cost), (2, {"call": 0.4, "item": 0.0}), "reset: back to the constructor's")
finally:
    w.stop()

# --- cost model of a real Moodle 4.4 (model=) ------------------------------------------
def create_pairs(names, cat):
    out = []
    for i, sn in enumerate(names):
        out += [("courses[%d][fullname]" % i, sn), ("courses[%d][shortname]" % i, sn),
                ("courses[%d][categoryid]" % i, cat)]
    return out


md = MoodleDouble(model={"scale": 0.01}).start()
try:
    t.eq(md.info()["model"], {"scale": 0.01, "welcome": True}, "model from the constructor")
    cat = md.add_category("Model")

    def modelled(function):
        return [e["modelled"] for e in md.log() if e["function"] == function][-1]

    wsj(md, "core_course_create_courses", create_pairs(["M%03d" % i for i in range(30)], cat))
    first = modelled("core_course_create_courses")
    wsj(md, "core_course_create_courses",
        create_pairs(["N%03d" % i for i in range(30)], cat))
    second = modelled("core_course_create_courses")
    t.ok(abs(first - 0.01 * (0.1 + 0.031 * 30)) < 1e-9,
         "30 courses into an empty category: 0.1 + 30 x 0.031 s, scaled", first)
    t.ok(second > first, "the next 30 cost more: the category holds 30 now",
         (first, second))
    # At 1,800 courses a course costs least in calls of about 10 to 30 (issue 16).
    import moodle_double as mdm
    per = {k: mdm.model_create_seconds(k, 1800) / k for k in (1, 10, 30, 100)}
    t.ok(per[10] < per[1] and per[30] < per[1] and per[30] < per[100],
         "per course, calls of 10-30 beat calls of 1 and of 100 in a full category", per)
    t.ok(60 <= mdm.model_create_seconds(100, 1500) <= 70,
         "100 courses into 1,500: 60-70 s as measured (64.9-67.7)")
    wsj(md, "core_course_get_courses_by_field", [("field", "category"), ("value", cat)])
    listing = modelled("core_course_get_courses_by_field")
    wsj(md, "core_course_get_courses_by_field", [("field", "shortname"), ("value", "M000")])
    lookup = modelled("core_course_get_courses_by_field")
    t.ok(abs(listing - 0.01 * (0.03 + 60 * 0.015)) < 1e-9,
         "listing a category of 60: 15 ms a course", listing)
    t.ok(abs(lookup - 0.01 * 0.075) < 1e-9, "a look-up by shortname: 75 ms", lookup)
    mu = md.add_users(["mod%d" % i for i in range(10)])
    cid = md.state()["courses"][-1]["id"]
    items = [{"roleid": 5, "userid": u, "courseid": cid} for u in mu[:5]]
    wsj(md, "enrol_manual_enrol_users", enrol_pairs(items))
    on = modelled("enrol_manual_enrol_users")
    md.configure(model={"scale": 0.01, "welcome": False})
    items = [{"roleid": 5, "userid": u, "courseid": cid} for u in mu[5:]]
    wsj(md, "enrol_manual_enrol_users", enrol_pairs(items))
    off = modelled("enrol_manual_enrol_users")
    t.ok(abs(on - 0.01 * (0.03 + 5 * 0.011)) < 1e-9 and
         abs(off - 0.01 * (0.03 + 5 * 0.006)) < 1e-9,
         "an enrolment: 11 ms with the welcome message, 6 ms without", (on, off))
    wsj(md, "core_user_get_users_by_field", [("field", "username")] +
        [("values[%d]" % i, "mod%d" % i) for i in range(10)])
    t.ok(abs(modelled("core_user_get_users_by_field") - 0.01 * (0.03 + 10 * 0.003)) < 1e-9,
         "a user look-up: 3 ms a name")
    # Concurrent creates are served one at a time, without holding a worker.
    md.configure(model={"scale": 1.0})
    md.clear_log()
    answers = []
    threads = [threading.Thread(target=lambda k=k: answers.append(wsj(
        md, "core_course_create_courses", create_pairs(["P%d" % k], cat))))
        for k in range(3)]
    for th in threads:
        th.start()
    t.eq(wsj(md, "core_webservice_get_site_info")["siteid"], 1,
         "other calls run meanwhile")
    for th in threads:
        th.join(30)
    creates = sorted((e for e in md.log() if e["function"] == "core_course_create_courses"),
                     key=lambda e: e["start"])
    t.eq(len([a for a in answers if isinstance(a, list)]), 3, "three creates answered")
    t.ok(all(creates[k]["start"] >= creates[k - 1]["end"] for k in (1, 2)),
         "concurrent creates ran one after another",
         [(e["start"], e["end"]) for e in creates])
    for bad in ({"model": {"scale": 0}}, {"model": {"bogus": 1}}, {"model": 3}):
        t.eq(control(md, "/__double/config", bad)[0], 400, "config refused: %s" % bad)
    md.reset()
    t.eq(md.info()["model"], {"scale": 0.01, "welcome": True}, "reset: the constructor's model")
finally:
    md.stop()

# --- late commit: a request outlives its client (README) --------------------------------
lc = MoodleDouble().start()
try:
    lu = lc.add_users(["late%d" % i for i in range(4)])
    lcid = lc.add_course("LATE")
    batch = enrol_pairs([{"roleid": 5, "userid": x, "courseid": lcid} for x in lu[:2]])
    lc.set_fault("latecommit", seconds=1.5, function="enrol_manual_enrol_users")
    conn = http.client.HTTPConnection("127.0.0.1", lc.port, timeout=0.3)
    body = form([("wstoken", lc.token), ("wsfunction", "enrol_manual_enrol_users"),
                 ("moodlewsrestformat", "json")] + batch).encode()
    try:
        conn.request("POST", "/webservice/rest/server.php", body,
                     {"Content-Type": "application/x-www-form-urlencoded"})
        conn.getresponse().read()
        t.ok(False, "latecommit: the client gave up first")
    except (TimeoutError, OSError) as ex:
        t.ok(True, "latecommit: the client gave up first (%s)" % type(ex).__name__)
    finally:
        conn.close()  # the client is gone; Moodle goes on
    t.eq([a["state"] for a in lc.inflight()], ["running"], "the call is still under way")
    t.eq(enrolled_users(lc, lcid), [], "a check in between sees nothing")
    mark = len(lc.log())
    resent = []
    th = threading.Thread(target=lambda: resent.append(
        ws(lc, "enrol_manual_enrol_users", batch)[2]))
    th.start()
    try:
        blocked = wait_until(lambda: [a["state"] for a in lc.inflight()] == ["running",
                                                                               "waiting"],
                             "the re-sent batch to block")
    except TimeoutError as ex:
        blocked = ex
    t.eq(blocked, True, "the batch re-sent in between blocks on the first one's rows")
    th.join(30)
    t.eq(resent, [DML_WRITE], "... and fails once the first commits (README)")

    def enrols():
        return sorted((x for x in lc.log() if x["function"] == "enrol_manual_enrol_users"),
                      key=lambda x: x["seq"])

    log = wait_until(lambda: enrols() if len(enrols()) == 2 else None, "both log entries")
    t.eq([(x["fault"], x["committed"], x["conflict"]) for x in log],
         [("latecommit", True, None), (None, False, "duplicate")],
         "the log: the late call committed, the re-sent one failed on a duplicate")
    t.eq(log[1]["waited_for"], [log[0]["seq"]], "the re-sent one waited for the first")
    t.eq(ids(enrolled_users(lc, lcid)), lu[:2], "the late batch is there, once")
    t.eq(lc.stats()["duplicates"], 1, "stats: one duplicate")

    # The other php-fpm pool of the same site sees the same calls under way.
    pool2 = MoodleDouble(max_input_vars=1000, site=lc.site).start()
    try:
        l9 = lc.add_users(["late9"])[0]
        other = enrol_pairs([{"roleid": 5, "userid": l9, "courseid": lcid}])
        lc.set_fault("latecommit", seconds=1.0, function="enrol_manual_enrol_users")
        got2 = []
        th = threading.Thread(target=lambda: got2.append(
            ws(lc, "enrol_manual_enrol_users", other)[2]))
        th.start()
        wait_until(lambda: lc.inflight(), "the late call to run")
        t.eq(ws(pool2, "enrol_manual_enrol_users", other)[2], DML_WRITE,
             "the same batch through the other pool blocks and fails too")
        th.join(30)
        t.eq(got2, [b"null"], "... and the late one commits")
    finally:
        pool2.stop()

    # If the first one fails instead, the re-sent batch goes through.
    bad = enrol_pairs([{"roleid": 5, "userid": x, "courseid": lcid}
                       for x in lu[2:] + [99999]])
    good = enrol_pairs([{"roleid": 5, "userid": x, "courseid": lcid} for x in lu[2:]])
    lc.set_fault("latecommit", seconds=0.8, function="enrol_manual_enrol_users")
    ans, log = send_in_turn(lc, [("enrol_manual_enrol_users", bad),
                                 ("enrol_manual_enrol_users", good)])
    t.eq([json.loads(a[1]) and json.loads(a[1]).get("errorcode") for a in ans],
         ["codingerror", None], "the first fails late (user 99999), the re-sent one succeeds")
    t.eq((log[1]["waited_for"], log[1]["committed"]), ([log[0]["seq"]], True),
         "... after waiting for it")
    t.eq(ids(enrolled_users(lc, lcid)), lu + [l9], "all enrolled")
    lc.set_fault("latecommit", seconds=0.5, function="core_course_get_courses_by_field")
    s_, h, b = ws(lc, "core_course_get_courses_by_field", [("field", "id"), ("value", lcid)])
    t.eq((s_, json.loads(b)["courses"][0]["id"]), (200, lcid), "latecommit on a read: answers")
finally:
    lc.stop()

# --- the command line ----------------------------------------------------------------
with tempfile.TemporaryDirectory() as tmp:
    port_file = os.path.join(tmp, "port")
    token_file = os.path.join(tmp, "token")
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "moodle_double.py"), "--port", "0",
                          "--port-file", port_file, "--token-file", token_file,
                          "--max-input-vars", "1000", "--users", "cli1,cli2",
                          "--seed", "lab2", "--workers", "2", "--cost", "0,0.001"],
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
        t.eq((info["seed"], info["workers"], info["cost"]),
             ("lab2", 2, {"call": 0.0, "item": 0.001}), "CLI: --seed, --workers, --cost")
        p.send_signal(signal.SIGTERM)
        t.eq(p.wait(30), 0, "CLI: exits 0 on SIGTERM")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()

t.done()
