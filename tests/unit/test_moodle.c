/* The Moodle client (and the HTTP layer under it) against the Moodle double. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "batch.h"
#include "check.h"
#include "config.h"
#include "double.h"
#include "http.h"
#include "moodle.h"
#include "tap.h"
#include "util.h"

static struct double_srv D;
/* moodle.max_concurrent_calls of the next client() (0: one). */
static int next_concurrency;

/* A client with a hand-made config (config.c is not needed). */
static struct moodle *
client(const char *url, const char *token, int miv, int retries,
       int64_t delay_ms, volatile sig_atomic_t *cancel)
{
	struct config cfg;
	char u[128];

	memset(&cfg, 0, sizeof(cfg));
	snprintf(u, sizeof(u), "%s", url != NULL ? url : D.url);
	cfg.moodle_url = u;
	cfg.moodle_token = (char *)(token != NULL ? token : D.token);
	cfg.moodle_timeout_ms = 20000;
	cfg.moodle_max_input_vars = miv;
	cfg.moodle_retries = retries;
	cfg.moodle_retry_delay_ms = delay_ms;
	cfg.moodle_max_concurrent_calls = next_concurrency;
	next_concurrency = 0;
	return moodle_new(&cfg, cancel);
}

static void
reset_double(void)
{
	ok(double_post(&D, "/__double/reset", "{}") == 0, "double reset");
}

static void
fault(const char *json)
{
	if (double_post(&D, "/__double/fault", json) != 0)
		ok(0, "fault %s accepted", json);
}

static void
log_clear(void)
{
	double_post(&D, "/__double/log/clear", "{}");
}

/* Requests in the double's log for function (NULL: all); the largest
 * nvars seen goes to *max_nvars. */
static int
log_count(const char *function, int *max_nvars)
{
	json_t *log = double_log(&D), *e;
	const char *fn;
	size_t i;
	int n = 0;

	if (max_nvars != NULL)
		*max_nvars = 0;
	json_array_foreach(log, i, e)
	{
		fn = json_string_value(json_object_get(e, "function"));
		if (function != NULL &&
		    (fn == NULL || strcmp(fn, function) != 0))
			continue;
		n++;
		if (max_nvars != NULL && json_integer_value(json_object_get(
					     e, "nvars")) > *max_nvars)
			*max_nvars = (int)json_integer_value(
			    json_object_get(e, "nvars"));
	}
	json_decref(log);
	return n;
}

/* Create a course through the client; its id, or 0. */
static int64_t
new_course(struct moodle *m, const char *shortname)
{
	struct moodle_new_course nc = { shortname, shortname, NULL, NULL, NULL,
					2,         1,         0,    0 };
	struct moodle_error err = { 0 };
	int64_t id = 0;

	if (moodle_courses_create(m, &nc, 1, &id, &err) == -1)
		printf("# create %s: %s\n", shortname, err.message);
	moodle_error_clear(&err);
	ok(id > 0, "course %s is %lld", shortname, (long long)id);
	return id;
}

/* No error text may carry the token. */
static void
no_token(const struct moodle_error *e, const char *what)
{
	const char *tok = D.token;

	ok((e->message == NULL || strstr(e->message, tok) == NULL) &&
	       (e->debuginfo == NULL || strstr(e->debuginfo, tok) == NULL) &&
	       (e->errorcode == NULL || strstr(e->errorcode, tok) == NULL),
	   "%s: the token is not in the error", what);
}

static void
test_http(void)
{
	struct http *h = http_new(NULL);
	struct http_request req = { 0 };
	struct http_response resp = { 0 };
	char *s, *cause = NULL, url[256], path[] = "/tmp/wcd-http.XXXXXX";
	FILE *f;
	int fd;

	s = http_redact_url(
	    "https://user:secret@example.org:8443/a/b?token=x#frag");
	is_str(s, "https://example.org:8443/a/b",
	       "redact: userinfo, query, fragment");
	free(s);
	s = http_redact_url("file:///srv/feed.json?x");
	is_str(s, "file:///srv/feed.json", "redact: file URL");
	free(s);
	s = http_redact_url("http://h/p@q");
	is_str(s, "http://h/p@q", "redact: @ in the path is not userinfo");
	free(s);
	s = http_escape("a b&c=d/é[0]");
	is_str(s, "a%20b%26c%3Dd%2F%C3%A9%5B0%5D", "escape");
	free(s);

	/* The body cap aborts the transfer. */
	snprintf(url, sizeof(url), "%s/__double/state", D.url);
	req.url = url;
	req.timeout_ms = 10000;
	req.max_body = 8;
	is_int(http_perform(h, &req, &resp, &cause), HTTP_ERR_TOO_BIG,
	       "body over max_body: TOO_BIG");
	ok(cause != NULL && strstr(cause, "8 bytes") != NULL, "cause: %s",
	   cause);
	free(cause);
	cause = NULL;
	req.max_body = 1 << 20;
	is_int(http_perform(h, &req, &resp, &cause), HTTP_OK, "same URL, room");
	is_int(resp.status, 200, "status 200");
	ok(resp.content_type != NULL && strstr(resp.content_type, "json"),
	   "Content-Type captured: %s", resp.content_type);
	ok(resp.len > 8 && resp.body[resp.len] == '\0', "body NUL-terminated");
	http_response_clear(&resp);

	/* file:// is allowed for file URLs, with the same cap. */
	fd = mkstemp(path);
	f = fdopen(fd, "w");
	fputs("{\"courses\":[]}", f);
	fclose(f);
	snprintf(url, sizeof(url), "file://%s", path);
	req.max_body = 1 << 20;
	is_int(http_perform(h, &req, &resp, &cause), HTTP_OK, "file:// read");
	is_str(resp.body, "{\"courses\":[]}", "file body");
	ok(resp.last_modified != NULL && strstr(resp.last_modified, "GMT"),
	   "Last-Modified captured: %s", resp.last_modified);
	http_response_clear(&resp);
	req.max_body = 4;
	is_int(http_perform(h, &req, &resp, &cause), HTTP_ERR_TOO_BIG,
	       "file:// over the cap");
	free(cause);
	cause = NULL;
	unlink(path);

	/* Redirects: reported as they are, or followed when asked. */
	snprintf(url, sizeof(url),
		 "http://localhost:%d/webservice/rest/server.php?x=1", D.port);
	req.url = url;
	req.max_body = 1 << 20;
	is_int(http_perform(h, &req, &resp, &cause), HTTP_OK, "not followed");
	is_int(resp.status, 303, "303 from the wrong host name");
	ok(resp.location != NULL &&
	       strncmp(resp.location, D.url, strlen(D.url)) == 0,
	   "Location captured: %s", resp.location);
	http_response_clear(&resp);
	req.max_redirects = 2;
	is_int(http_perform(h, &req, &resp, &cause), HTTP_OK, "followed");
	is_int(resp.status, 200, "the target answers 200");
	ok(resp.location == NULL, "headers are the final response's");
	http_response_clear(&resp);
	req.max_redirects = 0;

	/* Nothing listens on port 1. */
	req.url = "http://127.0.0.1:1/x";
	is_int(http_perform(h, &req, &resp, &cause), HTTP_ERR_CONNECT,
	       "refused connection: CONNECT");
	free(cause);
	cause = NULL;
	req.url = "gopher://127.0.0.1/x";
	is_int(http_perform(h, &req, &resp, &cause), HTTP_ERR_OTHER,
	       "other protocols refused");
	free(cause);
	http_free(h);
}

