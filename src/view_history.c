/* The console's history: searched by user, course, run and date, paged,
 * each row with why. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ledger.h"
#include "page.h"
#include "util.h"
#include "view.h"

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
