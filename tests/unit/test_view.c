/* view: the console's pages from a ledger whose every string is hostile:
 * they show as text, every form carries the CSRF token, long lists are
 * paged. */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <string.h>

#include "config.h"
#include "ledger.h"
#include "page.h"
#include "tap.h"
#include "util.h"
#include "view.h"

#define XSS1 "<script>alert(1)</script>"
#define XSS2 "\"><img src=x onerror=alert(2)>"
#define CSRF "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static struct config conf;
static struct ledger *l;

static void
fill(void)
{
	struct ledger_course c = { .shortname = (char *)XSS1,
				   .fullname = (char *)XSS2,
				   .status = LEDGER_COURSE_PENDING,
				   .participants = 12345,
				   .first_seen = 1796286900,
				   .visible = -1 };
	struct ledger_run r = { 0 };
	struct ledger_drift d = { .course = XSS1,
				  .username = XSS2,
				  .roleid = 5,
				  .kind = "gone",
				  .ledger_said = XSS2,
				  .moodle_has = "<b>x</b>",
				  .since = 1796286900,
				  .run_id = 1 };
	struct ledger_history h = { .run_id = 1, .time = 1796286900 };
	char course[64], reason[64];
	int64_t id;

	ledger_begin(l);
	ledger_course_put(l, &c);
	ledger_missing_put(l, XSS2, XSS1, 5, 1796286900, NULL);
	ledger_missing_put(l, "s1234", "PHYS101", 5, 1796286900, NULL);
	ledger_run_start(l, 1796286900, &id);
	r.id = id;
	r.started = 1796286900;
	r.ended = 1796286942;
	r.outcome = (char *)"partial";
	r.message = (char *)XSS1;
	r.enrolled = 1234567;
	ledger_run_finish(l, &r);
	ledger_error_add(l, id, "course", XSS1, "<code>", XSS2);
	ledger_drift_put(l, &d);
	for (int i = 0; i < 250; i++) {
		snprintf(course, sizeof(course), "C%03d", i);
		snprintf(reason, sizeof(reason), "reason %d %s", i, XSS2);
		h.action = i % 2 ? "enrol" : "hold";
		h.course = course;
		h.username = i < 10 ? XSS1 : "s1234";
		h.reason = reason;
		h.time = 1796286900 + i;
		ledger_history_add(l, &h);
	}
	ledger_meta_set(l, "removals_withheld", XSS1 " withheld");
	for (int i = 0; i < 150; i++) {
		snprintf(course, sizeof(course), "H%03d", i);
		c.shortname = course;
		c.fullname = course;
		ledger_course_put(l, &c);
	}
	h.action = "withhold";
	h.course = XSS1;
	h.username = "s1234";
	h.reason = "absent from the feed: unenrolment " XSS2;
	ledger_decision_put(l, &h, &(bool){ false });
	ledger_commit(l);
}

/* Render one page with an optional query ("a=1&b=2"). */
static char *
render(int (*fn)(struct view *), const char *query, bool syncing)
{
	struct evkeyvalq q;
	struct view v = { .page = page_new(),
			  .conf = &conf,
			  .ledger = l,
			  .user = "alice",
			  .csrf = CSRF,
			  .syncing = syncing,
			  .progress = syncing ? "enrolling <1/2>" : NULL };
	char *out;

	TAILQ_INIT(&q);
	if (query != NULL) {
		evhttp_parse_query_str(query, &q);
		v.query = &q;
	}
	ok(fn(&v) == 0, "page renders (%s)", query ? query : "no query");
	out = xstrdup(page_data(v.page, NULL));
	evhttp_clear_headers(&q);
	page_free(v.page);
	return out;
}

static size_t
count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *s = hay; (s = strstr(s, needle)) != NULL; s++)
		n++;
	return n;
}

/* Whether html has an event handler attribute: ` onNAME="`. */
static bool
has_handler(const char *html)
{
	for (const char *s = html; (s = strstr(s, " on")) != NULL; s++) {
		const char *e = s + 3;

		while (*e >= 'a' && *e <= 'z')
			e++;
		if (e > s + 3 && strncmp(e, "=\"", 2) == 0)
			return true;
	}
	return false;
}

/* What every page must hold, whatever its data. */
static void
check_page(const char *name, const char *html)
{
	ok(strncmp(html, "<!DOCTYPE html>", 15) == 0, "%s: a document", name);
	ok(strstr(html, "<script") == NULL && strstr(html, "<img") == NULL &&
	       strstr(html, "<b>") == NULL && strstr(html, "<code><") == NULL,
	   "%s: no markup from the data", name);
	ok(strstr(html, " onerror") == NULL || strstr(html, "\"><img") == NULL,
	   "%s: no attribute breakout", name);
	ok(strstr(html, "style=") == NULL && !has_handler(html),
	   "%s: no inline style or handler (the CSP forbids them)", name);
	is_int(count(html, "method=\"post\""),
	       count(html, "name=\"csrf\" value=\"" CSRF "\""),
	       "%s: every form posts the CSRF token", name);
	ok(strstr(html, "/static/console.css") != NULL, "%s: the stylesheet",
	   name);
	ok(strstr(html, "</html>") != NULL, "%s: ends", name);
}

