/* A run as a graph of calls: items, dependencies, lanes and keys. */
#ifndef GRAPH_H
#define GRAPH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct graph;

#define GRAPH_NOKEY INT64_MIN

/* One kind of call: its items travel together, never with another kind. */
struct graph_kind {
	size_t max_items; /* per call */
	/* Fewest items worth a call of their own when the ready ones are
	 * shared over idle lanes (0: one each). */
	size_t min_items;
	int max_calls; /* of this kind in flight at once; 0: no own limit */
};

struct graph_ops {
	/* An item's dependencies are all finished: 1 send it, 0 drop it
	 * (finished unsent), -1 stop.  Under the lock. */
	int (*ready)(size_t item, void *arg);
	/* Send items[0..n) of one kind as one call, on worker w, without the
	 * lock.  alone: they were handed back by graph_again and go with no
	 * other call in flight.  Every item is finished when it returns,
	 * except those handed back by graph_again meanwhile.  0, or -1 to
	 * stop the graph (no new call goes out; those in flight end). */
	int (*run)(void *w, int kind, const size_t *items, size_t n, bool alone,
		   void *arg);
	/* The calls allowed in flight now (pacing); read before each call.
	 * NULL: as many as there are workers. */
	int (*limit)(void *arg);
	/* A worker's own context (a client, a connection) for worker i;
	 * NULL worker_new: w is NULL. */
	void *(*worker_new)(int i, void *arg);
	void (*worker_free)(void *w, int i, void *arg);
	void *arg;
};

/*
 * nitems items, each of one of nkinds kinds, are sent in calls of one kind,
 * up to nworkers calls in flight (each worker a thread; the calling thread
 * is worker 0).  An item is sent once every item it depends on has
 * finished.  Two items with the same key are never in two calls in flight
 * at once.  The graph keeps its state under *lock, which the caller may
 * share with its own callbacks (ready and the caller's code under
 * graph_again run with it held).
 *
 * Which call next: kinds in their order (the first kind is the one whose
 * calls unblock the most), the oldest ready items first; a call takes
 * its lane's share of the kind's items ready or in flight (as if every
 * lane held one call), at least min_items and at most max_items, so that
 * the last calls of a kind end together.
 */
struct graph *graph_new(const struct graph_kind *kinds, int nkinds,
			size_t nitems, const struct graph_ops *ops,
			pthread_mutex_t *lock);
void graph_free(struct graph *);
/* Before graph_run: item's kind and key (GRAPH_NOKEY: none). */
void graph_item(struct graph *, size_t item, int kind, int64_t key);
/* Before graph_run: item waits for on to finish. */
void graph_depend(struct graph *, size_t item, size_t on);
/* Change a kind's call size (lock held, e.g. from a callback). */
void graph_set_max_items(struct graph *, int kind, size_t max_items);
/* From run() with the lock held: items[0..n) of the call under way were
 * refused for a conflict (nothing applied); they go again as one call,
 * alone, once no other call is in flight and nothing else is ready. */
void graph_again(struct graph *, const size_t *items, size_t n);
/* Run the graph with up to nworkers calls in flight: 0 when every item
 * finished, -1 when run() or ready() stopped it. */
int graph_run(struct graph *, int nworkers);
/* Calls sent so far, and the most in flight at once (for tests). */
void graph_stats(struct graph *, size_t *ret_calls, int *ret_most);

#endif
