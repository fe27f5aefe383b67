/* The ledger: an sqlite database of what webcoursed applied to Moodle. */
#ifndef LEDGER_H
#define LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ledger;

enum ledger_course_status {
	LEDGER_COURSE_ACTIVE = 0,  /* in Moodle (moodle_id set), tracked */
	LEDGER_COURSE_PENDING = 1, /* new, waiting for `webcoursectl approve` */
	LEDGER_COURSE_APPROVED = 2, /* approved, to be created next run */
	LEDGER_COURSE_REJECTED = 3, /* rejected: never created */
	LEDGER_COURSE_HIDDEN = 4    /* hidden by us after vanishing */
};

/* A course row.  Strings are owned by the row: ledger_course_clear(). */
struct ledger_course {
	char *shortname;
	int64_t moodle_id; /* 0 while not in Moodle */
	char *fullname;
	int status;         /* enum ledger_course_status */
	int absent_runs;    /* consecutive good feeds without this course */
	bool created;       /* we created it (false: adopted) */
	int participants;   /* participant count in the last feed */
	int64_t first_seen; /* epoch seconds */
	int64_t last_seen;
	int64_t checked; /* last checked against Moodle (drift), 0: never */
	int visible;     /* the visibility we last set, -1: unknown */
};

enum ledger_enrol_status {
	LEDGER_ENROL_ACTIVE = 1,
	LEDGER_ENROL_SUSPENDED = 2
};

/* An enrolment we made: one row per (course, user, role). */
struct ledger_enrol {
	const char *course; /* shortname */
	const char *username;
	int roleid;
	int status; /* enum ledger_enrol_status, the same for all roles */
};

/* A user of the feed waiting to exist in Moodle, for one course and role. */
struct ledger_missing {
	const char *username;
	const char *course;
	int roleid;
	int64_t first_seen;
};

/* One run.  outcome: "running", "ok", "partial", "failed", "cancelled". */
struct ledger_run {
	int64_t id;
	int64_t started, ended; /* epoch seconds; ended 0 while running */
	char *outcome;
	char *message; /* one line for a person, or NULL */
	int64_t courses_created, courses_adopted, courses_renamed;
	int64_t courses_hidden, courses_pending;
	int64_t enrolled, role_changes, suspended, unenrolled;
	int64_t missing_users, errors, removals_withheld;
};

struct ledger_error {
	int64_t run_id;
	const char *kind; /* "feed", "course", "enrol", "role", "user", ... */
	const char *item; /* shortname, "shortname/username", JSON path */
	const char *code; /* Moodle errorcode or our own short code */
	const char *message;
};

/* Open (creating and migrating as needed) the database at path.  readonly
 * opens without creating or migrating. */
int ledger_open(const char *path, bool readonly, struct ledger **ret,
		char **cause);
void ledger_free(struct ledger *);
int ledger_schema_version(struct ledger *);

/* The single-writer lock (flock on "<path>.lock", holding our pid).  When it
 * is held elsewhere, *cause names the holder: "ledger PATH is locked by pid
 * 1234 (webcoursed); another sync is running". */
int ledger_lock(struct ledger *, char **cause);
void ledger_unlock(struct ledger *);

/* One transaction per confirmed batch.  A nested begin fails; a commit that
 * fails rolls the batch back. */
int ledger_begin(struct ledger *);
int ledger_commit(struct ledger *);
void ledger_rollback(struct ledger *);

/* The last failure's text (sqlite's or the ledger's own), still there after
 * a rollback, for the caller's one log line. */
const char *ledger_errmsg(struct ledger *);

typedef int (*ledger_course_cb)(const struct ledger_course *, void *);
typedef int (*ledger_enrol_cb)(const struct ledger_enrol *, void *);
typedef int (*ledger_user_cb)(const char *username, int64_t moodle_id, void *);
typedef int (*ledger_missing_cb)(const struct ledger_missing *, void *);
typedef int (*ledger_error_cb)(const struct ledger_error *, void *);