static void
test_capacity(void)
{
	struct moodle *m = client(NULL, NULL, 1000, 1, 10, NULL);
	struct moodle_enrolment e[2] = { { 5, 3, 4, -1 }, { 5, 4, 4, 1 } };

	/* (1000 - 10 margin - 3 ws vars - extra) / fields */
	is_int(moodle_capacity(m, 3, 0), 329, "enrol at 1000: 329 per call");
	is_int(moodle_capacity(m, 4, 0), 246, "suspend at 1000: 246 per call");
	is_int(moodle_capacity(m, 1, 1), 986, "lookups at 1000: 986 per call");
	is_int(moodle_capacity(m, 0, 0), 0, "no fields: no capacity");
	is_int(moodle_enrol_fields(e, 1), 3, "enrol without suspend: 3 fields");
	is_int(moodle_enrol_fields(e, 2), 4, "enrol with a suspend: 4 fields");
	is_int(moodle_unenrol_fields(e, 2), 3, "unenrol with roleid: 3 fields");
	moodle_free(m);
	m = client(NULL, NULL, 5000, 1, 10, NULL);
	is_int(moodle_capacity(m, 3, 0), 1662, "enrol at 5000: 1662 per call");
	moodle_free(m);
}

static void
test_calls(void)
{
	struct moodle *m = client(NULL, NULL, 1000, 1, 10, NULL);
	struct moodle_error err = { 0 };
	struct moodle_site_info *si = NULL;
	struct moodle_course c = { 0 };
	struct moodle_user *u = NULL;
	struct moodle_enrolled_user *eu = NULL;
	struct moodle_warning *w = NULL;
	size_t n = 0, nw = 0, i, k;
	const char *const *fn;
	char *name = NULL;
	int64_t ids[2] = { 0, 0 };
	int found, maxv, roles_of_5 = 0;
	const char *names[] = { "00000000078", "00000000077", "00000000023",
				"00000000087", "00000000069" };
	struct moodle_new_course nc[2] = {
		{ "LAB101", "Lab Course 101", "LAB101-2026", NULL, NULL, 2, 1,
		  0, 0 },
		{ "LAB102", "Lab Course 102 (Überprüfung & \"quotes\")", NULL,
		  "a summary", "topics", 2, 0, 1767225600, 0 },
	};
	struct moodle_course_update up[2] = {
		{ 4, "Lab Course 101 (renamed)", -1 }, { 999, "Ghost", -1 }
	};
	struct moodle_enrolment en[3] = { { 5, 3, 4, -1 },
					  { 5, 4, 4, -1 },
					  { 3, 5, 4, 1 } };
	struct moodle_enrolment un[1] = { { 0, 4, 4, -1 } };
	struct moodle_role_assignment ra[1] = { { 4, 5, 4 } };

	reset_double();
	is_int(moodle_site_info(m, &si, &err), 0, "site info");
	if (si != NULL) {
		ok(si->sitename[0] != '\0' && si->release[0] != '\0',
		   "site name %s, release %s", si->sitename, si->release);
		for (fn = moodle_required_functions, found = 0; *fn; fn++) {
			for (i = 0; i < si->nfunctions; i++)
				found += strcmp(si->functions[i], *fn) == 0;
		}
		is_int(found, 11, "admin token has all 11 required functions");
	}
	moodle_site_info_free(si);

	is_int(moodle_category_get(m, 2, &name, &err), 0, "category 2");
	is_str(name, "Lab Category", "category 2 is Lab Category");
	free(name);
	name = (char *)"x";
	is_int(moodle_category_get(m, 999, &name, &err), 0, "category 999");
	ok(name == NULL, "category 999 does not exist");

	is_int(moodle_course_by_shortname(m, "LAB-NOMANUAL", &c, &err), 0,
	       "course by shortname");
	is_int(c.id, 2, "LAB-NOMANUAL is course 2");
	is_str(c.shortname, "LAB-NOMANUAL", "its shortname");
	moodle_course_clear(&c);
	is_int(moodle_course_by_shortname(m, "LAB-NONE", &c, &err), 0,
	       "missing course: no error");
	is_int(c.id, 0, "missing course: id 0");
	moodle_course_clear(&c);

	log_clear();
	is_int(moodle_courses_create_fields(nc, 2), 7, "create fields: 7");
	is_int(moodle_courses_create(m, nc, 2, ids, &err), 0,
	       "create 2 courses");
	is_int(ids[0], 4, "first new course id 4");
	is_int(ids[1], 5, "second new course id 5, request order");
	is_int(log_count("core_course_create_courses", &maxv), 1,
	       "one request");
	is_int(maxv, 3 + 5 + 7, "15 variables (3 ws + 5 + 7)");
	is_int(moodle_course_by_shortname(m, "LAB102", &c, &err), 0, "LAB102");
	is_str(c.fullname, "Lab Course 102 (Überprüfung & \"quotes\")",
	       "UTF-8 and & survive the form and Moodle's &amp; (05g)");
	moodle_course_clear(&c);
	ids[1] = new_course(m, "R&D-1");
	is_int(moodle_course_by_shortname(m, "R&D-1", &c, &err), 0, "R&D-1");
	is_int(c.id, ids[1], "a shortname with & is found");
	is_str(c.shortname, "R&D-1", "and given back without &amp;");
	moodle_course_clear(&c);
	ids[0] = 77;
	is_int(moodle_courses_create(m, nc, 1, ids, &err), -1, "create again");
	is_int(err.kind, MOODLE_ITEM, "shortnametaken is an item error");
	is_str(err.errorcode, "shortnametaken", "errorcode shortnametaken");
	is_int(ids[0], 77, "no id written on failure");
	moodle_error_clear(&err);

	is_int(moodle_courses_update(m, up, 2, &w, &nw, &err), 0, "update");
	is_int(nw, 1, "one warning");
	if (nw == 1)
		is_int(w[0].itemid, 999, "the warning is about course 999");
	moodle_warnings_free(w, nw);
	is_int(moodle_course_by_shortname(m, "LAB101", &c, &err), 0, "LAB101");
	is_str(c.fullname, "Lab Course 101 (renamed)", "renamed");
	moodle_course_clear(&c);

	is_int(moodle_users_by_username(m, names, 5, &u, &n, &err), 0,
	       "users by username");
	is_int(n, 3, "3 of 5 exist");
	if (n == 3) {
		is_int(u[0].id, 3, "sorted by id: 3");
		is_str(u[0].username, "00000000023", "user 3 is 00000000023");
		is_int(u[2].id, 7, "last is 7");
	}
	moodle_users_free(u, n);

	log_clear();
	is_int(moodle_enrol(m, en, 3, &err), 0, "enrol 3 (one suspended)");
	is_int(log_count("enrol_manual_enrol_users", &maxv), 1, "one request");
	is_int(maxv, 3 + 3 + 3 + 4, "suspend sent only where set: 13 vars");
	is_int(moodle_enrolled_users(m, 4, &eu, &n, &err), 0, "enrolled users");
	is_int(n, 3, "3 enrolled");
	for (i = 0; i < n; i++) {
		if (eu[i].id != 5)
			continue;
		for (k = 0; k < eu[i].nroles; k++)
			roles_of_5 += eu[i].roleids[k] == 3;
	}
	is_int(roles_of_5, 1, "user 5 is editingteacher (3)");
	moodle_enrolled_users_free(eu, n);

	is_int(moodle_role_assign(m, ra, 1, &err), 0, "role assign");
	is_int(moodle_enrolled_users(m, 4, &eu, &n, &err), 0, "enrolled users");
	for (i = 0, roles_of_5 = 0; i < n; i++) {
		for (k = 0; eu[i].id == 5 && k < eu[i].nroles; k++)
			roles_of_5++;
	}
	is_int(roles_of_5, 2, "user 5 has 2 roles after assign");
	moodle_enrolled_users_free(eu, n);
	is_int(moodle_role_unassign(m, ra, 1, &err), 0, "role unassign");

	is_int(moodle_unenrol(m, un, 1, &err), 0, "unenrol user 4");
	is_int(moodle_enrolled_users(m, 4, &eu, &n, &err), 0, "enrolled users");
	is_int(n, 2, "2 left");
	moodle_enrolled_users_free(eu, n);

	eu = NULL;
	n = 0;
	is_int(moodle_enrolled_users(m, 999, &eu, &n, &err), -1, "course 999");
	is_int(err.kind, MOODLE_ITEM, "missing course: item, not fatal (13c)");
	is_str(err.errorcode, "invalidrecord", "invalidrecord");
	moodle_error_clear(&err);

	un[0].courseid = 999;
	is_int(moodle_unenrol(m, un, 1, &err), -1, "unenrol from course 999");
	is_int(err.kind, MOODLE_ITEM, "unenrol missing course: item (11e)");
	moodle_error_clear(&err);

	en[0].courseid = 2;
	is_int(moodle_enrol(m, en, 1, &err), -1, "enrol into LAB-NOMANUAL");
	is_int(err.kind, MOODLE_ITEM, "wsnoinstance: item");
	is_str(err.errorcode, "wsnoinstance", "errorcode wsnoinstance");
	is_str(err.function, "enrol_manual_enrol_users", "function kept");
	moodle_error_clear(&err);
	moodle_free(m);
}

