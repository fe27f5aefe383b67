/* The plan: what a run must change in Moodle, the feed against the ledger. */
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "feed.h"
#include "ledger.h"
#include "plan.h"
#include "util.h"

#define PLAN_CHUNK     (256 * 1024)
#define PLAN_USER_GETS 512 /* more users than this: one pass over the cache */

struct plan_chunk {
	struct plan_chunk *next;
	size_t used, size;
	char data[];
};

/* The plan and what it owns: list capacities and a string arena. */
struct plan_store {
	struct plan plan;
	struct plan_chunk *chunks;
	size_t cap[16];
};

/* Each list of the plan, for growing, printing and freeing alike. */
enum plan_list {
	PL_CREATE,
	PL_HOLD,
	PL_RENAME,
	PL_UNHIDE,
	PL_VANISHED,
	PL_HIDE,
	PL_ENROL,
	PL_ROLE_ADD,
	PL_ROLE_REMOVE,
	PL_SUSPEND,
	PL_UNENROL,
	PL_COUNT
};

static const struct plan_list_info {
	const char *name;  /* JSON key and counts key */
	const char *label; /* counts line of plan_print */
	bool enrol;        /* struct plan_enrol (else plan_course) */
	size_t list, count;
} plan_lists[PL_COUNT] = {
	[PL_CREATE] = { "create", "to create", false,
			offsetof(struct plan, create),
			offsetof(struct plan, ncreate) },
	[PL_HOLD] = { "hold", "held for approval", false,
		      offsetof(struct plan, hold),
		      offsetof(struct plan, nhold) },
	[PL_RENAME] = { "rename", "to rename", false,
			offsetof(struct plan, rename),
			offsetof(struct plan, nrename) },
	[PL_UNHIDE] = { "unhide", "to unhide", false,
			offsetof(struct plan, unhide),
			offsetof(struct plan, nunhide) },
	[PL_VANISHED] = { "vanished", "vanished", false,
			  offsetof(struct plan, vanished),
			  offsetof(struct plan, nvanished) },
	[PL_HIDE] = { "hide", "to hide", false, offsetof(struct plan, hide),
		      offsetof(struct plan, nhide) },
	[PL_ENROL] = { "enrol", "to enrol", true, offsetof(struct plan, enrol),
		       offsetof(struct plan, nenrol) },
	[PL_ROLE_ADD] = { "role_add", "roles to add", true,
			  offsetof(struct plan, role_add),
			  offsetof(struct plan, nrole_add) },
	[PL_ROLE_REMOVE] = { "role_remove", "roles to remove", true,
			     offsetof(struct plan, role_remove),
			     offsetof(struct plan, nrole_remove) },
	[PL_SUSPEND] = { "suspend", "to suspend", true,
			 offsetof(struct plan, suspend),
			 offsetof(struct plan, nsuspend) },
	[PL_UNENROL] = { "unenrol", "to unenrol", true,
			 offsetof(struct plan, unenrol),
			 offsetof(struct plan, nunenrol) },
};

static void **
plan_list_ptr(const struct plan *p, enum plan_list l)
{
	return (void **)((char *)p + plan_lists[l].list);
}

static size_t *
plan_list_count(const struct plan *p, enum plan_list l)
{
	return (size_t *)((char *)p + plan_lists[l].count);
}

/* A fresh zeroed slot at the end of list l. */
static void *
plan_push(struct plan_store *ps, enum plan_list l)
{
	size_t size = plan_lists[l].enrol ? sizeof(struct plan_enrol)
					  : sizeof(struct plan_course);
	void **list = plan_list_ptr(&ps->plan, l);
	size_t *n = plan_list_count(&ps->plan, l);
	char *slot;

	if (*n == ps->cap[l]) {
		ps->cap[l] = ps->cap[l] ? 2 * ps->cap[l] : 16;
		*list = xreallocarray(*list, ps->cap[l], size);
	}
	slot = (char *)*list + size * (*n)++;
	memset(slot, 0, size);
	return slot;
}

static char *
plan_strdup(struct plan_store *ps, const char *s)
{
	struct plan_chunk *c = ps->chunks;
	size_t n = strlen(s) + 1;

	if (c == NULL || c->size - c->used < n) {
		c = xmalloc(sizeof *c + (n > PLAN_CHUNK ? n : PLAN_CHUNK));
		c->size = n > PLAN_CHUNK ? n : PLAN_CHUNK;
		c->used = 0;
		c->next = ps->chunks;
		ps->chunks = c;
	}
	memcpy(c->data + c->used, s, n);
	c->used += n;
	return c->data + c->used - n;
}

