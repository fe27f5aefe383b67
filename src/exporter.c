/* The /metrics endpoint, served by an httpd on the daemon's loop.
 *
 * An answer is the registry rendered from memory; anything that must be
 * read from elsewhere is kept up to date by the collect hook's owner,
 * cheaply.  What a hostile client can do to the endpoint (hold
 * connections, trickle bytes, never read) is httpd.c's to bound. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "exporter.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define EXPORTER_PATH    "/metrics"
#define EXPORTER_SERVERS 4 /* servers published at most */

enum {
	EX_CONNECTIONS,
	EX_MAX_CONNECTIONS,
	EX_CLOSED,
	EX_ACCEPT_PAUSED,
	EX_COUNT
};

static const char *const exporter_server[] = { "server", NULL };
static const char *const exporter_closed[] = { "server", "reason", NULL };

static const struct metrics_def exporter_defs[EX_COUNT] = {
	[EX_CONNECTIONS] = { "webcoursed_http_connections", METRICS_GAUGE,
			     exporter_server, NULL, 0,
			     "Client connections open now, by server." },
	[EX_MAX_CONNECTIONS] = { "webcoursed_http_connections_max",
				 METRICS_GAUGE, exporter_server, NULL, 0,
				 "The cap on client connections, by server." },
	[EX_CLOSED] = { "webcoursed_http_connections_cut_total",
			METRICS_COUNTER, exporter_closed, NULL, 0,
			"Connections closed by the server before their "
			"client was done: evicted (room for a new one at "
			"the cap) or deadline (request or answer too "
			"slow)." },
	[EX_ACCEPT_PAUSED] = { "webcoursed_http_accept_paused_total",
			       METRICS_COUNTER, exporter_server, NULL, 0,
			       "Times accepting paused after accept() failed "
			       "(out of file descriptors)." },
};

/* What was published of a server's counters, by its name (a server made
 * anew on a reload starts from 0; its counters go on from there). */
struct exporter_seen {
	char *name;
	struct httpd_stats st;
};

struct exporter {
	struct httpd *httpd;
	struct metrics *metrics;
	struct metrics_family *fam[EX_COUNT];
	struct exporter_seen seen[EXPORTER_SERVERS];
	size_t nseen;
	void (*collect)(void *);
	void *arg;
};

/* A counter up by what is new since seen (a server made anew counts from
 * 0 again: what it counts from there is new). */
static void
exporter_count(struct metrics_family *f, const char *const *labels,
	       uint64_t now, uint64_t *seen)
{
	if (now > *seen)
		metrics_inc(f, labels, (double)(now - *seen));
	*seen = now;
}

static void
exporter_server_cb(const char *name, const struct httpd_stats *st, void *arg)
{
	struct exporter *e = arg;
	const char *server[] = { name, NULL };
	const char *evicted[] = { name, "evicted", NULL };
	const char *deadline[] = { name, "deadline", NULL };
	struct exporter_seen *seen = NULL;

	for (size_t i = 0; i < e->nseen && seen == NULL; i++)
		if (strcmp(e->seen[i].name, name) == 0)
			seen = &e->seen[i];
	if (seen == NULL) {
		if (e->nseen == nitems(e->seen))
			return;
		seen = &e->seen[e->nseen++];
		seen->name = xstrdup(name);
	}
	metrics_set(e->fam[EX_CONNECTIONS], server, (double)st->connections);
	metrics_set(e->fam[EX_MAX_CONNECTIONS], server,
		    (double)st->max_connections);
	exporter_count(e->fam[EX_CLOSED], evicted, st->evicted,
		       &seen->st.evicted);
	exporter_count(e->fam[EX_CLOSED], deadline, st->expired,
		       &seen->st.expired);
	exporter_count(e->fam[EX_ACCEPT_PAUSED], server, st->accept_paused,
		       &seen->st.accept_paused);
}

/* Answer GET or HEAD /metrics with the registry. */
static void
exporter_request_cb(struct evhttp_request *req, void *arg)
{
	struct exporter *e = arg;
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int rv;

	if (e->collect != NULL)
		e->collect(e->arg);
	httpd_stats_all(exporter_server_cb, e);
	if ((f = open_memstream(&text, &len)) == NULL) {
		httpd_reply_text(req, HTTP_INTERNAL, NULL);
		return;
	}
	rv = metrics_write(e->metrics, f);
	if (fclose(f) != 0 || rv == -1) {
		free(text);
		httpd_reply_text(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Cache-Control", "no-store");
	httpd_reply(req, HTTP_OK, METRICS_CONTENT_TYPE, text, len);
	free(text);
}

struct exporter *
exporter_new(struct httpd *httpd, struct metrics *metrics,
	     void (*collect)(void *), void *arg)
{
	struct exporter *e = xcalloc(1, sizeof(*e));

	e->httpd = httpd;
	e->metrics = metrics;
	e->collect = collect;
	e->arg = arg;
	for (size_t i = 0; i < EX_COUNT; i++)
		e->fam[i] = metrics_define(metrics, &exporter_defs[i]);
	httpd_route(httpd, EXPORTER_PATH, HTTPD_GET | HTTPD_HEAD,
		    exporter_request_cb, e);
	return e;
}

void
exporter_free(struct exporter *e)
{
	if (e == NULL)
		return;
	for (size_t i = 0; i < e->nseen; i++)
		free(e->seen[i].name);
	free(e);
}