/* max_input_vars: refuse locally, and batch to the minimum of calls. */
static int
enrol_call(struct moodle *m, const size_t *idx, size_t count, void *arg,
	   struct moodle_error *err)
{
	struct moodle_enrolment *all = arg, *en = xcalloc(count, sizeof(*en));
	int rv;

	for (size_t i = 0; i < count; i++)
		en[i] = all[idx[i]];
	rv = moodle_enrol(m, en, count, err);
	free(en);
	return rv;
}

struct tally {
	size_t done, calls_done, nfailed;
	size_t failed[16];
	char errorcode[64];
};
static struct tally T;

static int
tally_done(struct moodle *m, const size_t *idx, size_t count, void *arg)
{
	(void)m, (void)idx, (void)arg;
	T.done += count;
	T.calls_done++;
	return 0;
}

static int
tally_failed(struct moodle *m, size_t index, const struct moodle_error *err,
	     void *arg)
{
	(void)m, (void)arg;
	if (T.nfailed < nitems(T.failed))
		T.failed[T.nfailed] = index;
	T.nfailed++;
	snprintf(T.errorcode, sizeof(T.errorcode), "%s",
		 err->errorcode != NULL ? err->errorcode : "");
	return 0;
}

/* Make n users u00001.. in the double; their ids are 8.. upward. */
static void
add_users(int n)
{
	json_t *users = json_array(), *body = json_object();
	char name[32], *s;
	int i;

	for (i = 1; i <= n; i++) {
		snprintf(name, sizeof(name), "u%05d", i);
		json_array_append_new(users,
				      json_pack("{s:s}", "username", name));
	}
	json_object_set_new(body, "users", users);
	s = json_dumps(body, JSON_COMPACT);
	ok(double_post(&D, "/__double/users", s) == 0, "double: %d users", n);
	free(s);
	json_decref(body);
}

/* Look the users up (batched) and enrol them all into course 4. */
static struct moodle_enrolment *
user_enrolments(struct moodle *m, int n, int64_t courseid)
{
	struct moodle_enrolment *en = xcalloc((size_t)n, sizeof(*en));
	const char **names = xcalloc((size_t)n, sizeof(char *));
	struct moodle_user *u = NULL;
	struct moodle_error err = { 0 };
	size_t nu = 0, i, got = 0, cap = moodle_capacity(m, 1, 1), k;

	for (i = 0; i < (size_t)n; i++) {
		xasprintf((char **)&names[i], "u%05zu", i + 1);
		en[i] = (struct moodle_enrolment){ 5, 0, courseid, -1 };
	}
	for (i = 0; i < (size_t)n; i += cap) {
		k = (size_t)n - i < cap ? (size_t)n - i : cap;
		if (moodle_users_by_username(m, names + i, k, &u, &nu, &err) ==
		    0) {
			for (k = 0; k < nu; k++)
				en[got + k].userid = u[k].id;
			got += nu;
		}
		moodle_users_free(u, nu);
		moodle_error_clear(&err);
	}
	is_int(got, n, "looked up %d users", n);
	for (i = 0; i < (size_t)n; i++)
		free((char *)names[i]);
	free(names);
	return en;
}