void
plan_free(struct plan *p)
{
	struct plan_store *ps = (struct plan_store *)p;
	struct plan_chunk *c, *next;
	int l;

	if (p == NULL)
		return;
	for (l = 0; l < PL_COUNT; l++)
		free(*plan_list_ptr(p, l));
	free(p->lookup);
	free(p->drift_moot);
	for (c = ps->chunks; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(ps);
}

/* ---- building ----------------------------------------------------------- */

/* A course row of the ledger, copied (the iterator's strings are
 * borrowed). */
struct plan_lcourse {
	const char *shortname, *fullname;
	int64_t moodle_id;
	int status, absent_runs, participants;
};

/* One enrolment row of the course being read: username at an offset of
 * the name buffer, which may move as it grows. */
struct plan_row {
	size_t name;
	int roleid, status;
};

struct plan_builder {
	const struct config *cfg;
	const struct feed *feed;
	struct plan_store *ps;
	struct plan_lcourse *lc;
	size_t nlc, caplc;
	int64_t *courseid; /* per feed course: Moodle id, 0 when created now */
	bool *diff;        /* per feed course: plan its enrolments */

	/* Merge state of the enrolment scan. */
	size_t next;    /* first feed course not diffed yet */
	char *cur;      /* course of the rows being gathered */
	long cur_index; /* its feed index, -1 when not diffed */
	struct plan_row *rows;
	size_t nrows, caprows;
	char *names;
	size_t namelen, namecap;
	char *prev; /* username of the last row, for counting */
	size_t prevcap;
	bool unsorted;
	char *cause;

	/* Drift (reconcile.c), when there is any: "course US user US roleid
	 * US kind" -> index into drift. */
	struct ledger_drift *drift;
	size_t ndrift;
	struct strmap *driftmap;
};

static int
plan_drift_cb(const struct ledger_drift *d, void *arg)
{
	struct plan_builder *b = arg;
	char *key;

	b->drift = xreallocarray(b->drift, b->ndrift + 1, sizeof(*b->drift));
	b->drift[b->ndrift] =
	    (struct ledger_drift){ plan_strdup(b->ps, d->course),
				   plan_strdup(b->ps, d->username),
				   d->roleid,
				   plan_strdup(b->ps, d->kind),
				   plan_strdup(b->ps, d->ledger_said),
				   "",
				   d->since,
				   d->run_id };
	xasprintf(&key, "%s\037%s\037%d\037%s", d->course, d->username,
		  d->roleid, d->kind);
	strmap_put(b->driftmap, key, (int64_t)b->ndrift++);
	free(key);
	return 0;
}

/* The known drift of this kind, or NULL. */
static const struct ledger_drift *
plan_drift(const struct plan_builder *b, const char *course, const char *user,
	   int roleid, const char *kind)
{
	char *key;
	int64_t i;
	int found;

	if (b->ndrift == 0)
		return NULL;
	xasprintf(&key, "%s\037%s\037%d\037%s", course, user ? user : "",
		  roleid, kind);
	found = strmap_get(b->driftmap, key, &i);
	free(key);
	return found == 0 ? &b->drift[i] : NULL;
}

/* Reported drift of an enrolment or role we made holds the plan back:
 * under sync.on_drift = report nothing puts it back. */
static bool
plan_drift_holds(const struct plan_builder *b, const char *course,
		 const char *user, int roleid)
{
	return b->cfg->sync_on_drift == ON_DRIFT_REPORT &&
	       (plan_drift(b, course, user, roleid, "gone") != NULL ||
		plan_drift(b, course, user, roleid, "role_gone") != NULL);
}

/* Copy one ledger course; count the tracked ones. */
static int
plan_lcourse_cb(const struct ledger_course *c, void *arg)
{
	struct plan_builder *b = arg;
	struct plan_lcourse *l;

	if (b->nlc == b->caplc) {
		b->caplc = b->caplc ? 2 * b->caplc : 256;
		b->lc = xreallocarray(b->lc, b->caplc, sizeof *b->lc);
	}
	l = &b->lc[b->nlc++];
	l->shortname = plan_strdup(b->ps, c->shortname);
	l->fullname =
	    plan_strdup(b->ps, c->fullname != NULL ? c->fullname : "");
	l->moodle_id = c->moodle_id;
	l->status = c->status;
	l->absent_runs = c->absent_runs;
	l->participants = c->participants;
	if (c->status == LEDGER_COURSE_ACTIVE)
		b->ps->plan.tracked_courses++;
	return 0;
}

static int
plan_lcourse_cmp(const void *a, const void *b)
{
	return strcmp(((const struct plan_lcourse *)a)->shortname,
		      ((const struct plan_lcourse *)b)->shortname);
}

/* Whether s is in a sorted array of strings. */
static bool
plan_in(char *const *sorted, size_t n, const char *s)
{
	size_t lo = 0, hi = n, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((c = strcmp(s, sorted[mid])) == 0)
			return true;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

/* A plan_course from a feed course, with the defaults filled in. */
static void
plan_from_feed(struct plan_builder *b, struct plan_course *pc,
	       const struct feed_course *c, int64_t moodle_id)
{
	char *idn;

	pc->shortname = c->shortname;
	pc->fullname = c->fullname;
	pc->summary = c->summary;
	if (c->idnumber != NULL)
		pc->idnumber = c->idnumber;
	else {
		xasprintf(&idn, "%s%s",
			  b->cfg->sync_idnumber_prefix != NULL
			      ? b->cfg->sync_idnumber_prefix
			      : "",
			  c->shortname);
		pc->idnumber = plan_strdup(b->ps, idn);
		free(idn);
	}
	pc->categoryid =
	    c->categoryid != 0 ? c->categoryid : b->cfg->sync_category_id;
	pc->visible = c->visible >= 0 ? c->visible
				      : (b->cfg->sync_course_visible ? 1 : 0);
	pc->startdate = c->startdate;
	pc->enddate = c->enddate;
	pc->moodle_id = moodle_id;
	pc->participants = (int)c->nparticipants;
}

static void
plan_from_ledger(struct plan_course *pc, const struct plan_lcourse *l)
{
	pc->shortname = l->shortname;
	pc->fullname = l->fullname;
	pc->moodle_id = l->moodle_id;
	pc->participants = l->participants;
	pc->absent_runs = l->absent_runs + 1;
	pc->visible = -1;
}

/* A feed course against its ledger row (NULL: never seen). */
static void
plan_course_known(struct plan_builder *b, size_t i,
		  const struct plan_lcourse *l)
{
	const struct feed_course *c = &b->feed->courses[i];
	const struct ledger_drift *renamed;
	struct plan_course *pc;
	bool held, create;

	b->diff[i] = false;
	if (l != NULL && l->status == LEDGER_COURSE_REJECTED)
		return;
	held = l == NULL ? b->cfg->sync_new_courses == NEW_COURSES_APPROVE
			 : l->status == LEDGER_COURSE_PENDING;
	if (held) {
		plan_from_feed(b, plan_push(b->ps, PL_HOLD), c, 0);
		return;
	}
	/* Deleted in Moodle: left so, created again, or held (drift). */
	if (l != NULL && l->moodle_id == 0 &&
	    plan_drift(b, c->shortname, NULL, 0, "course_gone") != NULL) {
		if (b->cfg->sync_on_drift == ON_DRIFT_REPORT)
			return;
		if (b->cfg->sync_new_courses == NEW_COURSES_APPROVE) {
			plan_from_feed(b, plan_push(b->ps, PL_HOLD), c, 0);
			return;
		}
	}
	create = l == NULL || l->status == LEDGER_COURSE_APPROVED ||
		 (l->status == LEDGER_COURSE_ACTIVE && l->moodle_id == 0);
	b->diff[i] = true;
	if (create) {
		plan_from_feed(b, plan_push(b->ps, PL_CREATE), c, 0);
		return;
	}
	b->courseid[i] = l->moodle_id;
	if (l->status == LEDGER_COURSE_HIDDEN)
		plan_from_feed(b, plan_push(b->ps, PL_UNHIDE), c, l->moodle_id);
	/* Renamed in Moodle: names stay as Moodle has them until the feed
	 * names the course anew. */
	renamed = plan_drift(b, c->shortname, NULL, 0, "renamed");
	if (b->cfg->sync_update_names &&
	    strcmp(l->fullname, c->fullname) != 0 &&
	    (renamed == NULL ||
	     strcmp(renamed->ledger_said, c->fullname) != 0)) {
		pc = plan_push(b->ps, PL_RENAME);
		plan_from_feed(b, pc, c, l->moodle_id);
		pc->old_fullname = l->fullname;
	}
}

/* Merge the sorted feed courses with the sorted ledger courses. */
static void
plan_courses(struct plan_builder *b)
{
	const struct feed *f = b->feed;
	const struct plan_lcourse *l;
	size_t i = 0, k = 0;
	int c;

	while (i < f->ncourses || k < b->nlc) {
		if (i == f->ncourses)
			c = 1;
		else if (k == b->nlc)
			c = -1;
		else
			c = strcmp(f->courses[i].shortname, b->lc[k].shortname);
		if (c < 0) {
			plan_course_known(b, i++, NULL);
			continue;
		}
		if (c == 0) {
			plan_course_known(b, i++, &b->lc[k++]);
			continue;
		}
		l = &b->lc[k++];
		if ((l->status != LEDGER_COURSE_ACTIVE &&
		     l->status != LEDGER_COURSE_HIDDEN) ||
		    plan_in(f->skipped, f->nskipped, l->shortname))
			continue;
		plan_from_ledger(plan_push(b->ps, PL_VANISHED), l);
		/* A course that vanishes is hidden on its second absence,
		 * never emptied. */
		if (l->status == LEDGER_COURSE_ACTIVE && l->moodle_id > 0 &&
		    l->absent_runs + 1 >= 2 &&
		    b->cfg->sync_on_removed_course == REMOVED_COURSE_HIDE)
			plan_from_ledger(plan_push(b->ps, PL_HIDE), l);
	}
}

/* Add an enrolment-kind item for a user of feed course ci. */
static struct plan_enrol *
plan_item(struct plan_builder *b, enum plan_list l, size_t ci,
	  const char *username, int roleid)
{
	struct plan_enrol *e = plan_push(b->ps, l);

	e->course = b->feed->courses[ci].shortname;
	e->username = username;
	e->roleid = roleid;
	e->courseid = b->courseid[ci];
	return e;
}

static bool
plan_has_role(const struct plan_row *rows, size_t n, int roleid)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (rows[i].roleid == roleid)
			return true;
	return false;
}

static bool
plan_feed_has_role(const struct feed_participant *p, size_t n, int roleid)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i].roleid == roleid)
			return true;
	return false;
}

