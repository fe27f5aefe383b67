/* The import as a graph of calls: every call a plan makes, scheduled by
 * graph.c over the calls allowed in flight, through apply.c's steps. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apply.h"
#include "apply_int.h"
#include "batch.h"
#include "graph.h"
#include "log.h"
#include "moodle.h"
#include "plan.h"
#include "util.h"

/* The kinds of call in the graph, in the order it prefers them: course
 * creates are the critical path (Moodle serialises them), look-ups
 * unblock the most enrolments, enrolments are most of the work; then the
 * enrolment-shaped changes (in apply_op order) and the course updates
 * (in apply_update order). */
enum apply_kind {
	KIND_CREATE,
	KIND_LOOKUP,
	KIND_OPS,                                 /* + enum apply_op */
	KIND_UPDATES = KIND_OPS + OP_UNENROL + 1, /* + enum apply_update */
	KIND_COUNT = KIND_UPDATES + 3
};

/* Courses per create call, from what a real Moodle 4.4 spends (issue 16,
 * the double's model): k courses into a category of n cost about
 * 0.1 + 0.031 k + n/1800 (0.56 + 0.233 k + 0.0046 k^2) s, so the cost per
 * course is least at k = sqrt((0.1 + 0.56 r) / (0.0046 r)), r = n/1800:
 * about 23 at 100 courses, 16 at 300, 13 at 1,000, 12 beyond.  Calls stay
 * between 10 (the call's own cost) and 50 (so that a first create ends
 * soon and its enrolments go). */
#define APPLY_CREATE_MIN 10
#define APPLY_CREATE_MAX 50

/* While courses are still being created, other calls stay short: Moodle
 * serves calls first come, first served, and a create waiting for a
 * worker behind a long enrol call holds up every create after it (the
 * chain the run's end waits for).  150 enrolments are about 1.7 s of
 * Moodle's work with the welcome message, 500 names about 1.5 s. */
#define APPLY_ENROL_BESIDE_CREATES  150
#define APPLY_LOOKUP_BESIDE_CREATES 500
/* With several lanes, no enrolment-shaped call carries more than 500
 * items (about 5.5 s of Moodle's work): the run ends when its last call
 * does, and a lane with one long call left would end it alone. */
#define APPLY_ENROL_CALL_MAX 500

static size_t
apply_create_size(size_t in_category)
{
	double r = (double)in_category / 1800.0, k;

	if (r <= 0)
		return APPLY_CREATE_MAX;
	k = sqrt((0.1 + 0.56 * r) / (0.0046 * r));
	if (k < APPLY_CREATE_MIN)
		return APPLY_CREATE_MIN;
	return k > APPLY_CREATE_MAX ? APPLY_CREATE_MAX : (size_t)k;
}

/* One run's graph: every call the plan makes, numbered kind after kind
 * (base[k] is kind k's first item). */
struct apply_graph {
	struct apply *a;
	struct graph *g;
	pthread_mutex_t lock; /* the graph's and every callback's */
	struct apply_lookup lk;
	struct apply_create cr;
	struct apply_batch ops[OP_UNENROL + 1];
	struct apply_updates upd[3];
	size_t base[KIND_COUNT + 1];
	int create_fields;
	size_t created; /* create items whose calls ended */
	int unanswered; /* calls in a row without an answer, all lanes */
	struct graph_ops gops;
	struct moodle_error err; /* the first that stopped a call */
};

static int64_t
apply_name_key(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (int64_t)(h >> 1);
}

static int
apply_graph_kind(const struct apply_graph *ag, size_t item)
{
	int k = 0;

	while (item >= ag->base[k + 1])
		k++;
	return k;
}

static int
apply_graph_ready(size_t item, void *arg)
{
	struct apply_graph *ag = arg;
	int k = apply_graph_kind(ag, item);
	enum apply_op op;

	if (k < KIND_OPS || k >= KIND_UPDATES)
		return 1;
	op = (enum apply_op)(k - KIND_OPS);
	return apply_resolve_one(ag->a, ag->ops[op].items[item - ag->base[k]],
				 op, false)
		   ? 1
		   : 0;
}

/* A call refused for a conflict: back to the graph, to go alone. */
static int
apply_graph_aside(const size_t *idx, size_t count, void *arg)
{
	struct apply_batch *b = arg;
	size_t *items = xcalloc(count, sizeof(*items));

	for (size_t i = 0; i < count; i++)
		items[i] = b->base + idx[i];
	log_info("a database conflict (dmlwriteexception) refused a call of "
		 "%zu items (%s): sending it again, alone, after the others",
		 count, apply_ops[b->op].function);
	graph_again(b->graph, items, count);
	free(items);
	return 0;
}

static void *
apply_graph_worker_new(int i, void *arg)
{
	struct apply_graph *ag = arg;

	return i == 0 ? ag->a->moodle : moodle_clone(ag->a->moodle);
}

