/* The console's overview: the sync now, the last runs, what needs a person,
 * and the confirmation step before withheld removals are applied. */
#include <jansson.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ledger.h"
#include "page.h"
#include "report.h"
#include "util.h"
#include "view.h"

#define VIEW_OVERVIEW_ERRORS 10  /* the last run's errors shown here */
#define VIEW_WITHHELD_ROWS   500 /* withheld removals listed */

/* The status, as webcoursectl status prints it: the console's copy when
 * it has one (a reference of ours), else read now. */
static json_t *
view_status(struct view *v)
{
	if (v->status != NULL)
		return json_incref(v->status);
	return report_status_get(v->ledger);
}

/* "Sync now", or the sync running and its progress. */
static void
view_overview_sync(struct view *v)
{
	struct page *p = v->page;

	page_markup(p, "<section aria-labelledby=\"sync\"><h2 id=\"sync\">"
		       "Sync</h2>");
	if (v->syncing) {
		page_markup(p, "<p class=\"running\" role=\"status\">A sync is "
			       "running");
		if (v->progress != NULL) {
			page_markup(p, ": ");
			page_text(p, v->progress);
		}
		page_markup(p, ". This page refreshes itself.</p>");
	} else {
		page_markup(p, "<form method=\"post\" action=\"/sync\">");
		page_hidden(p, "csrf", v->csrf);
		page_markup(p, "<button type=\"submit\">Sync now</button>"
			       "</form>");
	}
	page_markup(p, "</section>");
}

static void
view_overview_figure(struct view *v, const char *label, json_int_t n,
		     const char *href)
{
	page_markup(v->page, "<tr><th scope=\"row\">");
	page_text(v->page, label);
	page_markup(v->page, "</th><td class=\"num\">");
	if (href != NULL && n > 0) {
		page_markup(v->page, "<a");
		page_attr(v->page, "href", href);
		page_markup(v->page, ">");
	}
	page_count(v->page, n);
	if (href != NULL && n > 0)
		page_markup(v->page, "</a>");
	page_markup(v->page, "</td></tr>");
}

static json_int_t
view_int(json_t *o, const char *a, const char *b)
{
	json_t *x = json_object_get(o, a);

	return json_integer_value(b != NULL ? json_object_get(x, b) : x);
}

static void
view_overview_figures(struct view *v, json_t *st)
{
	struct page *p = v->page;
	const char *next = json_string_value(json_object_get(st, "next_run"));

	page_markup(p, "<section aria-labelledby=\"figures\"><h2 "
		       "id=\"figures\">State</h2><table class=\"figures\">");
	page_markup(p, "<tr><th scope=\"row\">Next run</th><td>");
	if (v->syncing)
		page_text(p, "running now");
	else if (next != NULL)
		view_time_iso(v, next);
	else
		page_text(p, "not scheduled (is webcoursed running?)");
	page_markup(p, "</td></tr>");
	view_overview_figure(v, "Courses tracked",
			     view_int(st, "courses", "tracked"), NULL);
	view_overview_figure(v, "Courses hidden",
			     view_int(st, "courses", "hidden"), NULL);
	view_overview_figure(v, "Active enrolments",
			     view_int(st, "enrolments", "active"), NULL);
	view_overview_figure(v, "Suspended enrolments",
			     view_int(st, "enrolments", "suspended"), NULL);
	view_overview_figure(v, "Courses awaiting approval",
			     (json_int_t)json_array_size(
				 json_object_get(st, "awaiting_approval")),
			     "/approvals");
	view_overview_figure(v, "Users missing from Moodle",
			     view_int(st, "missing_users", NULL),
			     "/missing-users");
	view_overview_figure(v, "Drift found", view_int(st, "drift", "total"),
			     "/drift");
	page_markup(p, "</table></section>");
}

static void
view_overview_withheld(struct view *v, json_t *st)
{
	const char *w = json_string_value(json_object_get(st, "removals_"
							      "withheld"));
	struct page *p = v->page;

	if (w == NULL)
		return;
	page_markup(p, "<section class=\"warning\" aria-labelledby=\"held\">"
		       "<h2 id=\"held\">Removals withheld</h2><p>");
	page_text(p, w);
	page_markup(p, "</p><p><a href=\"/removals\">Review and apply the "
		       "withheld removals</a></p></section>");
}

