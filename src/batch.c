/* Lists of items through Moodle's all-or-nothing calls, several in flight.
 *
 * The list is cut into lanes, one thread and one connection each; a lane's
 * calls go out one after another, so items that share a key (a user) are
 * put in one lane and never travel in two calls at once.  Threads rather
 * than one curl multi handle: each lane is then the plain loop of a serial
 * client (send, halve a refused call), and the callbacks, which write the
 * ledger, are serialised by one lock. */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "log.h"
#include "moodle.h"
#include "util.h"

/* Part of the list: items[0..n) are indexes into the caller's list. */
struct batch_range {
	size_t *items;
	size_t n;
};

/* One batch_run: what its threads share, under lock. */
struct batch_state {
	const struct batch *b;
	pthread_mutex_t own, *lock;
	size_t cap;
	size_t *order; /* every index, lane after lane */
	struct batch_range *lanes;
	size_t nlanes, next_lane;
	struct batch_range *aside; /* conflicts, sent again alone */
	size_t naside;
	int own_unanswered, *unanswered; /* calls in a row without an answer */
	bool stop;
	struct moodle_error err; /* why it stopped */
};

struct batch_worker {
	struct batch_state *st;
	struct moodle *m; /* this thread's own client */
	bool alone;       /* sending what was set aside: back off instead */
	pthread_t thread;
};

/* What became of one call. */
enum batch_sent { SENT_OK, SENT_REFUSED, SENT_ASIDE, SENT_STOP };

/* Stop the batch with *e (taken over), unless it is stopped already. */
static void
batch_stop(struct batch_state *st, struct moodle_error *e)
{
	pthread_mutex_lock(st->lock);
	if (!st->stop) {
		st->stop = true;
		st->err = *e;
		memset(e, 0, sizeof(*e));
	}
	pthread_mutex_unlock(st->lock);
	moodle_error_clear(e);
}

static bool
batch_stopped(struct batch_state *st)
{
	bool stop;

	pthread_mutex_lock(st->lock);
	stop = st->stop;
	pthread_mutex_unlock(st->lock);
	return stop;
}

/* A caller's callback said stop. */
static enum batch_sent
batch_refused_by_caller(struct batch_worker *w, struct moodle_error *e)
{
	moodle_error_set(w->m, e, MOODLE_FATAL, "batch", "callback",
			 "stopped by the caller");
	batch_stop(w->st, e);
	return SENT_STOP;
}

static int
batch_note(struct batch_worker *w, enum batch_event ev, const size_t *items,
	   size_t count)
{
	const struct batch *b = w->st->b;
	int rc;

	if (b->note == NULL)
		return 0;
	pthread_mutex_lock(w->st->lock);
	rc = b->note(ev, items, count, b->arg);
	pthread_mutex_unlock(w->st->lock);
	return rc;
}

/* Keep items[0..n) for the alone round, or hand them to the caller's. */
static void
batch_set_aside(struct batch_state *st, size_t *items, size_t n)
{
	pthread_mutex_lock(st->lock);
	if (st->b->aside != NULL) {
		if (st->b->aside(items, n, st->b->arg) != 0 && !st->stop)
			st->stop = true; /* err stays empty: the caller's */
	} else {
		st->aside = xreallocarray(st->aside, st->naside + 1,
					  sizeof(*st->aside));
		st->aside[st->naside++] = (struct batch_range){ items, n };
	}
	pthread_mutex_unlock(st->lock);
}

/* Count calls in a row that got no answer: -1 once there were as many as
 * a transient failure gets tries. */
static int
batch_answered(struct batch_worker *w, bool answered)
{
	struct batch_state *st = w->st;
	int n;

	pthread_mutex_lock(st->lock);
	n = *st->unanswered = answered ? 0 : *st->unanswered + 1;
	pthread_mutex_unlock(st->lock);
	return n >= moodle_tries(w->m) ? -1 : 0;
}

/* Send items[0..count) in one call and act on the answer; *e holds the
 * error of a refusal. */
static enum batch_sent
batch_send(struct batch_worker *w, size_t *items, size_t count,
	   struct moodle_error *e)
{
	const struct batch *b = w->st->b;
	int rc;

