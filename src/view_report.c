/* The console's drift and errors: the lists webcoursectl drift and
 * webcoursectl errors print. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ledger.h"
#include "page.h"
#include "reconcile.h"
#include "view.h"

#define VIEW_LIST_MAX 1000 /* rows of an unpaged list (drift, errors) */

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
