#!/usr/bin/env python3
"""In-memory stand-in for the REST web services of Moodle 4.4 (see moodle-ws/).

It answers the way the Moodle recorded in tests/data/moodle-ws answered, byte for
byte where those recordings show it (tests/moodle-double/test_replay.py checks
all of them): PHP's form parsing with its max_input_vars cut, HTTP-200 error
bodies, all-or-nothing batches, username cleaning, tokens and their service's
function list, the wwwroot redirect, XML when moodlewsrestformat is missing,
calls under way at the same time (deadlocks, blocked re-sends, php-fpm
workers), and an administrator's changes behind the client's back. It also
injects faults on request.

Seeds (seed=...), each the site of one recording session:
  "lab1" (default; 00-27): users guest 1, admin 2, 00000000023/069/074/076/078
    = 3..7 ("Student N<username>"), wsclient 8 (new users from 9); categories 1
    "Category 1", 2 "Lab Category" (LABCAT); site course 1 (shortname
    "moodlelab", format "site"), LAB-NOMANUAL 2 (no manual instance),
    LAB-MANUALOFF 3 (manual instance disabled); new courses from 4 with an
    enabled manual instance, first context 20.
  "lab2" (30*, 31*, a fresh install): guest 1, admin 2, wsclient 3 (an
    assumption: id 3 is not in the recordings), 00000000023/069/074/076/078 =
    4..8 ("Seed User <username>"), 5867 bulk users 9..5875 named by eleven
    digits ("Bulk User <username>": 1, 2, ... without the five seed numbers,
    077, 087 and multiples of 50; 30f shows ids 9..503 and only full names: the
    split into firstname "Seed"/"Bulk" and lastname is assumed); categories 1,
    2 "Imported" (its idnumber and description are not recorded: empty);
    LABNOMANUAL 2 (no manual instance), LABDISABLED 3 (disabled),
    both "moodlelab fixture" courses as 31a shows them; new courses from 4,
    first context 5893 (31a: every user has a context, as user_create_user()
    makes one).
Roles 1 manager, 3 editingteacher, 4 teacher, 5 student.

Python API (tests/moodle-double on sys.path):

    from moodle_double import MoodleDouble
    d = MoodleDouble(max_input_vars=5000, seed="lab1", cost=None, workers=None,
                     model=None)
    d.start()                               # returns d; also a context manager
    d.url, d.port            # "http://127.0.0.1:PORT" (the wwwroot), PORT
    d.token                  # admin (user 2): every function, may give roles 1,3,4,5
    d.wsclient_token         # wsclient: every function, roles 3,4,5 only
    d.limited_token          # wsclient, service without enrol_manual_unenrol_users
                             #   and core_role_unassign_roles
    MoodleDouble(max_input_vars=1000, site=d.site)  # a second server (php-fpm
                             #   pool) on the same site: own max_input_vars,
                             #   cost and workers, shared database

  An administrator's changes (as Moodle's own API makes them, committed at once;
  each marks the user's access dirty where Moodle does; ValueError if Moodle
  would not have it):
    d.add_users(["u1", {"username": "u2", "firstname": "A"}]) -> [ids]
    d.add_course("SN", fullname=None, manual="enabled", visible=1, categoryid=1,
                 idnumber="") -> id
    d.add_category("Name", idnumber=None) -> id
    d.enrol("SN", "u1", roleid=None, status="active")
        # new enrolment: that status, role roleid (student if None); existing
        # enrolment: the status changes, nothing else (roleid, if given, is
        # added as enrol_user() would)
    d.suspend("SN", "u1")                   # = enrol(..., status="suspended")
    d.unenrol("SN", "u1")                   # the enrolment and every role in it
    d.assign_role("SN", "u1", roleid); d.unassign_role("SN", "u1", roleid)
        # in the course context; the enrolment stays
    d.update_course("SN", fullname=None, visible=None)   # rename, hide/show
    d.delete_course("SN") -> id             # with its enrolments and roles
  Faults and settings:
    d.set_fault(mode, count=1, function=None, after=0, seconds=None, body=None,
                status=200, duration=None)
    d.clear_faults()
    d.configure(max_input_vars=None, ws_enabled=None, debug=None,
                display_startup_errors=None, cost=<keep>, workers=<keep>,
                deadlock_rule=None)
        # cost: None (off) or {"call": s, "item": s}; workers: None (unlimited)
        # or N; deadlock_rule: "overlap" (default) or "order" (below);
        # model: None (off) or {"scale": s, "welcome": bool}: a real Moodle
        # 4.4's costs per function (MODEL_*, below), in place of cost
  Looking:
    d.state(); d.log(since=0); d.clear_log(); d.inflight(); d.stats()
    d.reset(); d.stop()
    moodle_double.max_concurrency(log) -> most requests running at once

The same over HTTP for a double in another process (JSON bodies; 400 with
{"error"} on a bad request):
    POST /__double/fault    {"mode": M, "count": N=1 (-1: until cleared),
                             "function": wsfunction filter, "after": K=0 matching
                             requests let through first, "seconds": S=1 (delay),
                             "body": B (error), "status": HTTP=200 (error),
                             "duration": D (the fault lasts D seconds from the first
                             request it answers, then is gone: an outage that ends
                             mid-run; with count -1 it answers all in between)}
                            Faults stack; the first armed one that matches fires.
        none            clear all faults
        http500/502/503/504 that status, an nginx HTML body, nothing done (502:
                        PHP-FPM is down behind nginx, 32g/32h)
        reset           the connection is reset (RST) without an answer
        delay           sleep S seconds (before a worker is taken), then answer
        latecommit      the call works S seconds longer before it commits, whether
                        or not its client is still there (README: a request
                        outlives its client); until then it is under way (below)
        sitemaintenance {"errorcode":"sitemaintenance"} error, nothing done (maintenance
                        set from the admin pages, 32i/32j)
        maintenance     HTTP 503 and Moodle's maintenance page, nothing done (set from
                        the CLI, 32e/32f)
        dbdown          the dbconnectionfailed error of a stopped database, nothing
                        done, whatever the call (32a-32d)
        cacherace       the ex_configcannotsave error, answered by a worker, the call
                        not run (one of the first calls after a cache purge, 32k)
        mailfail        do the call, then answer the 08*_MAILFAIL error
        garbage         200, application/json, a body that is not JSON
        html            200, text/html login page
        nulllist        200, body null
        invalidtoken    the invalidtoken error
        error           200 (or "status") with B: a JSON object, or raw text
    POST /__double/config   {"max_input_vars": N, "ws_enabled": b, "debug": b (adds
                             "debuginfo" like 26*), "display_startup_errors": b (27b),
                             "cost": null|{"call": s, "item": s}, "workers": null|N,
                             "deadlock_rule": "overlap"|"order",
                             "model": null|{"scale": s, "welcome": b}}
    POST /__double/users    {"users": [{"username": "x", "firstname", "lastname",
                             "email", "idnumber"}]} -> {"users": [{"id","username"}]}
    POST /__double/courses  {"courses": [{"shortname", "fullname", "manual":
                             enabled|disabled|none, "visible", "idnumber",
                             "categoryid"}]} -> {"courses": [{"id","shortname"}]}
    POST /__double/enrol    {"shortname","username","roleid" (optional),
                             "status":active|suspended}           (as d.enrol)
    POST /__double/unenrol  {"shortname","username"}
    POST /__double/assign_role, /__double/unassign_role
                            {"shortname","username","roleid"}
    POST /__double/update_course {"shortname", "fullname", "visible"} (both optional)
    POST /__double/delete_course {"shortname"} -> {"id"}
    POST /__double/reset    back to the seed: state, faults, log, config (tokens stay)
    GET  /__double/state    {"siteid":1, "seed", "courses":[{"id","shortname",
                             "fullname","idnumber","categoryid","visible","format",
                             "manual","enrolments":[{"userid","username","status",
                             "roles"}], "roles_without_enrolment":[{"userid",
                             "username","roles"}]}], "users":[{"id","username"}],
                             "categories":[{"id","name","idnumber","parent",
                             "coursecount"}], "dirty_users":[ids with a flag]}
                             (site course left out)
    GET  /__double/log[?since=N]  one entry per web-service request, in the order
                             they ended: {"function", "items" (records in the main
                             array parameter), "nvars" (variables sent, GET + POST,
                             before the cut), "nvars_post", "nvars_get", "cut" (PHP
                             dropped some), "status" (null: reset), "errorcode",
                             "fault", "format", "already_enrolled" (enrol items that
                             hit an existing enrolment), "seq" (request number, in
                             arrival order, shared by the servers of a site),
                             "arrived", "start" (a worker took it; null if it never
                             got one), "end" (time.monotonic() seconds), "deadlock"
                             (it was a deadlock victim), "deadlock_with" (the other
                             request's seq), "conflict" (null, "deadlock",
                             "duplicate"), "waited_for" (seqs it blocked on),
                             "committed" (write functions: its changes were applied;
                             null for reads), "capability_unmodelled" (a
                             withcapability the double has no roles for)}
    POST /__double/log/clear
    GET  /__double/inflight [{"seq","function","state": queued|running|waiting,
                             "arrived","start"}]: requests this server holds now
    GET  /__double/stats    {"requests","deadlocks","duplicates","max_running" (over
                             the log),"queued","running" (now)}
    GET  /__double/info     {"url","port","token","wsclient_token","limited_token",
                             "max_input_vars","cost","workers","deadlock_rule","seed"}

Calls under way (README "Second recording session", 30a-30f):
  - Cost model, off by default: a request waits for a free php-fpm worker
    (workers=N, first come first served; None: no limit), then takes
    cost["call"] + items x cost["item"] seconds (only "call" when it fails before
    the function runs: token, access, parameters). Its work happens at the end
    of that time: a read reads then, a write commits then. Without cost and
    latecommit every call is atomic, as before.
  - The model= setting (off by default) replaces cost with what a real Moodle
    4.4 spends per function (MODEL_* and model_seconds(), from issue 16's
    measurements), times its scale: listing a category grows with its
    courses, a course create with its category's size and (faster than
    linearly) with the call's size; the enrolment cost depends on the course
    welcome message; and course creates are served one at a time (a site-wide
    lock taken before a worker). Each log entry then has "modelled" (seconds).
  - A write call that marks users' access dirty (enrol, unenrol, role assign
    and unassign: all reach mark_user_dirty(), i.e. set_cache_flag(), for each
    user they change; course and user creation do not) is under way from its
    start to its commit. When it starts, the double compares it with the write
    calls under way (Site.begin_write):
      * it inserts an enrolment (course, user) another one inserts too: it
        blocks until that one ends, then fails with dmlwriteexception if that
        one committed (the user_enrolments unique index), else goes on;
      * it updates the dirty flag of a user another one also updates (the flag
        exists: the user was changed by an earlier committed call): deadlock,
        this later call is the victim. It answers HTTP 200 {"exception":
        "dml_write_exception","errorcode":"dmlwriteexception","message":"Error
        writing to database"} at its end and nothing of it is applied. Rule
        "overlap" (default): any such shared user. Rule "order" (PostgreSQL's
        cycle): only two such users in opposite orders; else it waits for the
        other, as PostgreSQL would make it;
      * it marks dirty a user another one marks dirty and the flag does not
        exist yet: it waits for the other to end before committing (30a/30b).
    Rule "overlap" is stricter than PostgreSQL where the two take the rows in
    the same order (PostgreSQL would serialise them); README: callers that never
    had one user in two calls at once saw no deadlock, and that is what it
    checks. The timing is not modelled: the victim answers at the end of its
    own modelled time, and the survivor is not delayed by it.
  - Reads never wait and see only committed changes (a check made while a
    late commit is pending sees nothing of it).
  - Flags never expire here (Moodle's live $CFG->sessiontimeout, 8 h).

CLI: moodle_double.py [--port N (0: free)] [--port-file F] [--max-input-vars N]
                      [--token-file F (0600)] [--users u1,u2,...] [--verbose]
                      [--seed lab1|lab2] [--workers N] [--cost CALL,ITEM]
                      [--model SCALE[,nowelcome]]
prints "listening on http://127.0.0.1:PORT" once the port file is in place;
SIGTERM or SIGINT stops it (exit 0).
"""

import argparse
import collections
import http.server
import itertools
import json
import os
import re
import secrets
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

RELEASE = "4.4.3+ (Build: 20240910)"
VERSION = "2024042203.03"
ENROL_VERSION = "2024042200"
SITENAME = "Moodle Lab"
SITE_SHORTNAME = "moodlelab"
SITEID = 1
THEMEREV = 1795557073
REST_PATH = "/webservice/rest/server.php"

SERVICE_FUNCTIONS = (
    "core_webservice_get_site_info", "core_course_create_courses",
    "core_course_update_courses", "core_course_get_courses_by_field",
    "core_course_get_categories", "core_user_get_users_by_field",
    "core_user_create_users", "enrol_manual_enrol_users",
    "enrol_manual_unenrol_users", "core_enrol_get_enrolled_users",
    "core_role_assign_roles", "core_role_unassign_roles")
# Functions that change the site; LOCKING_FUNCTIONS mark users' access dirty
# (mark_user_dirty: set_cache_flag) and so take part in Site.begin_write().
WRITE_FUNCTIONS = frozenset((
    "core_course_create_courses", "core_course_update_courses", "core_user_create_users",
    "enrol_manual_enrol_users", "enrol_manual_unenrol_users", "core_role_assign_roles",
    "core_role_unassign_roles"))
LOCKING_FUNCTIONS = frozenset((
    "enrol_manual_enrol_users", "enrol_manual_unenrol_users", "core_role_assign_roles",
    "core_role_unassign_roles"))
LIMITED_MISSING = ("enrol_manual_unenrol_users", "core_role_unassign_roles")

# Functions a real Moodle knows but the lab service does not carry: calling one
# gives accessexception (18), any other name invalidrecord (17a).
OTHER_MOODLE_FUNCTIONS = frozenset((
    "core_user_delete_users", "core_user_update_users", "core_user_get_users",
    "core_course_get_courses", "core_course_delete_courses",
    "core_course_create_categories", "core_course_search_courses",
    "core_enrol_get_users_courses", "core_enrol_get_course_enrolment_methods",
    "core_group_create_groups", "core_group_add_group_members",
    "core_cohort_add_cohort_members", "enrol_self_enrol_user",
    "enrol_guest_get_instance_info", "core_message_send_instant_messages",
    "core_course_get_contents", "core_calendar_get_calendar_events"))

ROLES = {1: "manager", 2: "coursecreator", 3: "editingteacher", 4: "teacher",
         5: "student", 6: "guest", 7: "user", 8: "frontpage"}
ROLES_ADMIN = frozenset((1, 3, 4, 5))       # assignable in a course context
ROLES_WSCLIENT = frozenset((3, 4, 5))       # the wsintegration role (25c)
CONTACT_ROLES = frozenset((3,))             # $CFG->coursecontact

COURSE_FILTERS = [
    {"filter": f, "localstate": 0, "inheritedstate": 1}
    for f in ("displayh5p", "activitynames", "mathjaxloader", "emoticon",
              "urltolink", "mediaplugin")]
TOPICS_FORMAT_OPTIONS = [{"name": "hiddensections", "value": 1},
                         {"name": "coursedisplay", "value": 0},
                         {"name": "indentation", "value": "1"}]
ADVANCED_FEATURES = [
    {"name": n, "value": v} for n, v in (
        ("usecomments", 1), ("usetags", 1), ("enablenotes", 1), ("messaging", 1),
        ("enableblogs", 1), ("enablecompletion", 1), ("enablebadges", 1),
        ("messagingallusers", 0), ("enablecustomreports", 1),
        ("enableglobalsearch", 0), ("mnet_dispatcher_mode", 0),
        ("enablecompetencies", 1))]