	moodle_error_clear(e);
	if (batch_note(w, BATCH_SENDING, items, count) != 0)
		return batch_refused_by_caller(w, e);
	rc = b->call(w->m, items, count, b->arg, e);
	if (rc != 0 && (moodle_down(w->m, NULL) ||
			batch_answered(w, e->kind != MOODLE_UNSURE) == -1)) {
		/* Moodle is down (the breaker is open), or answers no call:
		 * stop at once, nothing blamed on the items, leaving the
		 * caller the unsettled ones. */
		if (e->kind == MOODLE_UNSURE &&
		    batch_note(w, BATCH_UNSETTLED, items, count) != 0)
			return batch_refused_by_caller(w, e);
		if (e->site)
			moodle_give_up(w->m, e);
		if (moodle_down(w->m, NULL))
			moodle_down_error(w->m, e->function, e);
		else
			e->kind = MOODLE_TRANSIENT;
		batch_stop(w->st, e);
		return SENT_STOP;
	}
	if (rc == 0)
		batch_answered(w, true);
	if (rc == 0)
		goto done;
	switch (e->kind) {
	case MOODLE_ITEM:
		if (!moodle_error_committed(e))
			return batch_note(w, BATCH_REFUSED, items, count) == 0
				   ? SENT_REFUSED
				   : batch_refused_by_caller(w, e);
		/* Applied, then failed (MAILFAIL): resending would only
		 * repeat it, so count the items as done. */
		log_warnx("%s: %s; %zu items counted as done", e->function,
			  e->message, count);
		goto done;
	case MOODLE_CONFLICT:
		if (batch_note(w, BATCH_REFUSED, items, count) != 0)
			return batch_refused_by_caller(w, e);
		if (w->alone)
			return SENT_REFUSED; /* batch_send_alone backs off */
		batch_set_aside(w->st, items, count);
		return SENT_ASIDE;
	case MOODLE_UNSURE:
		if (batch_note(w, BATCH_UNSETTLED, items, count) != 0)
			return batch_refused_by_caller(w, e);
		return SENT_ASIDE;
	case MOODLE_OK:
		return batch_refused_by_caller(w, e);
	default:
		batch_stop(w->st, e);
		return SENT_STOP;
	}
done:
	pthread_mutex_lock(w->st->lock);
	rc = b->done != NULL ? b->done(w->m, items, count, b->arg) : 0;
	pthread_mutex_unlock(w->st->lock);
	if (rc != 0)
		return batch_refused_by_caller(w, e);
	moodle_error_clear(e);
	return SENT_OK;
}

/* Alone, a conflict is somebody else's doing (or no deadlock at all): try
 * again after a doubling back-off, then let it be split like a refusal. */
static enum batch_sent
batch_send_alone(struct batch_worker *w, size_t *items, size_t count,
		 struct moodle_error *e)
{
	int64_t delay = moodle_retry_delay(w->m);
	enum batch_sent rc;

	for (int try = 1;; try++) {
		rc = batch_send(w, items, count, e);
		if (rc != SENT_REFUSED || e->kind != MOODLE_CONFLICT ||
		    try >= moodle_tries(w->m))
			return rc;
		log_info("%s: %s; %zu items again in %" PRId64 " ms",
			 e->function, e->message, count, delay);
		if (moodle_wait(w->m, delay) == -1) {
			moodle_error_set(w->m, e, MOODLE_CANCELLED, e->function,
					 "cancelled",
					 "cancelled while waiting to retry");
			batch_stop(w->st, e);
			return SENT_STOP;
		}
		delay *= 2;
	}
}

/* Chunks of the range go out in order.  A refused chunk is searched by
 * halving: a confirmed left half is committed and the bad item is in the
 * right one, a refused left half narrows the search and its right half
 * returns to the queue.  Each bad item costs 1 + log2(capacity) calls. */
static void
batch_lane(struct batch_worker *w, size_t *items, size_t n)
{
	struct batch_state *st = w->st;
	const struct batch *b = st->b;
	struct moodle_error e = { 0 }, half = { 0 }, tmp;
	enum batch_sent (*send)(struct batch_worker *, size_t *, size_t,
				struct moodle_error *) =
	    w->alone ? batch_send_alone : batch_send;
	size_t pos = 0, count, lo, hi, mid = 0;
	enum batch_sent rc;
	bool alone;

	while (pos < n && !batch_stopped(st)) {
		count = n - pos < st->cap ? n - pos : st->cap;
		if ((rc = send(w, items + pos, count, &e)) == SENT_STOP)
			goto out;
		if (rc != SENT_REFUSED) {
			pos += count;
			continue;
		}
		/* [lo, hi) is refused and e is its first bad item's error;
		 * alone says whether lo was refused on its own. */
		lo = pos;
		hi = pos + count;
		alone = count == 1;
		while (hi - lo > 1 || !alone) {
			mid = hi - lo > 1 ? lo + (hi - lo) / 2 : hi;
			rc = send(w, items + lo, mid - lo, &half);
			if (rc == SENT_STOP)
				goto out;
			if (rc == SENT_ASIDE) {
				if (mid < hi)
					batch_set_aside(st, items + mid,
							hi - mid);
				break;
			}
			if (rc == SENT_OK && mid == hi)
				break; /* refused only in company: not bad */
			if (rc == SENT_OK) {
				lo = mid;
				alone = false;
			} else {
				hi = mid;
				alone = mid - lo == 1;
				tmp = e;
				e = half;
				half = tmp;
			}
		}
		if (rc == SENT_ASIDE || (rc == SENT_OK && mid == hi)) {
			pos = hi;
			continue;
		}
		pthread_mutex_lock(st->lock);
		rc = b->failed != NULL &&
			     b->failed(w->m, items[lo], &e, b->arg) != 0
			 ? SENT_STOP
			 : SENT_OK;
		pthread_mutex_unlock(st->lock);
		if (rc == SENT_STOP) {
			batch_refused_by_caller(w, &e);
			goto out;
		}
		pos = lo + 1;
	}
out:
	moodle_error_clear(&e);
	moodle_error_clear(&half);
}

