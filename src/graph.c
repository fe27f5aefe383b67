/* A run as a graph of calls: items, dependencies, lanes and keys.
 *
 * The caller says what depends on what; the graph decides when.  Workers
 * (threads) take calls from the ready items under one lock: a call is
 * items of one kind, none with a key already in flight, and goes out as
 * soon as a worker is free, so every lane stays busy while anything is
 * ready.  Finishing an item readies what waited for it (make's dependency
 * graph and its job server, in one small room). */
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "util.h"

enum graph_state {
	NODE_PENDING, /* waits for dependencies */
	NODE_READY,   /* in its kind's queue */
	NODE_FLIGHT,  /* in a call */
	NODE_AGAIN,   /* handed back: goes again, alone */
	NODE_DONE,
};

struct graph_node {
	int kind;
	enum graph_state state;
	int64_t key;
	size_t nwait;
};

/* Keys in flight: open addressing, a count per key, slots never freed
 * (there are at most as many keys as items). */
struct graph_key {
	int64_t key;
	int count;
	bool used;
};

struct graph_queue {
	size_t *items; /* in the order they became ready */
	size_t head, len, cap;
	size_t nready;  /* NODE_READY items of the kind */
	size_t pending; /* NODE_PENDING items of the kind */
	int inflight;   /* calls */
	size_t flight;  /* items in those calls */
};

struct graph_again {
	size_t *items;
	size_t n;
};

struct graph {
	struct graph_kind *kinds;
	int nkinds;
	struct graph_queue *q;
	struct graph_node *nodes;
	size_t n, nfinished;
	size_t *edge_from, *edge_to, nedges, edgecap; /* to waits for from */
	size_t *dep_start, *deps; /* dependents of each item */
	struct graph_key *keys;
	size_t keycap;
	struct graph_again *again;
	size_t nagain;
	const struct graph_ops *ops;
	pthread_mutex_t *lock;
	pthread_cond_t cond;
	int nworkers, inflight, most;
	bool alone_inflight, stop;
	size_t calls;
	size_t *stack; /* graph_finish's, under the lock */
};

struct graph_worker {
	struct graph *g;
	int i;
	void *w;
	size_t *buf;
	pthread_t thread;
};

struct graph *
graph_new(const struct graph_kind *kinds, int nkinds, size_t nitems,
	  const struct graph_ops *ops, pthread_mutex_t *lock)
{
	struct graph *g = xcalloc(1, sizeof(*g));

	g->kinds = xcalloc((size_t)nkinds, sizeof(*g->kinds));
	memcpy(g->kinds, kinds, (size_t)nkinds * sizeof(*kinds));
	for (int k = 0; k < nkinds; k++)
		if (g->kinds[k].max_items == 0)
			g->kinds[k].max_items = 1;
	g->nkinds = nkinds;
	g->q = xcalloc((size_t)nkinds, sizeof(*g->q));
	g->n = nitems;
	g->nodes = xcalloc(nitems + 1, sizeof(*g->nodes));
	for (size_t i = 0; i < nitems; i++)
		g->nodes[i].key = GRAPH_NOKEY;
	for (g->keycap = 16; g->keycap < 2 * nitems + 16; g->keycap *= 2)
		;
	g->keys = xcalloc(g->keycap, sizeof(*g->keys));
	g->ops = ops;
	g->lock = lock;
	pthread_cond_init(&g->cond, NULL);
	return g;
}

void
graph_free(struct graph *g)
{
	if (g == NULL)
		return;
	for (int k = 0; k < g->nkinds; k++)
		free(g->q[k].items);
	for (size_t i = 0; i < g->nagain; i++)
		free(g->again[i].items);
	free(g->again);
	free(g->q);
	free(g->kinds);
	free(g->nodes);
	free(g->edge_from);
	free(g->edge_to);
	free(g->dep_start);
	free(g->deps);
	free(g->keys);
	free(g->stack);
	pthread_cond_destroy(&g->cond);
	free(g);
}