static void
test_batching(int miv, int n, int want_calls)
{
	struct moodle *m = client(NULL, NULL, miv, 1, 10, NULL);
	struct moodle_error err = { 0 };
	struct moodle_enrolment *en;
	struct batch b = { 0 };
	char cfgjson[64];
	int maxv, calls;

	reset_double();
	snprintf(cfgjson, sizeof(cfgjson), "{\"max_input_vars\": %d}", miv);
	ok(double_post(&D, "/__double/config", cfgjson) == 0,
	   "double max_input_vars %d", miv);
	add_users(n);
	en = user_enrolments(m, n, new_course(m, "LAB-BATCH"));
	b.n = (size_t)n;
	b.fields = moodle_enrol_fields(en, (size_t)n);
	b.call = enrol_call;
	b.done = tally_done;
	b.failed = tally_failed;
	b.arg = en;
	memset(&T, 0, sizeof(T));
	log_clear();
	is_int(batch_run(m, &b, &err), 0, "%d enrolments at %d", n, miv);
	calls = log_count("enrol_manual_enrol_users", &maxv);
	is_int(calls, want_calls, "%d enrolments at limit %d: %d calls", n, miv,
	       want_calls);
	ok(maxv <= miv, "largest request %d variables <= %d", maxv, miv);
	is_int(T.done, n, "done() confirmed all %d", n);
	is_int(T.nfailed, 0, "nothing failed");
	{
		struct moodle_enrolled_user *eu = NULL;
		size_t neu = 0;

		log_clear();
		is_int(
		    moodle_enrolled_users(m, en[0].courseid, &eu, &neu, &err),
		    0, "enrolled users of the course");
		is_int(neu, n, "all %d, paged", n);
		is_int(log_count("core_enrol_get_enrolled_users", NULL),
		       n / 1000 + 1, "in pages of 1000");
		moodle_enrolled_users_free(eu, neu);
	}

	/* One call over the limit is refused before it is sent. */
	log_clear();
	is_int(moodle_enrol(m, en, moodle_capacity(m, 3, 0) + 1, &err), -1,
	       "one item over capacity");
	is_int(err.kind, MOODLE_FATAL, "refused as a caller bug");
	is_str(err.errorcode, "toomanyvars", "toomanyvars");
	is_int(log_count(NULL, NULL), 0, "and never sent");
	moodle_error_clear(&err);
	is_int(moodle_enrol(m, en, moodle_capacity(m, 3, 0), &err), 0,
	       "exactly capacity is sent");
	free(en);
	moodle_free(m);
}

static void
test_split(void)
{
	struct moodle *m = client(NULL, NULL, 1000, 1, 10, NULL);
	struct moodle_error err = { 0 };
	struct moodle_enrolment *en;
	struct batch b = { 0 };
	int calls, bound = 3 * (int)ceil(log2(100)) + 4;

	reset_double();
	add_users(100);
	en = user_enrolments(m, 100, new_course(m, "LAB-SPLIT"));
	en[7].userid = 999001;
	en[50].userid = 999002;
	en[93].userid = 999003;
	b = (struct batch){ .n = 100,
			    .fields = 3,
			    .call = enrol_call,
			    .done = tally_done,
			    .failed = tally_failed,
			    .arg = en };
	memset(&T, 0, sizeof(T));
	log_clear();
	is_int(batch_run(m, &b, &err), 0, "batch of 100 with 3 bad");
	calls = log_count("enrol_manual_enrol_users", NULL);
	is_int(T.nfailed, 3, "exactly 3 failed");
	ok(T.failed[0] == 7 && T.failed[1] == 50 && T.failed[2] == 93,
	   "they are 7, 50, 93 (got %zu %zu %zu)", T.failed[0], T.failed[1],
	   T.failed[2]);
	is_str(T.errorcode, "codingerror", "each with Moodle's error (09a)");
	is_int(T.done, 97, "done() covers the 97 good ones");
	ok(calls <= bound, "%d calls <= 3*ceil(log2 100)+4 = %d", calls, bound);
	is_int((int)moodle_requests(m) - 2, calls, "requests counted");
	free(en);
	moodle_free(m);
}

static void
expect_fault(struct moodle *m, const char *faultjson, enum moodle_status kind,
	     const char *errorcode, const char *in_message, const char *what)
{
	struct moodle_error err = { 0 };
	struct moodle_course c = { 0 };
	/* A client of its own: site-wide answers would open m's breaker. */
	struct moodle *own = client(NULL, NULL, 1000, 2, 10, NULL);
	bool resend = moodle_set_resend(m, true);

	moodle_set_resend(m, resend);
	moodle_set_resend(own, resend);
	fault(faultjson);
	is_int(moodle_course_by_shortname(own, "LAB-NOMANUAL", &c, &err), -1,
	       "%s: call fails", what);
	is_int(err.kind, kind, "%s: class", what);
	if (errorcode != NULL)
		is_str(err.errorcode, errorcode, "%s: errorcode", what);
	if (in_message != NULL)
		ok(err.message != NULL && strstr(err.message, in_message),
		   "%s: message says \"%s\": %s", what, in_message,
		   err.message);
	no_token(&err, what);
	moodle_error_clear(&err);
	moodle_course_clear(&c);
	moodle_free(own);
	fault("{\"mode\": \"none\"}");
}