/* A role added and one removed for the same user are a role change: each
 * names the other (for the history's reason). */
static void
plan_pair_roles(struct plan *p, size_t nadd, size_t nremove)
{
	if (p->nrole_add == nadd || p->nrole_remove == nremove)
		return;
	for (size_t i = nadd; i < p->nrole_add; i++)
		p->role_add[i].other_roleid = p->role_remove[nremove].roleid;
	for (size_t i = nremove; i < p->nrole_remove; i++)
		p->role_remove[i].other_roleid = p->role_add[nadd].roleid;
}

/* One user of one course: roles in the feed F against rows we made L. */
static void
plan_user(struct plan_builder *b, size_t ci, const struct feed_participant *F,
	  size_t nf, const struct plan_row *L, size_t nl, const char *lname)
{
	const struct feed_course *c = &b->feed->courses[ci];
	enum on_removed_participant policy =
	    b->cfg->sync_on_removed_participant;
	bool suspended = false, kept;
	int enrol_role = -1;
	const char *who;
	size_t k, nadd, nremove;

	for (k = 0; k < nl; k++)
		suspended |= L[k].status == LEDGER_ENROL_SUSPENDED;
	kept = nl > 0 && plan_in(c->skipped_users, c->nskipped_users, lname);
	if (nf == 0) {
		if (kept || policy == REMOVED_PARTICIPANT_KEEP)
			return;
		if (policy == REMOVED_PARTICIPANT_SUSPEND && suspended)
			return;
		who = plan_strdup(b->ps, lname);
		plan_item(b,
			  policy == REMOVED_PARTICIPANT_SUSPEND ? PL_SUSPEND
								: PL_UNENROL,
			  ci, who, L[0].roleid);
		return;
	}
	who = F[0].username;
	/* An administrator's suspension (drift) is never undone. */
	if (suspended && plan_drift(b, c->shortname, who, 0, "suspended"))
		enrol_role = 0;
	else if (nl == 0 || suspended) {
		for (k = 0; k < nf && enrol_role == -1; k++)
			if (!plan_drift_holds(b, c->shortname, who,
					      F[k].roleid))
				enrol_role = F[k].roleid;
		for (k = 0; nl > 0 && k < nf; k++)
			if (plan_has_role(L, nl, F[k].roleid)) {
				enrol_role = F[k].roleid;
				break;
			}
		if (enrol_role == -1)
			return; /* every role held back by reported drift */
		/* A role taken away in Moodle (drift) from a user still
		 * enrolled is given back, not enrolled again. */
		plan_item(b,
			  nl == 0 && plan_drift(b, c->shortname, who,
						enrol_role, "role_gone")
			      ? PL_ROLE_ADD
			      : PL_ENROL,
			  ci, who, enrol_role)
		    ->reactivate = nl > 0;
	}
	nadd = b->ps->plan.nrole_add;
	nremove = b->ps->plan.nrole_remove;
	for (k = 0; k < nf; k++)
		if (F[k].roleid != enrol_role &&
		    !plan_has_role(L, nl, F[k].roleid) &&
		    !plan_drift_holds(b, c->shortname, who, F[k].roleid))
			plan_item(b, PL_ROLE_ADD, ci, who, F[k].roleid);
	if (kept)
		return;
	for (k = 0; k < nl; k++)
		if (!plan_feed_has_role(F, nf, L[k].roleid))
			plan_item(b, PL_ROLE_REMOVE, ci, who, L[k].roleid);
	plan_pair_roles(&b->ps->plan, nadd, nremove);
}

