/* webcoursed's own metrics: the families it exports and what feeds them.
 *
 * Two kinds of numbers.  What the daemon sees happen (syncs ending, the
 * Moodle requests and feed fetches its sync processes report) are
 * counters and histograms since the daemon started.  What the ledger
 * holds (the last sync, courses, enrolments, missing users, withheld
 * removals) is read from it as `webcoursectl status` reads it, so that
 * both say the same, and kept here: a scrape never queries the ledger.
 * New families are a row in stats_defs and, where the ledger or a report
 * feeds them, a few lines in the function that reads it. */
#include <stdlib.h>
#include <string.h>

#include "ledger.h"
#include "metrics.h"
#include "moodle.h"
#include "stats.h"
#include "util.h"

#define STATS_RUNS 10 /* recent runs searched for the last finished one */

enum stats_family {
	ST_BUILD_INFO,
	ST_START_TIME,
	ST_SYNC_RUNNING,
	ST_NEXT_SYNC,
	ST_MOODLE_UP,
	ST_SYNCS,
	ST_SYNC_DURATION,
	ST_ITEM_ERRORS,
	ST_LAST_START,
	ST_LAST_END,
	ST_LAST_DURATION,
	ST_LAST_SUCCESS,
	ST_LAST_OUTCOME,
	ST_LAST_ERRORS,
	ST_MOODLE_REQUESTS,
	ST_MOODLE_DURATION,
	ST_FEED_FETCHES,
	ST_FEED_DURATION,
	ST_FEED_BYTES,
	ST_FEED_SIZE,
	ST_COURSES,
	ST_AWAITING,
	ST_ENROLMENTS,
	ST_MISSING,
	ST_WITHHELD,
	ST_DRIFT,
	ST_OLDEST_CHECK,
	ST_COUNT
};

/* The label values each family can take; anything else is refused.  But
 * for the Moodle requests (function by outcome), every series exists from
 * the start, at 0, so that a rate() has a baseline. */
static const char *const stats_outcomes[] = { "ok", "partial", "failed",
					      "cancelled", NULL };
static const char *const stats_moodle_outcomes[] = {
	"ok",         "moodle_error", "http_error", "timeout", "connect_error",
	"bad_answer", "cancelled",    NULL
};
static const char *const stats_fetch_results[] = { "304",   "unchanged",
						   "new",   "rejected",
						   "error", NULL };
/* Indexed by enum ledger_course_status and ledger_enrol_status. */
static const char *const stats_course_states[] = {
	[LEDGER_COURSE_ACTIVE] = "active",
	[LEDGER_COURSE_PENDING] = "pending",
	[LEDGER_COURSE_APPROVED] = "approved",
	[LEDGER_COURSE_REJECTED] = "rejected",
	[LEDGER_COURSE_HIDDEN] = "hidden",
	NULL
};
static const char *const stats_enrol_states[] = {
	[LEDGER_ENROL_ACTIVE] = "active",
	[LEDGER_ENROL_SUSPENDED] = "suspended",
};

static const char *const stats_version[] = { "version", NULL };
static const char *const stats_outcome[] = { "outcome", NULL };
static const char *const stats_request[] = { "function", "outcome", NULL };
static const char *const stats_result[] = { "result", NULL };
static const char *const stats_state[] = { "state", NULL };
static const char *const stats_kind[] = { "kind", NULL };
/* The kinds of drift (reconcile.c), each a series from the start. */
static const char *const stats_drift_kinds[] = { "gone",      "role_gone",
						 "suspended", "course_gone",
						 "renamed",   "visibility",
						 NULL };

static const double stats_sync_buckets[] = { 1,   5,   15,   30,   60,  120,
					     300, 600, 1800, 3600, 7200 };
static const double stats_request_buckets[] = { 0.05, 0.1, 0.25, 0.5, 1,  2.5,
						5,    10,  30,   60,  120 };
static const double stats_fetch_buckets[] = { 0.05, 0.1, 0.5, 1,  5,
					      10,   30,  60,  300 };

#define HISTOGRAM(b) METRICS_HISTOGRAM, NULL, b, nitems(b)

