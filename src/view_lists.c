/* The console's long lists: missing users, the history, drift, errors. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config.h"
#include "ledger.h"
#include "page.h"
#include "reconcile.h"
#include "util.h"
#include "view.h"

#define VIEW_LIST_MAX 1000 /* rows of an unpaged list (drift, errors) */

/* A window of a list: rows [skip, skip + VIEW_PAGE_ROWS) are shown; one
 * more tells that there is a next page. */
struct view_window {
	struct view *v;
	const char *q; /* missing users: the filter, or NULL */
	int64_t skip, seen, shown;
	bool more;
};

/* Whether this row is in the window; stop (1) past its end. */
static int
view_window_take(struct view_window *w, bool *ret)
{
	*ret = false;
	if (w->seen++ < w->skip)
		return 0;
	if (w->shown == VIEW_PAGE_ROWS) {
		w->more = true;
		return 1;
	}
	w->shown++;
	*ret = true;
	return 0;
}

static int
view_missing_cb(const struct ledger_missing *m, void *arg)
{
	struct view_window *w = arg;
	struct page *p = w->v->page;
	const char *role = config_role_name(w->v->conf, m->roleid);
	bool show;
	int rv;

	if (w->q != NULL && strcasestr(m->username, w->q) == NULL &&
	    strcasestr(m->course, w->q) == NULL)
		return 0;
	if ((rv = view_window_take(w, &show)) != 0 || !show)
		return rv;
	page_markup(p, "<tr><td>");
	page_text(p, m->username);
	page_markup(p, "</td><td>");
	page_text(p, m->course);
	page_markup(p, "</td><td>");
	if (role != NULL)
		page_text(p, role);
	else
		page_textf(p, "%d", m->roleid);
	page_markup(p, "</td><td>");
	page_time(p, m->first_seen);
	page_markup(p, "</td></tr>");
	return 0;
}

int
view_missing(struct view *v)
{
	int64_t pg = view_page_number(v);
	struct view_window w = {
		v, view_param(v, "q"), (pg - 1) * VIEW_PAGE_ROWS, 0, 0, false
	};
	struct page *p = v->page;

	view_begin(v, "Missing users", "/missing-users", false);
	page_markup(p, "<p>Users of the feed not found in Moodle, with the "
		       "courses they wait for: they are enrolled by the first "
		       "run after their account appears. <a "
		       "href=\"/missing-users.csv\" download>Download the "
		       "CSV</a></p><form class=\"filter\" method=\"get\" "
		       "action=\"/missing-users\"><label for=\"q\">User or "
		       "course contains</label><input id=\"q\" name=\"q\"");
	page_attr(p, "value", w.q);
	page_markup(p, "><button type=\"submit\">Filter</button></form>"
		       "<div class=\"scroll\"><table><thead><tr><th "
		       "scope=\"col\">User</th><th scope=\"col\">Course</th>"
		       "<th scope=\"col\">Role</th><th scope=\"col\">First "
		       "seen</th></tr></thead><tbody>");
	if (ledger_missing_foreach(v->ledger, view_missing_cb, &w) == -1)
		return -1;
	page_markup(p, "</tbody></table></div>");
	if (w.shown == 0)
		page_markup(p, "<p>No missing user matches.</p>");
	view_pager(v, "/missing-users", pg, w.more);
	view_end(v);
	return 0;
}

static int
view_history_cb(const struct ledger_history *h, void *arg)
{
	struct view_window *w = arg;
	struct page *p = w->v->page;
	bool show;
	int rv;
	char run[24];

	if ((rv = view_window_take(w, &show)) != 0 || !show)
		return rv;
	snprintf(run, sizeof(run), "%" PRId64, h->run_id);
	page_markup(p, "<tr><td>");
	page_time(p, h->time);
	page_markup(p, "</td><td><a");
	page_href(p, "href", "/history", "run", run, (char *)NULL);
	page_markup(p, ">");
	page_count(p, h->run_id);
	page_markup(p, "</a></td><td>");
	page_text(p, h->action);
	page_markup(p, "</td><td>");
	if (h->course != NULL) {
		page_markup(p, "<a");
		page_href(p, "href", "/history", "course", h->course,
			  (char *)NULL);
		page_markup(p, ">");
		page_text(p, h->course);
		page_markup(p, "</a>");
	}
	page_markup(p, "</td><td>");
	if (h->username != NULL) {
		page_markup(p, "<a");
		page_href(p, "href", "/history", "user", h->username,
			  (char *)NULL);
		page_markup(p, ">");
		page_text(p, h->username);
		page_markup(p, "</a>");
	}
	page_markup(p, "</td><td>");
	page_text(p, h->role);
	page_markup(p, "</td><td>");
	page_text(p, h->reason);
	page_markup(p, "</td></tr>");
	return 0;
}

