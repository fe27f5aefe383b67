/* The Moodle REST client: typed calls, batching, error classes. */
#ifndef MOODLE_H
#define MOODLE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct moodle;

enum moodle_status {
	MOODLE_OK = 0,
	MOODLE_ITEM = 1,      /* this call's items were refused: split it */
	MOODLE_TRANSIENT = 2, /* still failing after the retries */
	MOODLE_FATAL = 3,     /* service-wide: stop the run */
	MOODLE_CANCELLED = 4
};

/* What went wrong, kept for the log and the per-item error table. */
struct moodle_error {
	enum moodle_status kind;
	char *function;
	char *errorcode; /* Moodle's errorcode, or ours: "http503", "badjson" */
	char *message;   /* one line for a person; no secrets */
	char *debuginfo;
	long http_status;
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
void moodle_free(struct moodle *);
void moodle_set_tick(struct moodle *, void (*tick)(void *), void *arg);
/* fn is told of every HTTP request attempt (retries included): the web
 * service function, the outcome ("ok", "moodle_error" for an exception
 * answer, "http_error", "timeout", "connect_error", "bad_answer",
 * "cancelled") and the request's duration.  NULL: no observer. */
void moodle_set_observer(struct moodle *,
			 void (*fn)(void *arg, const char *function,
				    const char *outcome, int64_t usec),
			 void *arg);
/* Number of HTTP requests made so far (for progress and reports). */
uint64_t moodle_requests(const struct moodle *);

/* Items per call so that 3 + extra + fields * items stays under
 * max_input_vars minus the safety margin. */
size_t moodle_capacity(const struct moodle *, int fields, int extra);

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
/* All enrolled users of a course (paged internally). */
int moodle_enrolled_users(struct moodle *, int64_t courseid,
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

/* Drive a list of n items through an all-or-nothing call in batches of at
 * most moodle_capacity(fields, extra).  A batch refused with MOODLE_ITEM is
 * halved until the bad items stand alone.  call() sends [first, first+count)
 * in one request; done() is told what Moodle confirmed (commit it now);
 * failed() is told each item that failed alone.  Returns 0 when every item
 * was confirmed or reported failed, -1 with *err set when a service-wide
 * fault or cancellation stopped it, or a callback returned non-zero. */
struct moodle_batch {
	size_t n;
	int fields, extra;
	int (*call)(struct moodle *, size_t first, size_t count, void *arg,
		    struct moodle_error *);
	int (*done)(size_t first, size_t count, void *arg);
	int (*failed)(size_t index, const struct moodle_error *, void *arg);
	void *arg;
};
int moodle_batch_run(struct moodle *, const struct moodle_batch *,
		     struct moodle_error *err);

/* Fields per item (for moodle_capacity and struct moodle_batch) of the
 * calls whose shape depends on the items: the largest item counts. */
int moodle_enrol_fields(const struct moodle_enrolment *, size_t n);
int moodle_unenrol_fields(const struct moodle_enrolment *, size_t n);
int moodle_courses_create_fields(const struct moodle_new_course *, size_t n);
#define MOODLE_ROLE_FIELDS   4 /* roleid, userid, contextlevel, instanceid */
#define MOODLE_LOOKUP_FIELDS 1 /* values[i] */
#define MOODLE_LOOKUP_EXTRA  1 /* field=username */

#endif