/* Every family webcoursed exports; webcoursed(8) lists them too. */
static const struct metrics_def stats_defs[ST_COUNT] = {
	[ST_BUILD_INFO] = { "webcoursed_build_info", METRICS_GAUGE,
			    stats_version, NULL, 0,
			    "Always 1; the label says which webcoursed runs." },
	[ST_START_TIME] = { "process_start_time_seconds", METRICS_GAUGE, NULL,
			    NULL, 0,
			    "Start time of the daemon since the Unix epoch." },
	[ST_SYNC_RUNNING] = { "webcoursed_sync_running", METRICS_GAUGE, NULL,
			      NULL, 0, "1 while a sync is in progress." },
	[ST_NEXT_SYNC] = { "webcoursed_next_sync_timestamp_seconds",
			   METRICS_GAUGE, NULL, NULL, 0,
			   "When the next sync is due (status: next_run)." },
	[ST_MOODLE_UP] = { "webcoursed_moodle_up", METRICS_GAUGE, NULL, NULL, 0,
			   "0 since a sync found Moodle down (its database, "
			   "maintenance mode, PHP, unreachable), 1 once one "
			   "reached it again or none found it down." },
	[ST_SYNCS] = { "webcoursed_syncs_total", METRICS_COUNTER, stats_outcome,
		       NULL, 0,
		       "Syncs ended since the daemon started, by outcome." },
	[ST_SYNC_DURATION] = { "webcoursed_sync_duration_seconds",
			       HISTOGRAM(stats_sync_buckets),
			       "Wall time of the syncs since the daemon "
			       "started." },
	[ST_ITEM_ERRORS] = { "webcoursed_item_errors_total", METRICS_COUNTER,
			     NULL, NULL, 0,
			     "Per-item errors of the syncs since the daemon "
			     "started." },
	[ST_LAST_START] = { "webcoursed_last_sync_start_timestamp_seconds",
			    METRICS_GAUGE, NULL, NULL, 0,
			    "Start of the last finished sync (0: none yet)." },
	[ST_LAST_END] = { "webcoursed_last_sync_end_timestamp_seconds",
			  METRICS_GAUGE, NULL, NULL, 0,
			  "End of the last finished sync (0: none yet)." },
	[ST_LAST_DURATION] = { "webcoursed_last_sync_duration_seconds",
			       METRICS_GAUGE, NULL, NULL, 0,
			       "End minus start of the last finished sync, "
			       "in whole seconds as the ledger keeps them." },
	[ST_LAST_SUCCESS] = { "webcoursed_last_sync_success", METRICS_GAUGE,
			      NULL, NULL, 0,
			      "1 when the last finished sync completed "
			      "(outcome ok or partial), else 0." },
	[ST_LAST_OUTCOME] = { "webcoursed_last_sync_outcome", METRICS_GAUGE,
			      stats_outcome, NULL, 0,
			      "1 for the outcome of the last finished sync, 0 "
			      "for the others." },
	[ST_LAST_ERRORS] = { "webcoursed_last_sync_item_errors", METRICS_GAUGE,
			     NULL, NULL, 0,
			     "Per-item errors of the last finished sync "
			     "(webcoursectl errors)." },
	[ST_MOODLE_REQUESTS] = { "webcoursed_moodle_requests_total",
				 METRICS_COUNTER, stats_request, NULL, 0,
				 "Moodle web service requests (each attempt), "
				 "by function and outcome." },
	[ST_MOODLE_DURATION] = { "webcoursed_moodle_request_duration_seconds",
				 METRICS_HISTOGRAM, stats_request,
				 stats_request_buckets,
				 nitems(stats_request_buckets),
				 "Duration of the Moodle web service requests, "
				 "by function and outcome." },
	[ST_FEED_FETCHES] = { "webcoursed_feed_fetches_total", METRICS_COUNTER,
			      stats_result, NULL, 0,
			      "Feed fetches by result: 304, unchanged (same "
			      "body), new, rejected (by validation), error." },
	[ST_FEED_DURATION] = { "webcoursed_feed_fetch_duration_seconds",
			       HISTOGRAM(stats_fetch_buckets),
			       "Duration of the feed fetches." },
	[ST_FEED_BYTES] = { "webcoursed_feed_fetch_bytes_total",
			    METRICS_COUNTER, NULL, NULL, 0,
			    "Bytes of feed bodies received." },
	[ST_FEED_SIZE] = { "webcoursed_feed_size_bytes", METRICS_GAUGE, NULL,
			   NULL, 0,
			   "Size of the last feed body received (a 304 keeps "
			   "it)." },
	[ST_COURSES] = { "webcoursed_courses", METRICS_GAUGE, stats_state, NULL,
			 0,
			 "Courses in the ledger by state (active ones are "
			 "what status calls tracked)." },
	[ST_AWAITING] = { "webcoursed_courses_awaiting_approval", METRICS_GAUGE,
			  NULL, NULL, 0,
			  "New courses waiting for webcoursectl approve, or "
			  "approved and not yet created." },
	[ST_ENROLMENTS] = { "webcoursed_enrolments", METRICS_GAUGE, stats_state,
			    NULL, 0, "Enrolments webcoursed made, by state." },
	[ST_MISSING] = { "webcoursed_missing_users", METRICS_GAUGE, NULL, NULL,
			 0, "Users in the feed that Moodle does not know." },
	[ST_WITHHELD] = { "webcoursed_removals_withheld", METRICS_GAUGE, NULL,
			  NULL, 0,
			  "Removals the guard withholds until webcoursectl "
			  "sync --allow-removals or the feed recovers." },
	[ST_DRIFT] = { "webcoursed_drift", METRICS_GAUGE, stats_kind, NULL, 0,
		       "What differs between the ledger and Moodle now, by "
		       "kind (webcoursectl drift)." },
	[ST_OLDEST_CHECK] = { "webcoursed_oldest_drift_check_timestamp_seconds",
			      METRICS_GAUGE, NULL, NULL, 0,
			      "When the course checked longest ago was "
			      "checked for drift (0: one never was)." },
};