/* A text input of the history's filter form. */
#define VIEW_FILTER_INPUT(p, v, name, label, type)                             \
	do {                                                                   \
		page_markup(p, "<label for=\"" name "\">" label "</label>"     \
			       "<input id=\"" name "\" name=\"" name           \
			       "\" type=\"" type "\"");                        \
		page_attr(p, "value", view_param(v, name));                    \
		page_markup(p, ">");                                           \
	} while (0)

int
view_history(struct view *v)
{
	struct ledger_history_filter f = { .username = view_param(v, "user"),
					   .course = view_param(v, "course") };
	const char *run = view_param(v, "run"), *since = view_param(v, "since");
	int64_t pg = view_page_number(v);
	struct view_window w = {
		v, NULL, (pg - 1) * VIEW_PAGE_ROWS, 0, 0, false
	};
	struct page *p = v->page;
	struct tm tm;
	const char *end;
	bool bad = false;

	if (run != NULL && parse_int64(run, 0, INT64_MAX, &f.run_id) == -1)
		bad = true;
	memset(&tm, 0, sizeof(tm));
	if (since != NULL) {
		end = strptime(since, "%Y-%m-%d", &tm);
		if (end == NULL || *end != '\0')
			bad = true;
		else {
			tm.tm_isdst = -1;
			f.since = (int64_t)mktime(&tm); /* local midnight */
		}
	}
	view_begin(v, "History", "/history", false);
	page_markup(p, "<p>Every change made in Moodle, and every decision not "
		       "to make one, newest first, each with why.</p><form "
		       "class=\"filter\" method=\"get\" action=\"/history\">");
	VIEW_FILTER_INPUT(p, v, "user", "User", "text");
	VIEW_FILTER_INPUT(p, v, "course", "Course", "text");
	VIEW_FILTER_INPUT(p, v, "run", "Run", "text");
	VIEW_FILTER_INPUT(p, v, "since", "Since (YYYY-MM-DD)", "date");
	page_markup(p, "<button type=\"submit\">Search</button></form>");
	if (bad) {
		page_markup(p, "<p class=\"error\" role=\"alert\">The run is "
			       "a number and the date YYYY-MM-DD.</p>");
		view_end(v);
		return 0;
	}
	page_markup(p, "<div class=\"scroll\"><table><thead><tr><th "
		       "scope=\"col\">Time</th><th scope=\"col\">Run</th><th "
		       "scope=\"col\">Action</th><th scope=\"col\">Course"
		       "</th><th scope=\"col\">User</th><th scope=\"col\">"
		       "Role</th><th scope=\"col\">Why</th></tr></thead>"
		       "<tbody>");
	if (ledger_history_foreach(v->ledger, &f, view_history_cb, &w) == -1)
		return -1;
	page_markup(p, "</tbody></table></div>");
	if (w.shown == 0)
		page_markup(p, "<p>No event matches.</p>");
	view_pager(v, "/history", pg, w.more);
	view_end(v);
	return 0;
}

struct view_count {
	struct view *v;
	size_t n;
};

static int
view_drift_cb(const struct ledger_drift *d, void *arg)
{
	struct view_count *c = arg;
	struct page *p = c->v->page;
	const char *role =
	    d->roleid > 0 ? config_role_name(c->v->conf, d->roleid) : NULL;

	if (c->n++ >= VIEW_LIST_MAX)
		return 0;
	page_markup(p, "<tr><td>");
	page_time(p, d->since);
	page_markup(p, "</td><td>");
	page_text(p, d->course);
	page_markup(p, "</td><td>");
	page_text(p, d->username);
	page_markup(p, "</td><td>");
	page_text(p, role);
	page_markup(p, "</td><td>");
	page_text(p, d->kind);
	page_markup(p, "</td><td>");
	page_text(p, d->ledger_said);
	page_markup(p, "</td><td>");
	page_text(p, d->moodle_has);
	page_markup(p, "</td><td>");
	page_text(p, reconcile_policy_words(c->v->conf, d->kind));
	page_markup(p, "</td></tr>");
	return 0;
}