static void
apply_graph_worker_free(void *w, int i, void *arg)
{
	(void)arg;
	if (i > 0)
		moodle_free(w);
}

static void apply_graph_full_calls(struct apply_graph *);

/* One call of the graph, through batch_run on this worker's client, so
 * that a refused call is halved, a call without an answer noted, and a
 * site-wide fault stops it, as everywhere. */
static int
apply_graph_call(void *w, int kind, const size_t *items, size_t n, bool alone,
		 void *arg)
{
	struct apply_graph *ag = arg;
	struct moodle_error err = { 0 };
	size_t *idx = xcalloc(n, sizeof(*idx));
	struct batch mb = { .n = n,
			    .items = idx,
			    .lanes = 1,
			    .lock = &ag->lock,
			    .alone = alone,
			    .unanswered = &ag->unanswered };
	enum apply_op op;
	int rv;

	if (kind == KIND_CREATE) {
		mb.fields = ag->create_fields;
		mb.call = apply_create_call;
		mb.done = apply_create_done;
		mb.failed = apply_create_failed;
		mb.arg = &ag->cr;
	} else if (kind == KIND_LOOKUP) {
		mb.fields = MOODLE_LOOKUP_FIELDS;
		mb.extra = MOODLE_LOOKUP_EXTRA;
		mb.call = apply_lookup_call;
		mb.done = apply_lookup_done;
		mb.failed = apply_lookup_failed;
		mb.arg = &ag->lk;
	} else if (kind >= KIND_UPDATES) {
		mb.fields = 2;
		mb.call = apply_update_call;
		mb.done = apply_update_done;
		mb.failed = apply_update_failed;
		mb.arg = &ag->upd[kind - KIND_UPDATES];
	} else {
		op = (enum apply_op)(kind - KIND_OPS);
		mb.fields = apply_ops[op].fields;
		mb.key = apply_batch_key;
		/* Enrolments are mailed and re-activate what an admin
		 * suspended: one without an answer is never sent blindly. */
		mb.once = op == OP_ENROL;
		mb.call = apply_batch_call;
		mb.note = op == OP_ENROL ? apply_batch_note : NULL;
		mb.done = apply_batch_done;
		mb.failed = apply_batch_failed;
		mb.aside = apply_graph_aside;
		mb.arg = &ag->ops[op];
	}
	for (size_t i = 0; i < n; i++)
		idx[i] = items[i] - ag->base[kind];
	rv = batch_run(w, &mb, &err);
	pthread_mutex_lock(&ag->lock);
	if (rv == -1 && ag->err.kind == MOODLE_OK) {
		ag->err = err;
		memset(&err, 0, sizeof(err));
	}
	if (kind == KIND_CREATE) {
		graph_set_max_items(
		    ag->g, KIND_CREATE,
		    apply_create_size(ag->cr.in_moodle + ag->cr.done));
		if ((ag->created += n) == ag->cr.n)
			apply_graph_full_calls(ag); /* no create waits now */
	}
	pthread_mutex_unlock(&ag->lock);
	moodle_error_clear(&err);
	free(idx);
	return rv;
}

/* Every kind's largest calls: what max_input_vars allows (or the creates'
 * own size); short ones while creates go (full: false). */
static void
apply_graph_sizes(struct apply_graph *ag, struct graph_kind *kinds, bool full)
{
	struct moodle *m = ag->a->moodle;
	size_t cap = moodle_capacity(m, ag->create_fields, 0);

	kinds[KIND_CREATE] =
	    (struct graph_kind){ apply_create_size(ag->cr.in_moodle), 0, 1 };
	if (cap > 0 && kinds[KIND_CREATE].max_items > cap)
		kinds[KIND_CREATE].max_items = cap;
	kinds[KIND_LOOKUP] =
	    (struct graph_kind){ moodle_capacity(m, MOODLE_LOOKUP_FIELDS,
						 MOODLE_LOOKUP_EXTRA),
				 APPLY_SPREAD_LOOKUPS, 0 };
	for (int op = OP_ENROL; op <= OP_UNENROL; op++) {
		kinds[KIND_OPS + op] = (struct graph_kind){
			moodle_capacity(m, apply_ops[op].fields, 0),
			APPLY_SPREAD_ITEMS, 0
		};
		if (moodle_concurrency(m) > 1 &&
		    kinds[KIND_OPS + op].max_items > APPLY_ENROL_CALL_MAX)
			kinds[KIND_OPS + op].max_items = APPLY_ENROL_CALL_MAX;
	}
	for (int u = 0; u < 3; u++)
		kinds[KIND_UPDATES + u] =
		    (struct graph_kind){ moodle_capacity(m, 2, 0), 0, 0 };
	if (full || ag->cr.n == 0)
		return;
	if (kinds[KIND_LOOKUP].max_items > APPLY_LOOKUP_BESIDE_CREATES)
		kinds[KIND_LOOKUP].max_items = APPLY_LOOKUP_BESIDE_CREATES;
	for (int op = OP_ENROL; op <= OP_UNENROL; op++)
		if (kinds[KIND_OPS + op].max_items > APPLY_ENROL_BESIDE_CREATES)
			kinds[KIND_OPS + op].max_items =
			    APPLY_ENROL_BESIDE_CREATES;
}