/* An enrol call sent to Moodle whose answer is not recorded: the run died,
 * or the call got no answer.  Until settle_by (epoch seconds) Moodle may
 * still be applying it, so "not there yet" does not mean "not applied".
 * items: one "course US username US roleid US courseid" line per
 * enrolment (US: the unit separator, \037). */
struct ledger_inflight {
	const char *id; /* the call's first item */
	int64_t settle_by;
	const char *items;
};
typedef int (*ledger_inflight_cb)(const struct ledger_inflight *, void *);

/* One event of the history: a change made in Moodle, or a decision not to
 * make one, and why, in words for a person.  course, username and role
 * may be NULL. */
struct ledger_history {
	int64_t id, run_id, time;
	const char *action, *course, *username, *role, *reason;
};
typedef int (*ledger_history_cb)(const struct ledger_history *, void *);

/* What differs between the ledger and Moodle (drift).  kind: "gone" (our
 * enrolment), "role_gone", "suspended" (by an admin), "course_gone",
 * "renamed", "visibility"; username "" and roleid 0 where they do not
 * apply.  ledger_said and moodle_has are for a person. */
struct ledger_drift {
	const char *course, *username;
	int roleid;
	const char *kind, *ledger_said, *moodle_has;
	int64_t since; /* epoch seconds: found then */
	int64_t run_id;
};
typedef int (*ledger_drift_cb)(const struct ledger_drift *, void *);

/* Which events ledger_history_foreach visits: NULL, 0 for any. */
struct ledger_history_filter {
	const char *username, *course;
	int64_t since; /* epoch seconds */
	int64_t run_id;
};

/* Iterators stop early and return the callback's value when it is not 0.
 * The strings of a row live until the callback returns. */
int ledger_course_foreach(struct ledger *, ledger_course_cb, void *);
/* 0 found (ret filled), 1 not, -1 */
int ledger_course_get(struct ledger *, const char *shortname,
		      struct ledger_course *ret);
int ledger_course_put(struct ledger *, const struct ledger_course *);
int ledger_course_delete(struct ledger *, const char *shortname);
/* Courses with this status (enum ledger_course_status). */
int ledger_course_count(struct ledger *, int status, int64_t *ret);
void ledger_course_clear(struct ledger_course *);

/* Ordered by course, username, roleid. */
int ledger_enrol_foreach(struct ledger *, ledger_enrol_cb, void *);
int ledger_enrol_foreach_course(struct ledger *, const char *course,
				ledger_enrol_cb, void *);
/* The course must be in the ledger (deleting it deletes its enrolments);
 * status applies to every role of the user in the course, as in Moodle. */
int ledger_enrol_put(struct ledger *, const char *course, const char *username,
		     int roleid, int status);
int ledger_enrol_set_status(struct ledger *, const char *course,
			    const char *username, int status);
/* roleid < 0 deletes every role of the user in the course. */
int ledger_enrol_delete(struct ledger *, const char *course,
			const char *username, int roleid);
/* Distinct (course, user) enrolments with this status (0: any). */
int ledger_enrol_count(struct ledger *, int status, int64_t *ret);
/* Count them now and keep the counts until the enrolments change (a run
 * does it at its end), so that ledger_enrol_count reads them. */
int ledger_enrol_count_keep(struct ledger *);

/* The username -> Moodle id cache. */
int ledger_user_get(struct ledger *, const char *username,
		    int64_t *ret_id); /* 0 found, 1 not, -1 */
int ledger_user_put(struct ledger *, const char *username, int64_t id);
int ledger_user_delete(struct ledger *, const char *username);
int ledger_user_foreach(struct ledger *, ledger_user_cb, void *);

/* Missing users.  A full run rewrites the set: unmark_all, put each (which
 * keeps first_seen of rows already there), sweep the unmarked. */
int ledger_missing_unmark_all(struct ledger *);
int ledger_missing_put(struct ledger *, const char *username,
		       const char *course, int roleid, int64_t now,
		       bool *ret_new); /* *ret_new: not there before */
int ledger_missing_delete(struct ledger *, const char *username,
			  const char *course, int roleid);
