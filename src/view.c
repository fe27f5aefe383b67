/* The web console's pages: what every page shares (layout, forms, paging). */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "page.h"
#include "util.h"
#include "view.h"

#define VIEW_REFRESH_S "5"

/* The navigation, in order. */
static const struct {
	const char *path;
	const char *label;
} view_nav[] = {
	{ "/", "Overview" },
	{ "/approvals", "Approvals" },
	{ "/missing-users", "Missing users" },
	{ "/history", "History" },
	{ "/drift", "Drift" },
	{ "/errors", "Errors" },
};

void
view_begin(struct view *v, const char *title, const char *path, bool refresh)
{
	struct page *p = v->page;

	page_markup(p, "<!DOCTYPE html>\n<html lang=\"en\"><head>"
		       "<meta charset=\"utf-8\">"
		       "<meta name=\"viewport\" content=\"width=device-width, "
		       "initial-scale=1\">");
	if (refresh)
		page_markup(p, "<meta http-equiv=\"refresh\" "
			       "content=\"" VIEW_REFRESH_S "\">");
	page_markup(p, "<title>");
	page_text(p, title);
	page_markup(p, " \xe2\x80\x94 webcoursed</title>"
		       "<link rel=\"stylesheet\" href=\"/static/console.css\">"
		       "</head><body><header><a class=\"brand\" "
		       "href=\"/\">webcoursed</a>");
	if (v->user != NULL) {
		page_markup(p, "<nav aria-label=\"pages\"><ul>");
		for (size_t i = 0; i < nitems(view_nav); i++) {
			page_markup(p, "<li><a");
			page_attr(p, "href", view_nav[i].path);
			if (strcmp(view_nav[i].path, path) == 0)
				page_markup(p, " aria-current=\"page\"");
			page_markup(p, ">");
			page_text(p, view_nav[i].label);
			page_markup(p, "</a></li>");
		}
		page_markup(p, "</ul></nav><form class=\"logout\" "
			       "method=\"post\" action=\"/logout\">");
		page_hidden(p, "csrf", v->csrf);
		page_markup(p, "<span class=\"user\">");
		page_text(p, v->user);
		page_markup(p, "</span> <button type=\"submit\">Log out"
			       "</button></form>");
	}
	page_markup(p, "</header><main><h1>");
	page_text(p, title);
	page_markup(p, "</h1>");
	if (v->notice != NULL) {
		page_markup(p, "<p class=\"notice\" role=\"status\">");
		page_text(p, v->notice);
		page_markup(p, "</p>");
	}
	if (v->error != NULL) {
		page_markup(p, "<p class=\"error\" role=\"alert\">");
		page_text(p, v->error);
		page_markup(p, "</p>");
	}
}

void
view_end(struct view *v)
{
	page_markup(v->page, "</main></body></html>\n");
}

const char *
view_param(const struct view *v, const char *name)
{
	const char *s;

	if (v->query == NULL)
		return NULL;
	s = evhttp_find_header(v->query, name);
	return s != NULL && *s != '\0' ? s : NULL;
}

int64_t
view_page_number(const struct view *v)
{
	const char *s = view_param(v, "page");
	int64_t n;

	if (s == NULL ||
	    parse_int64(s, 1, INT64_MAX / VIEW_PAGE_ROWS, &n) == -1)
		return 1;
	return n;
}

/* One pager link: the list's path, its filters and page=n.  The paths
 * are literals (page_href's rule), one per paged list. */
static void
view_pager_link(struct view *v, bool history, bool approvals, int64_t n,
		const char *label)
{
	const char *user = view_param(v, "user"),
		   *course = view_param(v, "course");
	const char *run = view_param(v, "run"), *since = view_param(v, "since");
	const char *q = view_param(v, "q");
	char num[24];

	snprintf(num, sizeof(num), "%" PRId64, n);
	page_markup(v->page, "<a");
	if (history)
		page_href(v->page, "href", "/history", "user", user, "course",
			  course, "run", run, "since", since, "page",
			  n > 1 ? num : NULL, (char *)NULL);
	else if (approvals)
		page_href(v->page, "href", "/approvals", "page",
			  n > 1 ? num : NULL, (char *)NULL);
	else
		page_href(v->page, "href", "/missing-users", "q", q, "page",
			  n > 1 ? num : NULL, (char *)NULL);
	page_markup(v->page, ">");
	page_text(v->page, label);
	page_markup(v->page, "</a>");
}

void
view_pager(struct view *v, const char *path, int64_t page, bool more)
{
	bool history = strcmp(path, "/history") == 0;
	bool approvals = strcmp(path, "/approvals") == 0;

	if (page <= 1 && !more)
		return;
	page_markup(v->page, "<nav class=\"pager\" aria-label=\"more\">");
	if (page > 1)
		view_pager_link(v, history, approvals, page - 1,
				"\xe2\x86\x90 Newer");
	page_markup(v->page, " <span>page ");
	page_count(v->page, page);
	page_markup(v->page, "</span> ");
	if (more)
		view_pager_link(v, history, approvals, page + 1,
				"Older \xe2\x86\x92");
	page_markup(v->page, "</nav>");
}

void
view_login(struct view *v, const char *failure)
{
	struct page *p = v->page;

	view_begin(v, "Log in", "/login", false);
	if (failure != NULL) {
		page_markup(p, "<p class=\"error\" role=\"alert\">");
		page_text(p, failure);
		page_markup(p, "</p>");
	}
	page_markup(p, "<form class=\"login\" method=\"post\" "
		       "action=\"/login\">"
		       "<label for=\"username\">User name</label>"
		       "<input id=\"username\" name=\"username\" "
		       "autocomplete=\"username\" required autofocus>"
		       "<label for=\"password\">Password</label>"
		       "<input id=\"password\" name=\"password\" "
		       "type=\"password\" autocomplete=\"current-password\" "
		       "required>"
		       "<button type=\"submit\">Log in</button></form>");
	view_end(v);
}

void
view_time_iso(struct view *v, const char *iso)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	if (iso == NULL ||
	    (end = strptime(iso, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL ||
	    (*end != '\0' && strcmp(end, "Z") != 0)) {
		page_text(v->page, iso != NULL ? iso : "never");
		return;
	}
	page_time(v->page, (int64_t)timegm(&tm));
}

int64_t
view_epoch_iso(const char *iso)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (iso == NULL || strptime(iso, "%Y-%m-%dT%H:%M:%S", &tm) == NULL)
		return 0;
	return (int64_t)timegm(&tm);
}

int
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