static void
test_errors(void)
{
	struct moodle *m = client(NULL, NULL, 1000, 2, 10, NULL);
	struct moodle *bad;
	struct moodle_error err = { 0 };
	struct moodle_site_info *si = NULL;
	struct moodle_enrolment en[1] = { { 5, 3, 0, -1 } };
	char url[128], body[512];
	int64_t cid;

	reset_double();
	en[0].courseid = cid = new_course(m, "LAB-ERR");
	expect_fault(m, "{\"mode\": \"http500\", \"count\": -1}",
		     MOODLE_TRANSIENT, "http500", NULL, "HTTP 500");
	/* Site-wide answers, still there after the tries: Moodle is down
	 * (moodle-ws 32g/32h), whatever the call. */
	expect_fault(
	    m, "{\"mode\": \"http502\", \"count\": -1}", MOODLE_DOWN, "http502",
	    "Moodle unavailable: its web server cannot reach PHP", "HTTP 502");
	expect_fault(m, "{\"mode\": \"http504\", \"count\": -1}", MOODLE_DOWN,
		     "http504", "Moodle unavailable", "HTTP 504");
	expect_fault(m, "{\"mode\": \"reset\", \"count\": -1}", MOODLE_DOWN,
		     "noanswer", "Moodle unavailable", "connection reset");
	expect_fault(m, "{\"mode\": \"dbdown\", \"count\": -1}", MOODLE_DOWN,
		     "dbconnectionfailed",
		     "Moodle unavailable: its database connection failed",
		     "database down (32a)");
	expect_fault(m, "{\"mode\": \"maintenance\", \"count\": -1}",
		     MOODLE_DOWN, "http503", "Moodle unavailable",
		     "maintenance from the CLI (32e)");
	/* Without resending, a call without an answer is unsure: Moodle may
	 * have applied it (a gateway error too: PHP may still be at work);
	 * a rolled-back write is a conflict (30d/30e). */
	moodle_set_resend(m, false);
	expect_fault(m, "{\"mode\": \"reset\", \"count\": -1}", MOODLE_UNSURE,
		     "noanswer", NULL, "reset, no resending");
	expect_fault(m, "{\"mode\": \"http502\", \"count\": -1}", MOODLE_UNSURE,
		     "http502", NULL, "502, no resending");
	expect_fault(m, "{\"mode\": \"http503\", \"count\": -1}", MOODLE_DOWN,
		     "http503", NULL, "503 is nothing done: down even so");
	moodle_set_resend(m, true);
	expect_fault(m,
		     "{\"mode\": \"error\", \"count\": -1, \"body\": "
		     "{\"exception\": \"dml_write_exception\", "
		     "\"errorcode\": \"dmlwriteexception\", \"message\": "
		     "\"Error writing to database\"}}",
		     MOODLE_CONFLICT, "dmlwriteexception",
		     "undid the whole call", "a rolled-back write");
	expect_fault(m, "{\"mode\": \"sitemaintenance\", \"count\": -1}",
		     MOODLE_DOWN, "sitemaintenance",
		     "Moodle unavailable: it is in maintenance mode",
		     "maintenance mode (32i)");
	/* The race of 32k, for good: transient, not down. */
	expect_fault(m, "{\"mode\": \"cacherace\", \"count\": -1}",
		     MOODLE_TRANSIENT, "ex_configcannotsave", "cache",
		     "cache race, always");
	/* A body that is not the JSON asked for is retried, then stops the
	 * run: a proxy's login page must not be split item by item. */
	expect_fault(m, "{\"mode\": \"garbage\", \"count\": -1}",
		     MOODLE_TRANSIENT, "badjson", "not JSON", "garbage answer");
	expect_fault(m, "{\"mode\": \"html\", \"count\": -1}", MOODLE_TRANSIENT,
		     "badjson", "<", "HTML answer quoted");
	expect_fault(m, "{\"mode\": \"invalidtoken\"}", MOODLE_FATAL,
		     "invalidtoken", "moodle.token_file", "invalid token");
	expect_fault(
	    m,
	    "{\"mode\": \"error\", \"body\": \"<?xml version=\\\"1.0\\\" "
	    "encoding=\\\"UTF-8\\\" ?>\\n<EXCEPTION/>\"}",
	    MOODLE_FATAL, "xml", "<?xml version", "XML answer");
	expect_fault(
	    m,
	    "{\"mode\": \"error\", \"body\": \"{\\\"exception\\\":"
	    "\\\"dml_missing_record_exception\\\",\\\"errorcode\\\":"
	    "\\\"invalidrecord\\\",\\\"message\\\":\\\"Can't find data "
	    "record in database table external_functions.\\\"}\"}",
	    MOODLE_FATAL, "invalidrecord", "does not exist",
	    "function missing (17a)");
	expect_fault(m,
		     "{\"mode\": \"error\", \"body\": \"{\\\"exception\\\":"
		     "\\\"Error\\\",\\\"message\\\":\\\"Attempt to assign "
		     "property on null\\\"}\"}",
		     MOODLE_ITEM, "Error", "Attempt to assign",
		     "exception without errorcode (05c)");
	expect_fault(m, "{\"mode\": \"error\", \"body\": \"\", \"count\": -1}",
		     MOODLE_TRANSIENT, "badjson", NULL, "empty answer");
	expect_fault(m,
		     "{\"mode\": \"error\", \"body\": \"{\\\"courses\\\":[\", "
		     "\"count\": -1}",
		     MOODLE_TRANSIENT, "badjson", "{\"courses\":[",
		     "truncated answer quoted");

	/* Moodle echoing the token must not leak it. */
	snprintf(
	    body, sizeof(body),
	    "{\"mode\": \"error\", \"body\": \"{\\\"exception\\\":\\\"x\\\","
	    "\\\"errorcode\\\":\\\"weird\\\",\\\"message\\\":\\\"token %s "
	    "bad\\\",\\\"debuginfo\\\":\\\"%s\\\"}\"}",
	    D.token, D.token);
	expect_fault(m, body, MOODLE_ITEM, "weird", "[token]", "echoed token");

	/* null where a list is expected. */
	fault("{\"mode\": \"nulllist\", \"count\": -1}");
	{
		const char *names[] = { "00000000023" };
		struct moodle_user *u = NULL;
		size_t n = 0;

		is_int(moodle_users_by_username(m, names, 1, &u, &n, &err), -1,
		       "null instead of a list");
		is_str(err.errorcode, "badanswer", "badanswer");
		ok(err.message != NULL && strstr(err.message, "\"null\""),
		   "quotes the answer: %s", err.message);
		moodle_error_clear(&err);
	}
	fault("{\"mode\": \"none\"}");

	/* MAILFAIL: an error that committed. */
	fault("{\"mode\": \"mailfail\"}");
	is_int(moodle_enrol(m, en, 1, &err), -1, "MAILFAIL enrol fails");
	is_int(err.kind, MOODLE_ITEM, "as an item error");
	is_str(err.errorcode, "Message was not sent.", "MAILFAIL errorcode");
	ok(moodle_error_committed(&err), "and says it committed");
	moodle_error_clear(&err);
	fault("{\"mode\": \"none\"}");
	{
		struct moodle_enrolled_user *eu = NULL;
		size_t n = 0, i, seen = 0;

		moodle_enrolled_users(m, cid, &eu, &n, &err);
		for (i = 0; i < n; i++)
			seen += eu[i].id == 3;
		is_int(seen, 1, "the MAILFAIL enrolment is in Moodle");
		moodle_enrolled_users_free(eu, n);
	}
	{
		/* batch_run counts a committed batch as done, without splits */
		struct moodle_enrolment two[2] = { { 5, 4, cid, -1 },
						   { 5, 5, cid, -1 } };
		struct batch b = { .n = 2,
				   .fields = 3,
				   .call = enrol_call,
				   .done = tally_done,
				   .failed = tally_failed,
				   .arg = two };

		memset(&T, 0, sizeof(T));
		fault("{\"mode\": \"mailfail\", \"count\": -1}");
		log_clear();
		is_int(batch_run(m, &b, &err), 0, "MAILFAIL batch");
		is_int(T.done, 2, "counted as done");
		is_int(T.nfailed, 0, "not as failed");
		is_int(log_count("enrol_manual_enrol_users", NULL), 1,
		       "and not split");
		fault("{\"mode\": \"none\"}");
	}

	/* Wrong token, and a token whose service lacks functions. */
	bad =
	    client(NULL, "0123456789abcdef0123456789abcdef", 1000, 1, 10, NULL);
	is_int(moodle_site_info(bad, &si, &err), -1, "unknown token");
	is_int(err.kind, MOODLE_FATAL, "fatal");
	is_str(err.errorcode, "invalidtoken", "invalidtoken");
	ok(strstr(err.message, "moodle.token_file") != NULL,
	   "says what to fix");
	ok(strstr(err.message, "0123456789abcdef") == NULL, "no token in it");
	moodle_error_clear(&err);
	moodle_free(bad);

	/* Web services off: HTTP 403, empty body (00). */
	double_post(&D, "/__double/config", "{\"ws_enabled\": false}");
	is_int(moodle_site_info(m, &si, &err), -1, "web services disabled");
	is_int(err.kind, MOODLE_FATAL, "fatal");
	is_int(err.http_status, 403, "HTTP 403");
	ok(err.message != NULL && strstr(err.message, "Web services") != NULL,
	   "says where to enable them: %s", err.message);
	moodle_error_clear(&err);
	double_post(&D, "/__double/config", "{\"ws_enabled\": true}");

	/* Host mismatch: Moodle redirects to its wwwroot (22). */
	snprintf(url, sizeof(url), "http://localhost:%d/", D.port);
	bad = client(url, NULL, 1000, 1, 10, NULL);
	is_int(moodle_site_info(bad, &si, &err), -1, "wrong host name");
	is_int(err.kind, MOODLE_FATAL, "fatal");
	is_str(err.errorcode, "redirect", "redirect");
	ok(err.message != NULL && strstr(err.message, "wwwroot") != NULL &&
	       strstr(err.message, D.url) != NULL,
	   "names wwwroot and the Location: %s", err.message);
	no_token(&err, "redirect");
	moodle_error_clear(&err);
	moodle_free(bad);
	moodle_free(m);
}

