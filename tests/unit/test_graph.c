/* graph: dependencies, keys, lanes, call sizes, conflicts sent alone. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "graph.h"
#include "tap.h"

#define MAXN 256

/* What the callbacks saw, under the graph's lock (the test's mutex). */
struct rec {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct graph *g;
	int nkinds;
	int inflight, most, kind_inflight[4], kind_most[4];
	int key_inflight[MAXN], key_most;
	int64_t keys[MAXN];
	size_t finished_at[MAXN]; /* order in which items' calls ended, 1.. */
	size_t started_at[MAXN];
	size_t clock;
	size_t sizes[MAXN], ncalls; /* per call */
	int kinds[MAXN];
	bool alone[MAXN];
	int others_at_alone; /* calls in flight beside an alone call */
	int drop[MAXN];      /* ready() answer 0 */
	size_t readied;
	int rendezvous;  /* run() waits until this many are in flight */
	bool met;        /* the rendezvous happened */
	size_t again_at; /* hand the call holding this item back once */
	bool handed;
	int stop_after; /* run() returns -1 on this call (1..) */
	int limit;
	bool creates_wait; /* later kind-0 calls wait for a kind-1 call */
	size_t ncreates;
	bool create_waiting;
	bool beside; /* a kind-1 call started during a later kind-0 one */
	struct graph_ops ops;
};

static int
rec_ready(size_t item, void *arg)
{
	struct rec *r = arg;

	r->readied++;
	return r->drop[item] ? 0 : 1;
}

static int
rec_limit(void *arg)
{
	return ((struct rec *)arg)->limit;
}

static int
rec_run(void *w, int kind, const size_t *items, size_t n, bool alone, void *arg)
{
	struct rec *r = arg;
	size_t call;
	int rc = 0;

	(void)w;
	pthread_mutex_lock(&r->lock);
	call = r->ncalls++;
	r->sizes[call] = n;
	r->kinds[call] = kind;
	r->alone[call] = alone;
	if (alone && r->inflight > 0)
		r->others_at_alone++;
	if (++r->inflight > r->most)
		r->most = r->inflight;
	if (++r->kind_inflight[kind] > r->kind_most[kind])
		r->kind_most[kind] = r->kind_inflight[kind];
	for (size_t i = 0; i < n; i++) {
		int64_t k = r->keys[items[i]];

		r->started_at[items[i]] = ++r->clock;
		if (k >= 0 && ++r->key_inflight[k] > r->key_most)
			r->key_most = r->key_inflight[k];
	}
	if (kind == 1 && r->create_waiting) {
		r->beside = true;
		pthread_cond_broadcast(&r->cond);
	}
	/* Calls meet here (never waiting past a deadline): proof that the
	 * graph did keep several in flight. */
	if (kind == 0 && r->creates_wait && r->ncreates++ > 0) {
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 5;
		r->create_waiting = true;
		while (!r->beside &&
		       pthread_cond_timedwait(&r->cond, &r->lock, &until) !=
			   ETIMEDOUT)
			;
		r->create_waiting = false;
	}
	if (r->rendezvous > 1) {
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 5;
		if (r->inflight >= r->rendezvous) {
			r->met = true;
			pthread_cond_broadcast(&r->cond);
		}
		while (!r->met && pthread_cond_timedwait(&r->cond, &r->lock,
							 &until) != ETIMEDOUT)
			;
	}
	for (size_t i = 0; i < n; i++) {
		int64_t k = r->keys[items[i]];

		if (k >= 0)
			r->key_inflight[k]--;
		r->finished_at[items[i]] = ++r->clock;
	}
	r->inflight--;
	r->kind_inflight[kind]--;
	if (!r->handed && !alone)
		for (size_t i = 0; i < n; i++)
			if (items[i] == r->again_at) {
				r->handed = true;
				graph_again(r->g, items, n);
			}
	if (r->stop_after > 0 && (int)r->ncalls == r->stop_after)
		rc = -1;
	pthread_mutex_unlock(&r->lock);
	return rc;
}

static const struct graph_ops rec_ops = {
	.ready = rec_ready,
	.run = rec_run,
	.limit = rec_limit,
};

static struct rec *
rec_new(void)
{
	struct rec *r = calloc(1, sizeof(*r));

	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	for (size_t i = 0; i < MAXN; i++)
		r->keys[i] = -1;
	r->again_at = MAXN;
	r->limit = 4;
	return r;
}

static struct graph *
rec_graph(struct rec *r, const struct graph_kind *kinds, int nkinds, size_t n)
{
	r->ops = rec_ops;
	r->ops.arg = r;
	r->g = graph_new(kinds, nkinds, n, &r->ops, &r->lock);
	return r->g;
}

static void
rec_free(struct rec *r)
{
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r);
}

