/* Drift: check courses against Moodle, record what differs, correct the
 * ledger to what Moodle holds.  Nothing is written to Moodle here: a repair
 * is planned and applied like any other change (plan.c, apply.c). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "config.h"
#include "history.h"
#include "ledger.h"
#include "log.h"
#include "moodle.h"
#include "reconcile.h"
#include "util.h"

#define RECONCILE_IDS_PER_CALL 100 /* course ids in one existence check */

enum reconcile_seen { SEEN_UNKNOWN, SEEN_LISTED, SEEN_GONE };

/* One course being checked: the ledger's view, then Moodle's. */
struct rc_course {
	char *shortname, *fullname;
	int64_t id;
	int visible, status;
	enum reconcile_seen seen;
	char *m_fullname;
	int m_visible;
	struct moodle_enrolled_user *all, *active;
	size_t nall, nactive;
};

struct rc {
	struct reconcile *r;
	struct rc_course *c;
	size_t n, cap, done;
	size_t *sel; /* the courses Moodle listed, for the enrolment checks */
	size_t nsel;
};

/* What each kind of drift is, for a person. */
static const struct {
	const char *kind, *what;
} reconcile_kinds[] = {
	{ "gone", "our enrolment is gone from Moodle" },
	{ "role_gone", "a role we gave is gone from Moodle" },
	{ "suspended", "our enrolment was suspended in Moodle" },
	{ "course_gone", "a course we track no longer exists in Moodle" },
	{ "renamed", "the course was renamed in Moodle" },
	{ "visibility", "the course's visibility was changed in Moodle" },
};

static const char *
reconcile_what(const char *kind)
{
	for (size_t i = 0; i < nitems(reconcile_kinds); i++)
		if (strcmp(reconcile_kinds[i].kind, kind) == 0)
			return reconcile_kinds[i].what;
	return kind;
}

const char *
reconcile_policy_words(const struct config *c, const char *kind)
{
	bool repair = c->sync_on_drift == ON_DRIFT_REPAIR;

	if (strcmp(kind, "suspended") == 0)
		return "never undone: an administrator's suspension; the run "
		       "treats it as suspended";
	if (strcmp(kind, "renamed") == 0 || strcmp(kind, "visibility") == 0)
		return "reported only: names and visibility stay as Moodle "
		       "has them";
	if (!repair)
		return "left as Moodle has it (sync.on_drift = report)";
	if (strcmp(kind, "course_gone") == 0)
		return c->sync_new_courses == NEW_COURSES_CREATE
			   ? "created again by the next run (sync.on_drift = "
			     "repair)"
			   : "held for approval, not created again "
			     "(sync.new_courses = approve)";
	return strcmp(kind, "gone") == 0
		   ? "enrolled again by the next run (sync.on_drift = repair)"
		   : "given again by the next run (sync.on_drift = repair)";
}

/* Record a drift once, with its history row; 1 when new. */
static int
reconcile_drift(struct reconcile *r, const char *course, const char *user,
		int roleid, const char *kind, const char *said, const char *has)
{
	struct ledger_drift d = { course,       user ? user : "",
				  roleid,       kind,
				  said,         has,
				  r->hist->now, r->hist->run_id };
	int rv;

	if ((rv = ledger_drift_put(r->ledger, &d)) != 1)
		return rv;
	r->found++;
	log_info("drift in %s%s%s: %s (the ledger said %s; Moodle has %s)",
		 course, user ? "/" : "", user ? user : "",
		 reconcile_what(kind), said, has);
	return history_add(r->hist, "drift", course, user, roleid,
			   "%s: the ledger said %s; Moodle has %s; %s",
			   reconcile_what(kind), said, has,
			   reconcile_policy_words(r->conf, kind)) == -1
		   ? -1
		   : 1;
}

static int
reconcile_resolved(struct reconcile *r, const char *course, const char *user,
		   int roleid, const char *kind, const char *why)
{
	int n = ledger_drift_delete(r->ledger, course, user ? user : "", roleid,
				    kind);

	if (n <= 0)
		return n;
	r->resolved++;
	return history_add(r->hist, "drift_resolved", course, user, roleid,
			   "%s no more: %s", reconcile_what(kind), why);
}

