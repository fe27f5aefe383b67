/* The academic system's feed: fetch (libcurl) and decode (jansson). */
#ifndef FEED_H
#define FEED_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct http;

struct feed_participant {
	char *username; /* normalised: trimmed, lower case */
	int roleid;     /* Moodle role id, mapped through [roles] */
};

struct feed_course {
	char *shortname;
	char *fullname;     /* the feed's "name" */
	char *idnumber;     /* optional, NULL: idnumber_prefix + shortname */
	char *summary;      /* optional, NULL */
	int64_t categoryid; /* optional, 0: sync.category_id */
	int visible;        /* optional, -1: sync.course_visible */
	int64_t startdate, enddate;            /* optional, 0: not set */
	struct feed_participant *participants; /* sorted by username, roleid;
						  no duplicates */
	size_t nparticipants;
	/* Usernames with a record skipped here (unknown role, ...): sorted,
	 * unique.  Plan neither removes them nor their roles. */
	char **skipped_users;
	size_t nskipped_users;
};

/* A record skipped by validation. */
struct feed_issue {
	char *kind;    /* "course" or "participant" */
	char *item;    /* shortname, "shortname/username" or JSON path */
	char *code;    /* short machine code, e.g. "unknown-role" */
	char *message; /* one line for a person */
};

struct feed {
	struct feed_course *courses; /* sorted by shortname, unique */
	size_t ncourses;
	struct feed_issue *issues; /* at most FEED_MAX_ISSUES */
	size_t nissues;
	/* Shortnames of course records skipped (bad field, duplicate):
	 * sorted, unique.  Plan treats them as neither present nor vanished. */
	char **skipped;
	size_t nskipped;
};

/* Past this many issues the rest are counted in one last "too-many-issues"
 * issue of kind "feed". */
#define FEED_MAX_ISSUES 10000

/* What we remember of the last fully applied feed. */
struct feed_validators {
	char *etag;
	char *last_modified;
	char *digest; /* hex SHA-256 of the body */
};
void feed_validators_clear(struct feed_validators *);

enum feed_fetch_result {
	FEED_FETCH_NEW = 0,          /* a body to decode in *ret_body */
	FEED_FETCH_UNCHANGED = 1,    /* the same digest as last */
	FEED_FETCH_NOT_MODIFIED = 2, /* 304 to a conditional request */
	FEED_FETCH_ERROR = -1,
	FEED_FETCH_CANCELLED = -2
};

/* GET source.url with conditional headers from last (may be NULL).  On
 * FEED_FETCH_NEW, _UNCHANGED and _NOT_MODIFIED, *ret_new holds the
 * validators of this answer and *ret_len the size of the body received
 * (0 for a 304); only _NEW hands the body over in *ret_body.  On error,
 * *cause is one line naming the URL (without credentials), the status and
 * the first bytes of the body. */
enum feed_fetch_result feed_fetch(const struct config *, struct http *,
				  const struct feed_validators *last,
				  char **ret_body, size_t *ret_len,
				  struct feed_validators *ret_new,
				  char **cause);

/* Decode and validate a body.  A structural fault returns -1 with *cause
 * (the feed is rejected whole); record faults land in feed->issues. */
int feed_decode(const struct config *, const char *body, size_t len,
		struct feed **ret, char **cause);
void feed_free(struct feed *);

/* Hex SHA-256 of data into out (65 bytes). */
void feed_digest(const void *data, size_t len, char out[65]);
/* The same without CPU extensions (feed_digest uses the x86 SHA
 * instructions when the CPU has them), for tests and comparison. */
void feed_digest_generic(const void *data, size_t len, char out[65]);

#endif
