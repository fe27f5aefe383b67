/* Apply a plan to Moodle in confirmed batches, recording each in the ledger. */
#ifndef APPLY_H
#define APPLY_H

#include <stdbool.h>

#include "history.h"
#include "run.h"

struct config;
struct feed;
struct ledger;
struct ledger_run;
struct moodle;
struct plan;
struct apply_maps;

struct apply {
	const struct config *conf;
	struct ledger *ledger;
	struct moodle *moodle;
	const struct run_options *opts;
	struct ledger_run *counts; /* counters are added to */
	int64_t now;
	struct history hist; /* rows of this run */
	char *cause;      /* set when a service-wide fault stopped the apply */
	size_t unsettled; /* enrolments left that Moodle may still apply */
	size_t unsettled_calls; /* calls without an answer this run */
	bool cut; /* PHP cut a request: max_input_vars is lower than used */
	bool drift_known; /* the plan saw drift: changes may put it back */
	struct apply_maps *maps; /* private to apply.c */
};

/* Apply every part of the plan; removals only when !withhold_removals.
 * Returns 0 when the plan was worked through (item failures recorded),
 * -1 when a service-wide fault or cancellation stopped it (a->cause). */
int apply_plan(struct apply *, struct plan *, const struct feed *,
	       bool withhold_removals);

/* For an unchanged feed: look the missing users up again and enrol those
 * who now exist.  Same return convention. */
int apply_missing(struct apply *);

/* Resolve the enrolments in flight when the previous run died. */
int apply_recover(struct apply *);
/* Free what the apply kept between its steps. */
void apply_done(struct apply *);

#endif