static int
plan_row_cmp_in(const struct plan_builder *b, const struct plan_row *x,
		const struct plan_row *y)
{
	int c = strcmp(b->names + x->name, b->names + y->name);

	if (c != 0)
		return c;
	return (x->roleid > y->roleid) - (x->roleid < y->roleid);
}

/* qsort has no context argument; qsort_r (glibc) has. */
static int
plan_row_cmp(const void *x, const void *y, void *arg)
{
	return plan_row_cmp_in(arg, x, y);
}

/* Diff feed course ci against the gathered ledger rows (possibly none). */
static void
plan_course_diff(struct plan_builder *b, size_t ci, struct plan_row *rows,
		 size_t nrows)
{
	const struct feed_course *c = &b->feed->courses[ci];
	const struct feed_participant *P = c->participants;
	size_t i = 0, j = 0, fi, lj, np = c->nparticipants;
	const char *u;
	int cmp;

	if (!b->diff[ci])
		return;
	if (b->unsorted && nrows > 1)
		qsort_r(rows, nrows, sizeof *rows, plan_row_cmp, b);
	while (i < np || j < nrows) {
		if (i == np)
			cmp = 1;
		else if (j == nrows)
			cmp = -1;
		else
			cmp = strcmp(P[i].username, b->names + rows[j].name);
		u = cmp <= 0 ? P[i].username : b->names + rows[j].name;
		fi = i;
		if (cmp <= 0)
			while (fi < np && strcmp(P[fi].username, u) == 0)
				fi++;
		lj = j;
		if (cmp >= 0)
			while (lj < nrows &&
			       strcmp(b->names + rows[lj].name, u) == 0)
				lj++;
		plan_user(b, ci, P + i, fi - i, rows + j, lj - j, u);
		i = fi;
		j = lj;
	}
}