void
graph_item(struct graph *g, size_t item, int kind, int64_t key)
{
	g->nodes[item].kind = kind;
	g->nodes[item].key = key;
}

void
graph_depend(struct graph *g, size_t item, size_t on)
{
	if (g->nedges == g->edgecap) {
		g->edgecap = g->edgecap ? 2 * g->edgecap : 64;
		g->edge_from = xreallocarray(g->edge_from, g->edgecap,
					     sizeof(*g->edge_from));
		g->edge_to =
		    xreallocarray(g->edge_to, g->edgecap, sizeof(*g->edge_to));
	}
	g->edge_from[g->nedges] = on;
	g->edge_to[g->nedges++] = item;
	g->nodes[item].nwait++;
}

void
graph_set_max_items(struct graph *g, int kind, size_t max_items)
{
	g->kinds[kind].max_items = max_items > 0 ? max_items : 1;
}

/* The slot of key: its own, or the empty one it would take. */
static struct graph_key *
graph_key_slot(struct graph *g, int64_t key)
{
	size_t h =
	    (size_t)((uint64_t)key * 0x9e3779b97f4a7c15ULL) & (g->keycap - 1);

	while (g->keys[h].used && g->keys[h].key != key)
		h = (h + 1) & (g->keycap - 1);
	return &g->keys[h];
}

static bool
graph_key_busy(struct graph *g, int64_t key)
{
	struct graph_key *s;

	if (key == GRAPH_NOKEY)
		return false;
	s = graph_key_slot(g, key);
	return s->used && s->count > 0;
}

static void
graph_key_add(struct graph *g, int64_t key, int delta)
{
	struct graph_key *s;

	if (key == GRAPH_NOKEY)
		return;
	s = graph_key_slot(g, key);
	s->used = true;
	s->key = key;
	s->count += delta;
}

static void
graph_queue_push(struct graph *g, size_t item)
{
	struct graph_queue *q = &g->q[g->nodes[item].kind];

	if (q->len == q->cap) {
		q->cap = q->cap ? 2 * q->cap : 64;
		q->items = xreallocarray(q->items, q->cap, sizeof(*q->items));
	}
	q->items[q->len++] = item;
	q->nready++;
	g->nodes[item].state = NODE_READY;
}

/* Finish item and ready what waited for it (an explicit stack: an item
 * dropped by ready() finishes in turn). */
static void
graph_finish(struct graph *g, size_t item)
{
	size_t *stack = g->stack, top = 0, d;
	int rc;

	stack[top++] = item;
	while (top > 0) {
		item = stack[--top];
		g->nodes[item].state = NODE_DONE;
		g->nfinished++;
		for (size_t e = g->dep_start[item]; e < g->dep_start[item + 1];
		     e++) {
			d = g->deps[e];
			if (--g->nodes[d].nwait > 0)
				continue;
			g->q[g->nodes[d].kind].pending--;
			rc = g->stop ? 0 : g->ops->ready(d, g->ops->arg);
			if (rc == 1) {
				graph_queue_push(g, d);
				continue;
			}
			if (rc == -1)
				g->stop = true;
			stack[top++] = d;
		}
	}
}

/* Dependents of each item, from the edges. */
static void
graph_index(struct graph *g)
{
	size_t *fill;

	g->dep_start = xcalloc(g->n + 2, sizeof(*g->dep_start));
	g->deps = xcalloc(g->nedges + 1, sizeof(*g->deps));
	for (size_t e = 0; e < g->nedges; e++)
		g->dep_start[g->edge_from[e] + 1]++;
	for (size_t i = 0; i < g->n; i++)
		g->dep_start[i + 1] += g->dep_start[i];
	fill = xcalloc(g->n + 1, sizeof(*fill));
	for (size_t e = 0; e < g->nedges; e++) {
		size_t from = g->edge_from[e];

		g->deps[g->dep_start[from] + fill[from]++] = g->edge_to[e];
	}
	free(fill);
}