FAULT_MODES = ("http500", "http502", "http503", "http504", "reset", "delay", "latecommit",
               "sitemaintenance", "maintenance", "dbdown", "cacherace", "mailfail",
               "garbage", "html", "nulllist", "invalidtoken", "error")

JSON_HEADERS = (
    ("Content-Type", "application/json"),
    ("Cache-Control", "private, must-revalidate, pre-check=0, post-check=0, max-age=0"),
    ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
    ("Pragma", "no-cache"),
    ("Accept-Ranges", "none"),
    ("Access-Control-Allow-Origin", "*"))
XML_HEADERS = (
    ("Content-Type", "application/xml; charset=utf-8"),
    ("Content-Disposition", 'inline; filename="response.xml"')) + JSON_HEADERS[1:]


# ---------------------------------------------------------------------------
# PHP: form decoding into $_GET/$_POST, json_encode, string cleaning

def php_json(value):
    """json_encode() with PHP's defaults: no spaces, \\uXXXX escapes, "\\/"."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/")


_INTKEY = re.compile(r"(?:0|-?[1-9][0-9]{0,18})\Z")


def php_key(s):
    """An array key as PHP stores it: canonical decimal strings become ints."""
    if _INTKEY.match(s):
        v = int(s)
        if -(1 << 63) <= v < (1 << 63):
            return v
    return s


class PArr(dict):
    """A PHP array: ordered, int or string keys, remembers the next free index."""
    __slots__ = ("nfree",)

    def __init__(self):
        super().__init__()
        self.nfree = 0

    def put(self, key, value):
        if key is None:
            key = self.nfree
        if isinstance(key, int) and key >= self.nfree:
            self.nfree = key + 1
        self[key] = value


_SIMPLE_NAME = re.compile(r"([A-Za-z0-9_\-]+)((?:\[[^\[\]]*\])*)\Z")
_BRACKET = re.compile(r"\[([^\[\]]*)\]")


def php_var_path(name):
    """The path php_register_variable_ex() stores a variable under.

    A list of keys from the top-level name down; None stands for "[]" (append).
    None is returned for a variable PHP drops (empty name)."""
    m = _SIMPLE_NAME.match(name)
    if m:
        path = [m.group(1)]
        if m.group(2):
            path.extend(k if k else None for k in _BRACKET.findall(m.group(2)))
        return path
    name = name.lstrip(" ")
    n = len(name)
    i = 0
    base = []
    while i < n and name[i] != "[":
        base.append("_" if name[i] in " ." else name[i])
        i += 1
    if not base:
        return None
    path = ["".join(base)]
    if i == n:
        return path
    first = True
    while True:
        j = i + 1
        if j < n and name[j] == "]":
            idx, close = None, j
        else:
            close = name.find("]", j)
            if close < 0:
                if first:  # not an index: "[" and the rest become part of the name
                    rest = "".join("_" if c in " .[" else c for c in name[i + 1:])
                    return [path[0] + "_" + rest]
                return path
            idx = name[j:close]
        path.append(idx)
        first = False
        k = close + 1
        if k < n and name[k] == "[":
            i = k
            continue
        return path  # anything after a "]" that is not "[" is ignored


_PATH_CACHE = {}


def php_path(name):
    """php_var_path() with PHP's key conversion applied, cached (bodies repeat names)."""
    path = _PATH_CACHE.get(name)
    if path is None:
        raw = php_var_path(name)
        if raw is None:
            return None
        path = tuple(None if k is None else php_key(k) for k in raw)
        if len(_PATH_CACHE) > 200000:
            _PATH_CACHE.clear()
        _PATH_CACHE[name] = path
    return path


def php_assign(root, path, value):
    """Store value under path (from php_path) as php_register_variable_ex() does:
    a scalar in the way of a sub-array is replaced, None appends."""
    tbl = root
    for i in range(len(path) - 1):
        comp = path[i]
        if comp is None:
            sub = PArr()
            tbl.put(None, sub)
        else:
            sub = tbl.get(comp)
            if type(sub) is not PArr:
                sub = PArr()
                tbl.put(comp, sub)
        tbl = sub
    key = path[-1]
    if key is None:
        key = tbl.nfree
    if type(key) is int and key >= tbl.nfree:
        tbl.nfree = key + 1
    tbl[key] = value


def _urldecode(seg):
    if b"%" not in seg and b"+" not in seg:
        return seg.decode("utf-8", "replace")
    return urllib.parse.unquote_to_bytes(seg.replace(b"+", b" ")).decode("utf-8", "replace")


_RAW_PATH_CACHE = {}


def _raw_path(k):
    """php_path() of a still urlencoded name; () for a variable PHP drops."""
    path = _RAW_PATH_CACHE.get(k)
    if path is None:
        path = php_path(_urldecode(k)) or ()
        if len(_RAW_PATH_CACHE) > 200000:
            _RAW_PATH_CACHE.clear()
        _RAW_PATH_CACHE[k] = path
    return path


def php_parse_form(raw, max_vars, is_post):
    """Fill a PHP array from a urlencoded byte string the way PHP does.

    PHP registers a variable, then counts it and stops once the count exceeds
    max_input_vars: it keeps max_input_vars + 1 variables (20a, 20b, 20c).
    POST counts empty segments ("a=1&&b=2"), the query string parser skips
    them. Returns (array, variables sent, variables kept)."""
    arr = PArr()
    if not raw:
        return arr, 0, 0
    segs = raw.split(b"&")
    if is_post:
        if segs[-1] == b"":
            segs.pop()
    else:
        segs = [s for s in segs if s]
    sent = len(segs)
    if max_vars is not None and max_vars >= 0 and sent > max_vars + 1:
        segs = segs[:max_vars + 1]
    cached = _RAW_PATH_CACHE.get
    unquote = urllib.parse.unquote_to_bytes
    for seg in segs:  # the hot loop of a big batch: php_assign() inlined
        k, eq, v = seg.partition(b"=")
        path = cached(k)
        if path is None:
            path = _raw_path(k)
        if not path:
            continue
        if not eq:
            value = ""
        elif b"%" in v or b"+" in v:
            value = unquote(v.replace(b"+", b" ")).decode("utf-8", "replace")
        else:
            value = v.decode("utf-8", "replace")
        tbl = arr
        if len(path) > 1:
            for comp in path[:-1]:
                sub = None if comp is None else tbl.get(comp)
                if type(sub) is not PArr:
                    sub = PArr()
                    tbl.put(comp, sub)
                tbl = sub
        key = path[-1]
        if key is None:
            key = tbl.nfree
        if type(key) is int and key >= tbl.nfree:
            tbl.nfree = key + 1
        tbl[key] = value
    return arr, sent, len(segs)


def php_trim(s):
    return s.strip(" \t\n\r\0\x0b")


def php_intval(s):
    """(int)"12abc" == 12, (int)"abc" == 0."""
    m = re.match(r"[ \t\n\r\v\f]*([+-]?[0-9]+)", s)
    return int(m.group(1)) if m else 0


_TAG = re.compile(r"<[A-Za-z/!?][^>]*(?:>|\Z)")


def strip_tags(s):
    return _TAG.sub("", s)


_ENTITY_AMP = re.compile(r"&(?![a-zA-Z0-9#]{1,8};)")


def format_string(s):
    """external_format_string(): tags stripped, bare "&" escaped (05g)."""
    return _ENTITY_AMP.sub("&amp;", strip_tags(s))


def clean_username(s):
    """clean_param(PARAM_USERNAME) without extendedusernamechars."""
    s = php_trim(s).lower().replace(" ", "")
    return re.sub(r"[^-.@_a-z0-9]", "", s)


