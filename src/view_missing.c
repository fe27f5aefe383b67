/* The console's missing users: filtered, paged, and the CSV's link. */
#include <stdbool.h>
#include <string.h>

#include "config.h"
#include "ledger.h"
#include "page.h"
#include "view.h"

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