/* --- the courses to check -------------------------------------------- */

static int
reconcile_add_cb(const struct ledger_course *lc, void *arg)
{
	struct rc *rc = arg;
	struct rc_course *c;

	if (lc->moodle_id <= 0 || (lc->status != LEDGER_COURSE_ACTIVE &&
				   lc->status != LEDGER_COURSE_HIDDEN))
		return 0;
	if (rc->n == rc->cap) {
		rc->cap = rc->cap ? 2 * rc->cap : 64;
		rc->c = xreallocarray(rc->c, rc->cap, sizeof(*rc->c));
	}
	c = &rc->c[rc->n++];
	memset(c, 0, sizeof(*c));
	c->shortname = xstrdup(lc->shortname);
	c->fullname = xstrdup(lc->fullname != NULL ? lc->fullname : "");
	c->id = lc->moodle_id;
	c->visible = lc->visible;
	c->status = lc->status;
	return 0;
}

static void
reconcile_free(struct rc *rc)
{
	for (size_t i = 0; i < rc->n; i++) {
		free(rc->c[i].shortname);
		free(rc->c[i].fullname);
		free(rc->c[i].m_fullname);
		moodle_enrolled_users_free(rc->c[i].all, rc->c[i].nall);
		moodle_enrolled_users_free(rc->c[i].active, rc->c[i].nactive);
	}
	free(rc->c);
	free(rc->sel);
}

/* --- do they exist: ids, a hundred a call ----------------------------- */

static void
reconcile_seen(struct rc_course *c, const struct moodle_course *mc)
{
	c->seen = SEEN_LISTED;
	free(c->m_fullname);
	c->m_fullname = xstrdup(mc->fullname != NULL ? mc->fullname : "");
	c->m_visible = mc->visible;
}

static int
reconcile_ids_call(struct moodle *m, const size_t *idx, size_t count, void *arg,
		   struct moodle_error *err)
{
	struct rc *rc = arg;
	struct moodle_course *got = NULL;
	char *ids = xstrdup(""), *tmp;
	size_t n = 0;
	int rv;

	for (size_t i = 0; i < count; i++) {
		xasprintf(&tmp, "%s%s%" PRId64, ids, i ? "," : "",
			  rc->c[idx[i]].id);
		free(ids);
		ids = tmp;
	}
	/* A missing id fails the whole call (moodle-ws 05c, 26f): the
	 * batch halves it until the missing course stands alone. */
	rv = moodle_courses_by_field(m, "ids", ids, &got, &n, err);
	for (size_t k = 0; rv == 0 && k < n; k++)
		for (size_t i = 0; i < count; i++)
			if (rc->c[idx[i]].id == got[k].id)
				reconcile_seen(&rc->c[idx[i]], &got[k]);
	moodle_courses_free(got, n);
	free(ids);
	return rv;
}

/* A course refused alone: one look-up by id tells whether it exists (an
 * unknown id is an empty list there, 05h). */
static int
reconcile_ids_failed(struct moodle *m, size_t index,
		     const struct moodle_error *err, void *arg)
{
	struct rc *rc = arg;
	struct rc_course *c = &rc->c[index];
	struct moodle_error e = { 0 };
	struct moodle_course *got = NULL;
	char id[32];
	size_t n = 0;

	(void)err;
	snprintf(id, sizeof(id), "%" PRId64, c->id);
	if (moodle_courses_by_field(m, "id", id, &got, &n, &e) == 0)
		if (n == 0)
			c->seen = SEEN_GONE;
		else
			reconcile_seen(c, &got[0]);
	else
		log_warnx("cannot tell whether course %s exists: %s",
			  c->shortname, e.message);
	moodle_courses_free(got, n);
	moodle_error_clear(&e);
	return 0;
}

/* --- who they hold: two calls a course --------------------------------- */

