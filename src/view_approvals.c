/* The console's approvals: the courses held for sync.new_courses = approve,
 * approved or rejected one, several or all at a time. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "ledger.h"
#include "page.h"
#include "view.h"

struct view_held {
	struct view *v;
	size_t n;     /* held courses seen */
	int64_t skip; /* before this page */
	int64_t shown;
	bool more;
};

static int
view_approvals_cb(const struct ledger_course *c, void *arg)
{
	struct view_held *h = arg;
	struct page *p = h->v->page;
	char id[32];

	if (c->status != LEDGER_COURSE_PENDING &&
	    c->status != LEDGER_COURSE_APPROVED)
		return 0;
	if ((int64_t)h->n++ < h->skip)
		return 0;
	if (h->shown == VIEW_PAGE_ROWS) {
		h->more = true;
		return 1;
	}
	if (h->shown++ == 0)
		page_markup(p, "<div class=\"scroll\"><table><thead><tr>"
			       "<th scope=\"col\">Select</th><th scope=\"col\">"
			       "Short name</th><th scope=\"col\">Name</th>"
			       "<th scope=\"col\" class=\"num\">Participants"
			       "</th><th scope=\"col\">First seen</th>"
			       "<th scope=\"col\">State</th></tr></thead>"
			       "<tbody>");
	snprintf(id, sizeof(id), "c%zu", h->n);
	page_markup(p, "<tr><td><input type=\"checkbox\" name=\"shortname\"");
	page_attr(p, "id", id);
	page_attr(p, "value", c->shortname);
	page_markup(p, "></td><td><label");
	page_attr(p, "for", id);
	page_markup(p, ">");
	page_text(p, c->shortname);
	page_markup(p, "</label></td><td>");
	page_text(p, c->fullname);
	page_markup(p, "</td><td class=\"num\">");
	page_count(p, c->participants);
	page_markup(p, "</td><td>");
	page_time(p, c->first_seen);
	page_markup(p, "</td><td>");
	page_text(p, c->status == LEDGER_COURSE_APPROVED
			 ? "approved: created by the next run"
			 : "held");
	page_markup(p, "</td></tr>");
	return 0;
}

int
view_approvals(struct view *v)
{
	int64_t pg = view_page_number(v);
	struct view_held h = { v, 0, (pg - 1) * VIEW_PAGE_ROWS, 0, false };
	struct page *p = v->page;

	view_begin(v, "Approvals", "/approvals", false);
	if (v->conf->sync_new_courses != NEW_COURSES_APPROVE)
		page_markup(p, "<p>New courses are created without approval "
			       "(<code>sync.new_courses = create</code>); "
			       "courses held before that are listed "
			       "here.</p>");
	page_markup(p, "<form method=\"post\" action=\"/approvals\">");
	page_hidden(p, "csrf", v->csrf);
	if (ledger_course_foreach(v->ledger, view_approvals_cb, &h) == -1)
		return -1;
	if (h.shown == 0) {
		page_markup(p, "<p>No course is awaiting approval.</p></form>");
		view_pager(v, "/approvals", pg, false);
		view_end(v);
		return 0;
	}
	page_markup(p, "</tbody></table></div>");
	view_pager(v, "/approvals", pg, h.more);
	page_markup(p, "<p class=\"actions\">"
		       "<button type=\"submit\" name=\"action\" "
		       "value=\"approve\">Approve selected</button> "
		       "<button type=\"submit\" name=\"action\" "
		       "value=\"reject\" class=\"danger\">Reject selected"
		       "</button></p></form>"
		       "<form method=\"post\" action=\"/approvals\">");
	page_hidden(p, "csrf", v->csrf);
	page_hidden(p, "all", "1");
	page_markup(p, "<p class=\"actions\"><button type=\"submit\" "
		       "name=\"action\" value=\"approve\">Approve all held "
		       "courses</button></p></form><p>An approved course is "
		       "created by the next run, which starts at once.</p>");
	view_end(v);
	return 0;
}