struct stats {
	struct metrics_family *fam[ST_COUNT];
};

static bool
stats_known(const char *const *list, const char *value)
{
	for (; *list != NULL; list++)
		if (strcmp(*list, value) == 0)
			return true;
	return false;
}

/* Make the series of every value in list, at 0. */
static void
stats_zero(struct metrics_family *f, const char *const *list, bool gauge)
{
	for (; *list != NULL; list++)
		if (gauge)
			metrics_set(f, (const char *[]){ *list }, 0);
		else
			metrics_inc(f, (const char *[]){ *list }, 0);
}

struct stats *
stats_new(struct metrics *m, int64_t started)
{
	struct stats *s = xcalloc(1, sizeof(*s));

	for (size_t i = 0; i < ST_COUNT; i++)
		s->fam[i] = metrics_define(m, &stats_defs[i]);
	metrics_set(s->fam[ST_BUILD_INFO],
		    (const char *[]){ WEBCOURSED_VERSION }, 1);
	metrics_set(s->fam[ST_START_TIME], NULL, (double)started);
	metrics_set(s->fam[ST_MOODLE_UP], NULL, 1);
	stats_zero(s->fam[ST_SYNCS], stats_outcomes, false);
	stats_zero(s->fam[ST_LAST_OUTCOME], stats_outcomes, true);
	stats_zero(s->fam[ST_FEED_FETCHES], stats_fetch_results, false);
	stats_zero(s->fam[ST_COURSES], stats_course_states, true);
	stats_zero(s->fam[ST_DRIFT], stats_drift_kinds, true);
	for (size_t i = 0; i < nitems(stats_enrol_states); i++)
		if (stats_enrol_states[i] != NULL)
			metrics_set(s->fam[ST_ENROLMENTS],
				    &stats_enrol_states[i], 0);
	return s;
}

void
stats_free(struct stats *s)
{
	free(s);
}

void
stats_sync_started(struct stats *s)
{
	metrics_set(s->fam[ST_SYNC_RUNNING], NULL, 1);
}

int
stats_sync_ended(struct stats *s, const char *outcome, int64_t errors,
		 int64_t usec)
{
	bool known = stats_known(stats_outcomes, outcome);

	metrics_set(s->fam[ST_SYNC_RUNNING], NULL, 0);
	metrics_inc(s->fam[ST_SYNCS],
		    (const char *[]){ known ? outcome : "failed" }, 1);
	if (errors > 0)
		metrics_inc(s->fam[ST_ITEM_ERRORS], NULL, (double)errors);
	if (usec >= 0)
		metrics_observe(s->fam[ST_SYNC_DURATION], NULL,
				(double)usec / 1e6);
	return known ? 0 : -1;
}

void
stats_moodle_up(struct stats *s, bool up)
{
	metrics_set(s->fam[ST_MOODLE_UP], NULL, up ? 1 : 0);
}

void
stats_next_sync(struct stats *s, int64_t when)
{
	metrics_set(s->fam[ST_NEXT_SYNC], NULL, (double)when);
}

int
stats_moodle_request(struct stats *s, const char *function, const char *outcome,
		     int64_t usec)
{
	const char *labels[] = { function, outcome };

	if (!stats_known(moodle_required_functions, function) ||
	    !stats_known(stats_moodle_outcomes, outcome) || usec < 0)
		return -1;
	metrics_inc(s->fam[ST_MOODLE_REQUESTS], labels, 1);
	metrics_observe(s->fam[ST_MOODLE_DURATION], labels, (double)usec / 1e6);
	return 0;
}

int
stats_feed_fetch(struct stats *s, const char *result, int64_t bytes,
		 int64_t usec)
{
	if (!stats_known(stats_fetch_results, result) || bytes < 0 || usec < 0)
		return -1;
	metrics_inc(s->fam[ST_FEED_FETCHES], (const char *[]){ result }, 1);
	metrics_observe(s->fam[ST_FEED_DURATION], NULL, (double)usec / 1e6);
	metrics_inc(s->fam[ST_FEED_BYTES], NULL, (double)bytes);
	if (strcmp(result, "304") != 0 && strcmp(result, "error") != 0)
		metrics_set(s->fam[ST_FEED_SIZE], NULL, (double)bytes);
	return 0;
}