_EMAIL = re.compile(r"[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
                    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*\Z")


def valid_email(s):
    return bool(_EMAIL.match(s))


def _c_int(v):
    """PARAM_INT: (string)(int)$v must give back $v, so no sign, spaces or 0-padding."""
    digits = v[1:] if v[:1] == "-" else v
    if digits.isdigit() and digits.isascii() and (digits[0] != "0" or v == "0"):
        return True, int(v)
    return False, None


def _c_re(pattern):
    rx = re.compile(pattern)
    return lambda v: (True, v) if rx.fullmatch(v) else (False, None)


def _c_same(fn):
    def check(v):
        c = fn(v)
        return (True, c) if c == v else (False, None)
    return check


CLEANERS = {
    "int": _c_int,
    "raw": lambda v: (True, v),
    "raw_trimmed": _c_same(php_trim),
    "text": _c_same(strip_tags),
    "notags": _c_same(strip_tags),
    "alpha": _c_re(r"[a-zA-Z]*"),
    "alphanum": _c_re(r"[a-zA-Z0-9]*"),
    "alphanumext": _c_re(r"[a-zA-Z0-9_-]*"),
    "safedir": _c_re(r"[a-zA-Z0-9_-]*"),
    "plugin": _c_re(r"(?:[a-z][a-z0-9_]*[a-z0-9])?"),
    "sequence": _c_re(r"[0-9,]*"),
    "username": _c_same(clean_username),
    "lang": _c_re(r"(?:en)?"),
    "timezone": _c_re(r"[A-Za-z0-9_/+\-.]*"),
    "email": lambda v: (True, v) if v == "" or valid_email(v) else (False, None),
    "bool": lambda v: (True, v == "1") if v in ("0", "1") else (False, None),
}


# ---------------------------------------------------------------------------
# Errors and parameter validation (external_api::validate_parameters)

class WSError(Exception):
    """An exception Moodle turns into {"exception","errorcode","message"}."""

    def __init__(self, exception, errorcode, message, debuginfo=None):
        super().__init__(message)
        self.exception = exception
        self.errorcode = errorcode
        self.message = message
        self.debuginfo = debuginfo


class InvalidParam(WSError):
    def __init__(self, debuginfo=None):
        super().__init__("invalid_parameter_exception", "invalidparameter",
                         "Invalid parameter value detected", debuginfo)


def moodle_error(code, message, debuginfo=None):
    return WSError("moodle_exception", code, message, debuginfo)


def coding_error(what, debuginfo=None):
    return WSError("coding_exception", "codingerror",
                   "Coding error detected, it must be fixed by a programmer: " + what, debuginfo)


def missing_record(table):
    return WSError("dml_missing_record_exception", "invalidrecord",
                   "Can't find data record in database table %s." % table)


def no_instance(courseid):
    return moodle_error("wsnoinstance", "Manual enrolment plugin instance doesn't exist "
                        "or is disabled for the course (id = %d)" % courseid)


REQ, OPT, DEF = 1, 0, 2


class V:
    """external_value"""

    def __init__(self, ptype, req=REQ, default=None, allownull=False):
        self.ptype, self.req, self.default, self.allownull = ptype, req, default, allownull


class S:
    """external_single_structure"""

    def __init__(self, keys, req=REQ, default=None):
        self.keys, self.req, self.default = keys, req, default
        self.items = tuple((k, d, d.req, d.default,
                            CLEANERS[d.ptype] if isinstance(d, V) else None)
                           for k, d in keys.items())


class M:
    """external_multiple_structure"""

    def __init__(self, content, req=REQ, default=None):
        self.content, self.req, self.default = content, req, default


def _php_str(v):
    return "Array" if isinstance(v, dict) else str(v)


def validate(desc, val):
    """external_api::validate_parameters(): the cleaned value, or InvalidParam with
    Moodle's debuginfo (26a, 26b)."""
    kind = type(desc)
    if kind is S:
        if not isinstance(val, dict):
            raise InvalidParam("Only arrays accepted. The bad value is: '%s'" % _php_str(val))
        out = {}
        found = 0
        for key, sub, req, default, cleaner in desc.items:
            if key not in val:
                if req == REQ:
                    raise InvalidParam("Missing required key in single structure: " + key)
                if req == DEF:
                    out[key] = default
                continue
            v = val[key]
            found += 1
            if cleaner is not None and type(v) is str:
                ok, cleaned = cleaner(v)
                if ok:
                    out[key] = cleaned
                    continue
            try:
                out[key] = validate(sub, v)
            except InvalidParam as e:
                raise InvalidParam("%s => Invalid parameter value detected: %s"
                                   % (key, e.debuginfo))
        if len(val) > found:
            extra = [str(k) for k in val if k not in desc.keys]
            if extra:
                raise InvalidParam("Unexpected keys (%s) detected in parameter array."
                                   % ", ".join(extra))
        return out
    if kind is M:
        if not isinstance(val, dict):
            raise InvalidParam("Only arrays accepted. The bad value is: '%s'" % _php_str(val))
        content = desc.content
        return [validate(content, v) for v in val.values()]
    if isinstance(val, dict):
        raise InvalidParam("Scalar type expected, array or object received.")
    if val is None:
        if desc.allownull:
            return None
        raise InvalidParam("Invalid external api parameter")
    ok, cleaned = CLEANERS[desc.ptype](val)
    if not ok:
        raise InvalidParam('Invalid external api parameter: the value is "%s", the server '
                           'was expecting "%s" type' % (val, desc.ptype))
    return cleaned


# ---------------------------------------------------------------------------
# The site: users, courses, categories, enrolments, role assignments, tokens

class Token:
    def __init__(self, value, userid, functions, assignable, siteadmin, viewfullnames):
        self.value = value
        self.userid = userid
        self.functions = functions
        self.assignable = assignable
        self.siteadmin = siteadmin
        self.viewfullnames = viewfullnames


USER_EXTRA = {  # per-user values of core_webservice_get_site_info (01, 25a)
    "admin": {"userquota": 0, "usermaxuploadfilesize": -1,
              "userprivateaccesskey": "7afa62e3ab3a7a1b19b31b779327d312"},
    "wsclient": {"userquota": 104857600, "usermaxuploadfilesize": 67108864,
                 "userprivateaccesskey": "34dd5ddbbeb42577960cac118db4f6ca"},
}


SEEDS = ("lab1", "lab2")


def _lab2_bulk_numbers(n):
    """The eleven-digit numbers of lab2's bulk users, in id order (30f: ids 9..503
    are 1..512 without the five seed numbers, 077, 087 and every multiple of 50)."""
    skip = {23, 69, 74, 76, 77, 78, 87}
    out = []
    k = 0
    while len(out) < n:
        k += 1
        if k in skip or k % 50 == 0:
            continue
        out.append(k)
    return out


def _opposite_order(a, b, shared):
    """True if two of the shared users come in a different order in a and in b."""
    pos_b = {u: i for i, u in enumerate(b) if u in shared}
    last = -1
    for u in a:
        if u in shared:
            if pos_b[u] < last:
                return True
            last = pos_b[u]
    return False


class Flight:
    """A write call between its start and its commit or rollback: what it will
    lock, and who it waits for (see Site.begin_write)."""

    def __init__(self, seq, function, touched, flagged, inserts):
        self.seq = seq
        self.function = function
        self.touched = touched          # users marked dirty, in item order
        self.touched_set = set(touched)
        self.flagged = flagged          # ... of them, those whose flag row exists
        self.flagged_set = set(flagged)
        self.inserts = inserts          # user_enrolments rows inserted: (courseid, userid)
        self.waits = []                 # earlier calls it blocks on
        self.dup_on = []                # ... of them, those inserting the same rows
        self.victim = None              # seq of the call it deadlocked with
        self.done = False
        self.committed = False


DML_DEADLOCK = WSError("dml_write_exception", "dmlwriteexception", "Error writing to database",
                       "ERROR:  deadlock detected")
DML_DUPLICATE = WSError("dml_write_exception", "dmlwriteexception", "Error writing to database",
                        'ERROR:  duplicate key value violates unique constraint '
                        '"mdl_userenro_enruse_uix"')


class Stopped(Exception):
    """The server stops while a call waits: its PHP worker is gone, nothing commits."""


class Site:
    """The Moodle database. Every access holds self.lock.

    seed "lab1" is the site of the first recording session (00-27), "lab2" the
    fresh install of the second (30*, 31*); see the module docstring."""

    def __init__(self, seed="lab1"):
        if seed not in SEEDS:
            raise ValueError("seed must be one of %s" % ", ".join(SEEDS))
        self.seed = seed
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.create_lock = threading.Lock()  # course creation (model= only)
        wsclient = 8 if seed == "lab1" else 3
        full = tuple(SERVICE_FUNCTIONS)
        limited = tuple(f for f in SERVICE_FUNCTIONS if f not in LIMITED_MISSING)
        self.admin_token = Token(secrets.token_hex(16), 2, full, ROLES_ADMIN, True, True)
        self.wsclient_token = Token(secrets.token_hex(16), wsclient, full, ROLES_WSCLIENT,
                                    False, False)
        self.limited_token = Token(secrets.token_hex(16), wsclient, limited, ROLES_WSCLIENT,
                                   False, False)
        self.tokens = {t.value: t for t in (self.admin_token, self.wsclient_token,
                                             self.limited_token)}
        self._seq = itertools.count(1)
        self.deadlock_rule = "overlap"
        self.reset()

    def new_seq(self):
        """A number for each web-service request, in arrival order, across every
        server of this site."""
        return next(self._seq)

    # -- seed -------------------------------------------------------------------------------
    def reset(self):
        with self.lock:
            self.ws_enabled = True
            self.debug = False
            self.deadlock_rule = "overlap"
            self.users = {}
            self.by_username = {}
            self.by_idnumber = {}
            self.by_email = {}
            self.emails_lower = set()
            self.next_user_id = 1
            self.categories = {}
            self.courses = {}
            self.by_shortname = {}
            self.by_course_idnumber = {}
            self.ctx_course = {}
            self.next_course_id = 1
            self.next_context_id = 2
            self.enrolments = {}    # courseid -> {userid: [status, timestart, timeend]}
            self.user_courses = {}  # userid -> set(courseid)
            self.ras = {}           # courseid -> {userid: set(roleid)}
            self.flags = {}         # userid -> time its accesslib/dirtyusers flag was set
            self.flights = {}       # seq -> Flight: write calls under way
            if self.seed == "lab1":
                self._seed_lab1()
            else:
                self._seed_lab2()
            self.cond.notify_all()

    def _category(self, cid, name, idn, desc, tm):
        self.categories[cid] = {
            "id": cid, "name": name, "idnumber": idn, "description": desc,
            "sortorder": cid * 10000, "timemodified": tm, "coursecount": 0, "nextseq": 1}

    def _seed_lab1(self):
        self._category(1, "Category 1", None, "", 1795557011)
        self._category(2, "Lab Category", "LABCAT", "Category for REST tests", 1795557163)
        self._new_course({"shortname": SITE_SHORTNAME, "fullname": SITENAME,
                          "category": 0, "format": "site"}, manual="none", now=1795557011)
        self._new_user("guest", firstname="Guest user", lastname=" ",
                       email="root@localhost", idnumber="")
        self._new_user("admin", firstname="Admin", lastname="User",
                       email="admin@example.com", idnumber="")
        for u in ("00000000023", "00000000069", "00000000074", "00000000076",
                  "00000000078"):
            self._new_user(u)
        self._new_user("wsclient", firstname="Web service", lastname="Client",
                       email="wsclient@example.com", idnumber="")
        self.next_context_id = 18  # LAB101 had context 20 (05a, 15b)
        self._new_course({"shortname": "LAB-NOMANUAL", "category": 2,
                          "fullname": "Lab course without a manual enrolment instance"},
                         manual="none", now=1795557170)
        self._new_course({"shortname": "LAB-MANUALOFF", "category": 2,
                          "fullname": "Lab course with a disabled manual instance"},
                         manual="disabled", now=1795557175)

    LAB2_USERS = 5873  # contexts 20..5892 between LABDISABLED (19) and DL1 (5893, 31a)

    def _seed_lab2(self):
        self._category(1, "Category 1", None, "", 1795696000)
        self._category(2, "Imported", "", "", 1795696000)
        self._new_course({"shortname": SITE_SHORTNAME, "fullname": SITENAME,
                          "category": 0, "format": "site"}, manual="none", now=1795696000)
        self._new_user("guest", firstname="Guest user", lastname=" ",
                       email="root@localhost", idnumber="")
        self._new_user("admin", firstname="Admin", lastname="User",
                       email="admin@example.com", idnumber="")
        self.next_context_id = 18
        fixture = {"summary": "moodlelab fixture", "newsitems": 1, "enablecompletion": 0,
                   "category": 2}
        for sn, full, manual in (
                ("LABNOMANUAL", "Lab course without manual enrolment instance", "none"),
                ("LABDISABLED", "Lab course with disabled manual enrolment instance",
                 "disabled")):
            c = self._new_course(dict(fixture, shortname=sn, fullname=full, idnumber=sn),
                                 manual=manual, now=1795696034)
            c["cacherev"] = 1795696037
        self._new_user("wsclient", firstname="Web service", lastname="Client",
                       email="wsclient@example.com", idnumber="")
        for u in ("00000000023", "00000000069", "00000000074", "00000000076",
                  "00000000078"):
            self._new_user(u, firstname="Seed", lastname="User " + u)
        for k in _lab2_bulk_numbers(self.LAB2_USERS - 6):
            u = "%011d" % k
            self._new_user(u, firstname="Bulk", lastname="User " + u)

    def _new_user(self, username, firstname="Student", lastname=None, email=None,
                  idnumber=None, **extra):
        uid = self.next_user_id
        self.next_user_id += 1
        ctx = self.next_context_id  # user_create_user() makes the user's context
        self.next_context_id += 1
        u = {"id": uid, "username": username, "firstname": firstname,
             "lastname": "N" + username if lastname is None else lastname,
             "email": "u%s@example.com" % username if email is None else email,
             "idnumber": username if idnumber is None else idnumber,
             "department": extra.get("department", ""), "auth": extra.get("auth", "manual"),
             "lang": extra.get("lang", "en"), "timezone": extra.get("timezone", "99"),
             "mailformat": extra.get("mailformat", 1), "theme": "", "context": ctx}
        self._store_user(u)
        return u

    def _store_user(self, u):
        self.users[u["id"]] = u
        self.by_username[u["username"]] = u["id"]
        if u["idnumber"]:
            self.by_idnumber.setdefault(u["idnumber"], set()).add(u["id"])
        self.by_email.setdefault(u["email"], set()).add(u["id"])
        self.emails_lower.add(u["email"].lower())

    def _new_course(self, c, manual="enabled", now=None, cid=None, ctx=None):
        if cid is None:
            cid = self.next_course_id
            self.next_course_id += 1
        if ctx is None:
            ctx = self.next_context_id
            self.next_context_id += 1
        else:
            self.next_context_id = max(self.next_context_id, ctx + 1)
        now = int(time.time()) if now is None else now
        course = {
            "id": cid, "category": c.get("category", 1), "fullname": c["fullname"],
            "shortname": c["shortname"], "idnumber": c.get("idnumber", ""),
            "summary": c.get("summary", ""), "summaryformat": c.get("summaryformat", 1),
            "format": c.get("format") or "topics", "showgrades": c.get("showgrades", 1),
            "newsitems": c.get("newsitems", 5), "startdate": c.get("startdate", 0),
            "enddate": c.get("enddate", 0), "maxbytes": c.get("maxbytes", 0),
            "showreports": c.get("showreports", 0), "visible": c.get("visible", 1),
            "groupmode": c.get("groupmode", 0), "groupmodeforce": c.get("groupmodeforce", 0),
            "defaultgroupingid": c.get("defaultgroupingid", 0),
            "enablecompletion": c.get("enablecompletion", 1),
            "completionnotify": c.get("completionnotify", 0), "lang": c.get("lang", ""),
            "theme": c.get("forcetheme", ""), "hiddensections": c.get("hiddensections", 1),
            "timecreated": now, "timemodified": now, "cacherev": now,
            "manual": manual, "context": ctx, "seq": 0}
        self._attach_course(course)
        return course

    def _attach_course(self, course):
        cid = course["id"]
        self.courses[cid] = course
        self.by_shortname[course["shortname"]] = cid
        if course["idnumber"]:
            self.by_course_idnumber[course["idnumber"]] = cid
        self.ctx_course[course["context"]] = cid
        self._join_category(course)

    def _join_category(self, course):
        cat = self.categories.get(course["category"])
        if cat is not None:
            cat["coursecount"] += 1
            course["seq"] = cat["nextseq"]
            cat["nextseq"] += 1

    def _leave_category(self, course):
        cat = self.categories.get(course["category"])
        if cat is not None:
            cat["coursecount"] -= 1

    def sortorder(self, course):
        """A new course goes to the top of its category, the others move down
        one (02: LAB101 20002, LAB102 20001; 23: LAB102 20003 two courses on)."""
        cat = self.categories.get(course["category"])
        if cat is None:
            return 1
        return cat["sortorder"] + cat["nextseq"] - course["seq"]

    # -- enrolments (each change marks the user's access dirty as Moodle does) ----------------
    def mark_dirty(self, userid):
        """mark_user_dirty(): set_cache_flag('accesslib/dirtyusers', userid) inserts
        the flag row the first time and updates it from then on (30a-30e)."""
        self.flags[userid] = time.time()

    def enrol_user(self, courseid, userid, roleid, status, timestart=0, timeend=0):
        """enrol_plugin::enrol_user() with the values given (enrol_manual_enrol_users
        always passes all three: 12c). Returns True if the user was marked dirty."""
        ce = self.enrolments.setdefault(courseid, {})
        ue = ce.get(userid)
        dirty = False
        if ue is None:
            ce[userid] = [status, timestart, timeend]
            self.user_courses.setdefault(userid, set()).add(courseid)
        elif ue != [status, timestart, timeend]:
            ue[0], ue[1], ue[2] = status, timestart, timeend  # update_user_enrol()
            dirty = True
        if roleid:
            dirty = self.role_assign(courseid, userid, roleid) or dirty
        elif dirty:
            self.mark_dirty(userid)
        return dirty

    def set_enrolment_status(self, courseid, userid, status):
        """update_user_enrol() with only the status: roles and times stay."""
        ue = self.enrolments[courseid][userid]
        if ue[0] != status:
            ue[0] = status
            self.mark_dirty(userid)

    def unenrol_user(self, courseid, userid):
        """enrol_plugin::unenrol_user(): the last enrolment takes every role in the
        course with it (README 5), and the user is marked dirty."""
        ce = self.enrolments.get(courseid)
        if not ce or userid not in ce:
            return False
        del ce[userid]
        self.user_courses[userid].discard(courseid)
        cr = self.ras.get(courseid)
        if cr:
            cr.pop(userid, None)
        self.mark_dirty(userid)
        return True

    def role_assign(self, courseid, userid, roleid):
        """role_assign(): an existing assignment is left alone, unmarked."""
        roles = self.ras.setdefault(courseid, {}).setdefault(userid, set())
        if roleid in roles:
            return False
        roles.add(roleid)
        self.mark_dirty(userid)
        return True

    def role_unassign(self, courseid, userid, roleid):
        cr = self.ras.get(courseid)
        if not cr or roleid not in cr.get(userid, ()):
            return False
        cr[userid].discard(roleid)
        if not cr[userid]:
            del cr[userid]
        self.mark_dirty(userid)
        return True

    def is_active(self, course, ue, now):
        """get_enrolled_join()'s active enrolment: enabled instance, active status,
        ue.timestart < now < timeend (or no end), now = round(time(), -2)."""
        now = (now + 50) // 100 * 100
        return (course["manual"] == "enabled" and ue[0] == 0 and ue[1] < now
                and (ue[2] == 0 or ue[2] > now))

    # -- write calls under way: locks, waits, deadlocks ----------------------------------------
    def footprint(self, function, p):
        """The rows a write call will lock, judged against the committed state: the
        users it marks dirty (set_cache_flag) in item order, and the user_enrolments
        rows it inserts (unique index enrolid-userid)."""
        touched, seen, inserts = [], set(), set()

        def touch(uid):
            if uid not in seen:
                seen.add(uid)
                touched.append(uid)

        if function == "enrol_manual_enrol_users":
            for e in p["enrolments"]:
                cid, uid = e["courseid"], e["userid"]
                if cid not in self.courses or uid not in self.users:
                    continue
                ue = self.enrolments.get(cid, {}).get(uid)
                want = [1 if e.get("suspend") else 0, e.get("timestart") or 0,
                        e.get("timeend") or 0]
                if ue is None:
                    if (cid, uid) not in inserts:
                        inserts.add((cid, uid))
                        touch(uid)
                elif ue != want or e["roleid"] not in self.ras.get(cid, {}).get(uid, ()):
                    touch(uid)
        elif function == "enrol_manual_unenrol_users":
            for e in p["enrolments"]:
                if e["userid"] in self.enrolments.get(e["courseid"], {}):
                    touch(e["userid"])
        elif function in ("core_role_assign_roles", "core_role_unassign_roles"):
            assign = function == "core_role_assign_roles"
            for a in p["assignments" if assign else "unassignments"]:
                cid = self.ctx_course.get(a.get("contextid")) if a.get("contextid") else (
                    a.get("instanceid") if a.get("contextlevel") == "course" else None)
                if cid not in self.courses or a["userid"] not in self.users:
                    continue
                has = a["roleid"] in self.ras.get(cid, {}).get(a["userid"], ())
                if has != assign:
                    touch(a["userid"])
        return touched, inserts

    def begin_write(self, seq, function, p):
        """Register a write call that starts now (its PHP worker begins the
        transaction) against the ones already under way. With the lock held.

        - It inserts a user_enrolments row another one inserts too: it blocks on
          that row until the other ends and fails if the other committed (the
          unique index; README: a batch re-sent in between blocks, then fails).
        - It updates a dirty flag (existing row) another one updates: deadlock,
          it is the victim (30d/30e: the later of the two). Rule "order": only
          if two such users come in opposite orders; otherwise it waits.
        - It marks dirty a user another one marks dirty, flag not there yet:
          it waits for the other to end (30a/30b both succeed)."""
        touched, inserts = self.footprint(function, p)
        flagged = [u for u in touched if u in self.flags]
        f = Flight(seq, function, touched, flagged, inserts)
        for other in self.flights.values():
            if other.done:
                continue
            if inserts & other.inserts:
                f.dup_on.append(other)
                f.waits.append(other)
                continue
            shared = f.flagged_set & other.flagged_set
            if shared and other.victim is None and f.victim is None and (
                    self.deadlock_rule == "overlap"
                    or _opposite_order(flagged, other.flagged, shared)):
                f.victim = other.seq
            elif f.touched_set & other.touched_set:
                f.waits.append(other)
        self.flights[seq] = f
        return f

    def abort_write(self, f):
        """The call's worker is gone before the commit: nothing applied."""
        f.done = True
        f.committed = False
        self.flights.pop(f.seq, None)
        self.cond.notify_all()

    def finish_write(self, f, apply, stopping):
        """Commit or roll back a registered write call (lock held): wait for the
        calls it blocks on, then fail (deadlock victim, duplicate row) or run
        apply() and commit. Returns apply()'s result or raises WSError/Stopped."""
        committed = False
        try:
            if f.victim is not None:
                raise DML_DEADLOCK
            while any(not w.done for w in f.waits):
                if stopping.is_set():
                    raise Stopped()
                self.cond.wait(0.1)
            if any(w.committed for w in f.dup_on):
                raise DML_DUPLICATE
            result = apply()
            committed = True
            return result
        finally:
            f.done = True
            f.committed = committed
            self.flights.pop(f.seq, None)
            self.cond.notify_all()

    # -- control-side helpers: an administrator's changes in Moodle ---------------------------
    def add_users(self, specs):
        out = []
        with self.lock:
            for spec in specs:
                if isinstance(spec, str):
                    spec = {"username": spec}
                spec = dict(spec)
                username = spec.pop("username")
                if not username or clean_username(username) != username:
                    raise ValueError("Moodle would store username %r as %r"
                                     % (username, clean_username(username)))
                if username in self.by_username:
                    raise ValueError("username %s exists" % username)
                u = self._new_user(username, **spec)
                out.append(u["id"])
        return out

    def add_course(self, shortname, fullname=None, manual="enabled", visible=1,
                   categoryid=1, idnumber=""):
        if manual not in ("enabled", "disabled", "none"):
            raise ValueError("manual must be enabled, disabled or none")
        with self.lock:
            if shortname in self.by_shortname:
                raise ValueError("shortname %s exists" % shortname)
            if categoryid not in self.categories:
                raise ValueError("no category %s" % categoryid)
            c = self._new_course({"shortname": shortname, "fullname": fullname or shortname,
                                  "category": categoryid, "visible": int(visible),
                                  "idnumber": idnumber or ""}, manual=manual)
            return c["id"]

    def _course(self, shortname):
        cid = self.by_shortname.get(shortname)
        if cid is None or cid == SITEID:
            raise ValueError("no course %s" % shortname)
        return cid

    def _lookup(self, shortname, username):
        cid = self._course(shortname)
        uid = self.by_username.get(username)
        if uid is None:
            raise ValueError("no user %s" % username)
        return cid, uid

    @staticmethod
    def _roleid(roleid):
        try:
            r = int(roleid)
        except (TypeError, ValueError):
            raise ValueError("no role %r" % (roleid,))
        if r not in ROLES:
            raise ValueError("no role %s" % roleid)
        return r

    def admin_enrol(self, shortname, username, roleid=None, status="active"):
        """A new enrolment (role student unless roleid is given) with that status;
        on an existing one the status changes, and roleid, if given, is added."""
        if status not in ("active", "suspended"):
            raise ValueError("status must be active or suspended")
        st = 0 if status == "active" else 1
        with self.lock:
            cid, uid = self._lookup(shortname, username)
            if self.courses[cid]["manual"] == "none":
                raise ValueError("course %s has no manual enrolment instance" % shortname)
            rid = None if roleid is None else self._roleid(roleid)
            if uid in self.enrolments.get(cid, {}):
                self.set_enrolment_status(cid, uid, st)
                if rid:
                    self.role_assign(cid, uid, rid)
            else:
                self.enrol_user(cid, uid, 5 if rid is None else rid, st)

    def admin_unenrol(self, shortname, username):
        with self.lock:
            cid, uid = self._lookup(shortname, username)
            self.unenrol_user(cid, uid)

    def admin_assign_role(self, shortname, username, roleid):
        with self.lock:
            cid, uid = self._lookup(shortname, username)
            self.role_assign(cid, uid, self._roleid(roleid))

    def admin_unassign_role(self, shortname, username, roleid):
        """role_unassign() in the course context; the enrolment stays."""
        with self.lock:
            cid, uid = self._lookup(shortname, username)
            self.role_unassign(cid, uid, self._roleid(roleid))

    def admin_update_course(self, shortname, fullname=None, visible=None):
        with self.lock:
            c = self.courses[self._course(shortname)]
            if fullname is not None:
                if php_trim(str(fullname)) == "":
                    raise ValueError("a course needs a full name")
                c["fullname"] = str(fullname)
            if visible is not None:
                c["visible"] = 1 if int(visible) else 0
            c["timemodified"] = c["cacherev"] = int(time.time())

    def admin_delete_course(self, shortname):
        """delete_course(): its enrolments (each unenrolment marks the user dirty),
        role assignments and context go with it; its id is not used again."""
        with self.lock:
            cid = self._course(shortname)
            c = self.courses[cid]
            for uid in list(self.enrolments.get(cid, {})):
                self.unenrol_user(cid, uid)
            self.enrolments.pop(cid, None)
            self.ras.pop(cid, None)
            del self.courses[cid]
            del self.by_shortname[c["shortname"]]
            if c["idnumber"]:
                self.by_course_idnumber.pop(c["idnumber"], None)
            self.ctx_course.pop(c["context"], None)
            self._leave_category(c)
            return cid

    def state(self):
        with self.lock:
            courses = []
            for cid in sorted(self.courses):
                if cid == SITEID:
                    continue
                c = self.courses[cid]
                ce = self.enrolments.get(cid, {})
                cr = self.ras.get(cid, {})
                enrols = [{"userid": uid, "username": self.users[uid]["username"],
                           "status": "active" if ce[uid][0] == 0 else "suspended",
                           "roles": sorted(cr.get(uid, ()))} for uid in sorted(ce)]
                others = [{"userid": uid, "username": self.users[uid]["username"],
                           "roles": sorted(cr[uid])} for uid in sorted(cr) if uid not in ce]
                courses.append({
                    "id": cid, "shortname": c["shortname"], "fullname": c["fullname"],
                    "idnumber": c["idnumber"], "categoryid": c["category"],
                    "visible": c["visible"], "format": c["format"], "manual": c["manual"],
                    "enrolments": enrols, "roles_without_enrolment": others})
            users = [{"id": u["id"], "username": u["username"]}
                     for _, u in sorted(self.users.items())]
            cats = [{"id": c["id"], "name": c["name"], "idnumber": c["idnumber"],
                     "parent": 0, "coursecount": c["coursecount"]}
                    for _, c in sorted(self.categories.items())]
            return {"siteid": SITEID, "seed": self.seed, "courses": courses, "users": users,
                    "categories": cats, "dirty_users": sorted(self.flags)}


# ---------------------------------------------------------------------------
# Web-service functions. Each takes (call, params) and returns the result
# value or raises WSError; they run with the site lock held.

class Call:
    """What a function may know about its request."""

    def __init__(self, site, token, wwwroot):
        self.site = site
        self.token = token
        self.wwwroot = wwwroot
        self.now = int(time.time())
        self.stats = {}  # extra log fields


def _user_picture(call, small):
    return "%s/theme/image.php/boost/core/%d/u/%s" % (call.wwwroot, THEMEREV,
                                                      "f2" if small else "f1")


def f_get_site_info(call, p):
    site, tok = call.site, call.token
    u = site.users[tok.userid]
    extra = USER_EXTRA.get(u["username"], USER_EXTRA["wsclient"])
    return {
        "sitename": SITENAME, "username": u["username"], "firstname": u["firstname"],
        "lastname": u["lastname"], "fullname": "%s %s" % (u["firstname"], u["lastname"]),
        "lang": u["lang"], "userid": u["id"], "siteurl": call.wwwroot,
        "userpictureurl": _user_picture(call, False),
        "functions": [{"name": f, "version": ENROL_VERSION if f.startswith("enrol_manual")
                       else VERSION} for f in tok.functions],
        "downloadfiles": 0, "uploadfiles": 0, "release": RELEASE, "version": VERSION,
        "mobilecssurl": "", "advancedfeatures": ADVANCED_FEATURES,
        "usercanmanageownfiles": True, "userquota": extra["userquota"],
        "usermaxuploadfilesize": extra["usermaxuploadfilesize"], "userhomepage": 1,
        "userprivateaccesskey": extra["userprivateaccesskey"], "siteid": SITEID,
        "sitecalendartype": "gregorian", "usercalendartype": "gregorian",
        "userissiteadmin": tok.siteadmin, "theme": "boost", "limitconcurrentlogins": 0,
        "policyagreed": 0}


def _category_out(cat):
    return {"id": cat["id"], "name": cat["name"], "idnumber": cat["idnumber"],
            "description": cat["description"], "descriptionformat": 1, "parent": 0,
            "sortorder": cat["sortorder"], "coursecount": cat["coursecount"], "visible": 1,
            "visibleold": 1, "timemodified": cat["timemodified"], "depth": 1,
            "path": "/%d" % cat["id"], "theme": ""}


def f_get_categories(call, p):
    cats = sorted(call.site.categories.values(), key=lambda c: c["sortorder"])
    seen = set()
    for crit in p["criteria"]:
        key = php_trim(crit["key"])
        if key in seen:
            continue
        seen.add(key)
        val = crit["value"]
        if key == "id":
            cats = [c for c in cats if c["id"] == php_intval(val)]
        elif key == "ids":
            want = {php_intval(x) for x in val.split(",")}
            cats = [c for c in cats if c["id"] in want]
        elif key == "idnumber":
            cats = [c for c in cats if c["idnumber"] == val]
        elif key == "name":
            cats = [c for c in cats if c["name"] == val]
        elif key == "parent":
            cats = [c for c in cats if php_intval(val) == 0]
        elif key == "visible":
            cats = [c for c in cats if php_intval(val) == 1]
        elif key == "theme":
            cats = [c for c in cats if val == ""]
        else:
            raise moodle_error("invalidparameter", "Invalid parameter value detected",
                               "You can not search on this criteria: " + key)
    return [_category_out(c) for c in cats]


def _course_contacts(call, course):
    site = call.site
    ce = site.enrolments.get(course["id"], {})
    cr = site.ras.get(course["id"], {})
    out = []
    for uid in sorted(cr):
        if cr[uid] & CONTACT_ROLES and uid in ce and site.is_active(course, ce[uid], call.now):
            u = site.users[uid]
            out.append({"id": uid, "fullname": "%s %s" % (u["firstname"], u["lastname"])})
    return out


def _course_out(call, c):
    cat = call.site.categories.get(c["category"])
    return {
        "id": c["id"], "fullname": format_string(c["fullname"]),
        "displayname": format_string(c["fullname"]),
        "shortname": format_string(c["shortname"]),
        "courseimage": "%s/pluginfile.php/%d/course/generated/course.svg" % (
            call.wwwroot, c["context"]),
        "categoryid": c["category"], "categoryname": format_string(cat["name"]) if cat else "",
        "sortorder": call.site.sortorder(c), "summary": c["summary"],
        "summaryformat": c["summaryformat"], "summaryfiles": [], "overviewfiles": [],
        "showactivitydates": False, "showcompletionconditions": True,
        "contacts": _course_contacts(call, c),
        "enrollmentmethods": ["manual"] if c["manual"] == "enabled" else [],
        "idnumber": c["idnumber"], "format": c["format"], "showgrades": c["showgrades"],
        "newsitems": c["newsitems"], "startdate": c["startdate"], "enddate": c["enddate"],
        "maxbytes": c["maxbytes"], "showreports": c["showreports"], "visible": c["visible"],
        "groupmode": c["groupmode"], "groupmodeforce": c["groupmodeforce"],
        "defaultgroupingid": c["defaultgroupingid"], "enablecompletion": c["enablecompletion"],
        "completionnotify": c["completionnotify"], "lang": c["lang"], "theme": c["theme"],
        "marker": 0, "legacyfiles": 0, "calendartype": "", "timecreated": c["timecreated"],
        "timemodified": c["timemodified"], "requested": 0, "cacherev": c["cacherev"],
        "filters": COURSE_FILTERS,
        "courseformatoptions": TOPICS_FORMAT_OPTIONS if c["format"] in ("topics", "weeks")
        else []}


def f_get_courses_by_field(call, p):
    """core_course_external::get_courses_by_field() (course/externallib.php): every
    field but ids reads get_records('course', [field => value], 'id ASC'), so a
    category comes sorted by id (31a) and an unknown one is an empty list (31b)."""
    site = call.site
    field, value = p["field"], p["value"]
    if field == "":
        found = [site.courses[i] for i in sorted(site.courses)]
    elif field == "id":
        c = site.courses.get(php_intval(value))  # clean_param(PARAM_INT)
        found = [c] if c else []
    elif field == "category":
        cat = php_intval(value)
        found = [site.courses[i] for i in sorted(site.courses)
                 if site.courses[i]["category"] == cat]
    elif field == "ids":
        found = _courses_by_ids(site, re.sub(r"[^0-9,]", "", value))
    elif field == "shortname":
        cid = site.by_shortname.get(strip_tags(value))  # clean_param(PARAM_TEXT)
        found = [site.courses[cid]] if cid is not None else []
    elif field == "idnumber":
        cid = site.by_course_idnumber.get(value)
        found = [site.courses[cid]] if cid is not None else []
    else:
        # 4.4 knows id, ids, shortname, idnumber and category only.
        raise InvalidParam("Invalid field name")
    return {"courses": [_course_out(call, c) for c in found], "warnings": []}


def _courses_by_ids(site, seq):
    """field=ids: explode(',') of the PARAM_SEQUENCE value, then
    core_external\\util::validate_courses($ids, [], false, true)."""
    ids = seq.split(",")
    if "" in ids:
        # The category preload query gets '' for a bigint column: PostgreSQL refuses it.
        raise WSError("dml_read_exception", "dmlreadexception", "Error reading from database",
                      'ERROR:  invalid input syntax for type bigint: ""')
    unique = []
    for x in ids:  # array_unique(): string comparison, first one kept
        if x not in unique:
            unique.append(x)
    found = []
    for x in unique:
        cid = int(x)
        if str(cid) != x or cid not in site.courses:
            # The course is not loaded under that key, validate_courses() marks the
            # missing entry and PHP 8 stops on the null (05c, 26f).
            raise WSError("Error", None, 'Attempt to assign property "contextvalidated" on null')
        found.append(site.courses[cid])
    return found


COURSE_FIELDS = {
    "idnumber": V("raw", OPT), "summary": V("raw", OPT), "summaryformat": V("int", DEF, 1),
    "format": V("plugin", OPT), "showgrades": V("int", OPT), "newsitems": V("int", OPT),
    "startdate": V("int", OPT), "enddate": V("int", OPT), "numsections": V("int", OPT),
    "maxbytes": V("int", OPT), "showreports": V("int", OPT), "visible": V("int", OPT),
    "hiddensections": V("int", OPT), "groupmode": V("int", OPT),
    "groupmodeforce": V("int", OPT), "defaultgroupingid": V("int", OPT),
    "enablecompletion": V("int", OPT), "completionnotify": V("int", OPT),
    "lang": V("safedir", OPT), "forcetheme": V("plugin", OPT),
    "courseformatoptions": M(S({"name": V("alphanumext"), "value": V("raw")}), OPT),
    "customfields": M(S({"shortname": V("alphanumext"), "value": V("raw")}), OPT),
}


def _invalid_param_named(name):
    return moodle_error("errorinvalidparam", 'The param "%s" is invalid.' % name)


def f_create_courses(call, p):
    site = call.site
    staged = []
    shortnames, idnumbers = set(), set()
    for c in p["courses"]:
        if c["categoryid"] not in site.categories:
            raise moodle_error(
                "errorcatcontextnotvalid",
                "You cannot execute functions in the category context (category id:%d). "
                "The context error message was: Invalid parameter value detected"
                % c["categoryid"])
        if php_trim(c["fullname"]) == "":
            raise _invalid_param_named("fullname")
        if php_trim(c["shortname"]) == "":
            raise _invalid_param_named("shortname")
        if c.get("lang") not in (None, "", "en"):
            raise _invalid_param_named("lang")
        sn = c["shortname"]
        if sn in site.by_shortname or sn in shortnames:
            raise moodle_error("shortnametaken",
                               "Short name is already used for another course (%s)" % sn)
        idn = c.get("idnumber") or ""
        if idn and (idn in site.by_course_idnumber or idn in idnumbers):
            raise moodle_error("courseidnumbertaken",
                               "ID number is already used for another course (%s)" % idn)
        # The row is inserted now: its id is used up even if a later course of
        # the batch fails and the transaction rolls back (course 6 after 03b).
        cid = site.next_course_id
        site.next_course_id += 1
        ctx = site.next_context_id
        site.next_context_id += 1
        shortnames.add(sn)
        if idn:
            idnumbers.add(idn)
        rec = dict(c)
        rec["category"] = c["categoryid"]
        rec["idnumber"] = idn
        if "visible" in rec:
            rec["visible"] = 1 if rec["visible"] else 0
        staged.append((cid, ctx, rec))
    now = int(time.time())
    for cid, ctx, rec in staged:
        site._new_course(rec, manual="enabled", now=now, cid=cid, ctx=ctx)
    return [{"id": cid, "shortname": rec["shortname"]} for cid, _, rec in staged]


def _update_one(call, c):
    site = call.site
    course = site.courses.get(c["id"])
    if course is None:
        raise missing_record("course")
    if "fullname" in c and c["fullname"] != course["fullname"] and php_trim(c["fullname"]) == "":
        raise _invalid_param_named("fullname")
    if ("shortname" in c and c["shortname"] != course["shortname"]
            and php_trim(c["shortname"]) == ""):
        raise _invalid_param_named("shortname")
    if c.get("lang") not in (None, "", "en"):
        raise _invalid_param_named("lang")
    sn = c.get("shortname")
    if sn and sn != course["shortname"] and sn in site.by_shortname:
        raise moodle_error("shortnametaken",
                           "Short name is already used for another course (%s)" % sn)
    idn = c.get("idnumber")
    if idn and idn != course["idnumber"] and idn in site.by_course_idnumber:
        raise moodle_error("courseidnumbertaken",
                           "ID number is already used for another course (%s)" % idn)
    cat = c.get("categoryid")
    if cat and cat != course["category"] and cat not in site.categories:
        raise missing_record("course_categories")
    if sn and sn != course["shortname"]:
        del site.by_shortname[course["shortname"]]
        site.by_shortname[sn] = course["id"]
        course["shortname"] = sn
    if idn is not None and idn != course["idnumber"]:
        if course["idnumber"]:
            site.by_course_idnumber.pop(course["idnumber"], None)
        if idn:
            site.by_course_idnumber[idn] = course["id"]
        course["idnumber"] = idn
    if cat and cat != course["category"]:
        site._leave_category(course)
        course["category"] = cat
        site._join_category(course)
    for key in ("fullname", "summary", "summaryformat", "format", "showgrades", "newsitems",
                "startdate", "enddate", "maxbytes", "showreports", "hiddensections",
                "groupmode", "groupmodeforce", "defaultgroupingid", "enablecompletion",
                "completionnotify", "lang"):
        if key in c:
            course[key] = c[key]
    if "visible" in c:
        course["visible"] = 1 if c["visible"] else 0
    if "forcetheme" in c:
        course["theme"] = c["forcetheme"]
    course["timemodified"] = course["cacherev"] = call.now


def f_update_courses(call, p):
    warnings = []
    for c in p["courses"]:
        try:
            _update_one(call, c)
        except WSError as e:
            warnings.append({"item": "course", "itemid": c["id"],
                             "warningcode": e.errorcode, "message": e.message})
    return {"warnings": warnings}


def _user_out(call, u):
    """user_get_user_details() as core_user_get_users_by_field shows it (06a, 25f)."""
    out = {"id": u["id"], "username": u["username"]}
    if call.token.viewfullnames:
        out["firstname"] = u["firstname"]
        out["lastname"] = u["lastname"]
    out.update({
        "fullname": "%s %s" % (u["firstname"], u["lastname"]), "email": u["email"],
        "department": u["department"]})
    if u["idnumber"]:  # user_get_user_details() leaves an empty one out (32k)
        out["idnumber"] = u["idnumber"]
    out.update({
        "firstaccess": 0,
        "lastaccess": 0, "auth": u["auth"], "suspended": False, "confirmed": True,
        "lang": u["lang"], "theme": u["theme"], "timezone": u["timezone"],
        "mailformat": u["mailformat"], "trackforums": 0,
        "profileimageurlsmall": _user_picture(call, True),
        "profileimageurl": _user_picture(call, False)})
    return out


def f_get_users_by_field(call, p):
    site = call.site
    field = p["field"]
    if field not in ("id", "idnumber", "username", "email"):
        raise InvalidParam("The search field '%s' is not supported, look at the web "
                           "service documentation" % field)
    ids = set()
    for value in p["values"]:
        if field == "id":
            try:
                ids.add(int(value))
                continue
            except ValueError:
                cleaned = str(php_intval(value))
        elif field == "username":
            cleaned = clean_username(value)
            if cleaned == value:
                uid = site.by_username.get(cleaned)
                if uid is not None:
                    ids.add(uid)
                continue
        elif field == "email":
            cleaned = value if valid_email(value) else ""
            if cleaned == value:
                ids.update(site.by_email.get(value, ()))
                continue
        else:
            ids.update(site.by_idnumber.get(value, ()))
            continue
        raise InvalidParam("The field '%s' value is invalid: %s(cleaned value: %s)"
                           % (field, value, cleaned))
    return [_user_out(call, site.users[i]) for i in sorted(ids) if i in site.users]


_PW_SPECIAL = re.compile(r"[^a-zA-Z0-9]")


def _password_errors(pw):
    """check_password_policy() with Moodle's default policy (19d)."""
    errs = []
    if len(pw) < 8:
        errs.append("<div>Passwords must be at least 8 characters long.</div>")
    if len(re.findall(r"[0-9]", pw)) < 1:
        errs.append("<div>Passwords must have at least 1 digit(s).</div>")
    if len(re.findall(r"[a-z]", pw)) < 1:
        errs.append("<div>Passwords must have at least 1 lower case letter(s).</div>")
    if len(re.findall(r"[A-Z]", pw)) < 1:
        errs.append("<div>Passwords must have at least 1 upper case letter(s).</div>")
    if len(_PW_SPECIAL.findall(pw)) < 1:
        errs.append("<div>The password must have at least 1 special character(s) such as "
                    "*, -, or #.</div>")
    return "".join(errs)


def f_create_users(call, p):
    site = call.site
    staged = []
    names, emails = set(), set()
    for u in p["users"]:
        for f in ("username", "firstname", "lastname"):
            if php_trim(u[f]) == "":
                raise InvalidParam("The field %s cannot be blank" % f)
        if u["username"] in site.by_username or u["username"] in names:
            raise InvalidParam("Username already exists: " + u["username"])
        if u.get("auth", "manual") not in ("manual", "nologin", "email", "ldap", "oauth2",
                                          "shibboleth", "cas", "db", "lti", "webservice"):
            raise InvalidParam("Invalid authentication type: " + u["auth"])
        if u.get("auth", "manual") in ("manual", "email") and not u.get("password") \
                and not u.get("createpassword"):
            raise InvalidParam("Invalid password: you must provide a password, or set "
                               "createpassword.")
        if not valid_email(u["email"]):
            raise InvalidParam("Email address is invalid: " + u["email"])
        if u["email"].lower() in emails or u["email"].lower() in site.emails_lower:
            raise InvalidParam("Email address already exists: " + u["email"])
        if u.get("password") and not u.get("createpassword"):
            errs = _password_errors(u["password"])
            if errs:
                raise moodle_error(errs, "error/" + errs)
        uid = site.next_user_id  # the row is inserted: its id is used up (19b)
        site.next_user_id += 1
        ctx = site.next_context_id  # and so is its context's
        site.next_context_id += 1
        names.add(u["username"])
        emails.add(u["email"].lower())
        staged.append((uid, ctx, u))
    for uid, ctx, u in staged:
        site._store_user({"context": ctx,
            "id": uid, "username": u["username"], "firstname": u["firstname"],
            "lastname": u["lastname"], "email": u["email"], "idnumber": u.get("idnumber", ""),
            "department": u.get("department", ""), "auth": u.get("auth", "manual"),
            "lang": u.get("lang", "en"), "timezone": u.get("timezone", "99"),
            "mailformat": u.get("mailformat", 1), "theme": u.get("theme", "")})
    return [{"id": uid, "username": u["username"]} for uid, _, u in staged]


def f_enrol_users(call, p):
    site, tok = call.site, call.token
    items = p["enrolments"]
    courses, users = site.courses, site.users
    for e in items:
        cid = e["courseid"]
        course = courses.get(cid)
        if course is None:
            raise InvalidParam("Context does not exist")
        if e["roleid"] not in tok.assignable:
            raise moodle_error(
                "wsusercannotassign", "You don't have the permission to assign this role (%d) "
                "to this user (%d) in this course (%d)." % (e["roleid"], e["userid"], cid))
        if course["manual"] != "enabled":
            raise no_instance(cid)
        if e["userid"] not in users:
            raise coding_error("User ID does not exist or is deleted!", "userid:%d" % e["userid"])
    enrolments = site.enrolments
    # Every such item makes Moodle send the welcome message again (DESIGN 4).
    call.stats["already_enrolled"] = sum(
        1 for e in items if e["userid"] in enrolments.get(e["courseid"], ()))
    for e in items:
        site.enrol_user(e["courseid"], e["userid"], e["roleid"], 1 if e.get("suspend") else 0,
                        e.get("timestart") or 0, e.get("timeend") or 0)
    return None


def f_unenrol_users(call, p):
    site = call.site
    items = p["enrolments"]
    for e in items:
        course = site.courses.get(e["courseid"])
        if course is None:
            raise missing_record("course")
        if course["manual"] == "none":
            raise no_instance(e["courseid"])
        if e["userid"] not in site.users:
            raise InvalidParam("User id not exist: %d" % e["userid"])
    for e in items:
        site.unenrol_user(e["courseid"], e["userid"])
    return None


CONTEXT_LEVELS = ("system", "user", "coursecat", "course", "module", "block")


def _context_course(call, a):
    """core_role_external::get_context_from_params(), course contexts only."""
    site = call.site
    if a.get("contextid"):
        cid = site.ctx_course.get(a["contextid"])
    elif a.get("contextlevel") and "instanceid" in a:
        if a["contextlevel"] not in CONTEXT_LEVELS:
            raise InvalidParam("Invalid context level = " + a["contextlevel"])
        cid = a["instanceid"] if a["contextlevel"] == "course" else None
    else:
        raise InvalidParam("Missing parameters, please provide either context level with "
                           "instance id or contextid")
    if cid is None or cid not in site.courses:
        raise InvalidParam("Context does not exist")
    return cid


def _role_calls(call, items, verb):
    site, tok = call.site, call.token
    plan = []
    for a in items:
        cid = _context_course(call, a)
        if a["roleid"] not in tok.assignable:
            raise InvalidParam("Can not %s roleid=%d in contextid=%d" % (
                verb, a["roleid"], site.courses[cid]["context"]))
        if verb == "assign" and a["userid"] not in site.users:
            raise coding_error("User ID does not exist or is deleted!", "userid:%d" % a["userid"])
        plan.append((cid, a["userid"], a["roleid"]))
    for cid, uid, rid in plan:
        if verb == "assign":
            site.role_assign(cid, uid, rid)
        else:
            site.role_unassign(cid, uid, rid)
    return None


def f_assign_roles(call, p):
    return _role_calls(call, p["assignments"], "assign")


def f_unassign_roles(call, p):
    return _role_calls(call, p["unassignments"], "unassign")


ENROLLED_FIELDS = ("username", "firstname", "lastname", "email", "department", "idnumber",
                   "firstaccess", "lastaccess", "lastcourseaccess", "profileimageurlsmall",
                   "profileimageurl", "roles", "enrolledcourses")


# Roles whose default definition (lib/db/access.php archetypes) allows a capability:
# enough for withcapability. A capability not listed here answers as one no role has
# (an empty list, as Moodle does for an unknown name) and the log says so.
CAPABILITY_ROLES = {
    "moodle/course:update": {1, 3},
    "moodle/course:view": {1},
    "moodle/course:enrolreview": {1, 3},
    "moodle/course:manageactivities": {1, 3},
    "moodle/course:markcomplete": {1, 3, 4},
    "moodle/course:isincompletionreports": {5},
    "moodle/grade:viewall": {1, 3, 4},
    "moodle/grade:edit": {1, 3},
    "moodle/role:assign": {1, 3},
    "moodle/site:accessallgroups": {1, 3, 4},
    "mod/assign:submit": {5},
    "mod/assign:grade": {1, 3, 4},
}
USERSWITHOUTGROUP = -1


def php_empty(v):
    """PHP's empty() of a string: only "" and "0" are empty ("false" is not)."""
    return v in ("", "0")


def f_get_enrolled_users(call, p):
    """core_enrol_external::get_enrolled_users() (enrol/externallib.php, 3.11+):
    the options are read first (a bad sortby fails before the course is looked
    up), unknown option names are ignored, then get_enrolled_sql()."""
    site = call.site
    cid = p["courseid"]
    withcapability = ""
    groupid = 0
    onlyactive = onlysuspended = False
    fields = []
    limitfrom = limitnumber = 0
    sortby, sortdir = "id", "ASC"
    for opt in p["options"]:
        name, value = opt["name"], opt["value"]
        if name == "withcapability":
            withcapability = value
        elif name == "groupid":
            groupid = php_intval(value)
        elif name == "onlyactive":
            onlyactive = not php_empty(value)
        elif name == "onlysuspended":
            onlysuspended = not php_empty(value)
        elif name == "userfields":  # clean_param(PARAM_ALPHANUMEXT) of each, appended
            fields.extend(re.sub(r"[^a-zA-Z0-9_-]", "", f) for f in value.split(","))
        elif name == "limitfrom":
            limitfrom = php_intval(value)
        elif name == "limitnumber":
            limitnumber = php_intval(value)
        elif name == "sortby":
            if value not in ("id", "firstname", "lastname", "siteorder"):
                raise InvalidParam("Invalid value for sortby parameter (value: %s),allowed "
                                   "values are: id,firstname,lastname,siteorder" % value)
            sortby = value
        elif name == "sortdirection":
            sortdir = value.upper()
            if sortdir not in ("ASC", "DESC"):
                raise InvalidParam("Invalid value for sortdirection parameter\n"
                                   "                        (value: %s),allowed values are: "
                                   "ASC,DESC" % sortdir)
    course = site.courses.get(cid)
    if course is None:
        raise missing_record("course")
    if onlyactive and onlysuspended:
        raise coding_error("Both onlyactive and onlysuspended are set, this is probably not "
                           "what you want!")
    now = call.now
    if cid == SITEID:
        if onlysuspended:
            raise coding_error("onlysuspended is not supported on frontpage; please add "
                               "your own early-exit!")
        uids = list(site.users)  # everybody participates on the frontpage
    else:
        ce = site.enrolments.get(cid, {})
        uids = list(ce)
        if onlyactive:
            uids = [u for u in uids if site.is_active(course, ce[u], now)]
        elif onlysuspended:
            uids = [u for u in uids if not site.is_active(course, ce[u], now)]
    cr = site.ras.get(cid, {})
    if withcapability:
        roles = CAPABILITY_ROLES.get(withcapability)
        if roles is None:
            call.stats["capability_unmodelled"] = withcapability
            roles = set()
        uids = [u for u in uids if cr.get(u, set()) & roles]
    if groupid and groupid != USERSWITHOUTGROUP:
        uids = []  # the double has no groups: nobody is a member of any
    limitfrom = max(limitfrom, 0)  # get_recordset_sql() treats a negative limit as none
    limitnumber = max(limitnumber, 0)
    users = site.users
    desc = sortdir == "DESC"
    if sortby == "id":
        uids.sort(reverse=desc)
    elif sortby == "siteorder":
        # users_order_by_sql(): "us.lastname, us.firstname, us.id" and then the
        # direction, which therefore applies to the id only.
        uids.sort(key=lambda u: (users[u]["lastname"], users[u]["firstname"],
                                 -u if desc else u))
    else:
        # Ties are left to PostgreSQL; the double puts them in id order.
        uids.sort(key=lambda u: u)
        uids.sort(key=lambda u: users[u][sortby], reverse=desc)
    if limitnumber > 0:
        uids = uids[limitfrom:limitfrom + limitnumber]
    elif limitfrom > 0:
        uids = uids[limitfrom:]
    want = set(fields) if fields else set(ENROLLED_FIELDS)
    if not call.token.viewfullnames:
        want = want - {"firstname", "lastname"}
    out = []
    for uid in uids:
        u = users[uid]
        d = {"id": uid}
        if "username" in want:
            d["username"] = u["username"]
        if "firstname" in want:
            d["firstname"] = u["firstname"]
        if "lastname" in want:
            d["lastname"] = u["lastname"]
        d["fullname"] = "%s %s" % (u["firstname"], u["lastname"])
        for key in ("email", "department", "idnumber"):
            if key in want:
                d[key] = u[key]
        for key in ("firstaccess", "lastaccess", "lastcourseaccess"):
            if key in want:
                d[key] = 0
        if "profileimageurlsmall" in want:
            d["profileimageurlsmall"] = _user_picture(call, True)
        if "profileimageurl" in want:
            d["profileimageurl"] = _user_picture(call, False)
        if "roles" in want:
            d["roles"] = [{"roleid": r, "name": "", "shortname": ROLES[r], "sortorder": 0}
                          for r in sorted(cr.get(uid, ()))]
        if "enrolledcourses" in want:
            ec = []
            for ocid in site.user_courses.get(uid, ()):
                oc = site.courses[ocid]
                if site.is_active(oc, site.enrolments[ocid][uid], now):
                    ec.append(oc)
            if ec:
                ec.sort(key=lambda c: (-c["visible"], site.sortorder(c)))
                d["enrolledcourses"] = [{"id": c["id"], "fullname": format_string(c["fullname"]),
                                         "shortname": format_string(c["shortname"])} for c in ec]
        out.append(d)
    return out


ROLE_ITEM = S({"roleid": V("int"), "userid": V("int"), "contextid": V("int", OPT),
               "contextlevel": V("alpha", OPT), "instanceid": V("int", OPT)})
USER_FIELDS = {
    "createpassword": V("bool", OPT), "username": V("username"),
    "auth": V("plugin", DEF, "manual"), "password": V("raw", OPT),
    "firstname": V("notags"), "lastname": V("notags"), "email": V("raw_trimmed"),
    "maildisplay": V("int", OPT), "city": V("notags", OPT), "country": V("alpha", OPT),
    "timezone": V("timezone", OPT), "description": V("raw", OPT),
    "firstnamephonetic": V("notags", OPT), "lastnamephonetic": V("notags", OPT),
    "middlename": V("notags", OPT), "alternatename": V("notags", OPT),
    "interests": V("text", OPT), "idnumber": V("raw", DEF, ""),
    "institution": V("text", OPT), "department": V("text", OPT),
    "phone1": V("notags", OPT), "phone2": V("notags", OPT), "address": V("text", OPT),
    "lang": V("lang", DEF, "en"), "calendartype": V("plugin", OPT),
    "theme": V("plugin", OPT), "mailformat": V("int", OPT),
    "customfields": M(S({"type": V("alphanumext"), "value": V("raw")}), OPT),
    "preferences": M(S({"type": V("raw"), "value": V("raw")}), OPT)}

# name -> (parameter description, implementation, name of the main array)
FUNCTIONS = {
    "core_webservice_get_site_info": (
        S({"serviceshortnames": M(V("alphanumext"), DEF, [])}), f_get_site_info, None),
    "core_course_get_categories": (
        S({"criteria": M(S({"key": V("alpha"), "value": V("raw")}), DEF, []),
           "addsubcategories": V("bool", DEF, True)}), f_get_categories, "criteria"),
    "core_course_get_courses_by_field": (
        S({"field": V("alpha", DEF, ""), "value": V("raw", DEF, "")}),
        f_get_courses_by_field, None),
    "core_course_create_courses": (
        S({"courses": M(S(dict({"fullname": V("text"), "shortname": V("text"),
                                "categoryid": V("int")}, **COURSE_FIELDS)))}),
        f_create_courses, "courses"),
    "core_course_update_courses": (
        S({"courses": M(S(dict({"id": V("int"), "fullname": V("text", OPT),
                                "shortname": V("text", OPT), "categoryid": V("int", OPT)},
                               **COURSE_FIELDS)))}),
        f_update_courses, "courses"),
    "core_user_get_users_by_field": (
        S({"field": V("alpha"), "values": M(V("raw"))}), f_get_users_by_field, "values"),
    "core_user_create_users": (S({"users": M(S(USER_FIELDS))}), f_create_users, "users"),
    "enrol_manual_enrol_users": (
        S({"enrolments": M(S({"roleid": V("int"), "userid": V("int"), "courseid": V("int"),
                              "timestart": V("int", OPT), "timeend": V("int", OPT),
                              "suspend": V("int", OPT)}))}), f_enrol_users, "enrolments"),
    "enrol_manual_unenrol_users": (
        S({"enrolments": M(S({"userid": V("int"), "courseid": V("int"),
                              "roleid": V("int", OPT)}))}), f_unenrol_users, "enrolments"),
    "core_enrol_get_enrolled_users": (
        S({"courseid": V("int"),
           "options": M(S({"name": V("alphanumext"), "value": V("raw")}), DEF, [])}),
        f_get_enrolled_users, "options"),
    "core_role_assign_roles": (S({"assignments": M(ROLE_ITEM)}), f_assign_roles,
                               "assignments"),
    "core_role_unassign_roles": (S({"unassignments": M(ROLE_ITEM)}), f_unassign_roles,
                                 "unassignments"),
}


# ---------------------------------------------------------------------------
# Response bodies

def _xml_escape(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _xmlize(v):
    if isinstance(v, dict):
        return "<SINGLE>\n" + "".join('<KEY name="%s">%s</KEY>\n' % (k, _xmlize(x))
                                      for k, x in v.items()) + "</SINGLE>\n"
    if isinstance(v, list):
        return "<MULTIPLE>\n" + "".join(_xmlize(x) for x in v) + "</MULTIPLE>\n"
    if v is None:
        return '<VALUE null="null"/>\n'
    if isinstance(v, bool):
        v = int(v)
    return "<VALUE>%s</VALUE>\n" % _xml_escape(str(v))


def xml_response(value):
    body = '<?xml version="1.0" encoding="UTF-8" ?>\n<RESPONSE>\n'
    if value is not None:
        body += _xmlize(value)
    return body + "</RESPONSE>\n"


def error_body(err, fmt, debug):
    if fmt == "json":
        obj = {"exception": err.exception}
        if err.errorcode is not None:
            obj["errorcode"] = err.errorcode
        obj["message"] = err.message
        if debug and err.debuginfo is not None:
            obj["debuginfo"] = err.debuginfo
        return php_json(obj)
    body = '<?xml version="1.0" encoding="UTF-8" ?>\n<EXCEPTION class="%s">\n' % err.exception
    body += "<ERRORCODE>%s</ERRORCODE>\n" % _xml_escape(err.errorcode or "")
    body += "<MESSAGE>%s</MESSAGE>\n" % _xml_escape(err.message)
    if debug and err.debuginfo is not None:
        body += "<DEBUGINFO>%s</DEBUGINFO>\n" % _xml_escape(err.debuginfo)
    return body + "</EXCEPTION>\n"


REDIRECT_PAGE = """<!DOCTYPE html>
<html  lang="en" xml:lang="en">
    <head>
        <meta http-equiv="Content-Type" content="text/html; charset=utf-8" />
                <title>Redirect</title>
        <style>
body {
    margin: 0;
    font-family: -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif,"Apple Color Emoji","Segoe UI Emoji","Segoe UI Symbol","Noto Color Emoji";
    font-size: .9375rem;
    font-weight: 400;
    line-height: 1.5;
    color: #343a40;
    text-align: left;
    background-color: #f2f2f2;
}
#page {
    margin-top: 15px;
    background: white;
    max-width: 600px;
    margin: 0 auto;
    padding: 15px;
}
#region-main {
    margin: 0 auto;
    border: 1px solid rgba(0,0,0,.125);
    padding: 1rem 1.25rem 1.25rem;
    background-color: #fff;
}
h1 {
    font-size: 2.34rem;
    margin: 0 0 .5rem;
    font-weight: 300;
    line-height: 1.2;
}
.alert-danger {
    color: #6e211e;
    background-color: #f6d9d8;
    border-color: #f3c9c8;
    padding: .75rem 1.25rem;
}
    </style>
    </head>
    <body>
        <div id="page">
            <div id="region-main">
                <h1>Redirect</h1>
                <div style="margin-top: 3em; margin-left:auto; margin-right:auto; text-align:center;">This page should automatically redirect. If nothing is happening please use the continue link below.<br /><a href="%(url)s">Continue</a></div>                            </div>
        </div>
    </body>
</html>

"""

LOGIN_PAGE = """<!DOCTYPE html>
<html  dir="ltr" lang="en" xml:lang="en">
<head>
    <title>Log in to the site | Moodle Lab</title>
    <meta http-equiv="Content-Type" content="text/html; charset=utf-8" />
</head>
<body id="page-login-index" class="format-site path-login pagelayout-login">
<div id="page-wrapper">
    <h1 class="login-heading">Log in to Moodle Lab</h1>
    <form class="login-form" action="%(url)s/login/index.php" method="post" id="login">
        <input type="hidden" name="logintoken" value="Xq3n8mRk1hT0c5qHq1sd3cV4a7Hc9pWz">
        <label for="username">Username</label><input type="text" name="username" id="username">
        <label for="password">Password</label><input type="password" name="password" id="password">
        <button class="btn btn-primary" type="submit" id="loginbtn">Log in</button>
    </form>
</div>
</body>
</html>
"""

GARBAGE_BODY = ("\nWarning: Undefined array key \"userid\" in /var/www/moodle/enrol/manual/"
                "externallib.php on line 97\n{\"exception\":\"moodle_exc")

NGINX_ERROR = ("<html>\r\n<head><title>%(code)d %(reason)s</title></head>\r\n<body>\r\n"
               "<center><h1>%(code)d %(reason)s</h1></center>\r\n<hr><center>nginx/1.22.1"
               "</center>\r\n</body>\r\n</html>\r\n")

# Maintenance switched on from the CLI (admin/cli/maintenance.php --enable):
# HTTP 503 with this page, whatever the call (moodle-ws 32e/32f).
MAINTENANCE_PAGE = ('<!DOCTYPE html>\n'
    '<html  lang="en" xml:lang="en">\n'
    '    <head>\n'
    '        <meta http-equiv="Content-Type" content="text/html; charset=utf-8" />\n'
    '                <title>%(site)s under maintenance</title>\n'
    '        <style>\n'
    'body {\n'
    '    margin: 0;\n'
    '    font-family: -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif,"Apple Color Emoji","Segoe UI Emoji","Segoe UI Symbol","Noto Color Emoji";\n'
    '    font-size: .9375rem;\n'
    '    font-weight: 400;\n'
    '    line-height: 1.5;\n'
    '    color: #343a40;\n'
    '    text-align: left;\n'
    '    background-color: #f2f2f2;\n'
    '}\n'
    '#page {\n'
    '    margin-top: 15px;\n'
    '    background: white;\n'
    '    max-width: 600px;\n'
    '    margin: 0 auto;\n'
    '    padding: 15px;\n'
    '}\n'
    '#region-main {\n'
    '    margin: 0 auto;\n'
    '    border: 1px solid rgba(0,0,0,.125);\n'
    '    padding: 1rem 1.25rem 1.25rem;\n'
    '    background-color: #fff;\n'
    '}\n'
    'h1 {\n'
    '    font-size: 2.34rem;\n'
    '    margin: 0 0 .5rem;\n'
    '    font-weight: 300;\n'
    '    line-height: 1.2;\n'
    '}\n'
    '.alert-danger {\n'
    '    color: #6e211e;\n'
    '    background-color: #f6d9d8;\n'
    '    border-color: #f3c9c8;\n'
    '    padding: .75rem 1.25rem;\n'
    '}\n'
    '    </style>\n'
    '    </head>\n'
    '    <body>\n'
    '        <div id="page">\n'
    '            <div id="region-main">\n'
    '                <h1>%(site)s under maintenance</h1>\n'
    "                <div class='alert-danger'>The site is undergoing maintenance and is currently not available</div>                            </div>\n"
    '        </div>\n'
    '    </body>\n'
    '</html>\n'
    '\n')
MAINTENANCE_HEADERS = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Retry-After", "300"),
    ("Cache-Control", "no-store, no-cache, must-revalidate"),
    ("Pragma", "no-cache"),
    ("Accept-Ranges", "none"))
# PostgreSQL stopped: every call answers this at once (32a-32d).
DB_DOWN = WSError("dml_connection_exception", "dbconnectionfailed",
                  "<p>Error: Database connection failed</p>\n<p>It is possible that the "
                  "database is overloaded or otherwise not running properly.</p>\n<p>The "
                  "site administrator should also check that the database details have "
                  "been correctly specified in config.php</p>")
# One of the first calls after Moodle's caches were purged (32k).
CACHE_RACE = WSError("cache_exception", "ex_configcannotsave",
                     "Unable to save the cache config to file.")
MAILFAIL = WSError("moodle_exception", "Message was not sent.", "error/Message was not sent.")
MAINTENANCE = WSError("moodle_exception", "sitemaintenance",
                      "The site is undergoing maintenance and is currently not available")
INVALID_TOKEN = WSError("moodle_exception", "invalidtoken", "Invalid token - token not found")


class Reply:
    """An answer to send: status, headers, body; or reset=True to drop the line."""

    def __init__(self, status=200, headers=(), body=b"", reset=False):
        self.status, self.headers, self.body, self.reset = status, headers, body, reset


# ---------------------------------------------------------------------------
# The server

class Fault:
    def __init__(self, spec):
        mode = spec.get("mode")
        if mode not in FAULT_MODES:
            raise ValueError("unknown fault mode %r" % (mode,))
        self.mode = mode
        self.count = int(spec.get("count", 1))
        self.function = spec.get("function")
        self.after = int(spec.get("after", 0))
        self.seconds = float(spec.get("seconds", 1.0) if spec.get("seconds") is not None else 1.0)
        self.body = spec.get("body")
        self.status = int(spec.get("status", 200))
        # An outage of so many seconds from the request it first answers.
        self.duration = (float(spec["duration"]) if spec.get("duration") is not None
                         else None)
        self.until = None


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client went away, or stop() closed the line under a slow answer
        super().handle_error(request, client_address)


def max_concurrency(entries):
    """The most requests of a log that ran at the same time (start..end)."""
    ev = []
    for e in entries:
        if e.get("start") is not None and e.get("end") is not None:
            ev.append((e["start"], 1))
            ev.append((e["end"], -1))
    ev.sort()  # at equal times an end (-1) comes before a start
    n = best = 0
    for _, d in ev:
        n += d
        best = max(best, n)
    return best


class WorkerPool:
    """php-fpm's pm.max_children: a request waits for a free worker, first come
    first served; limit None means as many workers as requests."""

    def __init__(self, limit=None):
        self.cond = threading.Condition()
        self.limit = limit
        self.busy = 0
        self.queue = collections.deque()

    def set_limit(self, limit):
        with self.cond:
            self.limit = limit
            self.cond.notify_all()

    def enqueue(self, number):
        """Join the queue; number() is called in the same breath, so that the
        numbers handed out follow the queue's order. Returns (ticket, number)."""
        with self.cond:
            me = object()
            self.queue.append(me)
            return me, number()

    def acquire(self, stopping, me=None):
        with self.cond:
            if me is None:
                me = object()
                self.queue.append(me)
            try:
                while self.queue[0] is not me or (self.limit is not None
                                                  and self.busy >= self.limit):
                    if stopping.is_set():
                        raise Stopped()
                    self.cond.wait(0.1)
            except BaseException:
                self.queue.remove(me)
                self.cond.notify_all()
                raise
            self.queue.popleft()
            self.busy += 1
            self.cond.notify_all()

    def release(self):
        with self.cond:
            self.busy -= 1
            self.cond.notify_all()


def _check_cost(cost):
    """None, or {"call": seconds, "item": seconds} (a missing key is 0)."""
    if cost is None:
        return None
    if not isinstance(cost, dict) or set(cost) - {"call", "item"}:
        raise ValueError('cost must be null or {"call": seconds, "item": seconds}')
    out = {"call": float(cost.get("call", 0)), "item": float(cost.get("item", 0))}
    if out["call"] < 0 or out["item"] < 0:
        raise ValueError("cost seconds must not be negative")
    return out


def _check_workers(workers):
    if workers is None:
        return None
    w = int(workers)
    if w < 1:
        raise ValueError("workers must be null or at least 1")
    return w



# What a real Moodle 4.4 (PHP 8.2 FPM, PostgreSQL 15, 2 cores) spends on each
# call, in seconds of one worker, as measured side by side in issue 16 and
# DESIGN.md 4 (the model= setting; scale multiplies every figure):
#   - core_course_create_courses: Moodle serialises course creation (a create
#     waits for the one before it: 4 concurrent calls of 75 courses were
#     answered after 1.7, 4.4, 9.2 and 17.4 s), and a course costs more the
#     fuller its category: 100 courses into a category of 0 / 300 / 900 /
#     1,500 took 3.2 / 14.2 / 35.2 / 64.9-67.7 s; at 1,800 a course cost
#     0.62-0.99 s alone, 0.48 s in calls of 10, 0.39 s in calls of 30 (and
#     0.66 s in calls of 100 at 1,500).  Fitted: 0.1 + 0.031 k + N/1800 x
#     (0.56 + 0.233 k + 0.0046 k^2) for k courses into a category of N;
#   - listing a category (get_courses_by_field, field=category) builds every
#     course's full record: 15 ms a course (4.6 s for 300); by shortname or
#     id: 75 ms (0.05-0.1 s whatever the size); by ids: 5 ms an id;
#   - core_user_get_users_by_field: 3 ms a username (5,148 names in 8.1 s on
#     2 cores);
#   - enrol_manual_enrol_users: 11 ms an enrolment with the course welcome
#     message, 6 ms without (11,641 enrolments: 65 s and 34 s on 2 cores);
#   - unenrol 6 ms, role (un)assign 4 ms an item, update 30 ms a course, an
#     enrolled-users listing 75 ms (DESIGN.md 4: a course's check, two
#     such calls, 0.1-0.2 s), anything else 30 ms a call.
MODEL_CALL = 0.03
MODEL_ITEM = {"core_user_get_users_by_field": 0.003,
              "enrol_manual_unenrol_users": 0.006,
              "core_role_assign_roles": 0.004,
              "core_role_unassign_roles": 0.004,
              "core_course_update_courses": 0.03}
MODEL_WELCOME = {True: 0.011, False: 0.006}
MODEL_LIST_PER_COURSE = 0.015
MODEL_LOOKUP = 0.075
MODEL_IDS_PER_ID = 0.005
MODEL_ENROLLED_USERS = 0.075


def model_create_seconds(k, n):
    """k courses created in one call into a category of n (real seconds)."""
    r = n / 1800.0
    return 0.1 + 0.031 * k + r * (0.56 + 0.233 * k + 0.0046 * k * k)


def _check_model(model):
    """None, or {"scale": s (1: real seconds), "welcome": bool (True)}."""
    if model is None:
        return None
    if not isinstance(model, dict) or set(model) - {"scale", "welcome"}:
        raise ValueError('model must be null or {"scale": s, "welcome": bool}')
    out = {"scale": float(model.get("scale", 1.0)),
           "welcome": bool(model.get("welcome", True))}
    if out["scale"] <= 0:
        raise ValueError("model scale must be positive")
    return out


def model_seconds(model, site, function, p):
    """The modelled time of a call (site lock held; p: its validated
    parameters, None when it failed before the function ran)."""
    if p is None:
        return MODEL_CALL * model["scale"]
    if function == "core_course_create_courses":
        courses = p["courses"]
        cat = site.categories.get(courses[0]["categoryid"]) if courses else None
        real = model_create_seconds(len(courses), cat["coursecount"] if cat else 0)
    elif function == "core_course_get_courses_by_field":
        field, value = p.get("field"), p.get("value", "")
        if field == "category":
            cat = site.categories.get(php_intval(value))
            real = MODEL_CALL + MODEL_LIST_PER_COURSE * (cat["coursecount"] if cat else 0)
        elif field == "ids":
            real = MODEL_CALL + MODEL_IDS_PER_ID * len([v for v in value.split(",") if v])
        elif field:
            real = MODEL_LOOKUP
        else:
            real = MODEL_CALL + MODEL_LIST_PER_COURSE * len(site.courses)
    elif function == "enrol_manual_enrol_users":
        real = MODEL_CALL + MODEL_WELCOME[model["welcome"]] * len(p["enrolments"])
    elif function == "core_enrol_get_enrolled_users":
        real = MODEL_ENROLLED_USERS
    else:
        spec = FUNCTIONS.get(function)
        main = spec[2] if spec else None
        items = len(p.get(main) or ()) if main else 0
        real = MODEL_CALL + MODEL_ITEM.get(function, 0.0) * items
    return real * model["scale"]


_UNSET = object()


class MoodleDouble:
    """One HTTP server (a php-fpm pool: its own max_input_vars, cost and workers)
    in front of a Site (shared when site= is given)."""

    def __init__(self, max_input_vars=5000, host="127.0.0.1", port=0, site=None,
                 verbose=False, cost=None, workers=None, seed="lab1", model=None):
        self.site = site if site is not None else Site(seed)
        self.host = host
        self.requested_port = port
        self.verbose = verbose
        self.initial_max_input_vars = max_input_vars
        self.max_input_vars = max_input_vars
        self.initial_cost = self.cost = _check_cost(cost)
        self.initial_model = self.model = _check_model(model)
        self.initial_workers = self.workers = _check_workers(workers)
        self.pool = WorkerPool(self.workers)
        self.display_startup_errors = False
        self.faults = []
        self.entries = []
        self.active = {}  # seq -> {"seq", "function", "state", "arrived", "start"}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = None
        self.thread = None
        self.conns = set()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self):
        self.stopping.clear()
        self.httpd = _HTTPServer((self.host, self.requested_port), _handler_for(self))
        self.port = self.httpd.server_address[1]
        self.url = "http://%s:%d" % (self.host, self.port)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd is None:
            return
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join()
        self.httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- tokens -----------------------------------------------------------------------------
    @property
    def token(self):
        return self.site.admin_token.value

    @property
    def wsclient_token(self):
        return self.site.wsclient_token.value

    @property
    def limited_token(self):
        return self.site.limited_token.value

    # -- control ----------------------------------------------------------------------------
    def add_users(self, users):
        return self.site.add_users(users)

    def add_course(self, shortname, fullname=None, manual="enabled", visible=1, categoryid=1,
                   idnumber=""):
        return self.site.add_course(shortname, fullname, manual, visible, categoryid, idnumber)

    def add_category(self, name, idnumber=None):
        """A new top-level course category; returns its id."""
        with self.site.lock:
            cid = max(self.site.categories) + 1
            self.site._category(cid, name, idnumber, "", int(time.time()))
            return cid

    def enrol(self, shortname, username, roleid=None, status="active"):
        self.site.admin_enrol(shortname, username, roleid, status)

    def suspend(self, shortname, username):
        self.site.admin_enrol(shortname, username, None, "suspended")

    def unenrol(self, shortname, username):
        self.site.admin_unenrol(shortname, username)

    def assign_role(self, shortname, username, roleid):
        self.site.admin_assign_role(shortname, username, roleid)

    def unassign_role(self, shortname, username, roleid):
        self.site.admin_unassign_role(shortname, username, roleid)

    def update_course(self, shortname, fullname=None, visible=None):
        self.site.admin_update_course(shortname, fullname, visible)

    def delete_course(self, shortname):
        return self.site.admin_delete_course(shortname)

    def set_fault(self, mode, count=1, function=None, after=0, seconds=None, body=None,
                  status=200, duration=None):
        if mode == "none":
            self.clear_faults()
            return
        f = Fault({"mode": mode, "count": count, "function": function, "after": after,
                   "seconds": seconds, "body": body, "status": status,
                   "duration": duration})
        with self.lock:
            self.faults.append(f)

    def clear_faults(self):
        with self.lock:
            self.faults = []

    def configure(self, max_input_vars=None, ws_enabled=None, debug=None,
                  display_startup_errors=None, cost=_UNSET, workers=_UNSET,
                  deadlock_rule=None, model=_UNSET):
        """None leaves a setting alone; cost=None, workers=None and model=None
        switch those off."""
        if deadlock_rule is not None and deadlock_rule not in ("overlap", "order"):
            raise ValueError("deadlock_rule must be overlap or order")
        if cost is not _UNSET:
            self.cost = _check_cost(cost)
        if model is not _UNSET:
            self.model = _check_model(model)
        if workers is not _UNSET:
            self.workers = _check_workers(workers)
            self.pool.set_limit(self.workers)
        if max_input_vars is not None:
            self.max_input_vars = int(max_input_vars)
        if display_startup_errors is not None:
            self.display_startup_errors = bool(display_startup_errors)
        with self.site.lock:
            if ws_enabled is not None:
                self.site.ws_enabled = bool(ws_enabled)
            if debug is not None:
                self.site.debug = bool(debug)
            if deadlock_rule is not None:
                self.site.deadlock_rule = deadlock_rule

    def state(self):
        return self.site.state()

    def log(self, since=0):
        with self.lock:
            return [dict(e) for e in self.entries[since:]]

    def clear_log(self):
        with self.lock:
            self.entries = []

    def inflight(self):
        """The requests this server holds now: queued for a worker, running, or
        waiting on another call's locks; in arrival order."""
        with self.lock:
            return [dict(a) for _, a in sorted(self.active.items())]

    def stats(self):
        """Counts over the log, and what is under way now."""
        log = self.log()
        with self.lock:
            states = [a["state"] for a in self.active.values()]
        return {"requests": len(log),
                "deadlocks": sum(1 for e in log if e.get("deadlock")),
                "duplicates": sum(1 for e in log if e.get("conflict") == "duplicate"),
                "max_running": max_concurrency(log),
                "queued": states.count("queued"),
                "running": len(states) - states.count("queued")}

    def reset(self):
        self.site.reset()
        self.clear_faults()
        self.clear_log()
        self.max_input_vars = self.initial_max_input_vars
        self.display_startup_errors = False
        self.cost = self.initial_cost
        self.model = self.initial_model
        self.workers = self.initial_workers
        self.pool.set_limit(self.workers)

    def info(self):
        return {"url": self.url, "port": self.port, "token": self.token,
                "wsclient_token": self.wsclient_token, "limited_token": self.limited_token,
                "max_input_vars": self.max_input_vars, "cost": self.cost,
                "model": self.model,
                "workers": self.workers, "deadlock_rule": self.site.deadlock_rule,
                "seed": self.site.seed}

    # -- faults -----------------------------------------------------------------------------
    def _take_fault(self, function):
        now = time.monotonic()
        with self.lock:
            # An outage of "duration" seconds is over: gone.
            self.faults = [x for x in self.faults if x.until is None or now < x.until]
            for f in self.faults:
                if f.function is not None and f.function != function:
                    continue
                if f.after > 0:
                    f.after -= 1
                    continue
                if f.count == 0:
                    continue
                if f.count > 0:
                    f.count -= 1
                if f.duration is not None and f.until is None:
                    f.until = now + f.duration
                self.faults = [x for x in self.faults if x.count != 0]
                return f
        return None

    # -- the web service --------------------------------------------------------------------
    def _track(self, seq, **kw):
        with self.lock:
            if seq in self.active:
                self.active[seq].update(kw)
            else:
                self.active[seq] = dict(kw, seq=seq)

    def _untrack(self, seq):
        with self.lock:
            self.active.pop(seq, None)

    def handle_ws(self, method, query, headers, body):
        """Answer one request to /webservice/rest/server.php; returns (Reply, log entry).

        nginx-level faults answer at once; then the request waits for a php-fpm
        worker (workers), and the worker does the Moodle part (_php)."""
        arrived = time.monotonic()
        limit = self.max_input_vars
        get, nget_sent, nget_kept = php_parse_form(query, limit, False)
        post, npost_sent, npost_kept = PArr(), 0, 0
        ctype = headers.get("Content-Type", "")
        # PHP fills $_POST only for this type (multipart/form-data is not modelled):
        # a body sent without it is ignored, as Moodle would ignore it.
        if method == "POST" and ctype.split(";")[0].strip().lower() == \
                "application/x-www-form-urlencoded":
            post, npost_sent, npost_kept = php_parse_form(body, limit, True)
        params = dict(get)
        params.update(post)  # array_merge($_GET, $_POST)
        function = params.pop("wsfunction", None)
        token = params.pop("wstoken", None)
        fmt = params.pop("moodlewsrestformat", None)
        fmt = fmt if fmt in ("json", "xml") else "xml"
        function = function if isinstance(function, str) else None
        token = token if isinstance(token, str) else None
        entry = {"function": function, "items": 0, "nvars": npost_sent + nget_sent,
                 "nvars_post": npost_sent, "nvars_get": nget_sent,
                 "cut": npost_kept < npost_sent or nget_kept < nget_sent,
                 "status": 200, "errorcode": None, "fault": None, "format": fmt,
                 "already_enrolled": 0, "seq": None, "arrived": arrived, "start": None,
                 "end": None, "deadlock": False, "conflict": None, "waited_for": [],
                 "committed": None}
        warn = ""
        if self.display_startup_errors:
            for sent, kept in ((nget_sent, nget_kept), (npost_sent, npost_kept)):
                if kept < sent:
                    warn += ("<br />\n<b>Warning</b>:  PHP Request Startup: Input variables "
                             "exceeded %d. To increase the limit change max_input_vars in "
                             "php.ini. in <b>Unknown</b> on line <b>0</b><br />\n" % limit)
        fault = self._take_fault(function)
        debug = self.site.debug

        def err_reply(err, status=200):
            entry["errorcode"] = err.errorcode
            text = warn + error_body(err, fmt, debug)
            return Reply(status, JSON_HEADERS if fmt == "json" else XML_HEADERS,
                         text.encode("utf-8"))

        seq = None
        creating = False
        try:
            if fault is not None:
                entry["fault"] = fault.mode
                early = self._fault_reply(fault, err_reply, entry)
                if early is not None:
                    entry["seq"] = self.site.new_seq()
                    return early, entry
            if self.model is not None and function == "core_course_create_courses":
                # Moodle serialises course creation: a create waits for the
                # one under way, without taking a worker meanwhile.
                if not self._take_create_lock():
                    entry["status"] = None
                    entry["seq"] = self.site.new_seq()
                    return Reply(reset=True), entry
                creating = True
            ticket, seq = self.pool.enqueue(self.site.new_seq)
            entry["seq"] = seq
            self._track(seq, function=function, state="queued", arrived=arrived, start=None)
            try:
                self.pool.acquire(self.stopping, ticket)
            except Stopped:
                entry["status"] = None
                return Reply(reset=True), entry
            try:
                entry["start"] = time.monotonic()
                self._track(seq, state="running", start=entry["start"])
                reply = self._php(seq, method, query, headers, params, function, token, fmt,
                                  fault, warn, err_reply, entry)
            finally:
                self.pool.release()
            return reply, entry
        finally:
            if creating:
                self.site.create_lock.release()
            if seq is not None:
                self._untrack(seq)
            entry["end"] = time.monotonic()

    def _take_create_lock(self):
        """Wait for the site's course-creation lock; False when stopping."""
        while not self.site.create_lock.acquire(timeout=0.1):
            if self.stopping.is_set():
                return False
        return True

    def _php(self, seq, method, query, headers, params, function, token, fmt, fault, warn,
             err_reply, entry):
        """The Moodle part of a request, in its php-fpm worker.

        A call's work (and a write call's commit) happens at the end of its
        modelled time: cost call + items x item seconds, plus a latecommit
        fault's seconds. Until then a write call is under way (Site.begin_write):
        reads see none of it, other writes may block on it or deadlock with it."""
        if not self.site.ws_enabled:
            entry["status"] = 403
            return Reply(403, (("Content-Type", "text/html; charset=utf-8"),), b"")
        host = headers.get("Host", "")
        expect = "%s:%d" % (self.host, self.port)
        if host and host.lower() != expect:
            entry["status"] = 303
            target = self.url + REST_PATH + ("?" + query.decode("latin-1") if query else "")
            page = (REDIRECT_PAGE % {"url": target}).encode("utf-8")
            return Reply(303, (("Content-Type", "text/html; charset=UTF-8"),
                               ("X-Redirect-By", "Moodle"), ("Location", target),
                               ("Content-Language", "en")), page)
        site = self.site
        cost = self.cost
        model = self.model
        err = None
        try:
            with site.lock:
                tok = site.tokens.get(token) if token else None
                if tok is None:
                    raise INVALID_TOKEN
                if not function:
                    raise InvalidParam("Missing wsfunction")
                spec = FUNCTIONS.get(function)
                if spec is None or function not in tok.functions:
                    if spec is None and function not in OTHER_MOODLE_FUNCTIONS:
                        raise missing_record("external_functions")
                    raise WSError("webservice_access_exception", "accessexception",
                                  "Access control exception",
                                  "Access to the function %s() is not allowed. There could be "
                                  "multiple reasons for this: 1. The service linked to the "
                                  "user token does not contain the function. 2. The service "
                                  "is user-restricted and the user is not listed. 3. The "
                                  "service is IP-restricted and the user IP is not listed. "
                                  "4. The service is time-restricted and the time has "
                                  "expired. 5. The token is time-restricted and the time has "
                                  "expired. 6. The user has a *_NOT_SET_* capability. "
                                  "7. Any other reason." % function)
                desc, impl, main = spec
                if main is not None and isinstance(params.get(main), dict):
                    entry["items"] = len(params[main])
                p = validate(desc, params)
                if model is not None:
                    entry["modelled"] = model_seconds(model, site, function, p)
        except WSError as e:
            err = e
        seconds = 0.0
        if model is not None:
            seconds = entry["modelled"] if err is None else model_seconds(model, site,
                                                                         function, None)
        elif cost is not None:
            seconds = cost["call"] + (cost["item"] * entry["items"] if err is None else 0.0)
        if err is not None:
            if seconds and self.stopping.wait(seconds):
                entry["status"] = None
                return Reply(reset=True)
            return err_reply(err)
        if fault is not None and fault.mode == "cacherace":
            # Moodle's bootstrap failed to save its cache config: the call
            # itself never ran (32k); it takes its time like a call.
            if seconds and self.stopping.wait(seconds):
                entry["status"] = None
                return Reply(reset=True)
            return err_reply(CACHE_RACE)
        if fault is not None and fault.mode == "latecommit":
            seconds += fault.seconds  # the client may be gone: PHP goes on regardless
        write = function in WRITE_FUNCTIONS

        def run():
            call = Call(site, tok, self.url)
            try:
                return impl(call, p)
            finally:
                entry.update(call.stats)

        flight = None
        try:
            if seconds <= 0:
                with site.lock:  # atomic: nobody sees this call under way
                    if function in LOCKING_FUNCTIONS:
                        flight = site.begin_write(seq, function, p)
                        result = self._commit(seq, flight, run, entry)
                    else:
                        result = run()
            else:
                if function in LOCKING_FUNCTIONS:
                    with site.lock:
                        flight = site.begin_write(seq, function, p)
                    entry["deadlock"] = flight.victim is not None
                if self.stopping.wait(seconds):
                    raise Stopped()
                with site.lock:
                    result = self._commit(seq, flight, run, entry) if flight else run()
            if write:
                entry["committed"] = True
        except Stopped:
            if flight is not None and not flight.done:
                with site.lock:
                    site.abort_write(flight)
            if write:
                entry["committed"] = False
            entry["status"] = None
            return Reply(reset=True)
        except WSError as e:
            if write:
                entry["committed"] = False
            return err_reply(e)
        if fault is not None and fault.mode == "mailfail":
            return err_reply(MAILFAIL)  # committed, then the mail failed (08*_MAILFAIL)
        if fmt == "json":
            return Reply(200, JSON_HEADERS, (warn + php_json(result)).encode("utf-8"))
        return Reply(200, XML_HEADERS, (warn + xml_response(result)).encode("utf-8"))

    def _commit(self, seq, flight, run, entry):
        """Site.finish_write() with the outcome written into the log entry."""
        if flight.victim is None and any(not w.done for w in flight.waits):
            self._track(seq, state="waiting")
        try:
            return self.site.finish_write(flight, run, self.stopping)
        finally:
            entry["waited_for"] = [w.seq for w in flight.waits]
            entry["deadlock"] = flight.victim is not None
            if flight.victim is not None:
                entry["conflict"] = "deadlock"
                entry["deadlock_with"] = flight.victim
            elif any(w.committed for w in flight.dup_on):
                entry["conflict"] = "duplicate"

    def _fault_reply(self, fault, err_reply, entry):
        mode = fault.mode
        if mode == "delay":
            self.stopping.wait(fault.seconds)
            return None
        if mode in ("mailfail", "latecommit"):
            return None
        if mode in ("http500", "http502", "http503", "http504"):
            code = int(mode[4:])
            reason = {500: "Internal Server Error", 502: "Bad Gateway",
                      503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}[code]
            entry["status"] = code
            body = NGINX_ERROR % {"code": code, "reason": reason}
            return Reply(code, (("Content-Type", "text/html"),), body.encode("ascii"))
        if mode == "reset":
            entry["status"] = None
            return Reply(reset=True)
        if mode == "sitemaintenance":
            return err_reply(MAINTENANCE)
        if mode == "maintenance":
            entry["status"] = 503
            page = MAINTENANCE_PAGE % {"site": SITENAME}
            return Reply(503, MAINTENANCE_HEADERS, page.encode("utf-8"))
        if mode == "dbdown":
            return err_reply(DB_DOWN)
        if mode == "cacherace":
            return None  # answered by the php-fpm worker (_php)
        if mode == "invalidtoken":
            return err_reply(INVALID_TOKEN)
        if mode == "garbage":
            return Reply(200, JSON_HEADERS, GARBAGE_BODY.encode("utf-8"))
        if mode == "html":
            return Reply(200, (("Content-Type", "text/html; charset=utf-8"),),
                         (LOGIN_PAGE % {"url": self.url}).encode("utf-8"))
        if mode == "nulllist":
            return Reply(200, JSON_HEADERS, b"null")
        body = fault.body
        entry["status"] = fault.status
        if isinstance(body, dict):
            entry["errorcode"] = body.get("errorcode")
            body = php_json(body)
        elif body is None:
            body = php_json({"exception": "moodle_exception",
                             "errorcode": "generalexceptionmessage",
                             "message": "error/generalexceptionmessage"})
            entry["errorcode"] = "generalexceptionmessage"
        return Reply(fault.status, JSON_HEADERS, str(body).encode("utf-8"))

    # -- control endpoints ------------------------------------------------------------------
    def handle_control(self, method, path, query, body):
        """Answer /__double/...; returns (status, JSON-able value)."""
        try:
            req = json.loads(body.decode("utf-8")) if body.strip() else {}
        except ValueError as e:
            return 400, {"error": "bad JSON: %s" % e}
        if not isinstance(req, dict):
            return 400, {"error": "expected a JSON object"}
        try:
            if method == "GET" and path == "/__double/state":
                return 200, self.state()
            if method == "GET" and path == "/__double/log":
                qs = urllib.parse.parse_qs(query.decode("latin-1"))
                return 200, self.log(int(qs.get("since", ["0"])[0]))
            if method == "GET" and path == "/__double/info":
                return 200, self.info()
            if method == "GET" and path == "/__double/inflight":
                return 200, self.inflight()
            if method == "GET" and path == "/__double/stats":
                return 200, self.stats()
            if method != "POST":
                return 404, {"error": "no such control endpoint"}
            if path == "/__double/fault":
                mode = req.get("mode")
                if mode == "none":
                    self.clear_faults()
                else:
                    self.set_fault(mode, req.get("count", 1), req.get("function"),
                                   req.get("after", 0), req.get("seconds"), req.get("body"),
                                   req.get("status", 200), req.get("duration"))
                return 200, {"ok": True}
            if path == "/__double/config":
                unknown = set(req) - {"max_input_vars", "ws_enabled", "debug",
                                      "display_startup_errors", "cost", "workers",
                                      "deadlock_rule", "model"}
                if unknown:
                    return 400, {"error": "unknown config keys %s" % sorted(unknown)}
                self.configure(**req)
                return 200, {"ok": True}
            if path == "/__double/users":
                ids = self.add_users(req.get("users", []))
                return 200, {"users": [{"id": i, "username": self.site.users[i]["username"]}
                                       for i in ids]}
            if path == "/__double/courses":
                out = []
                for c in req.get("courses", []):
                    cid = self.add_course(c["shortname"], c.get("fullname"),
                                          c.get("manual", "enabled"), c.get("visible", 1),
                                          c.get("categoryid", 1), c.get("idnumber", ""))
                    out.append({"id": cid, "shortname": c["shortname"]})
                return 200, {"courses": out}
            if path == "/__double/enrol":
                self.enrol(req["shortname"], req["username"], req.get("roleid"),
                           req.get("status", "active"))
                return 200, {"ok": True}
            if path == "/__double/unenrol":
                self.unenrol(req["shortname"], req["username"])
                return 200, {"ok": True}
            if path == "/__double/assign_role":
                self.assign_role(req["shortname"], req["username"], req["roleid"])
                return 200, {"ok": True}
            if path == "/__double/unassign_role":
                self.unassign_role(req["shortname"], req["username"], req["roleid"])
                return 200, {"ok": True}
            if path == "/__double/update_course":
                self.update_course(req["shortname"], req.get("fullname"), req.get("visible"))
                return 200, {"ok": True}
            if path == "/__double/delete_course":
                return 200, {"id": self.delete_course(req["shortname"])}
            if path == "/__double/reset":
                self.reset()
                return 200, {"ok": True}
            if path == "/__double/log/clear":
                self.clear_log()
                return 200, {"ok": True}
        except (ValueError, KeyError, TypeError) as e:
            return 400, {"error": "%s: %s" % (type(e).__name__, e)}
        return 404, {"error": "no such control endpoint"}

    def record(self, entry):
        for k, v in (("seq", None), ("arrived", None), ("start", None), ("end", None),
                     ("deadlock", False), ("conflict", None), ("waited_for", []),
                     ("committed", None)):
            entry.setdefault(k, v)
        with self.lock:
            self.entries.append(entry)