/* Close the course whose rows were gathered: diff it and every feed
 * course before it that has no rows. */
static void
plan_flush(struct plan_builder *b)
{
	if (b->cur == NULL)
		return;
	if (b->cur_index >= 0)
		plan_course_diff(b, (size_t)b->cur_index, b->rows, b->nrows);
	free(b->cur);
	b->cur = NULL;
	b->nrows = b->namelen = 0;
	b->unsorted = false;
}

/* One ledger enrolment row: gather the rows of a course while the course
 * stays the same; when it changes, diff the course just gathered. */
static int
plan_enrol_cb(const struct ledger_enrol *e, void *arg)
{
	struct plan_builder *b = arg;
	const struct feed *f = b->feed;
	struct plan_row *r;
	size_t len;
	int c;

	c = b->cur == NULL ? 1 : strcmp(e->course, b->cur);
	/* Count active (course, user) pairs here rather than with a
	 * SELECT DISTINCT: it is the same scan. */
	if (c != 0 || strcmp(e->username, b->prev) != 0) {
		len = strlen(e->username) + 1;
		if (len > b->prevcap) {
			b->prevcap = len < 128 ? 128 : len;
			b->prev = xreallocarray(b->prev, b->prevcap, 1);
		}
		memcpy(b->prev, e->username, len);
		if (e->status == LEDGER_ENROL_ACTIVE)
			b->ps->plan.tracked_enrolments++;
	}
	if (c != 0) {
		if (c < 0) {
			xasprintf(&b->cause,
				  "ledger enrolments out of order at course "
				  "\"%s\"",
				  e->course);
			return -1;
		}
		plan_flush(b);
		b->cur = xstrdup(e->course);
		b->cur_index = -1;
		while (b->next < f->ncourses &&
		       (c = strcmp(f->courses[b->next].shortname, e->course)) <=
			   0) {
			if (c == 0) {
				b->cur_index = (long)b->next++;
				break;
			}
			plan_course_diff(b, b->next++, NULL, 0);
		}
	}
	if (b->cur_index < 0 || !b->diff[b->cur_index])
		return 0; /* a course not in the feed: left alone */
	if (b->nrows == b->caprows) {
		b->caprows = b->caprows ? 2 * b->caprows : 256;
		b->rows = xreallocarray(b->rows, b->caprows, sizeof *b->rows);
	}
	len = strlen(e->username) + 1;
	if (b->namelen + len > b->namecap) {
		while (b->namelen + len > b->namecap)
			b->namecap = b->namecap ? 2 * b->namecap : 8192;
		b->names = xreallocarray(b->names, b->namecap, 1);
	}
	r = &b->rows[b->nrows++];
	r->name = b->namelen;
	r->roleid = e->roleid;
	r->status = e->status;
	memcpy(b->names + b->namelen, e->username, len);
	b->namelen += len;
	if (b->nrows > 1 && plan_row_cmp_in(b, r - 1, r) > 0)
		b->unsorted = true;
	return 0;
}

/* ---- Moodle user ids ---------------------------------------------------- */

struct plan_user {
	const char *name;
	int64_t id;
};

static int
plan_user_cmp(const void *a, const void *b)
{
	return strcmp(((const struct plan_user *)a)->name,
		      ((const struct plan_user *)b)->name);
}