static void
test_retry(void)
{
	struct moodle *m = client(NULL, NULL, 1000, 4, 50, NULL);
	struct moodle_error err = { 0 };
	struct moodle_course c = { 0 };
	int64_t t0, elapsed;
	uint64_t r0;

	reset_double();
	fault("{\"mode\": \"http503\", \"count\": 2}");
	r0 = moodle_requests(m);
	t0 = now_monotonic_ms();
	is_int(moodle_course_by_shortname(m, "LAB-NOMANUAL", &c, &err), 0,
	       "503 twice, then success");
	elapsed = now_monotonic_ms() - t0;
	is_int(moodle_requests(m) - r0, 3, "3 requests");
	ok(elapsed >= 50 + 100, "backed off 50 + 100 ms (took %lld)",
	   (long long)elapsed);
	is_int(c.id, 2, "answer of the third try");
	ok(err.kind == MOODLE_OK && err.message == NULL,
	   "no error left from the tries before");
	moodle_course_clear(&c);

	fault("{\"mode\": \"http503\", \"count\": -1}");
	r0 = moodle_requests(m);
	t0 = now_monotonic_ms();
	is_int(moodle_course_by_shortname(m, "LAB-NOMANUAL", &c, &err), -1,
	       "503 forever");
	elapsed = now_monotonic_ms() - t0;
	is_int(err.kind, MOODLE_DOWN, "down");
	is_str(err.errorcode, "http503", "http503");
	is_int(moodle_requests(m) - r0, 3,
	       "the breaker opened after 3 site-wide answers, before "
	       "moodle.retries = 4");
	ok(elapsed >= 50 + 100, "backed off 150 ms (took %lld)",
	   (long long)elapsed);
	moodle_error_clear(&err);
	fault("{\"mode\": \"none\"}");
	moodle_free(m);
}

/* A batch of n enrolments that tallies in T. */
static struct batch
tally_batch(size_t n, struct moodle_enrolment *en)
{
	return (struct batch){ .n = n,
			       .fields = 3,
			       .call = enrol_call,
			       .done = tally_done,
			       .failed = tally_failed,
			       .arg = en };
}

/* What batch_run notes as unsettled. */
static size_t unsettled_items;

static int
tally_note(enum batch_event ev, const size_t *items, size_t count, void *arg)
{
	(void)items, (void)arg;
	if (ev == BATCH_UNSETTLED)
		unsettled_items += count;
	return 0;
}

