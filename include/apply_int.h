/* Internal to the apply modules (apply.c, apply_graph.c): what the run as
 * a graph of calls shares with the batched steps.  Nothing else includes
 * this; the rest of the daemon goes through apply.h. */
#ifndef APPLY_INT_H
#define APPLY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"

struct apply;
struct feed;
struct graph;
struct moodle;
struct moodle_error;
struct moodle_new_course;
struct plan;
struct plan_course;
struct plan_enrol;

/* The enrolment-shaped operations, in the order a run applies them.
 * Fields per item: enrol sends roleid, userid, courseid (no suspend, which
 * re-activates); suspend adds suspend=1; unenrol sends userid, courseid. */
enum apply_op { OP_ENROL, OP_ROLE_ADD, OP_ROLE_REMOVE, OP_SUSPEND, OP_UNENROL };

struct apply_op_desc {
	const char *kind;     /* for the error table */
	const char *phase;    /* progress and log wording */
	const char *function; /* for the error table and the journal */
	int fields;           /* form variables per item */
};

/* Per enum apply_op (apply.c). */
extern const struct apply_op_desc apply_ops[];

/* Fewest enrolment-shaped items worth a call of their own: Moodle's work
 * per item (about 12 ms an enrolment with the welcome message) dwarfs a
 * call's, so a list is spread over the calls that may be in flight. */
#define APPLY_SPREAD_ITEMS 25
/* Fewest usernames worth a look-up of their own: a call costs Moodle
 * about 30 ms, a name about 3 ms (issue 16), so 50 names keep the call's
 * share under a fifth; more go out on the calls allowed in flight. */
#define APPLY_SPREAD_LOOKUPS 50

/* State of one batched operation over a list of plan items. */
struct apply_batch {
	struct apply *a;
	enum apply_op op;
	struct plan_enrol **items;
	size_t n, done;
	bool from_missing;   /* items come from the missing-users table */
	bool quiet;          /* no progress of its own (in a graph) */
	struct graph *graph; /* in a graph: conflicts are handed back to it */
	size_t base;         /* the graph's number of items[0] */
};

/* User look-ups by username. */
struct apply_lookup {
	struct apply *a;
	const char **names;
	size_t n, done;
	int64_t *ids; /* per name, filled by the call that carried it */
	bool quiet;   /* no progress of its own (in a graph) */
};

/* Course creates. */
struct apply_create {
	struct apply *a;
	struct plan_course **items;
	struct moodle_new_course *courses; /* items as Moodle takes them */
	size_t n, done;
	int64_t *ids;     /* per item, filled by the call that created it */
	size_t in_moodle; /* courses Moodle held in their categories */
	bool quiet;       /* no progress of its own (in a graph) */
};

/* Course updates: renames, hides, unhides. */
enum apply_update { UPDATE_RENAME, UPDATE_HIDE, UPDATE_UNHIDE };

struct apply_updates {
	struct apply *a;
	const struct plan_course *list;
	size_t n;
	enum apply_update what;
	char **warning; /* per item: Moodle's warning about it, or NULL */
};

/* apply.c: the run's bookkeeping. */
void apply_progress(struct apply *, const char *phase, size_t done,
		    size_t total);
void apply_stop(struct apply *, const struct moodle_error *);
bool apply_resolve_one(struct apply *, struct plan_enrol *, enum apply_op,
		       bool record);
int apply_courses_prepare(struct apply *, struct plan_course *, size_t,
			  const struct feed *, struct apply_create *);
void apply_create_clear(struct apply_create *);
int apply_missing_record(struct apply *, struct plan_enrol *, size_t,
			 const struct feed *);

/* apply.c: batch_run's callbacks, arg the state above. */
int64_t apply_batch_key(size_t i, void *arg);
int apply_batch_call(struct moodle *, const size_t *idx, size_t count,
		     void *arg, struct moodle_error *);
int apply_batch_note(enum batch_event, const size_t *idx, size_t count,
		     void *arg);
int apply_batch_done(struct moodle *, const size_t *idx, size_t count,
		     void *arg);
int apply_batch_failed(struct moodle *, size_t index,
		       const struct moodle_error *, void *arg);
int apply_lookup_call(struct moodle *, const size_t *idx, size_t count,
		      void *arg, struct moodle_error *);
int apply_lookup_done(struct moodle *, const size_t *idx, size_t count,
		      void *arg);
int apply_lookup_failed(struct moodle *, size_t index,
			const struct moodle_error *, void *arg);
int apply_create_call(struct moodle *, const size_t *idx, size_t count,
		      void *arg, struct moodle_error *);
int apply_create_done(struct moodle *, const size_t *idx, size_t count,
		      void *arg);
int apply_create_failed(struct moodle *, size_t index,
			const struct moodle_error *, void *arg);
int apply_update_call(struct moodle *, const size_t *idx, size_t count,
		      void *arg, struct moodle_error *);
int apply_update_done(struct moodle *, const size_t *idx, size_t count,
		      void *arg);
int apply_update_failed(struct moodle *, size_t index,
			const struct moodle_error *, void *arg);

/* apply_graph.c: every call of the plan as one graph (removals withheld:
 * none); 0, or -1 with a->cause set. */
int apply_graph_run(struct apply *, struct plan *, const struct feed *,
		    bool withhold);

#endif