/* The course states, and the courses awaiting approval as status counts
 * them (pending or approved). */
static int
stats_read_courses(struct stats *s, struct ledger *l)
{
	int64_t n[nitems(stats_course_states) - 1];

	for (size_t i = 0; i < nitems(n); i++) {
		if (ledger_course_count(l, (int)i, &n[i]) == -1)
			return -1;
		metrics_set(s->fam[ST_COURSES], &stats_course_states[i],
			    (double)n[i]);
	}
	metrics_set(
	    s->fam[ST_AWAITING], NULL,
	    (double)(n[LEDGER_COURSE_PENDING] + n[LEDGER_COURSE_APPROVED]));
	return 0;
}

/* The last finished sync: a sync process that died leaves its run
 * "running", and a later one is looked for past it. */
static int
stats_read_last_run(struct stats *s, struct ledger *l)
{
	struct ledger_run *runs = NULL, *r = NULL;
	size_t n = 0;

	if (ledger_runs_recent(l, STATS_RUNS, &runs, &n) == -1)
		return -1;
	for (size_t i = 0; i < n && r == NULL; i++)
		if (strcmp(runs[i].outcome, "running") != 0)
			r = &runs[i];
	if (r != NULL) {
		metrics_set(s->fam[ST_LAST_START], NULL, (double)r->started);
		metrics_set(s->fam[ST_LAST_END], NULL, (double)r->ended);
		metrics_set(s->fam[ST_LAST_DURATION], NULL,
			    (double)(r->ended - r->started));
		metrics_set(s->fam[ST_LAST_SUCCESS], NULL,
			    strcmp(r->outcome, "ok") == 0 ||
				    strcmp(r->outcome, "partial") == 0
				? 1
				: 0);
		for (const char *const *o = stats_outcomes; *o != NULL; o++)
			metrics_set(s->fam[ST_LAST_OUTCOME],
				    (const char *[]){ *o },
				    strcmp(*o, r->outcome) == 0);
		metrics_set(s->fam[ST_LAST_ERRORS], NULL, (double)r->errors);
	}
	ledger_runs_free(runs, n);
	return 0;
}

/* The removals withheld now: the guard's count next to its warning; a
 * warning without a count (left by an older webcoursed) counts as 1. */
static int
stats_read_withheld(struct ledger *l, int64_t *ret)
{
	char *warning = NULL, *count = NULL;
	int rv = -1;

	if (ledger_meta_get(l, "removals_withheld", &warning) == -1 ||
	    ledger_meta_get(l, "removals_withheld_count", &count) == -1)
		goto out;
	if (warning == NULL)
		*ret = 0;
	else if (count == NULL || parse_int64(count, 1, INT64_MAX, ret) == -1)
		*ret = 1;
	rv = 0;
out:
	free(warning);
	free(count);
	return rv;
}

static int
stats_drift_cb(const struct ledger_drift *d, void *arg)
{
	int64_t *n = arg;

	for (size_t i = 0; stats_drift_kinds[i] != NULL; i++)
		if (strcmp(stats_drift_kinds[i], d->kind) == 0)
			n[i]++;
	return 0;
}

/* Drift by kind and the oldest course check, as status reports them. */
static int
stats_read_drift(struct stats *s, struct ledger *l)
{
	int64_t n[nitems(stats_drift_kinds)] = { 0 }, tracked, overdue, oldest;

	if (ledger_drift_foreach(l, stats_drift_cb, n) == -1 ||
	    ledger_course_checks(l, 0, &tracked, &overdue, &oldest) == -1)
		return -1;
	for (size_t i = 0; stats_drift_kinds[i] != NULL; i++)
		metrics_set(s->fam[ST_DRIFT], &stats_drift_kinds[i],
			    (double)n[i]);
	metrics_set(s->fam[ST_OLDEST_CHECK], NULL, (double)oldest);
	return 0;
}

int
stats_refresh(struct stats *s, struct ledger *l, bool all)
{
	int64_t n;

	if (stats_read_courses(s, l) == -1)
		return -1;
	if (!all)
		return 0;
	for (size_t i = 0; i < nitems(stats_enrol_states); i++) {
		if (stats_enrol_states[i] == NULL)
			continue;
		if (ledger_enrol_count(l, (int)i, &n) == -1)
			return -1;
		metrics_set(s->fam[ST_ENROLMENTS], &stats_enrol_states[i],
			    (double)n);
	}
	if (ledger_missing_count_users(l, &n) == -1)
		return -1;
	metrics_set(s->fam[ST_MISSING], NULL, (double)n);
	if (stats_read_withheld(l, &n) == -1)
		return -1;
	metrics_set(s->fam[ST_WITHHELD], NULL, (double)n);
	if (stats_read_drift(s, l) == -1)
		return -1;
	return stats_read_last_run(s, l);
}