static void *
batch_worker_main(void *arg)
{
	struct batch_worker *w = arg;
	struct batch_state *st = w->st;
	struct batch_range lane;

	for (;;) {
		pthread_mutex_lock(st->lock);
		if (st->stop || st->next_lane == st->nlanes) {
			pthread_mutex_unlock(st->lock);
			return NULL;
		}
		lane = st->lanes[st->next_lane++];
		pthread_mutex_unlock(st->lock);
		batch_lane(w, lane.items, lane.n);
	}
}

/* Cut the list into lanes: as few calls as capacity allows, spread over
 * the calls that may be in flight when each still carries min_items;
 * keyed items go to the lane of their key. */
static void
batch_lanes(struct batch_state *st, int concurrency)
{
	const struct batch *b = st->b;
	size_t want = (b->n + st->cap - 1) / st->cap, *fill, lane;

	if (b->min_items > 0 && b->n / b->min_items > want)
		want = b->n / b->min_items;
	if (want > (size_t)concurrency)
		want = (size_t)concurrency;
	st->nlanes = want > 0 ? want : 1;
	st->lanes = xcalloc(st->nlanes, sizeof(*st->lanes));
	st->order = xcalloc(b->n, sizeof(*st->order));
	fill = xcalloc(st->nlanes, sizeof(*fill));
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < b->n; i++) {
			size_t item = b->items != NULL ? b->items[i] : i;

			if (b->key != NULL) {
				int64_t k = b->key(item, b->arg);

				lane = (size_t)(k < 0 ? -k : k) % st->nlanes;
			} else
				lane = i * st->nlanes / b->n;
			if (pass == 0)
				st->lanes[lane].n++;
			else
				st->lanes[lane].items[fill[lane]++] = item;
		}
		for (size_t l = 0, off = 0; pass == 0 && l < st->nlanes; l++) {
			st->lanes[l].items = st->order + off;
			off += st->lanes[l].n;
		}
	}
	free(fill);
}

int
batch_run(struct moodle *m, const struct batch *b, struct moodle_error *err)
{
	struct batch_state st = { .b = b };
	struct batch_worker *w;
	size_t cap, started = 1;
	bool resend;
	int rv = 0;

	moodle_error_clear(err);
	if (b->n == 0)
		return 0;
	if ((cap = moodle_capacity(m, b->fields, b->extra)) == 0) {
		moodle_error_set(m, err, MOODLE_FATAL, "batch", "toomanyvars",
				 "moodle.max_input_vars leaves no room for "
				 "one item");
		return -1;
	}
	st.cap = b->max_items > 0 && b->max_items < cap ? b->max_items : cap;
	pthread_mutex_init(&st.own, NULL);
	st.lock = b->lock != NULL ? b->lock : &st.own;
	st.unanswered =
	    b->unanswered != NULL ? b->unanswered : &st.own_unanswered;
	batch_lanes(&st, b->lanes > 0 ? b->lanes : moodle_concurrency(m));
	w = xcalloc(st.nlanes, sizeof(*w));
	resend = moodle_set_resend(m, !b->once);
	for (size_t i = 0; i < st.nlanes; i++) {
		w[i].st = &st;
		w[i].m = i == 0 ? m : moodle_clone(m);
	}
	w[0].alone = b->alone;
	for (; started < st.nlanes; started++)
		if (pthread_create(&w[started].thread, NULL, batch_worker_main,
				   &w[started]) != 0) {
			log_warn("pthread_create");
			break;
		}
	/* This thread takes lanes too, those of threads that did not start
	 * included. */
	batch_worker_main(&w[0]);
	for (size_t i = 1; i < started; i++)
		pthread_join(w[i].thread, NULL);
	if (st.naside > 0 && !st.stop)
		log_info("a database conflict (dmlwriteexception) refused %zu "
			 "call%s: sending %s again, alone",
			 st.naside, st.naside == 1 ? "" : "s",
			 st.naside == 1 ? "it" : "them");
	w[0].alone = true;
	for (size_t i = 0; i < st.naside && !st.stop; i++)
		batch_lane(&w[0], st.aside[i].items, st.aside[i].n);
	if (st.stop) {
		*err = st.err;
		if (err->kind == MOODLE_OK) /* the caller's aside() said stop */
			moodle_error_set(m, err, MOODLE_FATAL, "batch",
					 "callback", "stopped by the caller");
		rv = -1;
	}
	moodle_set_resend(m, resend);
	for (size_t i = 1; i < st.nlanes; i++)
		moodle_free(w[i].m);
	free(w);
	free(st.aside);
	free(st.lanes);
	free(st.order);
	pthread_mutex_destroy(&st.own);
	return rv;
}