/* The creates are done: calls as large as allowed again (lock held). */
static void
apply_graph_full_calls(struct apply_graph *ag)
{
	struct graph_kind kinds[KIND_COUNT];

	apply_graph_sizes(ag, kinds, true);
	for (int k = KIND_LOOKUP; k < KIND_COUNT; k++)
		graph_set_max_items(ag->g, k, kinds[k].max_items);
}

/* "course\037user" -> item, for one enrolment-shaped op. */
static struct strmap *
apply_graph_pairs(struct apply_graph *ag, enum apply_op op)
{
	const struct apply_batch *b = &ag->ops[op];
	struct strmap *m = strmap_new(b->n + 16);
	char *key;

	for (size_t i = 0; i < b->n; i++) {
		xasprintf(&key, "%s\037%s", b->items[i]->course,
			  b->items[i]->username);
		strmap_put(m, key, (int64_t)(b->base + i));
		free(key);
	}
	return m;
}

/* Build the graph: an enrolment-shaped change waits for its course's
 * create and its user's look-up, a role added for the enrolment of the
 * same run, a role removed for the one added in its place; no user is in
 * two calls in flight. */
static void
apply_graph_build(struct apply_graph *ag, const struct plan *p)
{
	struct graph_kind kinds[KIND_COUNT];
	struct strmap *names = strmap_new(p->nlookup + 16),
		      *courses = strmap_new(ag->cr.n + 16),
		      *enrols = apply_graph_pairs(ag, OP_ENROL),
		      *adds = apply_graph_pairs(ag, OP_ROLE_ADD), *before;
	char *key;
	int64_t k;

	apply_graph_sizes(ag, kinds, false);
	ag->gops = (struct graph_ops){
		.ready = apply_graph_ready,
		.run = apply_graph_call,
		.worker_new = apply_graph_worker_new,
		.worker_free = apply_graph_worker_free,
		.arg = ag,
	};
	ag->g = graph_new(kinds, KIND_COUNT, ag->base[KIND_COUNT], &ag->gops,
			  &ag->lock);
	for (size_t i = 0; i < p->nlookup; i++) {
		graph_item(ag->g, ag->base[KIND_LOOKUP] + i, KIND_LOOKUP,
			   GRAPH_NOKEY);
		strmap_put(names, p->lookup[i],
			   (int64_t)(ag->base[KIND_LOOKUP] + i));
	}
	for (size_t i = 0; i < ag->cr.n; i++) {
		graph_item(ag->g, ag->base[KIND_CREATE] + i, KIND_CREATE,
			   GRAPH_NOKEY);
		strmap_put(courses, ag->cr.items[i]->shortname,
			   (int64_t)(ag->base[KIND_CREATE] + i));
	}
	for (int u = 0; u < 3; u++)
		for (size_t i = 0; i < ag->upd[u].n; i++)
			graph_item(ag->g, ag->base[KIND_UPDATES + u] + i,
				   KIND_UPDATES + u, GRAPH_NOKEY);
	for (int op = OP_ENROL; op <= OP_UNENROL; op++) {
		const struct apply_batch *b = &ag->ops[op];

		before = op == OP_ROLE_ADD      ? enrols
			 : op == OP_ROLE_REMOVE ? adds
						: NULL;
		for (size_t i = 0; i < b->n; i++) {
			const struct plan_enrol *e = b->items[i];
			size_t item = b->base + i;

			graph_item(ag->g, item, KIND_OPS + op,
				   apply_name_key(e->username));
			if (e->courseid == 0 &&
			    strmap_get(courses, e->course, &k) == 0)
				graph_depend(ag->g, item, (size_t)k);
			if (e->userid == 0 &&
			    strmap_get(names, e->username, &k) == 0)
				graph_depend(ag->g, item, (size_t)k);
			if (before == NULL)
				continue;
			xasprintf(&key, "%s\037%s", e->course, e->username);
			if (strmap_get(before, key, &k) == 0)
				graph_depend(ag->g, item, (size_t)k);
			free(key);
		}
	}
	strmap_free(names);
	strmap_free(courses);
	strmap_free(enrols);
	strmap_free(adds);
}

