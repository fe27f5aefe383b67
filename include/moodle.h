/* The Moodle REST client: typed calls, batching, error classes. */
#ifndef MOODLE_H
#define MOODLE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct moodle;

enum moodle_status {
	MOODLE_OK = 0,
	MOODLE_ITEM = 1,      /* this call's items were refused: split it */
	MOODLE_TRANSIENT = 2, /* still failing after the retries */
	MOODLE_FATAL = 3,     /* service-wide: stop the run */
	MOODLE_CANCELLED = 4,
	/* Moodle's database refused the write and rolled the call back
	 * (dmlwriteexception: a deadlock with another call, 30d/30e):
	 * nothing was applied; send it again later, alone. */
	MOODLE_CONFLICT = 5,
	/* No answer to a call that was sent (timeout, lost connection,
	 * gateway error): Moodle may have applied it, or may still be
	 * applying it.  Only when moodle_set_resend(m, false). */
	MOODLE_UNSURE = 6,
	/* Moodle as a whole cannot serve calls (its database is down, it is
	 * in maintenance, nothing listens): nothing was done, nothing is said
	 * about the items.  Stop the run; try again later. */
	MOODLE_DOWN = 7
};

/* What went wrong, kept for the log and the per-item error table. */
struct moodle_error {
	enum moodle_status kind;
	char *function;
	char *errorcode; /* Moodle's errorcode, or ours: "http503", "badjson" */
	char *message;   /* one line for a person; no secrets */
	char *debuginfo;
	long http_status;
	/* The answer says Moodle as a whole cannot serve, not this call
	 * (counted by the breaker): DOWN, and UNSURE from timeouts and
	 * gateways (moodle.c, moodle_codes). */
	bool site;
};
/* Every call clears its error argument first: pass it zeroed ({ 0 }) or
 * holding an earlier error.  On success it stays cleared (kind MOODLE_OK). */
void moodle_error_clear(struct moodle_error *);
/* True when Moodle applied the call before it failed (errorcode "Message
 * was not sent.": the enrolment is committed, only the welcome mail was
 * lost), so the caller must not treat the items as unchanged. */
int moodle_error_committed(const struct moodle_error *);

/* Functions webcoursed calls, NULL-terminated, for `check`. */
extern const char *const moodle_required_functions[];

struct moodle *moodle_new(const struct config *, volatile sig_atomic_t *cancel);
/* Another client on its own connection, for another thread: it shares the
 * configuration, the pacing of calls in flight and the request count.
 * Free clones before the client they were made from. */
struct moodle *moodle_clone(const struct moodle *);
void moodle_free(struct moodle *);
void moodle_set_tick(struct moodle *, void (*tick)(void *), void *arg);
/* Called once per HTTP request (from any thread): the function, the
 * outcome ("ok", "moodle_error", "http_error", "timeout",
 * "connect_error", "bad_answer", "cancelled") and the time it took. */
typedef void (*moodle_observer_fn)(void *arg, const char *function,
				   const char *outcome, int64_t usec);
void moodle_set_observer(struct moodle *, moodle_observer_fn, void *arg);
/* Whether a call that got no answer is sent again (the default: it is for
 * reads and calls that may be repeated).  With false it fails at once as
 * MOODLE_UNSURE.  Returns the setting it replaces. */
bool moodle_set_resend(struct moodle *, bool);
/* The breaker, shared by a client and its clones: once after site-wide
 * answers in a row (default 3; 1 when the last run found Moodle down) it
 * opens, and every call fails at once with MOODLE_DOWN, unsent, for the
 * client's life.  A call that gives up on site-wide answers opens it too. */
void moodle_set_breaker(struct moodle *, int after);
/* Whether the breaker is open; *ret_cause (may be NULL) then gets its
 * plain-text reason, "Moodle unavailable: its database connection
 * failed", to free. */
bool moodle_down(const struct moodle *, char **ret_cause);
/* Open the breaker because of err (calls in a row without an answer). */
void moodle_give_up(struct moodle *, const struct moodle_error *err);
/* Fill err with the open breaker's MOODLE_DOWN error. */
void moodle_down_error(const struct moodle *, const char *function,
		       struct moodle_error *err);
/* Number of HTTP requests made so far (for progress and reports). */
uint64_t moodle_requests(const struct moodle *);
/* Calls at most in flight at once (moodle.max_concurrent_calls). */
int moodle_concurrency(const struct moodle *);
/* Wait ms (a back-off), waking for the cancel flag: -1 when cancelled. */
int moodle_wait(struct moodle *, int64_t ms);
/* Tries and first back-off of a transient failure (moodle.retries,
 * moodle.retry_delay). */
int moodle_tries(const struct moodle *);
int64_t moodle_retry_delay(const struct moodle *);
/* Fill err as the client does (for callers that stop a batch). */
void moodle_error_set(const struct moodle *, struct moodle_error *,
		      enum moodle_status, const char *function,
		      const char *errorcode, const char *message);

/* Items per call so that 3 + extra + fields * items stays under
 * max_input_vars minus the safety margin. */
size_t moodle_capacity(const struct moodle *, int fields, int extra);
/* The max_input_vars the client sizes calls for, and a new value (e.g.
 * found by moodle_probe_max_input_vars). */
int moodle_max_input_vars(const struct moodle *);
void moodle_set_max_input_vars(struct moodle *, int);
/* Find the server's real max_input_vars with read-only user look-ups of
 * growing size: the largest count of form variables, at most limit, that
 * PHP did not cut (a cut loses moodlewsrestformat, sent last, and Moodle
 * answers XML: moodle-ws 20*).  *ret is a multiple of the steps tried. */
