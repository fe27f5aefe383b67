/* Lists of items through Moodle's all-or-nothing calls, several in flight. */
#ifndef BATCH_H
#define BATCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct moodle;
struct moodle_error;

/* What batch_run tells note(), under the batch's lock. */
enum batch_event {
	BATCH_SENDING,   /* these items go out now */
	BATCH_REFUSED,   /* Moodle answered without applying them */
	BATCH_UNSETTLED, /* no answer: Moodle may still apply them */
};

/*
 * n items go out in calls of at most moodle_capacity(fields, extra) items
 * (or max_items), spread over up to moodle_concurrency() calls in flight.
 * Items with the same key never travel in two calls in flight at once:
 * two enrol calls that share a user deadlock in Moodle's database
 * (moodle-ws 30d/30e).  A call refused with MOODLE_ITEM is halved until
 * the bad items stand alone; one refused with MOODLE_CONFLICT (nothing was
 * applied) is set aside and sent again alone once the others are done,
 * after a back-off, and split only if it still conflicts then.
 *
 * call() sends items[0..count) (indexes into the caller's list) in one
 * request on the client it is given (each thread has its own).  The other
 * callbacks run one at a time, under the batch's lock: done() is told
 * what Moodle confirmed (commit it now), failed() each item refused alone.
 * With once set, a call that got no answer is not sent again:
 * note(BATCH_UNSETTLED) hands its items back to the caller, who must not
 * take "not there yet" for "not applied".  A callback returning non-zero
 * stops the batch.
 */
struct batch {
	size_t n;
	int fields, extra;
	size_t max_items; /* 0: as many as max_input_vars allows */
	/* Fewest items worth a call of their own when spreading the list
	 * over calls in flight (0: spread only lists over one call). */
	size_t min_items;
	int64_t (*key)(size_t item, void *arg); /* NULL: no constraint */
	bool once;
	int (*call)(struct moodle *, const size_t *items, size_t count,
		    void *arg, struct moodle_error *);
	int (*note)(enum batch_event, const size_t *items, size_t count,
		    void *arg); /* NULL: nothing to note */
	int (*done)(struct moodle *, const size_t *items, size_t count,
		    void *arg);
	int (*failed)(struct moodle *, size_t item, const struct moodle_error *,
		      void *arg);
	void *arg;
	/* For a caller that schedules its own calls (graph.c): */
	const size_t *items;   /* NULL: items 0..n; else these n indexes */
	int lanes;             /* 0: moodle_concurrency() */
	pthread_mutex_t *lock; /* the callbacks' lock; NULL: the batch's own */
	/* A call refused for a conflict is handed to aside() (under the
	 * lock) instead of going again alone at the end (NULL). */
	int (*aside)(const size_t *items, size_t count, void *arg);
	bool alone; /* the items were refused for a conflict: send alone */
	/* Calls in a row without an answer, counted across the batches that
	 * share it (NULL: this batch's own). */
	int *unanswered;
};

/* 0 when every item was confirmed, reported failed or handed back
 * unsettled; -1 with *err set when a service-wide fault or cancellation
 * stopped it, or a callback returned non-zero. */
int batch_run(struct moodle *, const struct batch *, struct moodle_error *err);

#endif
