/* The /metrics endpoint: a small evhttp server on the daemon's loop.
 *
 * Everything here runs in the loop's callbacks and never waits: evhttp
 * reads requests and writes answers as the sockets allow, so a client that
 * stalls half-way through its request, or never reads the answer, holds
 * only its own connection until EXPORTER_TIMEOUT_S closes it.  An answer
 * is the registry rendered from memory; anything that must be read from
 * elsewhere is kept up to date by the collect hook's owner, cheaply.
 * libevent 2.1 cannot cap the number of connections (2.2 can); the
 * timeouts, the small request limits and an address that only the
 * Prometheus server reaches bound them instead. */
#include <sys/socket.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "exporter.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define EXPORTER_PATH    "/metrics"
#define EXPORTER_BACKLOG 16

struct exporter {
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *bound; /* NULL: not listening */
	char *address;                     /* what bound serves */
	struct metrics *metrics;
	void (*collect)(void *);
	void *arg;
};

/* Answer one request: the registry for GET and HEAD of /metrics. */
static void
exporter_request_cb(struct evhttp_request *req, void *arg)
{
	struct exporter *e = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	struct evbuffer *body;
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int rv;

	if (path == NULL || strcmp(path, EXPORTER_PATH) != 0) {
		evhttp_send_error(req, HTTP_NOTFOUND, NULL);
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		/* Not evhttp_send_error(): it drops the headers set here. */
		evhttp_add_header(headers, "Allow", "GET, HEAD");
		evhttp_add_header(headers, "Content-Type",
				  "text/plain; charset=utf-8");
		if ((body = evbuffer_new()) != NULL)
			evbuffer_add_printf(body, "%s takes GET or HEAD\n",
					    EXPORTER_PATH);
		evhttp_send_reply(req, HTTP_BADMETHOD, "Method Not Allowed",
				  body);
		if (body != NULL)
			evbuffer_free(body);
		return;
	}
	if (e->collect != NULL)
		e->collect(e->arg);
	if ((f = open_memstream(&text, &len)) == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	rv = metrics_write(e->metrics, f);
	if (fclose(f) != 0 || rv == -1 || (body = evbuffer_new()) == NULL) {
		free(text);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evbuffer_add(body, text, len);
	free(text);
	evhttp_add_header(headers, "Content-Type", METRICS_CONTENT_TYPE);
	evhttp_add_header(headers, "Cache-Control", "no-store");
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

struct exporter *
exporter_new(struct event_base *base, struct metrics *metrics,
	     void (*collect)(void *), void *arg)
{
	struct exporter *e = xcalloc(1, sizeof(*e));
	struct timeval timeout = { EXPORTER_TIMEOUT_S, 0 };

	e->base = base;
	e->metrics = metrics;
	e->collect = collect;
	e->arg = arg;
	if ((e->http = evhttp_new(base)) == NULL)
		fatalx("evhttp_new failed");
	evhttp_set_timeout_tv(e->http, &timeout);
	evhttp_set_max_headers_size(e->http, EXPORTER_MAX_HEADER);
	evhttp_set_max_body_size(e->http, EXPORTER_MAX_BODY);
	/* Every method reaches the callback, which answers 405 (evhttp
	 * would answer 501 to those it is not told about). */
	evhttp_set_allowed_methods(
	    e->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
			 EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
			 EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
			 EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(e->http, exporter_request_cb, e);
	return e;
}

static void
exporter_close(struct exporter *e)
{
	if (e->bound != NULL)
		evhttp_del_accept_socket(e->http, e->bound);
	e->bound = NULL;
	free(e->address);
	e->address = NULL;
}

void
exporter_free(struct exporter *e)
{
	if (e == NULL)
		return;
	exporter_close(e);
	evhttp_free(e->http);
	free(e);
}

/* Bind and listen on address; -1 with errno set. */
static int
exporter_bind(struct exporter *e, const char *address)
{
	struct sockaddr_storage ss;
	struct evconnlistener *l;
	int len = (int)sizeof(ss);

	if (evutil_parse_sockaddr_port(address, (struct sockaddr *)&ss, &len) ==
	    -1) {
		errno = EINVAL;
		return -1;
	}
	/* A listener without a callback starts disabled; evhttp sets its
	 * own.  Not inherited over exec; the sync process, a fork, has it
	 * but never accepts on it. */
	l = evconnlistener_new_bind(
	    e->base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	    EXPORTER_BACKLOG, (struct sockaddr *)&ss, len);
	if (l == NULL)
		return -1;
	if ((e->bound = evhttp_bind_listener(e->http, l)) == NULL) {
		evconnlistener_free(l);
		errno = ENOMEM;
		return -1;
	}
	e->address = xstrdup(address);
	return 0;
}

/* What a bind error usually means here, for the one log line. */
static const char *
exporter_hint(int err)
{
	static const struct {
		int err;
		const char *hint;
	} hints[] = {
		{ EADDRINUSE, " (another process listens there)" },
		{ EACCES, " (a port below 1024 needs privileges)" },
		{ EPERM, " (refused by policy: does the unit's "
			 "SocketBindAllow= allow this port?)" },
		{ EADDRNOTAVAIL, " (no such address on this host)" },
	};

	for (size_t i = 0; i < nitems(hints); i++)
		if (hints[i].err == err)
			return hints[i].hint;
	return "";
}

int
exporter_listen(struct exporter *e, const char *address, char **cause)
{
	char *old;
	int err;

	if (address == NULL
		? e->address == NULL
		: e->address != NULL && strcmp(address, e->address) == 0)
		return 0;
	/* Let go of the old address first: the new one may be the same port
	 * on another address, which the old socket would keep taken.  This
	 * runs in one loop callback, so no scrape falls in the gap. */
	old = e->address != NULL ? xstrdup(e->address) : NULL;
	exporter_close(e);
	if (address == NULL || exporter_bind(e, address) == 0) {
		free(old);
		return 0;
	}
	err = errno;
	xasprintf(cause, "cannot listen on %s: %s%s", address, strerror(err),
		  exporter_hint(err));
	if (old != NULL && exporter_bind(e, old) == -1) {
		free(*cause);
		xasprintf(cause,
			  "cannot listen on %s: %s%s; nor again on %s: %s",
			  address, strerror(err), exporter_hint(err), old,
			  strerror(errno));
	}
	free(old);
	return -1;
}

const char *
exporter_address(const struct exporter *e)
{
	return e->address;
}