int
main(void)
{
	char *cause = NULL, *h;

	setenv("TZ", "UTC", 1);
	conf.sync_new_courses = NEW_COURSES_APPROVE;
	if (ledger_open(":memory:", false, &l, &cause) == -1) {
		printf("Bail out! %s\n", cause);
		return 1;
	}
	fill();

	h = render(view_overview, NULL, false);
	check_page("overview", h);
	ok(strstr(h, "&lt;script&gt;alert(1)&lt;/script&gt;") != NULL,
	   "overview: the run's message as text");
	ok(strstr(h, "1,234,567") != NULL, "overview: large figures grouped");
	ok(strstr(h, "2026-12-03 08:35 UTC") != NULL,
	   "overview: times in the local zone");
	ok(strstr(h, "42 s") != NULL, "overview: the run's duration");
	ok(strstr(h, "action=\"/sync\"") != NULL, "overview: sync now");
	ok(strstr(h, "href=\"/removals\"") != NULL,
	   "overview: withheld removals lead to their confirmation");
	ok(strstr(h, "http-equiv=\"refresh\"") == NULL,
	   "overview: no refresh while idle");
	free(h);
	h = render(view_overview, NULL, true);
	check_page("overview, syncing", h);
	ok(strstr(h, "http-equiv=\"refresh\"") != NULL,
	   "overview: refreshes itself while a sync runs");
	ok(strstr(h, "enrolling &lt;1/2&gt;") != NULL,
	   "overview: with the progress");
	ok(strstr(h, "action=\"/sync\"") == NULL,
	   "overview: no second sync while one runs");
	free(h);

	h = render(view_confirm_removals, NULL, false);
	check_page("removals", h);
	ok(strstr(h, "absent from the feed: unenrolment &quot;&gt;&lt;img") !=
	       NULL,
	   "removals: each withheld removal listed with why");
	ok(strstr(h, "name=\"allow_removals\" value=\"1\"") != NULL &&
	       strstr(h, "name=\"confirm\" value=\"1\" required") != NULL,
	   "removals: a form with allow_removals and a confirm box");
	free(h);

	h = render(view_approvals, "page=2", false);
	check_page("approvals, page 2", h);
	is_int(count(h, "name=\"shortname\""), 51,
	       "approvals: 151 held, 51 on the second page");
	ok(strstr(h, "href=\"/approvals\"") != NULL &&
	       strstr(h, "Older") == NULL,
	   "approvals: a link back to the first page, none further");
	free(h);
	h = render(view_approvals, NULL, false);
	check_page("approvals", h);
	is_int(count(h, "name=\"shortname\""), 100, "approvals: 100 a page");
	ok(strstr(h, "href=\"/approvals?page=2\"") != NULL,
	   "approvals: a link to the next page");
	ok(strstr(h, "value=\"&lt;script&gt;alert(1)&lt;/script&gt;\"") != NULL,
	   "approvals: the checkbox's value escaped");
	ok(strstr(h, "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;") != NULL,
	   "approvals: the name as text");
	ok(strstr(h, "12,345") != NULL, "approvals: participants");
	ok(strstr(h, "value=\"approve\"") != NULL &&
	       strstr(h, "value=\"reject\"") != NULL &&
	       strstr(h, "name=\"all\" value=\"1\"") != NULL,
	   "approvals: approve, reject, approve all");
	ok(strstr(h, "<label for=\"c1\">") != NULL,
	   "approvals: each checkbox has its label");
	free(h);

	h = render(view_missing, NULL, false);
	check_page("missing", h);
	ok(strstr(h, "s1234") != NULL && strstr(h, "PHYS101") != NULL,
	   "missing: the rows");
	ok(strstr(h, "href=\"/missing-users.csv\"") != NULL,
	   "missing: the CSV link");
	free(h);
	h = render(view_missing, "q=phys", false);
	ok(strstr(h, "s1234") != NULL && strstr(h, "&lt;script") == NULL,
	   "missing: filtered, case-insensitive");
	ok(strstr(h, "value=\"phys\"") != NULL, "missing: the filter kept");
	free(h);
	h = render(view_missing, "q=%22%3E%3Cscript%3E", false);
	check_page("missing, hostile filter", h);
	free(h);

	h = render(view_history, NULL, false);
	check_page("history", h);
	is_int(count(h, "<tr><td>"), 100, "history: 100 rows a page");
	ok(strstr(h, "reason 249") != NULL && strstr(h, "reason 149") == NULL,
	   "history: newest first");
	ok(strstr(h, "href=\"/history?page=2\"") != NULL,
	   "history: a link to the older page");
	free(h);
	h = render(view_history, "page=3", false);
	is_int(count(h, "<tr><td>"), 50, "history: the last page");
	ok(strstr(h, "Older") == NULL && strstr(h, "Newer") != NULL,
	   "history: no older page after the last");
	free(h);
	h = render(view_history,
		   "user=%3Cscript%3Ealert(1)%3C/script%3E&page=1", false);
	check_page("history, by user", h);
	is_int(count(h, "<tr><td>"), 10, "history: one user's rows");
	free(h);
	h = render(view_history, "course=C007&since=2026-12-03", false);
	is_int(count(h, "<tr><td>"), 1, "history: by course and date");
	free(h);
	h = render(view_history, "since=2027-01-01", false);
	ok(strstr(h, "No event matches") != NULL, "history: nothing after");
	free(h);
	h = render(view_history, "run=abc", false);
	ok(strstr(h, "class=\"error\"") != NULL, "history: a bad run number");
	free(h);

	h = render(view_drift, NULL, false);
	check_page("drift", h);
	ok(strstr(h, "&lt;b&gt;x&lt;/b&gt;") != NULL, "drift: Moodle's side");
	free(h);

	h = render(view_errors, NULL, false);
	check_page("errors", h);
	ok(strstr(h, "&lt;code&gt;") != NULL, "errors: the code as text");
	free(h);

	ledger_free(l);
	return done_testing();
}