static int
reconcile_users_call(struct moodle *m, const size_t *idx, size_t count,
		     void *arg, struct moodle_error *err)
{
	struct rc *rc = arg;
	struct rc_course *c = &rc->c[rc->sel[idx[0]]];

	(void)count; /* one course a call */
	if (moodle_enrolled_users(m, c->id, &c->all, &c->nall, err) == -1)
		return -1;
	/* Suspended enrolments are those not listed as active. */
	return moodle_enrolled_users_only(m, c->id, true, &c->active,
					  &c->nactive, err);
}

static const struct moodle_enrolled_user *
reconcile_find(const struct moodle_enrolled_user *u, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(u[i].username, name) == 0)
			return &u[i];
	return NULL;
}

static bool
reconcile_has_role(const struct moodle_enrolled_user *u, int roleid)
{
	for (size_t r = 0; u != NULL && r < u->nroles; r++)
		if (u->roleids[r] == roleid)
			return true;
	return false;
}

/* The ledger's enrolments of one course, copied. */
struct rc_rows {
	struct rc_row {
		char *username;
		int roleid, status;
	} * row;
	size_t n;
};

static int
reconcile_row_cb(const struct ledger_enrol *e, void *arg)
{
	struct rc_rows *rows = arg;

	rows->row = xreallocarray(rows->row, rows->n + 1, sizeof(*rows->row));
	rows->row[rows->n++] =
	    (struct rc_row){ xstrdup(e->username), e->roleid, e->status };
	return 0;
}

/* The drift already known of one course, copied. */
struct rc_known {
	const char *course;
	struct ledger_drift *d;
	size_t n;
};

static int
reconcile_known_cb(const struct ledger_drift *d, void *arg)
{
	struct rc_known *k = arg;

	if (strcmp(d->course, k->course) != 0)
		return 0;
	k->d = xreallocarray(k->d, k->n + 1, sizeof(*k->d));
	k->d[k->n++] = (struct ledger_drift){ xstrdup(d->course),
					      xstrdup(d->username),
					      d->roleid,
					      xstrdup(d->kind),
					      xstrdup(d->ledger_said),
					      xstrdup(d->moodle_has),
					      d->since,
					      d->run_id };
	return 0;
}

static void
reconcile_known_free(struct rc_known *k)
{
	for (size_t i = 0; i < k->n; i++) {
		free((char *)k->d[i].course);
		free((char *)k->d[i].username);
		free((char *)k->d[i].kind);
		free((char *)k->d[i].ledger_said);
		free((char *)k->d[i].moodle_has);
	}
	free(k->d);
}

/* Known drift that Moodle has undone: the enrolment or role is back, the
 * suspension lifted, the name or visibility as we set them again. */
static int
reconcile_undone(struct reconcile *r, struct rc_course *c,
		 const struct rc_known *k)
{
	const struct moodle_enrolled_user *u, *a;
	int rv = 0;

	for (size_t i = 0; i < k->n && rv != -1; i++) {
		const struct ledger_drift *d = &k->d[i];

		u = reconcile_find(c->all, c->nall, d->username);
		a = reconcile_find(c->active, c->nactive, d->username);
		if ((strcmp(d->kind, "gone") == 0 ||
		     strcmp(d->kind, "role_gone") == 0) &&
		    reconcile_has_role(u, d->roleid)) {
			rv = ledger_enrol_put(
			    r->ledger, c->shortname, d->username, d->roleid,
			    a != NULL ? LEDGER_ENROL_ACTIVE
				      : LEDGER_ENROL_SUSPENDED);
			if (rv == 0)
				rv = reconcile_resolved(
				    r, c->shortname, d->username, d->roleid,
				    d->kind, "Moodle holds it again");
		} else if (strcmp(d->kind, "suspended") == 0 && a != NULL) {
			rv = ledger_enrol_set_status(r->ledger, c->shortname,
						     d->username,
						     LEDGER_ENROL_ACTIVE);
			if (rv == 0)
				rv = reconcile_resolved(
				    r, c->shortname, d->username, 0, d->kind,
				    "the enrolment is active again");
		} else if (strcmp(d->kind, "renamed") == 0 &&
			   c->m_fullname != NULL &&
			   strcmp(c->m_fullname, d->ledger_said) == 0)
			rv = reconcile_resolved(r, c->shortname, NULL, 0,
						d->kind,
						"the name is ours again");
		else if (strcmp(d->kind, "visibility") == 0 &&
			 strcmp(c->m_visible ? "visible" : "hidden",
				d->ledger_said) == 0)
			rv = reconcile_resolved(r, c->shortname, NULL, 0,
						d->kind,
						"the visibility is ours again");
	}
	return rv == -1 ? -1 : 0;
}