/* The plan's list for an enrolment-shaped op (removals withheld: none). */
static void
apply_graph_ops(struct apply_graph *ag, struct plan *p, bool withhold)
{
	struct {
		struct plan_enrol *list;
		size_t n;
	} in[] = {
		[OP_ENROL] = { p->enrol, p->nenrol },
		[OP_ROLE_ADD] = { p->role_add, p->nrole_add },
		[OP_ROLE_REMOVE] = { p->role_remove, p->nrole_remove },
		[OP_SUSPEND] = { p->suspend, withhold ? 0 : p->nsuspend },
		[OP_UNENROL] = { p->unenrol, withhold ? 0 : p->nunenrol },
	};

	for (int op = OP_ENROL; op <= OP_UNENROL; op++) {
		struct apply_batch *b = &ag->ops[op];

		*b = (struct apply_batch){
			.a = ag->a,
			.op = (enum apply_op)op,
			.items = xcalloc(in[op].n + 1, sizeof(*b->items)),
			.n = in[op].n,
			.quiet = op != OP_ENROL,
		};
		for (size_t i = 0; i < in[op].n; i++)
			b->items[i] = &in[op].list[i];
	}
}

/* Every call of the plan as one graph: creates one at a time from the
 * start, look-ups beside them, a course's enrolments as soon as it exists
 * and its users are known, role changes, removals and course updates in
 * the lanes left.  The missing set is rewritten at the end. */
int
apply_graph_run(struct apply *a, struct plan *p, const struct feed *feed,
		bool withhold)
{
	struct apply_graph ag = { .a = a };
	size_t n[KIND_COUNT] = { 0 };
	const struct plan_course *ulist[3] = { p->rename, p->hide, p->unhide };
	size_t un[3] = { p->nrename, withhold ? 0 : p->nhide, p->nunhide };
	int rv = -1;

	apply_graph_ops(&ag, p, withhold);
	for (int u = 0; u < 3; u++)
		ag.upd[u] = (struct apply_updates){
			a, ulist[u], un[u], (enum apply_update)u,
			xcalloc(un[u] + 1, sizeof(char *))
		};
	if (apply_courses_prepare(a, p->create, p->ncreate, feed, &ag.cr) == -1)
		goto out;
	ag.cr.quiet = true;
	ag.lk = (struct apply_lookup){ a,
				       p->lookup,
				       p->nlookup,
				       0,
				       xcalloc(p->nlookup + 1, sizeof(int64_t)),
				       true };
	n[KIND_CREATE] = ag.cr.n;
	n[KIND_LOOKUP] = p->nlookup;
	for (int op = OP_ENROL; op <= OP_UNENROL; op++)
		n[KIND_OPS + op] = ag.ops[op].n;
	for (int u = 0; u < 3; u++)
		n[KIND_UPDATES + u] = un[u];
	for (int k = 0; k < KIND_COUNT; k++)
		ag.base[k + 1] = ag.base[k] + n[k];
	for (int op = OP_ENROL; op <= OP_UNENROL; op++)
		ag.ops[op].base = ag.base[KIND_OPS + op];
	ag.create_fields = moodle_courses_create_fields(ag.cr.courses, ag.cr.n);
	pthread_mutex_init(&ag.lock, NULL);
	apply_graph_build(&ag, p);
	for (int op = OP_ENROL; op <= OP_UNENROL; op++)
		ag.ops[op].graph = ag.g;
	if (ag.base[KIND_COUNT] > 0) {
		log_info("%zu user look-ups, %zu course creates, %zu "
			 "enrolments and %zu other changes as one graph, %d "
			 "calls at once",
			 p->nlookup, ag.cr.n, p->nenrol,
			 ag.base[KIND_COUNT] - ag.base[KIND_OPS + 1],
			 moodle_concurrency(a->moodle));
		if (p->nenrol > 0)
			apply_progress(a, apply_ops[OP_ENROL].phase, 0,
				       p->nenrol);
	}
	if (ag.base[KIND_COUNT] > 0 &&
	    graph_run(ag.g, moodle_concurrency(a->moodle)) == -1) {
		if (a->cause == NULL) {
			if (ag.err.kind == MOODLE_OK)
				a->cause = xstrdup("the calls' graph stopped");
			else
				apply_stop(a, &ag.err);
		}
		goto done;
	}
	rv = apply_missing_record(a, p->enrol, p->nenrol, feed);
done:
	graph_free(ag.g);
	pthread_mutex_destroy(&ag.lock);
out:
	moodle_error_clear(&ag.err);
	free(ag.lk.ids);
	for (int op = OP_ENROL; op <= OP_UNENROL; op++)
		free(ag.ops[op].items);
	for (int u = 0; u < 3; u++) {
		for (size_t i = 0; i < ag.upd[u].n; i++)
			free(ag.upd[u].warning[i]);
		free(ag.upd[u].warning);
	}
	apply_create_clear(&ag.cr);
	return rv;
}