def _handler_for(double):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 300

        def version_string(self):
            return "nginx/1.22.1"

        def log_message(self, fmt, *args):
            if double.verbose:
                sys.stderr.write("moodle-double: " + (fmt % args) + "\n")

        def setup(self):
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with double.lock:
                double.conns.add(self.connection)

        def finish(self):
            with double.lock:
                double.conns.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def do_GET(self):
            self._dispatch("GET")

        def do_POST(self):
            self._dispatch("POST")

        def _read_body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status, headers, body):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self._headers_buffer.append(b"\r\n")
            self._headers_buffer.append(body)  # headers and body in one write
            self.flush_headers()

        def _dispatch(self, method):
            body = self._read_body()
            split = urllib.parse.urlsplit(self.path)
            path = split.path
            query = split.query.encode("latin-1")
            if path.startswith("/__double/"):
                status, value = double.handle_control(method, path, query, body)
                self._send(status, (("Content-Type", "application/json"),),
                           json.dumps(value).encode("utf-8"))
                return
            if path != REST_PATH:
                self._send(404, (("Content-Type", "text/html"),),
                           (NGINX_ERROR % {"code": 404, "reason": "Not Found"}).encode())
                return
            reply, entry = double.handle_ws(method, query, self.headers, body)
            double.record(entry)
            if reply.reset:
                self.close_connection = True
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.connection.close()  # RST, no answer
                except OSError:
                    pass
                return
            self._send(reply.status, reply.headers, reply.body)

    return Handler