/* Our enrolments of the course against what Moodle holds. */
static int
reconcile_enrolments(struct reconcile *r, struct rc_course *c)
{
	struct rc_rows rows = { 0 };
	const struct moodle_enrolled_user *u, *a;
	const char *role;
	char said[160];
	int rv = -1;

	if (ledger_enrol_foreach_course(r->ledger, c->shortname,
					reconcile_row_cb, &rows) == -1)
		goto out;
	for (size_t i = 0; i < rows.n; i++) {
		struct rc_row *w = &rows.row[i];

		u = reconcile_find(c->all, c->nall, w->username);
		a = reconcile_find(c->active, c->nactive, w->username);
		role = config_role_name(r->conf, w->roleid);
		snprintf(said, sizeof(said), "%s as %s",
			 w->status == LEDGER_ENROL_ACTIVE ? "active"
							  : "suspended",
			 role != NULL ? role : "?");
		if (u == NULL) {
			/* Gone, ours active or not: the ledger follows. */
			if ((w->status == LEDGER_ENROL_ACTIVE &&
			     reconcile_drift(r, c->shortname, w->username,
					     w->roleid, "gone", said,
					     "no enrolment") == -1) ||
			    ledger_enrol_delete(r->ledger, c->shortname,
						w->username, w->roleid) == -1 ||
			    ledger_drift_delete(r->ledger, c->shortname,
						w->username, 0,
						"suspended") == -1)
				goto out;
			r->corrected = true;
			continue;
		}
		if (!reconcile_has_role(u, w->roleid)) {
			if (reconcile_drift(r, c->shortname, w->username,
					    w->roleid, "role_gone", said,
					    "enrolled without that role") ==
				-1 ||
			    ledger_enrol_delete(r->ledger, c->shortname,
						w->username, w->roleid) == -1)
				goto out;
			r->corrected = true;
			continue;
		}
		if (w->status == LEDGER_ENROL_ACTIVE && a == NULL) {
			if (reconcile_drift(r, c->shortname, w->username, 0,
					    "suspended", "active",
					    "suspended") == -1 ||
			    ledger_enrol_set_status(
				r->ledger, c->shortname, w->username,
				LEDGER_ENROL_SUSPENDED) == -1)
				goto out;
			r->corrected = true;
		}
	}
	rv = 0;
out:
	for (size_t i = 0; i < rows.n; i++)
		free(rows.row[i].username);
	free(rows.row);
	return rv;
}

/* The course's name and visibility against what we last set; the ledger
 * follows Moodle, and `checked` says it was looked at. */
static int
reconcile_course(struct reconcile *r, struct rc_course *c)
{
	struct ledger_course lc = { 0 };
	const char *mv = c->m_visible ? "visible" : "hidden";
	int rv = -1;

	if (ledger_course_get(r->ledger, c->shortname, &lc) != 0)
		return -1;
	if (strcmp(c->m_fullname, c->fullname) != 0) {
		if (reconcile_drift(r, c->shortname, NULL, 0, "renamed",
				    c->fullname, c->m_fullname) == -1)
			goto out;
		free(lc.fullname);
		lc.fullname = xstrdup(c->m_fullname);
		r->corrected = true;
	}
	if (c->visible >= 0 && c->visible != c->m_visible) {
		if (reconcile_drift(r, c->shortname, NULL, 0, "visibility",
				    c->visible ? "visible" : "hidden",
				    mv) == -1)
			goto out;
		r->corrected = true;
	}
	lc.visible = c->m_visible;
	lc.checked = r->hist->now;
	rv = ledger_course_put(r->ledger, &lc);
out:
	ledger_course_clear(&lc);
	return rv;
}

