/* What Moodle says, classified: moodle.c's one table against the answers
 * a real Moodle gave (tests/data/moodle-ws), and the text cleaner that
 * makes its messages plain text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "moodle.h"
#include "tap.h"
#include "util.h"

#define RESPONSE_MARK "===== RESPONSE BODY ("
#define STATUS_MARK   "===== RESPONSE (status line + headers) =====\n"

/* One recording and what its answer means. */
static const struct answer_case {
	const char *file;
	const char *function;
	int rc;
	enum moodle_status kind;
	bool site;
	const char *errorcode;
	const char *message; /* the whole message, or NULL */
} cases[] = {
	/* Site-wide: the run stops, nothing is said about the items. */
	{ "32a_db_down_site_info", "core_webservice_get_site_info", -1,
	  MOODLE_DOWN, true, "dbconnectionfailed",
	  "Moodle unavailable: its database connection failed" },
	{ "32b_db_down_enrol", "enrol_manual_enrol_users", -1, MOODLE_DOWN,
	  true, "dbconnectionfailed",
	  "Moodle unavailable: its database connection failed" },
	{ "32c_db_down_get_users", "core_user_get_users_by_field", -1,
	  MOODLE_DOWN, true, "dbconnectionfailed",
	  "Moodle unavailable: its database connection failed" },
	{ "32d_db_down_create_course", "core_course_create_courses", -1,
	  MOODLE_DOWN, true, "dbconnectionfailed",
	  "Moodle unavailable: its database connection failed" },
	{ "32e_maintenance_site_info", "core_webservice_get_site_info", -1,
	  MOODLE_DOWN, true, "http503",
	  "Moodle unavailable: it is in maintenance mode or overloaded (HTTP "
	  "503)" },
	{ "32f_maintenance_enrol", "enrol_manual_enrol_users", -1, MOODLE_DOWN,
	  true, "http503", NULL },
	/* PHP down behind nginx: site-wide, and a write may be unsure. */
	{ "32g_php_down_site_info", "core_webservice_get_site_info", -1,
	  MOODLE_UNSURE, true, "http502", NULL },
	{ "32h_php_down_enrol", "enrol_manual_enrol_users", -1, MOODLE_UNSURE,
	  true, "http502", NULL },
	{ "32i_maintenance_admin_site_info", "core_webservice_get_site_info",
	  -1, MOODLE_DOWN, true, "sitemaintenance",
	  "Moodle unavailable: it is in maintenance mode" },
	{ "32j_maintenance_admin_enrol", "enrol_manual_enrol_users", -1,
	  MOODLE_DOWN, true, "sitemaintenance",
	  "Moodle unavailable: it is in maintenance mode" },
	/* A race: sent again, neither an item error nor site-wide. */
	{ "32k_first_calls_after_cache_purge_RACE",
	  "core_user_get_users_by_field", -1, MOODLE_TRANSIENT, false,
	  "ex_configcannotsave", NULL },
	{ "32k_first_calls_after_cache_purge_sibling_OK",
	  "core_user_get_users_by_field", 0, MOODLE_OK, false, NULL, NULL },
	/* A conflict: nothing applied, sent again alone. */
	{ "30d_concurrent_enrol_DL3_ascending_DEADLOCK",
	  "enrol_manual_enrol_users", -1, MOODLE_CONFLICT, false,
	  "dmlwriteexception", NULL },
	/* Item errors: only these split a batch. */
	{ "09a_enrol_nonexistent_userid", "enrol_manual_enrol_users", -1,
	  MOODLE_ITEM, false, "codingerror", NULL },
	{ "10a_enrol_course_without_manual_instance",
	  "enrol_manual_enrol_users", -1, MOODLE_ITEM, false, "wsnoinstance",
	  NULL },
	/* Service-wide but ours to fix: the run stops, no retry. */
	{ "16a_invalid_token", "core_webservice_get_site_info", -1,
	  MOODLE_FATAL, false, "invalidtoken", NULL },
};