/* The calls allowed in flight now. */
static int
graph_limit(struct graph *g)
{
	int limit = g->ops->limit ? g->ops->limit(g->ops->arg) : g->nworkers;

	if (limit > g->nworkers)
		limit = g->nworkers;
	return limit < 1 ? 1 : limit;
}

/* Take up to want ready items of kind k whose keys are not in flight. */
static size_t
graph_take(struct graph *g, int k, size_t want, size_t *buf)
{
	struct graph_queue *q = &g->q[k];
	size_t n = 0, i;

	while (q->head < q->len &&
	       g->nodes[q->items[q->head]].state != NODE_READY)
		q->head++;
	for (i = q->head; i < q->len && n < want; i++) {
		size_t item = q->items[i];

		if (g->nodes[item].state != NODE_READY ||
		    graph_key_busy(g, g->nodes[item].key))
			continue;
		buf[n++] = item;
		g->nodes[item].state = NODE_FLIGHT; /* not taken twice */
	}
	for (i = 0; i < n; i++)
		graph_key_add(g, g->nodes[buf[i]].key, 1);
	q->nready -= n;
	return n;
}

/* The next call, into buf: its kind, size and whether it goes alone; 0
 * when none may go now. */
static size_t
graph_pick(struct graph *g, size_t *buf, int *ret_kind, bool *ret_alone)
{
	int limit = graph_limit(g), slots;
	size_t want, n, calls;

	if (g->stop || g->alone_inflight || g->inflight >= limit)
		return 0;
	for (int k = 0; k < g->nkinds; k++) {
		const struct graph_kind *kd = &g->kinds[k];
		struct graph_queue *q = &g->q[k];

		/* A lane's fair share of what is ready or in flight: a busy
		 * lane is free again soon, and one call with all that is
		 * ready would end last. */
		slots = limit;
		if (kd->max_calls > 0) {
			if (q->inflight >= kd->max_calls)
				continue;
			if (kd->max_calls < slots)
				slots = kd->max_calls;
		}
		if (q->nready == 0)
			continue;
		/* As many calls as the lanes, each with min_items at least,
		 * the ready items shared evenly between them. */
		calls = kd->min_items > 0
			    ? (q->nready + q->flight) / kd->min_items
			    : q->nready + q->flight;
		if (calls > (size_t)slots)
			calls = (size_t)slots;
		if (calls < 1)
			calls = 1;
		want = (q->nready + q->flight + calls - 1) / calls;
		if (want > kd->max_items)
			want = kd->max_items;
		if ((n = graph_take(g, k, want, buf)) > 0) {
			*ret_kind = k;
			*ret_alone = false;
			return n;
		}
	}
	if (g->nagain == 0 || g->inflight > 0)
		return 0;
	/* Nothing else can go: a call refused for a conflict, alone. */
	struct graph_again a = g->again[--g->nagain];

	memcpy(buf, a.items, a.n * sizeof(*buf));
	for (size_t i = 0; i < a.n; i++) {
		g->nodes[buf[i]].state = NODE_FLIGHT;
		graph_key_add(g, g->nodes[buf[i]].key, 1);
	}
	*ret_kind = g->nodes[buf[0]].kind;
	*ret_alone = true;
	free(a.items);
	return a.n;
}

void
graph_again(struct graph *g, const size_t *items, size_t n)
{
	if (n == 0)
		return;
	g->again = xreallocarray(g->again, g->nagain + 1, sizeof(*g->again));
	g->again[g->nagain].items = xcalloc(n, sizeof(size_t));
	memcpy(g->again[g->nagain].items, items, n * sizeof(size_t));
	g->again[g->nagain++].n = n;
	for (size_t i = 0; i < n; i++)
		g->nodes[items[i]].state = NODE_AGAIN;
}

/* Nothing in flight and nothing can go, yet items are unfinished: only a
 * dependency cycle does that. */