struct plan_users {
	struct plan_user *v;
	size_t n;
};

/* One row of the users cache: keep its id when we need that user. */
static int
plan_user_cb(const char *username, int64_t id, void *arg)
{
	struct plan_users *u = arg;
	struct plan_user key = { username, 0 }, *hit;

	if ((hit = bsearch(&key, u->v, u->n, sizeof *u->v, plan_user_cmp)) !=
	    NULL)
		hit->id = id;
	return 0;
}

/* Fill userid of every item from the cache; list the users without one. */
static int
plan_resolve_users(struct plan_builder *b, struct ledger *ledger)
{
	struct plan *p = &b->ps->plan;
	struct plan_users u = { NULL, 0 };
	struct plan_user key, *hit;
	struct plan_enrol *e;
	size_t total = 0, i, o, n;
	int l, rc = -1;

	for (l = PL_ENROL; l <= PL_UNENROL; l++)
		total += *plan_list_count(p, l);
	if (total == 0)
		return 0;
	u.v = xreallocarray(NULL, total, sizeof *u.v);
	for (l = PL_ENROL; l <= PL_UNENROL; l++) {
		e = *plan_list_ptr(p, l);
		for (i = 0; i < *plan_list_count(p, l); i++)
			u.v[u.n++] = (struct plan_user){ e[i].username, 0 };
	}
	qsort(u.v, u.n, sizeof *u.v, plan_user_cmp);
	for (i = 1, o = 0; i < u.n; i++)
		if (strcmp(u.v[i].name, u.v[o].name) != 0)
			u.v[++o] = u.v[i];
	u.n = o + 1;

	if (u.n <= PLAN_USER_GETS) {
		for (i = 0; i < u.n; i++)
			if (ledger_user_get(ledger, u.v[i].name, &u.v[i].id) ==
			    -1)
				goto fail;
	} else if (ledger_user_foreach(ledger, plan_user_cb, &u) == -1)
		goto fail;

	for (l = PL_ENROL; l <= PL_UNENROL; l++) {
		e = *plan_list_ptr(p, l);
		n = *plan_list_count(p, l);
		for (i = 0; i < n; i++) {
			key.name = e[i].username;
			hit =
			    bsearch(&key, u.v, u.n, sizeof *u.v, plan_user_cmp);
			e[i].userid = hit->id;
		}
	}
	p->lookup = xreallocarray(NULL, u.n, sizeof *p->lookup);
	for (i = 0; i < u.n; i++)
		if (u.v[i].id == 0)
			p->lookup[p->nlookup++] = u.v[i].name;
	rc = 0;
	goto out;
fail:
	xasprintf(&b->cause, "ledger: reading the users cache: %s",
		  ledger_errmsg(ledger));
out:
	free(u.v);
	return rc;
}

/*
 * The ledger is read three times, never written: its courses (a few
 * thousand rows, kept in memory), its enrolments in one ordered pass merged
 * with the feed (both sorted by course, then username and role, so no hash
 * table and no copy of the ledger is needed), and the users cache, only for
 * the users an item names.  An unchanged feed thus costs one scan of the
 * enrolments and no user lookups at all.
 */
