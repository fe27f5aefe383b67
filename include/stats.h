/* webcoursed's own metrics: the families it exports and what feeds them. */
#ifndef STATS_H
#define STATS_H

#include <stdbool.h>
#include <stdint.h>

struct ledger;
struct metrics;
struct stats;

/* Define webcoursed's families in the registry (which must outlive the
 * stats); started is the process's start, in seconds since the epoch. */
struct stats *stats_new(struct metrics *, int64_t started);
void stats_free(struct stats *);

/* A sync process started; it ended after usec with its run's outcome
 * ("ok", "partial", "failed", "cancelled") and item errors.  -1 for an
 * outcome not in that list (counted as "failed"). */
void stats_sync_started(struct stats *);
int stats_sync_ended(struct stats *, const char *outcome, int64_t errors,
		     int64_t usec);
/* Whether Moodle serves calls, as the last sync that knew found it. */
void stats_moodle_up(struct stats *, bool up);
/* When the next sync is due (seconds since the epoch). */
void stats_next_sync(struct stats *, int64_t when);

/* One Moodle request attempt, one feed fetch (as run_options observes
 * them).  -1, and nothing counted, for a function, outcome or result
 * that is not ours or a negative number. */
int stats_moodle_request(struct stats *, const char *function,
			 const char *outcome, int64_t usec);
int stats_feed_fetch(struct stats *, const char *result, int64_t bytes,
		     int64_t usec);

/* Read the numbers kept in the ledger: every one (after a sync: the last
 * sync, courses, enrolments, missing users, withheld removals), or only
 * the course states, which webcoursectl approve and reject change between
 * syncs.  -1 on a ledger error (ledger_errmsg); what was read stays. */
int stats_refresh(struct stats *, struct ledger *, bool all);

#endif
