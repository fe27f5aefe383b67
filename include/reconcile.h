/* Drift: what changed in Moodle behind the ledger's back, found by
 * checking courses against Moodle, recorded, and the ledger corrected. */
#ifndef RECONCILE_H
#define RECONCILE_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct history;
struct ledger;
struct moodle;

/* One reconciliation: what it checks with, and what it found. */
struct reconcile {
	const struct config *conf;
	struct ledger *ledger;
	struct moodle *moodle;
	const struct history *hist;
	void (*progress)(void *arg, const char *phase, size_t done,
			 size_t total);
	void *arg;
	char *cause; /* why it stopped, when it did */
	size_t checked, found, resolved;
	bool corrected; /* the ledger now says something else */
};

/* Check the courses a run checks: the longest unchecked first, as many as
 * keep each checked once per sync.reconcile_every (at most
 * RECONCILE_MAX_PER_RUN).  0, or -1 with r->cause. */
#define RECONCILE_MAX_PER_RUN 500
int reconcile_slice(struct reconcile *);
/* Check these courses now (n 0: every course in Moodle). */
int reconcile_courses(struct reconcile *, char *const *shortnames, size_t n);
void reconcile_done(struct reconcile *);

/* What the policy does about a drift of this kind, in words. */
const char *reconcile_policy_words(const struct config *, const char *kind);

#endif