int
main(void)
{
	struct rec *r;
	struct graph *g;

	/* 1. Dependencies: a course's enrolments after its create. */
	{
		struct graph_kind kinds[] = { { 2, 0, 1 }, { 100, 0, 0 } };

		r = rec_new();
		r->creates_wait = true;
		g = rec_graph(r, kinds, 2, 10);
		/* items 0..3 creates (kind 0), 4..9 enrolments: 4,5 on 0;
		 * 6,7 on 1; 8,9 on 3. */
		for (size_t i = 0; i < 4; i++)
			graph_item(g, i, 0, GRAPH_NOKEY);
		for (size_t i = 4; i < 10; i++)
			graph_item(g, i, 1, (int64_t)i);
		graph_depend(g, 4, 0);
		graph_depend(g, 5, 0);
		graph_depend(g, 6, 1);
		graph_depend(g, 7, 1);
		graph_depend(g, 8, 3);
		graph_depend(g, 9, 3);
		is_int(graph_run(g, 4), 0,
		       "a graph of creates and enrolments runs");
		ok(r->started_at[4] > r->finished_at[0] &&
		       r->started_at[6] > r->finished_at[1] &&
		       r->started_at[8] > r->finished_at[3],
		   "an enrolment goes only after its course's create ended");
		ok(r->beside, "and beside the next create, not after all");
		is_int(r->kind_most[0], 1, "creates go one at a time");
		is_int(r->sizes[0], 2, "a create call carries max_items");
		is_int(r->readied, 10, "every item was readied once");
		graph_free(g);
		rec_free(r);
	}

	/* 2. Keys: two calls in flight never share one; calls do overlap. */
	{
		struct graph_kind kinds[] = { { 1, 0, 0 } };

		r = rec_new();
		r->rendezvous = 2;
		g = rec_graph(r, kinds, 1, 8);
		for (size_t i = 0; i < 8; i++) {
			r->keys[i] = (int64_t)(i % 2); /* two users */
			graph_item(g, i, 0, r->keys[i]);
		}
		is_int(graph_run(g, 4), 0, "eight items of two keys");
		ok(r->met, "two calls were in flight at once");
		is_int(r->key_most, 1, "never one key in two calls in flight");
		is_int(r->most, 2, "only as many calls as free keys");
		graph_free(g);
		rec_free(r);
	}

	/* 3. Call sizes: the idle workers share the ready items evenly, at
	 * least min_items, at most max_items; the pace limits the lanes. */
	{
		struct graph_kind kinds[] = { { 1000, 10, 0 } };

		r = rec_new();
		r->rendezvous = 4;
		g = rec_graph(r, kinds, 1, 100);
		for (size_t i = 0; i < 100; i++)
			graph_item(g, i, 0, GRAPH_NOKEY);
		is_int(graph_run(g, 4), 0, "100 items, four lanes");
		is_int(r->sizes[0], 25, "the first call takes a quarter");
		is_int(r->ncalls, 4, "four calls of 25: no tail");
		graph_free(g);
		rec_free(r);

		r = rec_new();
		g = rec_graph(r, kinds, 1, 30);
		for (size_t i = 0; i < 30; i++)
			graph_item(g, i, 0, GRAPH_NOKEY);
		is_int(graph_run(g, 4), 0, "30 items, four lanes");
		is_int(r->sizes[0], 10, "a call carries min_items at least");
		graph_free(g);
		rec_free(r);

		r = rec_new();
		r->limit = 1;
		g = rec_graph(r, kinds, 1, 100);
		for (size_t i = 0; i < 100; i++)
			graph_item(g, i, 0, GRAPH_NOKEY);
		is_int(graph_run(g, 4), 0, "the pace allows one call at once");
		is_int(r->most, 1, "one call in flight at most");
		is_int(r->sizes[0], 100, "so it carries everything ready");
		graph_free(g);
		rec_free(r);
	}

	/* 4. A call refused for a conflict goes again, alone, after the
	 * rest; dependents of its items wait for it. */
	{
		struct graph_kind kinds[] = { { 2, 0, 0 } };

		r = rec_new();
		r->again_at = 0;
		g = rec_graph(r, kinds, 1, 9);
		for (size_t i = 0; i < 8; i++)
			graph_item(g, i, 0, GRAPH_NOKEY);
		graph_item(g, 8, 0, GRAPH_NOKEY);
		graph_depend(g, 8, 1);
		is_int(graph_run(g, 4), 0, "a conflict answer: the graph ends");
		ok(r->alone[r->ncalls - 2] || r->alone[r->ncalls - 1],
		   "the handed-back call went again, alone");
		is_int(r->others_at_alone, 0, "with no other call in flight");
		ok(r->started_at[8] > r->finished_at[1] &&
		       r->finished_at[1] > r->finished_at[7],
		   "after the rest, and what waited for it after it");
		graph_free(g);
		rec_free(r);
	}

	/* 5. ready() drops an item: what waits for it is readied all the
	 * same; a stop stops. */
	{
		struct graph_kind kinds[] = { { 1, 0, 0 } };

		r = rec_new();
		r->drop[0] = 1;
		g = rec_graph(r, kinds, 1, 3);
		for (size_t i = 0; i < 3; i++)
			graph_item(g, i, 0, GRAPH_NOKEY);
		graph_depend(g, 1, 0);
		graph_depend(g, 2, 1);
		is_int(graph_run(g, 2), 0, "a dropped item finishes unsent");
		is_int(r->ncalls, 2, "its dependents were sent");
		graph_free(g);
		rec_free(r);

		r = rec_new();
		r->stop_after = 1;
		r->limit = 1;
		g = rec_graph(r, kinds, 1, 5);
		for (size_t i = 0; i < 5; i++)
			graph_item(g, i, 0, GRAPH_NOKEY);
		graph_set_max_items(g, 0, 1);
		is_int(graph_run(g, 1), -1, "run() said stop: the graph stops");
		is_int(r->ncalls, 1, "no call after it");
		graph_free(g);
		rec_free(r);

		r = rec_new();
		g = rec_graph(r, kinds, 1, 2);
		graph_item(g, 0, 0, GRAPH_NOKEY);
		graph_item(g, 1, 0, GRAPH_NOKEY);
		graph_depend(g, 0, 1);
		graph_depend(g, 1, 0);
		is_int(graph_run(g, 2), -1,
		       "a dependency cycle fails, not hangs");
		graph_free(g);
		rec_free(r);
	}
	return done_testing();
}