int ledger_missing_sweep(struct ledger *);
/* Ordered by username, course, roleid. */
int ledger_missing_foreach(struct ledger *, ledger_missing_cb, void *);
int ledger_missing_count_users(struct ledger *, int64_t *ret);

/* Runs and their per-item errors.  Starting a run drops the runs (and their
 * errors) older than the last 1000. */
int ledger_run_start(struct ledger *, int64_t now, int64_t *ret_id);
int ledger_run_finish(struct ledger *, const struct ledger_run *);
/* Most recent first, at most max; free with ledger_runs_free. */
int ledger_runs_recent(struct ledger *, size_t max, struct ledger_run **ret,
		       size_t *ret_n);
void ledger_runs_free(struct ledger_run *, size_t n);
int ledger_error_add(struct ledger *, int64_t run_id, const char *kind,
		     const char *item, const char *code, const char *message);
/* run_id 0: the last run that recorded any. */
int ledger_error_foreach(struct ledger *, int64_t run_id, ledger_error_cb,
			 void *);

/* Enrol calls in flight: put (or update), delete when answered. */
int ledger_inflight_put(struct ledger *, const struct ledger_inflight *);
int ledger_inflight_delete(struct ledger *, const char *id);
int ledger_inflight_foreach(struct ledger *, ledger_inflight_cb, void *);

/* History: add a row (in the transaction of the change it describes);
 * the rows a filter lets through, newest first (a scan: the table has no
 * index to slow its writes); drop at most max rows older than before,
 * oldest first. */
int ledger_history_add(struct ledger *, const struct ledger_history *);
int ledger_history_foreach(struct ledger *,
			   const struct ledger_history_filter *,
			   ledger_history_cb, void *);
int ledger_history_prune(struct ledger *, int64_t before, size_t max,
			 size_t *ret_deleted);

/* The decisions in force (an action and its reason for a course, or a
 * user in it: username "" for none), each written to the history once,
 * when it is made.  A full run unmarks them all, puts again each it
 * makes (*ret_new: not in force before, or with another reason; kept
 * otherwise, with the run and time it was first made) and sweeps the
 * rest.  _since: when a decision in force was first made; 1 when none. */
int ledger_decision_unmark_all(struct ledger *);
int ledger_decision_put(struct ledger *, const struct ledger_history *d,
			bool *ret_new);
int ledger_decision_sweep(struct ledger *);
/* The decisions in force with this action ("withhold", "skip", ...), by
 * course and user, as history rows: run and time when first made, no
 * role, username NULL for a course's own. */
int ledger_decision_foreach(struct ledger *, const char *action,
			    ledger_history_cb, void *);
int ledger_decision_since(struct ledger *, const char *course,
			  const char *username, const char *action,
			  int64_t *ret_run, int64_t *ret_time);

/* Courses in Moodle to check for drift, the longest unchecked first (at
 * most max); how many there are, how many were last checked before
 * `before`, and the oldest check (0: one never checked). */
int ledger_course_foreach_due(struct ledger *, size_t max, ledger_course_cb,
			      void *);
int ledger_course_checks(struct ledger *, int64_t before, int64_t *ret_tracked,
			 int64_t *ret_overdue, int64_t *ret_oldest);

/* Drift: put returns 1 when new, 0 when known already (kept as it was);
 * delete takes NULL username or kind and roleid < 0 for any, and returns
 * how many rows went. */
int ledger_drift_put(struct ledger *, const struct ledger_drift *);
int ledger_drift_delete(struct ledger *, const char *course,
			const char *username, int roleid, const char *kind);
int ledger_drift_foreach(struct ledger *, ledger_drift_cb, void *);

/* Small key/value store: feed validators (feed_etag, feed_last_modified,
 * feed_digest), withheld removals, ...  ret is NULL when the key is unset;
 * a NULL value deletes the key. */
int ledger_meta_get(struct ledger *, const char *key, char **ret);
int ledger_meta_set(struct ledger *, const char *key, const char *value);

#endif
