/* The web console's pages: what every page shares (layout, forms, paging). */
#ifndef VIEW_H
#define VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct evkeyvalq;
struct json_t;
struct ledger;
struct page;

#define VIEW_PAGE_ROWS 100 /* rows of a long list per page */

/* What a page is drawn from.  The pages read the ledger through the same
 * functions webcoursectl prints with (report.c, ledger.h's iterators);
 * they only render. */
struct view {
	struct page *page;
	const struct config *conf;
	struct ledger *ledger;
	const struct evkeyvalq *query; /* the request's query, or NULL */
	const char *user;     /* logged in as, NULL on the login page */
	const char *csrf;     /* the session's token for its forms */
	bool syncing;         /* a sync is running now */
	const char *progress; /* its progress line, or NULL */
	const char *notice;   /* one line after an action, or NULL */
	const char *error;    /* one line when an action failed, or NULL */
	/* report_status_get's object when the caller keeps a recent one
	 * (reading it costs a scan of the enrolments), else NULL */
	struct json_t *status;
};

/* The head of the page (title, stylesheet, navigation with the current
 * page marked, the user and the logout button, the notice) and its end.
 * refresh: reload the page every few seconds (a meta refresh: no script,
 * which the CSP forbids inline). */
void view_begin(struct view *, const char *title, const char *path,
		bool refresh);
void view_end(struct view *);

/* The value of a query parameter, or NULL (also when it is empty). */
const char *view_param(const struct view *, const char *name);
/* The 1-based page number of a paged list (?page=N), at least 1. */
int64_t view_page_number(const struct view *);
/* "Newer / Older" links for a list paged by VIEW_PAGE_ROWS ("/history",
 * "/missing-users" or "/approvals"), keeping the list's filters. */
void view_pager(struct view *, const char *path, int64_t page, bool more);

/* A time the ledger wrote as ISO 8601 UTC, shown in the local zone; and
 * as epoch seconds (0 when it is not one). */
void view_time_iso(struct view *, const char *iso);
int64_t view_epoch_iso(const char *iso);

/* A window of a long list: rows [skip, skip + VIEW_PAGE_ROWS) are
 * shown; one more row tells that there is a next page.  q: a filter of
 * the list, or NULL. */
struct view_window {
	struct view *v;
	const char *q;
	int64_t skip, seen, shown;
	bool more;
};
/* Whether this row is in the window (*ret); 1 (stop) past its end. */
int view_window_take(struct view_window *, bool *ret);

/* The login page: the form, and why the last try failed (or NULL). */
void view_login(struct view *, const char *failure);
/* The pages; -1 when the ledger failed (the caller answers 500). */
int view_overview(struct view *);
int view_approvals(struct view *);
int view_missing(struct view *);
int view_history(struct view *);
int view_drift(struct view *);
int view_errors(struct view *);
/* The extra step before removals the guard withheld are applied. */
int view_confirm_removals(struct view *);

#endif