/* One cell per count of a run, with its header. */
static const struct {
	const char *key, *label;
} view_run_counts[] = {
	{ "courses_created", "created" }, { "enrolled", "enrolled" },
	{ "role_changes", "roles" },      { "suspended", "suspended" },
	{ "unenrolled", "unenrolled" },   { "errors", "errors" },
};

static void
view_overview_runs(struct view *v, json_t *st)
{
	json_t *runs = json_object_get(st, "runs"), *r, *counts;
	struct page *p = v->page;
	int64_t started, ended;
	size_t i;

	page_markup(p, "<section aria-labelledby=\"runs\"><h2 id=\"runs\">"
		       "Last runs</h2>");
	if (json_array_size(runs) == 0) {
		page_markup(p, "<p>No run has happened yet.</p></section>");
		return;
	}
	page_markup(p, "<div class=\"scroll\"><table><thead><tr>"
		       "<th scope=\"col\">Run</th><th scope=\"col\">Started"
		       "</th><th scope=\"col\">Took</th><th scope=\"col\">"
		       "Outcome</th>");
	for (size_t k = 0; k < nitems(view_run_counts); k++) {
		page_markup(p, "<th scope=\"col\" class=\"num\">");
		page_text(p, view_run_counts[k].label);
		page_markup(p, "</th>");
	}
	page_markup(p, "<th scope=\"col\">Message</th></tr></thead><tbody>");
	json_array_foreach(runs, i, r)
	{
		started = view_epoch_iso(
		    json_string_value(json_object_get(r, "started")));
		ended = view_epoch_iso(
		    json_string_value(json_object_get(r, "ended")));
		page_markup(p, "<tr><td><a");
		page_href(p, "href", "/history", "run",
			  json_string_value(json_object_get(r, "id_text")),
			  (char *)NULL);
		page_markup(p, ">#");
		page_count(p, view_int(r, "id", NULL));
		page_markup(p, "</a></td><td>");
		page_time(p, started);
		page_markup(p, "</td><td>");
		if (ended >= started && ended > 0)
			page_textf(p, "%lld s", (long long)(ended - started));
		else
			page_text(p, "\xe2\x80\x94");
		page_markup(p, "</td><td>");
		page_markup(p, "<span class=\"outcome\">");
		page_text(p, json_string_value(json_object_get(r, "outcome")));
		page_markup(p, "</span></td>");
		counts = json_object_get(r, "counts");
		for (size_t k = 0; k < nitems(view_run_counts); k++) {
			page_markup(p, "<td class=\"num\">");
			page_count(
			    p, view_int(counts, view_run_counts[k].key, NULL));
			page_markup(p, "</td>");
		}
		page_markup(p, "<td>");
		page_text(p, json_string_value(json_object_get(r, "message")));
		page_markup(p, "</td></tr>");
	}
	page_markup(p, "</tbody></table></div></section>");
}

struct view_errs {
	struct view *v;
	size_t n;
};

static int
view_overview_error_cb(const struct ledger_error *e, void *arg)
{
	struct view_errs *ve = arg;
	struct page *p = ve->v->page;

	if (ve->n++ == VIEW_OVERVIEW_ERRORS)
		return 0;
	page_markup(p, "<li><span class=\"item\">");
	page_text(p, e->item);
	page_markup(p, "</span>: ");
	page_text(p, e->message);
	page_markup(p, " <code>");
	page_text(p, e->code);
	page_markup(p, "</code></li>");
	return 0;
}

static int
view_overview_errors(struct view *v)
{
	struct view_errs ve = { v, 0 };
	struct page *p = v->page;

	page_markup(p, "<section aria-labelledby=\"errs\"><h2 id=\"errs\">"
		       "Errors of the last run that had any</h2><ul>");
	if (ledger_error_foreach(v->ledger, 0, view_overview_error_cb, &ve) ==
	    -1)
		return -1;
	page_markup(p, "</ul>");
	if (ve.n == 0)
		page_markup(p, "<p>None.</p>");
	else {
		page_markup(p, "<p><a href=\"/errors\">All ");
		page_count(p, (int64_t)ve.n);
		page_markup(p, " errors</a></p>");
	}
	page_markup(p, "</section>");
	return 0;
}