static bool
graph_stuck(struct graph *g)
{
	return g->inflight == 0 && g->nagain == 0 && g->nfinished < g->n;
}

static void *
graph_worker_main(void *arg)
{
	struct graph_worker *wk = arg;
	struct graph *g = wk->g;
	size_t n;
	int kind, rc;
	bool alone;

	pthread_mutex_lock(g->lock);
	for (;;) {
		if ((g->stop || g->nfinished == g->n) && g->inflight == 0)
			break;
		if ((n = graph_pick(g, wk->buf, &kind, &alone)) == 0) {
			if (!g->stop && graph_stuck(g)) {
				g->stop = true;
				break;
			}
			pthread_cond_wait(&g->cond, g->lock);
			continue;
		}
		g->inflight++;
		g->q[kind].inflight++;
		g->q[kind].flight += n;
		g->alone_inflight = alone;
		g->calls++;
		if (g->inflight > g->most)
			g->most = g->inflight;
		pthread_mutex_unlock(g->lock);
		rc = g->ops->run(wk->w, kind, wk->buf, n, alone, g->ops->arg);
		pthread_mutex_lock(g->lock);
		for (size_t i = 0; i < n; i++) {
			graph_key_add(g, g->nodes[wk->buf[i]].key, -1);
			if (g->nodes[wk->buf[i]].state == NODE_FLIGHT)
				graph_finish(g, wk->buf[i]);
		}
		g->inflight--;
		g->q[kind].inflight--;
		g->q[kind].flight -= n;
		if (alone)
			g->alone_inflight = false;
		if (rc != 0)
			g->stop = true;
		pthread_cond_broadcast(&g->cond);
	}
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(g->lock);
	return NULL;
}

int
graph_run(struct graph *g, int nworkers)
{
	struct graph_worker *wk;
	int started = 1, rc;

	g->nworkers = nworkers < 1 ? 1 : nworkers;
	graph_index(g);
	g->stack = xcalloc(g->n + 1, sizeof(*g->stack));
	pthread_mutex_lock(g->lock);
	for (size_t i = 0; i < g->n; i++)
		if (g->nodes[i].nwait > 0)
			g->q[g->nodes[i].kind].pending++;
	for (size_t i = 0; i < g->n && !g->stop; i++) {
		if (g->nodes[i].nwait > 0 || g->nodes[i].state != NODE_PENDING)
			continue;
		if ((rc = g->ops->ready(i, g->ops->arg)) == 1)
			graph_queue_push(g, i);
		else if (rc == 0)
			graph_finish(g, i);
		else
			g->stop = true;
	}
	pthread_mutex_unlock(g->lock);
	wk = xcalloc((size_t)g->nworkers, sizeof(*wk));
	for (int i = 0; i < g->nworkers; i++) {
		wk[i].g = g;
		wk[i].i = i;
		/* A call size may change while it runs: room for any call. */
		wk[i].buf = xcalloc(g->n + 1, sizeof(size_t));
		wk[i].w = g->ops->worker_new
			      ? g->ops->worker_new(i, g->ops->arg)
			      : NULL;
	}
	for (; started < g->nworkers; started++)
		if (pthread_create(&wk[started].thread, NULL, graph_worker_main,
				   &wk[started]) != 0)
			break; /* fewer lanes: the others do the work */
	graph_worker_main(&wk[0]);
	for (int i = 1; i < started; i++)
		pthread_join(wk[i].thread, NULL);
	for (int i = 0; i < g->nworkers; i++) {
		if (g->ops->worker_free)
			g->ops->worker_free(wk[i].w, i, g->ops->arg);
		free(wk[i].buf);
	}
	free(wk);
	return g->stop || g->nfinished < g->n ? -1 : 0;
}

void
graph_stats(struct graph *g, size_t *ret_calls, int *ret_most)
{
	pthread_mutex_lock(g->lock);
	*ret_calls = g->calls;
	*ret_most = g->most;
	pthread_mutex_unlock(g->lock);
}