/* The breaker: site-wide answers stop every call, items are not blamed. */
static void
test_breaker(void)
{
	struct moodle *m = client(NULL, NULL, 1000, 6, 10, NULL), *c;
	struct moodle_error err = { 0 };
	struct moodle_site_info *si = NULL;
	struct moodle_enrolment *en;
	const char *names[] = { "00000000023" };
	struct moodle_user *u = NULL;
	struct batch b;
	char *cause = NULL;
	size_t nu = 0;
	uint64_t r0;
	int calls;

	reset_double();
	/* The database stops (32a): 3 answers, not moodle.retries = 6. */
	fault("{\"mode\": \"dbdown\", \"count\": -1}");
	r0 = moodle_requests(m);
	is_int(moodle_site_info(m, &si, &err), -1, "database down: fails");
	is_int(err.kind, MOODLE_DOWN, "DOWN");
	is_str(err.message,
	       "Moodle unavailable: its database connection failed",
	       "plain text, without Moodle's HTML");
	is_int(moodle_requests(m) - r0, 3, "3 requests open the breaker");
	ok(moodle_down(m, &cause) && cause != NULL &&
	       strcmp(cause, err.message) == 0,
	   "moodle_down says so: %s", cause ? cause : "(null)");
	free(cause);
	moodle_error_clear(&err);
	/* Open: the next call is not sent, whichever function. */
	fault("{\"mode\": \"none\"}");
	r0 = moodle_requests(m);
	is_int(moodle_users_by_username(m, names, 1, &u, &nu, &err), -1,
	       "open: the next call fails");
	is_int(err.kind, MOODLE_DOWN, "DOWN");
	is_str(err.errorcode, "dbconnectionfailed", "with the breaker's code");
	is_int(moodle_requests(m) - r0, 0, "and is not sent");
	moodle_error_clear(&err);
	moodle_free(m);

	/* Nothing listens: down after 3 tries. */
	m = client("http://127.0.0.1:1", NULL, 1000, 6, 10, NULL);
	r0 = moodle_requests(m);
	is_int(moodle_site_info(m, &si, &err), -1, "refused connection: fails");
	is_int(err.kind, MOODLE_DOWN, "DOWN");
	is_int(moodle_requests(m) - r0, 3, "after 3 tries, not 6");
	is_str(err.message, "Moodle unavailable: cannot connect to it",
	       "says so");
	moodle_error_clear(&err);
	moodle_free(m);

	/* Down at the last run: one answer is enough. */
	m = client(NULL, NULL, 1000, 6, 10, NULL);
	moodle_set_breaker(m, 1);
	fault("{\"mode\": \"sitemaintenance\", \"count\": -1}");
	r0 = moodle_requests(m);
	is_int(moodle_site_info(m, &si, &err), -1, "maintenance: fails");
	is_int(moodle_requests(m) - r0, 1, "breaker after 1: 1 request");
	is_str(err.message, "Moodle unavailable: it is in maintenance mode",
	       "maintenance (32i)");
	moodle_error_clear(&err);
	moodle_free(m);

	/* Answers that are not site-wide in between: never opens. */
	m = client(NULL, NULL, 1000, 3, 10, NULL);
	fault("{\"mode\": \"none\"}");
	for (int i = 0; i < 3; i++) {
		fault("{\"mode\": \"http503\", \"count\": 2}");
		is_int(moodle_users_by_username(m, names, 1, &u, &nu, &err), 0,
		       "two 503s, then an answer (%d)", i);
		moodle_users_free(u, nu);
		u = NULL;
	}
	ok(!moodle_down(m, NULL), "six 503s, never three in a row: closed");
	/* The cache race (32k): sent again, not site-wide. */
	fault("{\"mode\": \"cacherace\", \"count\": 1}");
	r0 = moodle_requests(m);
	is_int(moodle_users_by_username(m, names, 1, &u, &nu, &err), 0,
	       "cache race: sent again, answered");
	is_int(moodle_requests(m) - r0, 2, "in 2 requests");
	ok(!moodle_down(m, NULL), "the race does not open the breaker");
	moodle_users_free(u, nu);
	moodle_error_clear(&err);
	moodle_free(m);

	/* A batch over 4 calls in flight; the database stops after its
	 * first call: it stops at once, nothing failed, nothing split. */
	c = client(NULL, NULL, 1000, 6, 10, NULL);
	add_users(200);
	en = user_enrolments(c, 200, new_course(c, "LAB-BREAKER"));
	moodle_free(c);
	next_concurrency = 4;
	m = client(NULL, NULL, 100, 6, 10, NULL);
	b = tally_batch(200, en);
	memset(&T, 0, sizeof(T));
	fault("{\"mode\": \"dbdown\", \"count\": -1, \"after\": 1, "
	      "\"function\": \"enrol_manual_enrol_users\"}");
	log_clear();
	is_int(batch_run(m, &b, &err), -1, "batch: stops");
	is_int(err.kind, MOODLE_DOWN, "DOWN");
	calls = log_count("enrol_manual_enrol_users", NULL);
	is_int(T.nfailed, 0, "no item failed");
	ok(T.done <= 29, "done: the first call's items at most (%zu)", T.done);
	/* The good one may answer after 3 others failed (and so ends their
	 * run), then the breaker's 3, and 3 other calls in flight. */
	ok(calls <= 1 + 3 + 3 + 3,
	   "%d calls of 7: at most the first, those in flight with it, "
	   "the breaker's 3 and those in flight with them",
	   calls);
	moodle_error_clear(&err);
	moodle_free(m);

	/* Writes without resending, PHP gone (502): the calls are unsure,
	 * handed back unsettled, none failed. */
	m = client(NULL, NULL, 1000, 6, 10, NULL);
	b.once = true;
	b.note = tally_note;
	b.max_items = 20;
	memset(&T, 0, sizeof(T));
	unsettled_items = 0;
	fault("{\"mode\": \"none\"}");
	fault("{\"mode\": \"http502\", \"count\": -1}");
	is_int(batch_run(m, &b, &err), -1, "502 writes: stop");
	is_int(err.kind, MOODLE_DOWN, "DOWN");
	is_int(T.nfailed, 0, "no item failed");
	is_int(unsettled_items, 3 * 20,
	       "3 calls of 20, then the breaker: their items unsettled");
	moodle_error_clear(&err);
	fault("{\"mode\": \"none\"}");
	moodle_free(m);
	free(en);
}