/* The run ids as text for the history links: JSON has them as numbers. */
static void
view_overview_run_ids(json_t *st)
{
	json_t *r;
	size_t i;
	char id[24];

	json_array_foreach(json_object_get(st, "runs"), i, r)
	{
		snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT,
			 json_integer_value(json_object_get(r, "id")));
		json_object_set_new(r, "id_text", json_string(id));
	}
}

int
view_overview(struct view *v)
{
	json_t *st = view_status(v);
	int rv;

	if (st == NULL)
		return -1;
	view_overview_run_ids(st);
	view_begin(v, "Overview", "/", v->syncing);
	view_overview_sync(v);
	view_overview_withheld(v, st);
	view_overview_figures(v, st);
	view_overview_runs(v, st);
	rv = view_overview_errors(v);
	view_end(v);
	json_decref(st);
	return rv;
}

struct view_withheld {
	struct view *v;
	size_t n;
};

/* One removal the guard holds back, and why. */
static int
view_withheld_cb(const struct ledger_history *h, void *arg)
{
	struct view_withheld *w = arg;
	struct page *p = w->v->page;

	if (w->n++ >= VIEW_WITHHELD_ROWS)
		return 0;
	if (w->n == 1)
		page_markup(p, "<div class=\"scroll\"><table><thead><tr>"
			       "<th scope=\"col\">Course</th><th scope=\"col\">"
			       "User</th><th scope=\"col\">Why</th><th "
			       "scope=\"col\">Since</th></tr></thead><tbody>");
	page_markup(p, "<tr><td>");
	page_text(p, h->course);
	page_markup(p, "</td><td>");
	page_text(p, h->username != NULL ? h->username : "(the course)");
	page_markup(p, "</td><td>");
	page_text(p, h->reason);
	page_markup(p, "</td><td>");
	page_time(p, h->time);
	page_markup(p, "</td></tr>");
	return 0;
}

int
view_confirm_removals(struct view *v)
{
	json_t *st = view_status(v);
	struct view_withheld held = { v, 0 };
	const char *w;
	struct page *p = v->page;

	if (st == NULL)
		return -1;
	w = json_string_value(json_object_get(st, "removals_withheld"));
	view_begin(v, "Withheld removals", "/removals", false);
	if (w == NULL) {
		page_markup(p, "<p>No removals are withheld: the last run "
			       "applied every removal it planned.</p>");
		view_end(v);
		json_decref(st);
		return 0;
	}
	page_markup(p, "<p>");
	page_text(p, w);
	page_markup(p, "</p>");
	if (ledger_decision_foreach(v->ledger, "withhold", view_withheld_cb,
				    &held) == -1) {
		json_decref(st);
		return -1;
	}
	if (held.n > 0)
		page_markup(p, "</tbody></table></div>");
	if (held.n > VIEW_WITHHELD_ROWS) {
		page_markup(p, "<p>And ");
		page_count(p, (int64_t)(held.n - VIEW_WITHHELD_ROWS));
		page_markup(p,
			    " more (<code>webcoursectl history</code>).</p>");
	}
	page_markup(p, "<p>The guard (<code>sync.max_removals</code>) "
		       "held these removals back because there were more "
		       "than it allows in one run: a feed that lost part of "
		       "its records would otherwise empty courses. The "
		       "history lists each one (action "
		       "<a href=\"/history\">withhold</a>).</p>"
		       "<form method=\"post\" action=\"/sync\">");
	page_hidden(p, "csrf", v->csrf);
	page_hidden(p, "allow_removals", "1");
	page_markup(p, "<p><input type=\"checkbox\" id=\"confirm\" "
		       "name=\"confirm\" value=\"1\" required> <label "
		       "for=\"confirm\">I have checked the feed: apply the "
		       "removals</label></p><button type=\"submit\" "
		       "class=\"danger\">Sync now with the removals</button>"
		       "</form>");
	view_end(v);
	json_decref(st);
	return 0;
}