/* Compare one course and correct the ledger, in one transaction. */
static int
reconcile_users_done(struct moodle *m, const size_t *idx, size_t count,
		     void *arg)
{
	struct rc *rc = arg;
	struct reconcile *r = rc->r;
	struct rc_course *c = &rc->c[rc->sel[idx[0]]];
	struct rc_known known = { c->shortname, NULL, 0 };
	int rv = -1;

	(void)m;
	(void)count;
	if (ledger_begin(r->ledger) == -1)
		goto out;
	if (ledger_drift_foreach(r->ledger, reconcile_known_cb, &known) == -1 ||
	    reconcile_undone(r, c, &known) == -1 ||
	    reconcile_enrolments(r, c) == -1 || reconcile_course(r, c) == -1 ||
	    ledger_commit(r->ledger) == -1) {
		ledger_rollback(r->ledger);
		goto out;
	}
	r->checked++;
	if (r->progress != NULL)
		r->progress(r->arg, "checking courses for drift", ++rc->done,
			    rc->nsel);
	rv = 0;
out:
	if (rv == -1) {
		free(r->cause);
		xasprintf(&r->cause, "ledger write failed: %s",
			  ledger_errmsg(r->ledger));
	}
	reconcile_known_free(&known);
	moodle_enrolled_users_free(c->all, c->nall);
	moodle_enrolled_users_free(c->active, c->nactive);
	c->all = c->active = NULL;
	c->nall = c->nactive = 0;
	return rv;
}

/* A course that went in the meantime (invalidrecord, 13c): next time. */
static int
reconcile_users_failed(struct moodle *m, size_t index,
		       const struct moodle_error *err, void *arg)
{
	struct rc *rc = arg;

	(void)m;
	log_warnx("cannot check course %s for drift: %s",
		  rc->c[rc->sel[index]].shortname, err->message);
	return 0;
}

/* A course we track is gone: the ledger forgets its Moodle id and its
 * enrolments (Moodle deleted them with it), and keeps the course. */
static int
reconcile_gone(struct reconcile *r, struct rc_course *c)
{
	struct ledger_course lc = { 0 };
	char said[64];
	int rv = -1;

	snprintf(said, sizeof(said), "course id %" PRId64, c->id);
	if (ledger_begin(r->ledger) == -1)
		return -1;
	if (ledger_course_get(r->ledger, c->shortname, &lc) != 0)
		goto fail;
	lc.moodle_id = 0;
	lc.checked = r->hist->now;
	/* Its other drift goes with it.  Deleting the row drops its
	 * enrolments (cascade); then it is put back. */
	if (ledger_drift_delete(r->ledger, c->shortname, NULL, -1, NULL) ==
		-1 ||
	    reconcile_drift(r, c->shortname, NULL, 0, "course_gone", said,
			    "no such course") == -1 ||
	    ledger_course_delete(r->ledger, c->shortname) == -1 ||
	    ledger_course_put(r->ledger, &lc) == -1)
		goto fail;
	r->corrected = true;
	r->checked++;
	rv = ledger_commit(r->ledger);
	goto out;
fail:
	ledger_rollback(r->ledger);
out:
	ledger_course_clear(&lc);
	return rv;
}

/* Check every course in rc: existence, then enrolments, several calls in
 * flight. */