/* The recorded answer of file: its status and body (to free). */
static int
recording(const char *top, const char *file, long *ret_status, char **ret_body,
	  size_t *ret_len)
{
	char path[512], *data = NULL, *p, *end;
	size_t len = 0, cap = 0, n;
	FILE *f;
	int rv = -1;

	snprintf(path, sizeof(path), "%s/tests/data/moodle-ws/%s.txt", top,
		 file);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	do {
		if (len + 4096 + 1 > cap) {
			cap = cap * 2 + 8192;
			data = xreallocarray(data, cap, 1);
		}
		n = fread(data + len, 1, 4096, f);
		len += n;
	} while (n > 0);
	fclose(f);
	data[len] = '\0';
	if ((p = strstr(data, STATUS_MARK)) == NULL ||
	    sscanf(p + strlen(STATUS_MARK), "HTTP/1.1 %ld", ret_status) != 1 ||
	    (p = strstr(data, RESPONSE_MARK)) == NULL)
		goto out;
	n = strtoul(p + strlen(RESPONSE_MARK), &end, 10);
	if ((p = strstr(end, "=====\n")) == NULL ||
	    (size_t)(p + 6 - data) + n > len)
		goto out;
	*ret_body = xstrndup(p + 6, n);
	*ret_len = n;
	rv = 0;
out:
	free(data);
	return rv;
}

static void
test_recordings(struct moodle *m, const char *top)
{
	for (size_t i = 0; i < nitems(cases); i++) {
		const struct answer_case *c = &cases[i];
		struct moodle_error err = { 0 };
		struct moodle_reply r = { .function = c->function, .n = 1 };
		char *body = NULL;
		size_t len = 0;
		int rc;

		if (!ok(recording(top, c->file, &r.status, &body, &len) == 0,
			"%s: recording read", c->file))
			continue;
		r.body = body;
		r.len = len;
		rc = moodle_parse_answer(m, &r, &err);
		is_int(rc, c->rc, "%s: %s", c->file,
		       c->rc == 0 ? "decodes" : "fails");
		is_int(err.kind, c->kind, "%s: class", c->file);
		ok(err.site == c->site, "%s: %s", c->file,
		   c->site ? "site-wide" : "not site-wide");
		if (c->errorcode != NULL)
			is_str(err.errorcode, c->errorcode, "%s: errorcode",
			       c->file);
		if (c->message != NULL)
			is_str(err.message, c->message, "%s: message", c->file);
		if (rc == -1)
			ok(err.message != NULL &&
			       strchr(err.message, '<') == NULL,
			   "%s: the message is plain text: %s", c->file,
			   err.message);
		moodle_error_clear(&err);
		free(body);
	}
}

static void
test_text_plain(void)
{
	static const struct {
		const char *in, *out;
		size_t max;
	} t[] = {
		{ "<p>Error: Database connection failed</p>\n<p>It is "
		  "possible</p>",
		  "Error: Database connection failed It is possible", 200 },
		{ "Fish &amp; chips &lt;b&gt; &quot;x&quot; &#39;y&#39; "
		  "&#x263A; &eacute;",
		  "Fish & chips <b> \"x\" 'y' \xe2\x98\xba &eacute;", 200 },
		{ "<html><head><title>T</title><style>body { x }</style>"
		  "</head><body><h1>Moodle Lab under maintenance</h1><div>"
		  "Not <b>now</b>.</div><script>alert(1)</script></body>",
		  "Moodle Lab under maintenance Not now.", 200 },
		{ "a\tb\r\n\x01 c", "a b c", 200 },
		{ "abcdefghij", "abcd...", 7 },
		{ "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", "\xc3\xa9...", 6 },
		{ "broken <tag and &amp", "broken <tag and &amp", 200 },
		{ "&#0; &#xFFFFFFFF;", "\xef\xbf\xbd &#xFFFFFFFF;", 200 },
		{ "<style>unterminated", "", 200 },
		/* C1 controls and bytes that are not UTF-8: text_clean. */
		{ "a&#x85;b \xc2\x9b c \xff d", "a?b ? c ? d", 200 },
	};

	for (size_t i = 0; i < nitems(t); i++) {
		char *s = text_plain(t[i].in, t[i].max);

		is_str(s, t[i].out, "text_plain %zu", i);
		ok(strlen(s) <= t[i].max, "text_plain %zu: at most %zu bytes",
		   i, t[i].max);
		free(s);
	}
}

int
main(void)
{
	struct config cfg = { 0 };
	const char *top = getenv("TOP") != NULL ? getenv("TOP") : ".";
	struct moodle *m;

	cfg.moodle_url = "http://127.0.0.1:9";
	cfg.moodle_token = "0123456789abcdef0123456789abcdef";
	m = moodle_new(&cfg, NULL);
	test_recordings(m, top);
	test_text_plain();
	moodle_free(m);
	return done_testing();
}
