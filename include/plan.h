/* The plan: the delta between a validated feed and the ledger. */
#ifndef PLAN_H
#define PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config;
struct feed;
struct ledger;

/* Strings point into the feed or into the plan's own storage: valid while
 * both the plan and the feed it was built from live. */
struct plan_course {
	const char *shortname;
	const char *fullname;     /* the feed's name (new name for a rename) */
	const char *old_fullname; /* rename: the ledger's name */
	const char *idnumber;     /* create: idnumber_prefix + shortname */
	const char *summary;
	int64_t categoryid;
	int visible;
	int64_t startdate, enddate;
	int64_t moodle_id; /* 0 when not yet in Moodle */
	int participants;
	int absent_runs; /* vanished: consecutive absences including this one */
};

struct plan_enrol {
	const char *course;   /* shortname */
	const char *username; /* normalised */
	int roleid;
	int64_t courseid; /* 0: course created in this run, apply fills it */
	int64_t userid;   /* 0: not cached, see plan->lookup */
	bool reactivate;  /* enrol: a suspended enrolment coming back */
	/* role_add: the role the same plan removes from the user (a role
	 * change), role_remove: the one it adds; 0 when none. */
	int other_roleid;
};

struct plan {
	struct plan_course *create; /* new (or approved) courses to create */
	size_t ncreate;
	struct plan_course *hold; /* new courses held for approval */
	size_t nhold;
	struct plan_course *rename;
	size_t nrename;
	struct plan_course *vanished; /* tracked courses absent from the feed */
	size_t nvanished;
	struct plan_course *hide; /* vanished long enough to hide now */
	size_t nhide;
	struct plan_course *unhide; /* hidden by us, back in the feed */
	size_t nunhide;
	struct plan_enrol *enrol; /* new (first role) and comebacks */
	size_t nenrol;
	struct plan_enrol *role_add; /* more roles for enrolled users */
	size_t nrole_add;
	struct plan_enrol *role_remove; /* roles we gave, now dropped */
	size_t nrole_remove;
	struct plan_enrol *suspend;
	size_t nsuspend;
	struct plan_enrol *unenrol;
	size_t nunenrol;
	const char **lookup; /* distinct usernames without a cached Moodle id */
	size_t nlookup;
	/* Drift the feed makes moot (it no longer lists the user or the
	 * course): apply forgets it. */
	struct plan_drift {
		const char *course, *username, *kind;
		int roleid;
	} * drift_moot;
	size_t ndrift_moot;
	size_t ndrift;              /* drift rows known when planning */
	int64_t tracked_enrolments; /* active enrolments the ledger holds */
	int64_t tracked_courses;
};

int plan_build(const struct config *, const struct feed *, struct ledger *,
	       struct plan **ret, char **cause);
void plan_free(struct plan *);

/* Removals the guard counts: suspensions, unenrolments, hidden courses. */
size_t plan_removals(const struct plan *);
bool plan_is_empty(const struct plan *);

/* For a person: counts first, then up to `limit` lines of each kind
 * (0: all).  JSON for programs. */
void plan_print(const struct plan *, FILE *, size_t limit);
void plan_print_json(const struct plan *, FILE *);

#endif