int moodle_probe_max_input_vars(struct moodle *, int limit, int *ret,
				struct moodle_error *);

/* Form variables kept free below max_input_vars: PHP cuts silently, so a
 * request never goes near the limit (see moodle-ws 20*). */
#define MOODLE_MARGIN_VARS 10

struct moodle_site_info {
	char *sitename, *siteurl, *release, *version, *username;
	char **functions;
	size_t nfunctions;
};
int moodle_site_info(struct moodle *, struct moodle_site_info **ret,
		     struct moodle_error *);
void moodle_site_info_free(struct moodle_site_info *);

/* *ret_name is NULL when the category does not exist. */
int moodle_category_get(struct moodle *, int64_t id, char **ret_name,
			struct moodle_error *);

struct moodle_course {
	int64_t id; /* 0: no such course */
	char *shortname, *fullname, *idnumber;
	int visible;
	int64_t categoryid;
};
int moodle_course_by_shortname(struct moodle *, const char *shortname,
			       struct moodle_course *ret,
			       struct moodle_error *);
void moodle_course_clear(struct moodle_course *);
/* The courses core_course_get_courses_by_field lists for field = value
 * ("category" lists a whole category in one call: moodle-ws 31a; an
 * unknown category is an empty list, 31b). */
int moodle_courses_by_field(struct moodle *, const char *field,
			    const char *value, struct moodle_course **ret,
			    size_t *ret_n, struct moodle_error *);
void moodle_courses_free(struct moodle_course *, size_t n);

struct moodle_new_course {
	const char *shortname, *fullname, *idnumber, *summary, *format;
	int64_t categoryid;
	int visible;
	int64_t startdate, enddate; /* 0: not sent */
};
/* One call; ret_ids[i] receives the id of items[i]. */
int moodle_courses_create(struct moodle *, const struct moodle_new_course *,
			  size_t n, int64_t *ret_ids, struct moodle_error *);

struct moodle_course_update {
	int64_t id;
	const char *fullname; /* NULL: unchanged */
	int visible;          /* -1: unchanged */
};
struct moodle_warning {
	int64_t itemid;
	char *warningcode, *message;
};
/* Not all-or-nothing: Moodle applies the good items and lists the bad. */
int moodle_courses_update(struct moodle *, const struct moodle_course_update *,
			  size_t n, struct moodle_warning **ret_warnings,
			  size_t *ret_nwarnings, struct moodle_error *);
void moodle_warnings_free(struct moodle_warning *, size_t n);

struct moodle_user {
	int64_t id;
	char *username;
};
/* One call; users not found are simply absent from *ret. */
int moodle_users_by_username(struct moodle *, const char *const *usernames,
			     size_t n, struct moodle_user **ret, size_t *ret_n,
			     struct moodle_error *);
void moodle_users_free(struct moodle_user *, size_t n);

struct moodle_enrolment {
	int roleid; /* unenrol: 0 omits it */
	int64_t userid, courseid;
	int suspend; /* -1: omitted (which re-activates), 0, 1 */
};
int moodle_enrol(struct moodle *, const struct moodle_enrolment *, size_t n,
		 struct moodle_error *);
int moodle_unenrol(struct moodle *, const struct moodle_enrolment *, size_t n,
		   struct moodle_error *);

struct moodle_role_assignment {
	int roleid;
	int64_t userid, courseid; /* course context: contextlevel=course */
};
int moodle_role_assign(struct moodle *, const struct moodle_role_assignment *,
		       size_t n, struct moodle_error *);
int moodle_role_unassign(struct moodle *, const struct moodle_role_assignment *,
			 size_t n, struct moodle_error *);

struct moodle_enrolled_user {
	int64_t id;
	char *username;
	int *roleids;
	size_t nroles;
};
/* All enrolled users of a course (paged internally), suspended ones too;
 * _only with active set: only those whose enrolment is active. */
int moodle_enrolled_users(struct moodle *, int64_t courseid,
			  struct moodle_enrolled_user **ret, size_t *ret_n,
			  struct moodle_error *);
int moodle_enrolled_users_only(struct moodle *, int64_t courseid, bool active,
			       struct moodle_enrolled_user **ret, size_t *ret_n,
			       struct moodle_error *);
void moodle_enrolled_users_free(struct moodle_enrolled_user *, size_t n);

/* One answer and what its request asked, for moodle_parse_answer: the
 * shortname for core_course_get_courses_by_field; n, the category id for
 * core_course_get_categories and the number of courses sent for
 * core_course_create_courses. */
struct moodle_reply {
	const char *function; /* one of moodle_required_functions */
	long status;          /* HTTP status */
	const char *body;
	size_t len;
	const char *shortname;
	int64_t n;
};
/* Decode an answer exactly as the typed call for its function would, then
 * drop the result: 0, or -1 with *err set.  For tests and the fuzz target;
 * nothing is sent. */
int moodle_parse_answer(const struct moodle *, const struct moodle_reply *,
			struct moodle_error *);

/* Fields per item (for moodle_capacity and struct batch) of the
 * calls whose shape depends on the items: the largest item counts. */
int moodle_enrol_fields(const struct moodle_enrolment *, size_t n);
int moodle_unenrol_fields(const struct moodle_enrolment *, size_t n);
int moodle_courses_create_fields(const struct moodle_new_course *, size_t n);
#define MOODLE_ROLE_FIELDS   4 /* roleid, userid, contextlevel, instanceid */
#define MOODLE_LOOKUP_FIELDS 1 /* values[i] */
#define MOODLE_LOOKUP_EXTRA  1 /* field=username */

#endif
