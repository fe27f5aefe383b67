/* One sync run, straight-line: fetch, decode, plan, guard, apply, record. */
#ifndef RUN_H
#define RUN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct ledger;
struct ledger_run;

/* Ledger meta key: why Moodle was down at the last run that reached it
 * (the next run's breaker opens at once, the daemon knows at start). */
#define RUN_META_DOWN "moodle_down"

/* Phase progress ("fetching", "enrolling" 1200/5000, ...). */
typedef void (*run_progress_fn)(void *arg, const char *phase, size_t done,
				size_t total);

struct run_options {
	bool allow_removals; /* release the removal guard */
	volatile sig_atomic_t
	    *cancel; /* non-zero: stop at the next safe point */
	run_progress_fn progress;
	void (*tick)(void *arg); /* heartbeat while waiting on the network */
	/* For the metrics, each may be NULL: every Moodle request attempt
	 * (see moodle_set_observer), and the feed fetch: its result ("304",
	 * "unchanged", "new", "rejected" when validation refused the body,
	 * or "error"; a cancelled fetch is not told), the bytes of the body
	 * received and the fetch's duration. */
	void (*observe_moodle)(void *arg, const char *function,
			       const char *outcome, int64_t usec);
	void (*observe_fetch)(void *arg, const char *result, size_t bytes,
			      int64_t usec);
	/* Whether Moodle could serve, told at the end of a run that knows
	 * (up: 1, or 0 with the plain-text reason); may be NULL. */
	void (*moodle_state)(void *arg, int up, const char *cause);
	/* Moodle was down at the last run and the daemon has said so: a run
	 * that finds it still down logs that at debug level only. */
	bool quiet_outage;
	void *arg; /* for progress, tick and the observers */
};

/* Run once with the ledger locked by the caller.  Fills *ret (free its
 * strings with ledger_runs_free(ret, 0)-style clearing: run_result_clear).
 * Returns 0 when the run completed (outcome "ok" or "partial"), -1 when it
 * failed or was cancelled; ret->message says why. */
int run_sync(const struct config *, struct ledger *, const struct run_options *,
	     struct ledger_run *ret);
void run_result_clear(struct ledger_run *);

/* The summary line: "sync done in 4.2 s: +3 courses, ...". */
char *run_summary(const struct ledger_run *);

#endif
