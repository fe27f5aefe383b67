/* Held new courses: approve or reject, for webcoursectl and the console. */
#include <stdlib.h>
#include <string.h>

#include "approval.h"
#include "history.h"
#include "ledger.h"
#include "util.h"

struct approval_names {
	char **v;
	size_t n;
};

static void
approval_push(char ***v, size_t *n, const char *name)
{
	*v = xreallocarray(*v, *n + 1, sizeof(**v));
	(*v)[(*n)++] = xstrdup(name);
}

static int
approval_held_cb(const struct ledger_course *lc, void *arg)
{
	struct approval_names *h = arg;

	if (lc->status == LEDGER_COURSE_PENDING)
		approval_push(&h->v, &h->n, lc->shortname);
	return 0;
}

void
approval_result_clear(struct approval_result *r)
{
	for (size_t i = 0; i < r->ndone; i++)
		free(r->done[i]);
	for (size_t i = 0; i < r->nrefused; i++)
		free(r->refused[i]);
	free(r->done);
	free(r->refused);
	memset(r, 0, sizeof(*r));
}

/* One course: moved to `to` with its history row, or refused.  -1 on a
 * ledger failure. */
static int
approval_one(const struct history *hist, const char *name, int to,
	     const char *by, struct approval_result *ret)
{
	struct ledger_course lc = { 0 };
	int found, rv = 0;

	if ((found = ledger_course_get(hist->ledger, name, &lc)) == -1)
		return -1;
	if (found == 1 || (lc.status != LEDGER_COURSE_PENDING &&
			   lc.status != LEDGER_COURSE_APPROVED)) {
		approval_push(&ret->refused, &ret->nrefused, name);
		goto out;
	}
	lc.status = to;
	if (ledger_course_put(hist->ledger, &lc) == -1 ||
	    (to == LEDGER_COURSE_APPROVED
		 ? history_add(hist, "approve", name, NULL, 0,
			       "approved by %s; the next run creates it", by)
		 : history_add(hist, "reject", name, NULL, 0,
			       "rejected by %s; never created", by)) == -1) {
		rv = -1;
		goto out;
	}
	approval_push(&ret->done, &ret->ndone, name);
out:
	ledger_course_clear(&lc);
	return rv;
}

int
approval_decide(const struct config *conf, struct ledger *l,
		const char *const *names, size_t n, bool all, bool approve,
		const char *by, struct approval_result *ret)
{
	struct history hist = { .ledger = l, .conf = conf, .now = now_epoch() };
	struct approval_names held = { NULL, 0 };
	int to = approve ? LEDGER_COURSE_APPROVED : LEDGER_COURSE_REJECTED;
	int rv = -1;

	memset(ret, 0, sizeof(*ret));
	/* run 0: between runs */
	if (all && ledger_course_foreach(l, approval_held_cb, &held) == -1)
		goto out;
	for (size_t i = 0; i < n; i++)
		approval_push(&held.v, &held.n, names[i]);
	if (ledger_begin(l) == -1)
		goto out;
	for (size_t i = 0; i < held.n; i++)
		if (approval_one(&hist, held.v[i], to, by, ret) == -1) {
			ledger_rollback(l);
			approval_result_clear(ret);
			goto out;
		}
	if (ledger_commit(l) == -1) {
		approval_result_clear(ret);
		goto out;
	}
	rv = 0;
out:
	for (size_t i = 0; i < held.n; i++)
		free(held.v[i]);
	free(held.v);
	return rv;
}