/* "and 12 more" after a list cut at VIEW_LIST_MAX rows. */
static void
view_list_rest(struct view *v, size_t n, const char *cli)
{
	if (n <= VIEW_LIST_MAX)
		return;
	page_markup(v->page, "<p>And ");
	page_count(v->page, (int64_t)(n - VIEW_LIST_MAX));
	page_markup(v->page, " more: <code>");
	page_text(v->page, cli);
	page_markup(v->page, "</code> lists them all.</p>");
}

int
view_drift(struct view *v)
{
	struct view_count c = { v, 0 };
	struct page *p = v->page;

	view_begin(v, "Drift", "/drift", false);
	page_markup(p, "<p>What differs between the ledger and Moodle, since "
		       "when, and what the policy "
		       "(<code>sync.on_drift</code>) does about it.</p><div "
		       "class=\"scroll\"><table><thead><tr><th scope=\"col\">"
		       "Since</th><th scope=\"col\">Course</th><th "
		       "scope=\"col\">User</th><th scope=\"col\">Role</th>"
		       "<th scope=\"col\">Kind</th><th scope=\"col\">Ledger"
		       "</th><th scope=\"col\">Moodle</th><th scope=\"col\">"
		       "Policy</th></tr></thead><tbody>");
	if (ledger_drift_foreach(v->ledger, view_drift_cb, &c) == -1)
		return -1;
	page_markup(p, "</tbody></table></div>");
	if (c.n == 0)
		page_markup(p, "<p>No drift: the ledger and Moodle agree on "
			       "every course checked.</p>");
	view_list_rest(v, c.n, "webcoursectl drift");
	view_end(v);
	return 0;
}

static int
view_errors_cb(const struct ledger_error *e, void *arg)
{
	struct view_count *c = arg;
	struct page *p = c->v->page;

	if (c->n++ >= VIEW_LIST_MAX)
		return 0;
	if (c->n == 1) {
		page_markup(p, "<h2>Item errors of run ");
		page_count(p, e->run_id);
		page_markup(p, "</h2><div class=\"scroll\"><table><thead><tr>"
			       "<th scope=\"col\">Kind</th><th scope=\"col\">"
			       "Item</th><th scope=\"col\">Code</th><th "
			       "scope=\"col\">Message</th></tr></thead>"
			       "<tbody>");
	}
	page_markup(p, "<tr><td>");
	page_text(p, e->kind);
	page_markup(p, "</td><td>");
	page_text(p, e->item);
	page_markup(p, "</td><td><code>");
	page_text(p, e->code);
	page_markup(p, "</code></td><td>");
	page_text(p, e->message);
	page_markup(p, "</td></tr>");
	return 0;
}

int
view_errors(struct view *v)
{
	struct view_count c = { v, 0 };
	struct ledger_run *runs = NULL;
	struct page *p = v->page;
	size_t nruns = 0;

	if (ledger_runs_recent(v->ledger, 1, &runs, &nruns) == -1)
		return -1;
	view_begin(v, "Errors", "/errors", false);
	if (nruns == 1 && (strcmp(runs[0].outcome, "failed") == 0 ||
			   strcmp(runs[0].outcome, "cancelled") == 0)) {
		page_markup(p, "<p class=\"error\">The last run, ");
		page_count(p, runs[0].id);
		page_markup(p, ", ");
		page_text(p, runs[0].outcome);
		page_markup(p, ": ");
		page_text(p, runs[0].message);
		page_markup(p, "</p>");
	}
	ledger_runs_free(runs, nruns);
	if (ledger_error_foreach(v->ledger, 0, view_errors_cb, &c) == -1)
		return -1;
	if (c.n > 0)
		page_markup(p, "</tbody></table></div>");
	else
		page_markup(p, "<p>No item errors recorded.</p>");
	view_list_rest(v, c.n, "webcoursectl errors");
	view_end(v);
	return 0;
}