/* The feed course of this shortname, or NULL (the courses are sorted). */
static const struct feed_course *
plan_feed_course(const struct feed *f, const char *shortname)
{
	size_t lo = 0, hi = f->ncourses, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((c = strcmp(shortname, f->courses[mid].shortname)) == 0)
			return &f->courses[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static bool
plan_feed_lists(const struct feed_course *c, const char *username)
{
	size_t lo = 0, hi = c->nparticipants, mid;
	int cmp;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((cmp = strcmp(username, c->participants[mid].username)) ==
		    0)
			return true;
		if (cmp < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

/* Drift of what the feed no longer lists is moot: nothing to report or
 * repair any more.  A skipped record says nothing: its drift stays. */
static void
plan_drift_moot(struct plan_builder *b)
{
	struct plan *p = &b->ps->plan;
	const struct feed_course *c;

	for (size_t i = 0; i < b->ndrift; i++) {
		const struct ledger_drift *d = &b->drift[i];

		c = plan_feed_course(b->feed, d->course);
		if (plan_in(b->feed->skipped, b->feed->nskipped, d->course) ||
		    (c != NULL &&
		     (*d->username == '\0' || plan_feed_lists(c, d->username) ||
		      plan_in(c->skipped_users, c->nskipped_users,
			      d->username))))
			continue;
		p->drift_moot = xreallocarray(p->drift_moot, p->ndrift_moot + 1,
					      sizeof(*p->drift_moot));
		p->drift_moot[p->ndrift_moot++] =
		    (struct plan_drift){ d->course, d->username, d->kind,
					 d->roleid };
	}
}

int
plan_build(const struct config *cfg, const struct feed *feed,
	   struct ledger *ledger, struct plan **ret, char **cause)
{
	struct plan_builder b;
	struct plan *p;
	size_t i;
	int rc = -1;

	*ret = NULL;
	memset(&b, 0, sizeof b);
	b.cfg = cfg;
	b.feed = feed;
	b.ps = xcalloc(1, sizeof *b.ps);
	p = &b.ps->plan;
	b.courseid = xcalloc(feed->ncourses, sizeof *b.courseid);
	b.diff = xcalloc(feed->ncourses, sizeof *b.diff);

	b.driftmap = strmap_new(16);
	if (ledger_drift_foreach(ledger, plan_drift_cb, &b) == -1 ||
	    ledger_course_foreach(ledger, plan_lcourse_cb, &b) == -1) {
		xasprintf(&b.cause, "ledger: %s", ledger_errmsg(ledger));
		goto out;
	}
	p->ndrift = b.ndrift;
	if (b.nlc > 1)
		qsort(b.lc, b.nlc, sizeof *b.lc, plan_lcourse_cmp);
	plan_courses(&b);

	/* Enrolments: one ordered pass over the ledger, merged with the
	 * sorted feed; courses without rows are diffed as they are passed. */
	if (ledger_enrol_foreach(ledger, plan_enrol_cb, &b) != 0) {
		if (b.cause == NULL)
			xasprintf(&b.cause, "ledger: %s",
				  ledger_errmsg(ledger));
		goto out;
	}
	plan_flush(&b);
	for (i = b.next; i < feed->ncourses; i++)
		plan_course_diff(&b, i, NULL, 0);
	if (plan_resolve_users(&b, ledger) == -1)
		goto out;
	plan_drift_moot(&b);
	*ret = p;
	b.ps = NULL;
	rc = 0;
out:
	if (rc == -1)
		*cause = b.cause;
	else
		free(b.cause);
	plan_free(b.ps != NULL ? &b.ps->plan : NULL);
	free(b.cur);
	free(b.prev);
	free(b.rows);
	free(b.names);
	free(b.lc);
	free(b.courseid);
	free(b.diff);
	free(b.drift);
	strmap_free(b.driftmap);
	return rc;
}

/* ---- reading a plan ------------------------------------------------------ */

size_t
plan_removals(const struct plan *p)
{
	return p->nsuspend + p->nunenrol + p->nhide;
}

/* Nothing to write to Moodle: holds and vanished courses are bookkeeping
 * for the ledger, lookups are reads. */
bool
plan_is_empty(const struct plan *p)
{
	int l;

	for (l = 0; l < PL_COUNT; l++)
		if (l != PL_HOLD && l != PL_VANISHED && *plan_list_count(p, l))
			return false;
	return true;
}

/* One line for a course item. */
static void
plan_print_course(FILE *f, enum plan_list l, const struct plan_course *c)
{
	switch (l) {
	case PL_CREATE:
	case PL_HOLD:
		fputs(l == PL_CREATE ? "+ create " : "? hold ", f);
		text_put(f, c->shortname);
		fputs(" \"", f);
		text_put(f, c->fullname);
		fprintf(f, "\" (category %" PRId64 ", idnumber ",
			c->categoryid);
		text_put(f, c->idnumber);
		fprintf(f, ", %s, %d participants)\n",
			c->visible ? "visible" : "hidden", c->participants);
		break;
	case PL_RENAME:
		fputs("~ rename ", f);
		text_put(f, c->shortname);
		fputs(" \"", f);
		text_put(f, c->old_fullname);
		fputs("\" -> \"", f);
		text_put(f, c->fullname);
		fputs("\"\n", f);
		break;
	default:
		fprintf(f, "%s ",
			l == PL_UNHIDE     ? "+ unhide"
			: l == PL_VANISHED ? ". vanished"
					   : "- hide");
		text_put(f, c->shortname);
		if (l == PL_UNHIDE)
			fputc('\n', f);
		else
			fprintf(f, " (absent %d run%s)\n", c->absent_runs,
				c->absent_runs == 1 ? "" : "s");
		break;
	}
}

/* One line for an enrolment item; names go through text_put like the
 * course lines' do. */
static void
plan_print_enrol(FILE *f, enum plan_list l, const struct plan_enrol *e)
{
	switch (l) {
	case PL_ENROL:
		fprintf(f, "+ %s ", e->reactivate ? "reactivate" : "enrol");
		text_put(f, e->username);
		fputs(" in ", f);
		text_put(f, e->course);
		fprintf(f, " as role %d", e->roleid);
		break;
	case PL_ROLE_ADD:
		fprintf(f, "+ add role %d to ", e->roleid);
		text_put(f, e->username);
		fputs(" in ", f);
		text_put(f, e->course);
		break;
	case PL_ROLE_REMOVE:
		fprintf(f, "- remove role %d from ", e->roleid);
		text_put(f, e->username);
		fputs(" in ", f);
		text_put(f, e->course);
		break;
	default:
		fprintf(f, "- %s ", l == PL_SUSPEND ? "suspend" : "unenrol");
		text_put(f, e->username);
		fputs(l == PL_SUSPEND ? " in " : " from ", f);
		text_put(f, e->course);
		break;
	}
	fputc('\n', f);
}

void
plan_print(const struct plan *p, FILE *f, size_t limit)
{
	size_t i, n;
	int l;

	fputs("plan:", f);
	for (l = 0; l < PL_COUNT; l++)
		fprintf(f, "%s %zu %s", l == 0 ? "" : ",",
			*plan_list_count(p, l), plan_lists[l].label);
	fprintf(f,
		", %zu users to look up; %zu removals of %" PRId64
		" tracked enrolments and %" PRId64 " courses\n",
		p->nlookup, plan_removals(p), p->tracked_enrolments,
		p->tracked_courses);
	for (l = 0; l < PL_COUNT; l++) {
		n = *plan_list_count(p, l);
		for (i = 0; i < n && (limit == 0 || i < limit); i++) {
			if (plan_lists[l].enrol)
				plan_print_enrol(
				    f, l,
				    &((struct plan_enrol *)*plan_list_ptr(
					p, l))[i]);
			else
				plan_print_course(
				    f, l,
				    &((struct plan_course *)*plan_list_ptr(
					p, l))[i]);
		}
		if (i < n)
			fprintf(f, "  ... and %zu more %s\n", n - i,
				plan_lists[l].label);
	}
	for (i = 0; i < p->nlookup && (limit == 0 || i < limit); i++) {
		fputs("? look up ", f);
		text_put(f, p->lookup[i]);
		fputc('\n', f);
	}
	if (i < p->nlookup)
		fprintf(f, "  ... and %zu more users to look up\n",
			p->nlookup - i);
}

/* One item as a JSON object (built and dropped at once: plans can hold a
 * million items). */
static void
plan_json_item(FILE *f, enum plan_list l, const void *item)
{
	const struct plan_course *c = item;
	const struct plan_enrol *e = item;
	json_t *o;

	if (plan_lists[l].enrol)
		o = json_pack("{s:s, s:s, s:i, s:I, s:I, s:b}", "course",
			      e->course, "username", e->username, "roleid",
			      e->roleid, "courseid", (json_int_t)e->courseid,
			      "userid", (json_int_t)e->userid, "reactivate",
			      e->reactivate);
	else
		o = json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:I, s:i, s:I, "
			      "s:I, s:I, s:i, s:i}",
			      "shortname", c->shortname, "fullname",
			      c->fullname, "old_fullname", c->old_fullname,
			      "idnumber", c->idnumber, "summary", c->summary,
			      "categoryid", (json_int_t)c->categoryid,
			      "visible", c->visible, "startdate",
			      (json_int_t)c->startdate, "enddate",
			      (json_int_t)c->enddate, "moodle_id",
			      (json_int_t)c->moodle_id, "participants",
			      c->participants, "absent_runs", c->absent_runs);
	json_dumpf(o, f, JSON_COMPACT);
	json_decref(o);
}

void
plan_print_json(const struct plan *p, FILE *f)
{
	size_t i, n, size;
	int l;
	json_t *s;

	fputs("{\"counts\":{", f);
	for (l = 0; l < PL_COUNT; l++)
		fprintf(f, "\"%s\":%zu,", plan_lists[l].name,
			*plan_list_count(p, l));
	fprintf(
	    f,
	    "\"lookup\":%zu,\"removals\":%zu,\"tracked_enrolments\":%" PRId64
	    ",\"tracked_courses\":%" PRId64 "}",
	    p->nlookup, plan_removals(p), p->tracked_enrolments,
	    p->tracked_courses);
	for (l = 0; l < PL_COUNT; l++) {
		n = *plan_list_count(p, l);
		size = plan_lists[l].enrol ? sizeof(struct plan_enrol)
					   : sizeof(struct plan_course);
		fprintf(f, ",\"%s\":[", plan_lists[l].name);
		for (i = 0; i < n; i++) {
			if (i > 0)
				fputc(',', f);
			plan_json_item(f, l,
				       (char *)*plan_list_ptr(p, l) + i * size);
		}
		fputc(']', f);
	}
	fputs(",\"lookup\":[", f);
	for (i = 0; i < p->nlookup; i++) {
		s = json_string(p->lookup[i]);
		if (i > 0)
			fputc(',', f);
		json_dumpf(s, f, JSON_ENCODE_ANY);
		json_decref(s);
	}
	fputs("]}\n", f);
}