# ---------------------------------------------------------------------------
# CLI

def _write_atomic(path, text, mode=0o644):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Moodle web-service double on loopback")
    ap.add_argument("--port", type=int, default=0, help="0 = a free port")
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--max-input-vars", type=int, default=5000)
    ap.add_argument("--token-file", help="write the admin token here (mode 0600)")
    ap.add_argument("--users", default="", help="comma-separated usernames to create")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    ap.add_argument("--seed", choices=SEEDS, default="lab1", help="the site to start from")
    ap.add_argument("--workers", type=int, default=None, help="php-fpm workers (default: "
                    "as many as requests)")
    ap.add_argument("--cost", default=None, metavar="CALL,ITEM",
                    help="seconds per call and per item (default: none)")
    ap.add_argument("--model", default=None, metavar="SCALE[,nowelcome]",
                    help="a real Moodle 4.4's costs (MODEL_*), times SCALE")
    args = ap.parse_args(argv)
    model = None
    if args.model:
        scale, _, welcome = args.model.partition(",")
        try:
            model = _check_model({"scale": float(scale), "welcome": welcome != "nowelcome"})
        except ValueError:
            ap.error("--model wants SCALE[,nowelcome]")
    cost = None
    if args.cost:
        try:
            call_s, item_s = (float(x) for x in args.cost.split(","))
        except ValueError:
            ap.error("--cost wants CALL,ITEM seconds")
        cost = {"call": call_s, "item": item_s}

    done = threading.Event()

    def on_signal(signum, frame):
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    d = MoodleDouble(max_input_vars=args.max_input_vars, port=args.port,
                     verbose=args.verbose, seed=args.seed, cost=cost, workers=args.workers,
                     model=model)
    users = [u for u in args.users.split(",") if u]
    if users:
        d.add_users(users)
    d.start()
    if args.token_file:
        _write_atomic(args.token_file, d.token + "\n", 0o600)
    if args.port_file:
        _write_atomic(args.port_file, "%d\n" % d.port)
    print("listening on %s" % d.url, flush=True)
    while not done.wait(1.0):
        pass
    d.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