/* Occurrences of needle in text. */
static int
count_of(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* A Moodle that flaps between slow and normal: each change of the pace is
 * logged once a minute per direction, then a summary (issue 19: 516 lines
 * in 80 s). */
static void
test_pace_log(void)
{
	struct moodle *m;
	const char *names[] = { "00000000023" };
	struct moodle_user *u = NULL;
	struct moodle_error err = { 0 };
	char path[] = "/tmp/test_moodle_log.XXXXXX", *text = NULL;
	int fd = mkstemp(path), saved = dup(2), calls = 0;
	size_t nu = 0, len = 0;
	FILE *f;

	reset_double();
	next_concurrency = 4;
	m = client(NULL, NULL, 1000, 2, 10, NULL);
	fflush(stderr);
	dup2(fd, 2);
	for (int cycle = 0; cycle < 4; cycle++) {
		/* Usual answers: a median, and a good run raises the limit
		 * again; then two slow ones in a row lower it. */
		for (int i = 0; i < 20; i++, calls++) {
			moodle_users_by_username(m, names, 1, &u, &nu, &err);
			moodle_users_free(u, nu);
			u = NULL;
		}
		fault("{\"mode\": \"delay\", \"seconds\": 0.2, \"count\": 2}");
		for (int i = 0; i < 2; i++, calls++) {
			moodle_users_by_username(m, names, 1, &u, &nu, &err);
			moodle_users_free(u, nu);
			u = NULL;
		}
	}
	moodle_free(m);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	if ((f = fdopen(fd, "r")) != NULL) {
		rewind(f);
		if (getdelim(&text, &len, '\0', f) == -1) {
			free(text);
			text = xstrdup("");
		}
		fclose(f);
	}
	unlink(path);
	if (text == NULL)
		text = xstrdup("");
	is_int(count_of(text, "calls at once instead of 4"), 1,
	       "lowered: logged once (%d calls)", calls);
	ok(count_of(text, "at once instead of") == 1,
	   "lowered again within the minute: not logged");
	/* Raised when 8 answers in a row were usual: on a busy machine
	 * maybe not at all. */
	ok(count_of(text, "answers normally again") <= 1,
	   "raised: logged once in the minute at most");
	is_int(count_of(text, "Moodle's pace changed"), 1, "one summary line");
	if (count_of(text, "Moodle's pace changed") != 1)
		printf("# log:\n%s", text);
	moodle_error_clear(&err);
	free(text);
}

static volatile sig_atomic_t cancel_flag;

static void
cancel_tick(void *arg)
{
	(void)arg;
	cancel_flag = 1;
}

static void
test_cancel(void)
{
	struct moodle *m = client(NULL, NULL, 1000, 5, 20000, &cancel_flag);
	struct moodle_error err = { 0 };
	struct moodle_course c = { 0 };
	int64_t t0, elapsed;

	moodle_set_tick(m, cancel_tick, NULL);
	reset_double();
	/* The tick hook (about once a second) raises the flag: a back-off
	 * of 20 s is cut short ... */
	cancel_flag = 0;
	fault("{\"mode\": \"http503\", \"count\": -1}");
	t0 = now_monotonic_ms();
	is_int(moodle_course_by_shortname(m, "LAB-NOMANUAL", &c, &err), -1,
	       "back-off cancelled");
	elapsed = now_monotonic_ms() - t0;
	is_int(err.kind, MOODLE_CANCELLED, "CANCELLED");
	ok(elapsed < 4000, "stopped well before the 20 s back-off (%lld ms)",
	   (long long)elapsed);
	moodle_error_clear(&err);
	/* ... and so is a call that waits 8 s for its answer. */
	fault("{\"mode\": \"none\"}");
	cancel_flag = 0;
	fault("{\"mode\": \"delay\", \"seconds\": 8}");
	t0 = now_monotonic_ms();
	is_int(moodle_course_by_shortname(m, "LAB-NOMANUAL", &c, &err), -1,
	       "delayed call cancelled");
	elapsed = now_monotonic_ms() - t0;
	is_int(err.kind, MOODLE_CANCELLED, "CANCELLED");
	ok(elapsed < 4000, "stopped well before the 8 s answer (%lld ms)",
	   (long long)elapsed);
	moodle_error_clear(&err);

	fault("{\"mode\": \"none\"}");
	moodle_course_clear(&c);
	moodle_free(m);
}

static char *
run_check(const char *token, int category, int *ret)
{
	struct config cfg;
	struct config_role roles[2] = { { (char *)"student", 5 },
					{ (char *)"teacher", 3 } };
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	memset(&cfg, 0, sizeof(cfg));
	cfg.moodle_url = D.url;
	cfg.moodle_token = (char *)token;
	cfg.moodle_max_input_vars = 1000;
	cfg.moodle_retries = 1;
	cfg.moodle_retry_delay_ms = 10;
	cfg.sync_category_id = category;
	cfg.sync_default_role = (char *)"student";
	cfg.roles = roles;
	cfg.nroles = 2;
	*ret = check_run(&cfg, f);
	fclose(f);
	return out;
}

static char *
limited_token(void)
{
	json_t *info = double_ctl(&D, "/__double/info", NULL);
	const char *s =
	    json_string_value(json_object_get(info, "limited_token"));
	char *ret = s != NULL ? xstrdup(s) : NULL;

	json_decref(info);
	return ret;
}

static void
test_check(void)
{
	char *out, *lim;
	int rc;

	reset_double();
	out = run_check(D.token, 2, &rc);
	is_int(rc, 0, "check with the admin token passes");
	ok(strstr(out, "NOT OK") == NULL && strstr(out, "Lab Category"),
	   "all ok, names the category");
	if (rc != 0)
		printf("%s", out);
	free(out);

	out = run_check(D.token, 999, &rc);
	is_int(rc, 1, "check with a missing category fails");
	ok(strstr(out, "NOT OK: category: category 999") != NULL, "says so");
	free(out);

	lim = limited_token();
	ok(lim != NULL, "the double has a limited token");
	if (lim == NULL)
		return;
	out = run_check(lim, 2, &rc);
	is_int(rc, 1, "check with the limited token fails");
	ok(strstr(out, "enrol_manual_unenrol_users") != NULL &&
	       strstr(out, "core_role_unassign_roles") != NULL &&
	       strstr(out, "lacks 2 functions") != NULL,
	   "names both missing functions");
	ok(strstr(out, lim) == NULL, "no token in the output");
	free(out);
	free(lim);

	/* Debugging on: error answers carry debuginfo (26*). */
	ok(double_post(&D, "/__double/config", "{\"debug\": true}") == 0,
	   "double: debugging on");
	out = run_check(D.token, 2, &rc);
	is_int(rc, 0, "debugging on is a warning, not a failure");
	ok(strstr(out, "warning: debugging: Moodle shows debugging") != NULL,
	   "warns about debugging");
	free(out);
	double_post(&D, "/__double/config", "{\"debug\": false}");
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (double_start(&D, 1000) == -1) {
		ok(0, "the Moodle double starts");
		double_stop(&D);
		return done_testing();
	}
	ok(1, "the Moodle double listens on port %d", D.port);
	test_http();
	test_capacity();
	test_calls();
	test_errors();
	test_retry();
	test_breaker();
	test_pace_log();
	test_split();
	test_batching(1000, 2500, 8);
	test_batching(5000, 2500, 2);
	test_check();
	test_cancel();
	double_stop(&D);
	return done_testing();
}