static int
reconcile_run(struct reconcile *r, struct rc *rc)
{
	struct moodle_error err = { 0 };
	struct batch ids = {
		.n = rc->n,
		.fields = 1,
		.max_items = RECONCILE_IDS_PER_CALL,
		.call = reconcile_ids_call,
		.failed = reconcile_ids_failed,
		.arg = rc,
	};
	struct batch users = {
		.fields = 1,
		.max_items = 1,
		.min_items = 1,
		.call = reconcile_users_call,
		.done = reconcile_users_done,
		.failed = reconcile_users_failed,
		.arg = rc,
	};
	int rv = -1;

	if (r->progress != NULL)
		r->progress(r->arg, "checking courses for drift", 0, rc->n);
	if (batch_run(r->moodle, &ids, &err) == -1)
		goto stop;
	rc->sel = xcalloc(rc->n + 1, sizeof(*rc->sel));
	for (size_t i = 0; i < rc->n; i++) {
		if (rc->c[i].seen == SEEN_UNKNOWN)
			reconcile_ids_failed(r->moodle, i, NULL, rc);
		if (rc->c[i].seen == SEEN_GONE &&
		    reconcile_gone(r, &rc->c[i]) == -1) {
			xasprintf(&r->cause, "ledger write failed: %s",
				  ledger_errmsg(r->ledger));
			goto out;
		}
		if (rc->c[i].seen == SEEN_LISTED)
			rc->sel[rc->nsel++] = i;
	}
	users.n = rc->nsel;
	if (batch_run(r->moodle, &users, &err) == -1 && r->cause == NULL)
		goto stop;
	rv = r->cause == NULL ? 0 : -1;
	goto out;
stop:
	free(r->cause);
	xasprintf(&r->cause, "%s: %s", err.function ? err.function : "moodle",
		  err.message ? err.message : "failed");
	rv = -1;
out:
	moodle_error_clear(&err);
	return rv;
}

/* Check the courses gathered (read is how reading them went), and free
 * them. */
static int
reconcile_check(struct reconcile *r, struct rc *rc, int read)
{
	int rv = -1;

	if (read == -1 && r->cause == NULL)
		xasprintf(&r->cause, "ledger read failed: %s",
			  ledger_errmsg(r->ledger));
	else if (read != -1)
		rv = reconcile_run(r, rc);
	reconcile_free(rc);
	return rv;
}

int
reconcile_slice(struct reconcile *r)
{
	const struct config *c = r->conf;
	struct rc rc = { .r = r };
	int64_t tracked, overdue, oldest, every = c->sync_reconcile_every_ms;
	size_t n;

	if (every <= 0)
		return 0;
	if (ledger_course_checks(r->ledger, r->hist->now - every / 1000,
				 &tracked, &overdue, &oldest) == -1) {
		xasprintf(&r->cause, "ledger read failed: %s",
			  ledger_errmsg(r->ledger));
		return -1;
	}
	/* Each run its share of a full round, and whatever is overdue. */
	n = (size_t)((tracked * c->sync_interval_ms + every - 1) / every);
	if ((size_t)overdue > n)
		n = (size_t)overdue;
	if (n > RECONCILE_MAX_PER_RUN) {
		log_warnx("%" PRId64 " courses are due for a drift check; "
			  "checking %d this run (the most a run checks)",
			  overdue, RECONCILE_MAX_PER_RUN);
		n = RECONCILE_MAX_PER_RUN;
	}
	if (n == 0)
		return 0;
	return reconcile_check(
	    r, &rc,
	    ledger_course_foreach_due(r->ledger, n, reconcile_add_cb, &rc));
}

int
reconcile_courses(struct reconcile *r, char *const *shortnames, size_t n)
{
	struct rc rc = { .r = r };
	struct ledger_course lc;
	int rv = 0, found;

	if (n == 0)
		rv = ledger_course_foreach(r->ledger, reconcile_add_cb, &rc);
	for (size_t i = 0; i < n && rv == 0; i++) {
		memset(&lc, 0, sizeof(lc));
		if ((found = ledger_course_get(r->ledger, shortnames[i],
					       &lc)) == 0 &&
		    lc.moodle_id > 0)
			reconcile_add_cb(&lc, &rc);
		else if (found != -1) {
			xasprintf(&r->cause,
				  "%s is not a course webcoursed tracks in "
				  "Moodle",
				  shortnames[i]);
			rv = -1;
		} else
			rv = -1;
		ledger_course_clear(&lc);
	}
	return reconcile_check(r, &rc, rv);
}

void
reconcile_done(struct reconcile *r)
{
	free(r->cause);
	r->cause = NULL;
}
