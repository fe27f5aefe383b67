/* The daemon's HTTP front: evhttp servers on its loop, hardened.
 *
 * evhttp parses requests and writes answers; what it lacks in libevent
 * 2.1 is added around it:
 * - A cap on connections.  2.1 has no evhttp_set_max_connections (2.2
 *   has) and tells nobody of a new connection; but each connection's
 *   bufferevent is ours (evhttp_set_bevcb), and once evhttp has set it
 *   up, its callback argument is the evhttp_connection, whose close
 *   callback then tells us when evhttp frees it.  That setup finishes
 *   when the accept callback returns, before any event of the new
 *   connection can run: a connection is "fresh" until an event made
 *   active in the accept (ev_bind) binds it.  At the cap, the connection
 *   that has waited longest for its request is closed to make room:
 *   closing the newcomer instead, or pausing accept, would let a thousand
 *   slow clients lock a quick scraper out for as long as they like.
 * - Whole-request deadlines.  evhttp's timeout is a bufferevent timeout
 *   that restarts on every byte.  Ours is a timer per connection, armed
 *   when the server is ready for a request and again when the handler
 *   gets it; when it fires, the connection is ended through evhttp's own
 *   timeout path (bufferevent_trigger_event), which frees it at once in
 *   any state (reading, handled, writing).
 * - Accept errors.  Without an error callback, a listener whose accept()
 *   fails with EMFILE logs and fires again at once, for ever.  Ours pauses
 *   accepting, for a second and then longer, and logs rate-limited.
 * - fds in the sync child.  Sockets are SOCK_CLOEXEC, but the sync child
 *   is a fork without exec: httpd_close_all_in_child() closes them there.
 *   libevent passes the listener's error callback evhttp's pointer, not
 *   ours, and the child must drop every server's sockets whoever made the
 *   server: hence the one process-wide list of servers. */
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "httpd.h"
#include "log.h"
#include "util.h"

#define HTTPD_BACKLOG        1024  /* a burst waits here, not in our fds */
#define HTTPD_PAUSE_FIRST_MS 1000  /* accepting paused after an error */
#define HTTPD_PAUSE_MAX_MS   16000 /* doubling up to this */

/* One client connection, in its server's list. */
struct httpd_conn {
	TAILQ_ENTRY(httpd_conn) entry;
	struct httpd *h;
	struct bufferevent *bev; /* evhttp's, made by httpd_bev_cb */
	struct event *deadline;
	struct sockaddr_storage peer; /* port 0: only the address counts */
	bool fresh;     /* evhttp's setup not yet seen (httpd_bind_cb) */
	bool doomed;    /* no room was made for it: ended once bound */
	bool answering; /* the handler has its request */
};
TAILQ_HEAD(httpd_conns, httpd_conn);

struct httpd_route {
	char *path; /* NULL: every other path */
	int methods;
	void (*cb)(struct evhttp_request *, void *);
	void *arg;
};

struct httpd {
	LIST_ENTRY(httpd) all;
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *bound; /* NULL: not listening */
	struct evconnlistener *listener;
	char *address; /* what bound serves */
	char *name;
	char *csp;
	SSL_CTX *tls;
	struct httpd_limits limits;
	/* Waiting for a request, oldest first, or answering; the fresh ones
	 * wait for ev_bind. */
	struct httpd_conns conns, fresh;
	struct event *ev_bind;
	struct httpd_route *routes;
	size_t nroutes;
	struct event *ev_resume; /* accepting again after a pause */
	int64_t pause_ms;
	bool paused;           /* by an accept error */
	struct event *ev_more; /* accepting again in the loop's next turn */
	size_t accepted_now;   /* accepts in this turn of the loop */
	struct log_rate rate;
	struct httpd_stats st;
};

static LIST_HEAD(, httpd) httpd_all = LIST_HEAD_INITIALIZER(httpd_all);

static void httpd_conn_end(struct httpd_conn *);

static void
httpd_conn_arm(struct httpd_conn *c, int64_t ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(c->deadline, &tv);
}

/* evhttp frees a connection (closed, failed, done, or ended by us). */
static void
httpd_conn_closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct httpd_conn *c = arg;
	struct httpd *h = c->h;

	(void)evcon;
	TAILQ_REMOVE(&h->conns, c, entry);
	h->st.connections--;
	event_free(c->deadline);
	free(c);
}

/* Whether a and b are the same client address (the port aside). */
static bool
httpd_same_peer(const struct sockaddr_storage *a,
		const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			      &((const struct sockaddr_in6 *)b)->sin6_addr,
			      sizeof(struct in6_addr)) == 0;
	return false;
}

/* One address past its share: end its connection that has waited
 * longest for its request.  One client address cannot fill the server,
 * so that another (the scraper) always finds room. */
static void
httpd_peer_share(struct httpd *h, struct httpd_conn *newest)
{
	struct httpd_conn *c, *oldest = NULL;
	size_t n = 0;

	TAILQ_FOREACH(c, &h->conns, entry)
	if (httpd_same_peer(&c->peer, &newest->peer)) {
		n++;
		if (oldest == NULL && !c->answering)
			oldest = c;
	}
	if (n > h->limits.max_per_address && oldest != NULL) {
		h->st.evicted++;
		httpd_conn_end(oldest);
	}
}

/* Bind the fresh connections to their evhttp_connection, whose setup is
 * done: from now on evhttp tells us when it frees one. */
static void
httpd_bind_fresh(struct httpd *h)
{
	struct httpd_conn *c;
	socklen_t len;
	void *evcon;

	while ((c = TAILQ_FIRST(&h->fresh)) != NULL) {
		TAILQ_REMOVE(&h->fresh, c, entry);
		bufferevent_getcb(c->bev, NULL, NULL, NULL, &evcon);
		if (evcon == NULL)
			fatalx("%s: a connection without evhttp", h->name);
		c->fresh = false;
		TAILQ_INSERT_TAIL(&h->conns, c, entry);
		evhttp_connection_set_closecb(evcon, httpd_conn_closed_cb, c);
		len = sizeof(c->peer);
		if (c->doomed)
			httpd_conn_end(c);
		else if (getpeername(bufferevent_getfd(c->bev),
				     (struct sockaddr *)&c->peer, &len) == 0)
			httpd_peer_share(h, c);
	}
}

static void
httpd_bind_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	httpd_bind_fresh(arg);
}

/* End c through evhttp's timeout path: evhttp frees the connection, and
 * c with it (httpd_conn_closed_cb), before this returns. */
static void
httpd_conn_end(struct httpd_conn *c)
{
	bufferevent_trigger_event(c->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT,
				  0);
}

/* A connection's deadline passed: end it. */
static void
httpd_conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct httpd_conn *c = arg;

	(void)fd;
	(void)what;
	c->h->st.expired++;
	httpd_conn_end(c);
}

/* Connections of c's address. */
static size_t
httpd_peer_count(struct httpd *h, const struct httpd_conn *c)
{
	const struct httpd_conn *o;
	size_t n = 0;

	TAILQ_FOREACH(o, &h->conns, entry)
	n += httpd_same_peer(&o->peer, &c->peer);
	return n;
}

/* Room for one more: of the address holding the most connections, end
 * the one that has waited longest for its request (one being answered is
 * left alone).  A light client, a scraper with its one connection, is
 * never the one to go while a heavier address holds connections; among
 * equals the oldest goes.  Quadratic in the cap, which is small.  False
 * when every connection is being answered: then the newcomer goes. */
static bool
httpd_make_room(struct httpd *h)
{
	struct httpd_conn *c, *victim = NULL;
	size_t n, most = 0;

	httpd_bind_fresh(h);
	TAILQ_FOREACH(c, &h->conns, entry)
	if (!c->answering && (n = httpd_peer_count(h, c)) > most) {
		most = n;
		victim = c;
	}
	if (victim == NULL)
		return false;
	h->st.evicted++;
	httpd_conn_end(victim);
	return true;
}

/* evhttp's bevcb: the bufferevent of a connection just accepted (evhttp
 * sets its fd and callbacks after we return). */
static struct bufferevent *
httpd_bev_cb(struct event_base *base, void *arg)
{
	struct httpd *h = arg;
	struct httpd_conn *c;
	bool room = true;
	SSL *ssl;

	h->pause_ms = 0;
	if (h->st.connections >= h->limits.max_connections)
		room = httpd_make_room(h);
	/* The listener accepts all it can in one go; a burst larger than
	 * the cap would evict its own first connections before they are
	 * read.  A batch per turn, then the loop reads what came. */
	if (++h->accepted_now >= h->limits.max_connections / 4 + 1) {
		static const struct timeval now = { 0, 0 };

		evconnlistener_disable(h->listener);
		evtimer_add(h->ev_more, &now);
	}
	c = xcalloc(1, sizeof(*c));
	c->h = h;
	if (h->tls != NULL) {
		/* CLOSE_ON_FREE frees the SSL with the bufferevent */
		if ((ssl = SSL_new(h->tls)) == NULL)
			fatalx("SSL_new failed");
		c->bev = bufferevent_openssl_socket_new(
		    base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
		    BEV_OPT_CLOSE_ON_FREE);
	} else /* evhttp closes the socket itself, at once */
		c->bev = bufferevent_socket_new(base, -1, 0);
	if (c->bev == NULL || (c->deadline = evtimer_new(
				   base, httpd_conn_deadline_cb, c)) == NULL)
		fatalx("bufferevent_socket_new failed");
	c->fresh = true;
	c->doomed = !room;
	if (c->doomed)
		h->st.evicted++;
	TAILQ_INSERT_TAIL(&h->fresh, c, entry);
	event_active(h->ev_bind, EV_TIMEOUT, 0);
	h->st.connections++;
	h->st.accepted++;
	httpd_conn_arm(c, h->limits.request_ms);
	return c->bev;
}

/* The connection a request came on, or NULL. */
static struct httpd_conn *
httpd_conn_of(struct httpd *h, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev;
	struct httpd_conn *c;

	if (evcon == NULL ||
	    (bev = evhttp_connection_get_bufferevent(evcon)) == NULL)
		return NULL;
	TAILQ_FOREACH(c, &h->conns, entry)
	if (c->bev == bev)
		return c;
	return NULL;
}

/* The answer is written: the connection waits for its next request,
 * with a fresh deadline, at the end of the line. */
static void
httpd_answered_cb(struct evhttp_request *req, void *arg)
{
	struct httpd_conn *c = arg;
	struct httpd *h = c->h;

	(void)req;
	c->answering = false;
	TAILQ_REMOVE(&h->conns, c, entry);
	TAILQ_INSERT_TAIL(&h->conns, c, entry);
	httpd_conn_arm(c, h->limits.request_ms);
}

static const struct {
	int method;
	const char *name;
} httpd_methods[] = {
	{ HTTPD_GET, "GET" },
	{ HTTPD_HEAD, "HEAD" },
	{ HTTPD_POST, "POST" },
};

/* 405 with the Allow header the route's methods make. */
static void
httpd_reply_badmethod(struct evhttp_request *req, int methods)
{
	char allow[64] = "";
	size_t off = 0;

	for (size_t i = 0; i < nitems(httpd_methods); i++)
		if (methods & httpd_methods[i].method)
			off += (size_t)snprintf(
			    allow + off, sizeof(allow) - off, "%s%s",
			    off > 0 ? ", " : "", httpd_methods[i].name);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
			  allow);
	httpd_reply_text(req, HTTP_BADMETHOD, NULL);
}

/* evhttp's one callback: every complete request, whatever its path. */
static void
httpd_request_cb(struct evhttp_request *req, void *arg)
{
	struct httpd *h = arg;
	struct httpd_conn *c = httpd_conn_of(h, req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	const struct httpd_route *r = NULL;

	if (c != NULL) {
		c->answering = true;
		httpd_conn_arm(c, h->limits.answer_ms);
		evhttp_request_set_on_complete_cb(req, httpd_answered_cb, c);
	}
	for (size_t i = 0; i < h->nroutes && r == NULL; i++)
		if (h->routes[i].path != NULL && path != NULL &&
		    strcmp(h->routes[i].path, path) == 0)
			r = &h->routes[i];
	for (size_t i = 0; i < h->nroutes && r == NULL; i++)
		if (h->routes[i].path == NULL)
			r = &h->routes[i];
	if (r == NULL) {
		httpd_reply_text(req, HTTP_NOTFOUND, NULL);
		return;
	}
	if (!(evhttp_request_get_command(req) & r->methods)) {
		httpd_reply_badmethod(req, r->methods);
		return;
	}
	r->cb(req, r->arg);
}

/* Accepting failed (EMFILE, ENFILE, ENOBUFS…): pause it, so that the
 * listener does not fire again at once, and say so within the rate.
 * libevent passes the evhttp as the argument; the listener finds us. */
static void
httpd_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv;
	struct httpd *h;

	(void)arg;
	LIST_FOREACH(h, &httpd_all, all)
	if (h->listener == lev)
		break;
	if (h == NULL)
		return;
	evconnlistener_disable(lev);
	h->paused = true;
	h->pause_ms = h->pause_ms == 0 ? HTTPD_PAUSE_FIRST_MS
		      : h->pause_ms * 2 > HTTPD_PAUSE_MAX_MS
			  ? HTTPD_PAUSE_MAX_MS
			  : h->pause_ms * 2;
	h->st.accept_paused++;
	tv =
	    (struct timeval){ h->pause_ms / 1000, (h->pause_ms % 1000) * 1000 };
	evtimer_add(h->ev_resume, &tv);
	log_rate_warnx(&h->rate,
		       "%s: cannot accept a connection on %s: %s; "
		       "accepting again in %lld s",
		       h->name, h->address, strerror(err),
		       (long long)(h->pause_ms / 1000));
}

static void
httpd_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct httpd *h = arg;

	(void)fd;
	(void)what;
	h->paused = false;
	if (h->listener != NULL)
		evconnlistener_enable(h->listener);
}

static void
httpd_more_cb(evutil_socket_t fd, short what, void *arg)
{
	struct httpd *h = arg;

	(void)fd;
	(void)what;
	h->accepted_now = 0;
	if (h->listener != NULL && !h->paused)
		evconnlistener_enable(h->listener);
}

struct httpd *
httpd_new(struct event_base *base, const struct httpd_options *o)
{
	struct httpd *h = xcalloc(1, sizeof(*h));
	const struct httpd_limits *l = &o->limits;
	struct timeval tv;

	h->base = base;
	h->name = xstrdup(o->name != NULL ? o->name : "http");
	h->csp = xstrdup(o->csp != NULL ? o->csp : HTTPD_CSP);
	h->limits.max_connections =
	    l->max_connections ? l->max_connections : HTTPD_MAX_CONNECTIONS;
	h->limits.max_header = l->max_header ? l->max_header : HTTPD_MAX_HEADER;
	h->limits.max_body = l->max_body ? l->max_body : HTTPD_MAX_BODY;
	h->limits.request_ms = l->request_ms ? l->request_ms : HTTPD_REQUEST_MS;
	h->limits.answer_ms = l->answer_ms ? l->answer_ms : HTTPD_ANSWER_MS;
	h->limits.max_per_address = l->max_per_address
					? l->max_per_address
					: h->limits.max_connections / 4 + 1;
	h->st.max_connections = h->limits.max_connections;
	h->rate = (struct log_rate)LOG_RATE_INIT(5, 60000);
	if (o->tls != NULL) {
		SSL_CTX_up_ref(o->tls);
		h->tls = o->tls;
	}
	TAILQ_INIT(&h->conns);
	TAILQ_INIT(&h->fresh);
	if ((h->http = evhttp_new(base)) == NULL ||
	    (h->ev_resume = evtimer_new(base, httpd_resume_cb, h)) == NULL ||
	    (h->ev_bind = event_new(base, -1, 0, httpd_bind_cb, h)) == NULL ||
	    (h->ev_more = evtimer_new(base, httpd_more_cb, h)) == NULL)
		fatalx("evhttp_new failed");
	/* evhttp's own timeout, per byte, stays as a second line behind
	 * ours (it also ends a connection idle for that long). */
	tv = (struct timeval){ h->limits.request_ms / 1000,
			       (h->limits.request_ms % 1000) * 1000 };
	evhttp_set_timeout_tv(h->http, &tv);
	evhttp_set_max_headers_size(h->http, h->limits.max_header);
	evhttp_set_max_body_size(h->http, h->limits.max_body);
	/* Every method reaches httpd_request_cb, which answers 405 (evhttp
	 * would answer 501 to those it is not told about). */
	evhttp_set_allowed_methods(
	    h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
			 EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
			 EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
			 EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_bevcb(h->http, httpd_bev_cb, h);
	evhttp_set_gencb(h->http, httpd_request_cb, h);
	LIST_INSERT_HEAD(&httpd_all, h, all);
	return h;
}

static void
httpd_unbind(struct httpd *h)
{
	if (h->bound != NULL)
		evhttp_del_accept_socket(h->http, h->bound);
	h->bound = NULL;
	h->listener = NULL;
	h->paused = false;
	h->accepted_now = 0;
	evtimer_del(h->ev_resume);
	evtimer_del(h->ev_more);
	free(h->address);
	h->address = NULL;
}

void
httpd_free(struct httpd *h)
{
	if (h == NULL)
		return;
	LIST_REMOVE(h, all);
	httpd_unbind(h);
	/* evhttp_free frees every connection: each closes through
	 * httpd_conn_closed_cb. */
	httpd_bind_fresh(h);
	evhttp_free(h->http);
	event_free(h->ev_resume);
	event_free(h->ev_bind);
	event_free(h->ev_more);
	for (size_t i = 0; i < h->nroutes; i++)
		free(h->routes[i].path);
	free(h->routes);
	if (h->tls != NULL)
		SSL_CTX_free(h->tls);
	free(h->name);
	free(h->csp);
	free(h);
}

/* "IPv4:PORT" or "[IPv6]:PORT" into ss.  evutil_parse_sockaddr_port
 * refuses port 0, which the tests bind (the kernel picks the port). */
static int
httpd_parse_address(const char *address, struct sockaddr_storage *ss, int *len)
{
	size_t n = strlen(address);
	char *any;
	int rv;

	*len = (int)sizeof(*ss);
	if (n < 2 || strcmp(address + n - 2, ":0") != 0)
		return evutil_parse_sockaddr_port(address,
						  (struct sockaddr *)ss, len);
	xasprintf(&any, "%.*s:1", (int)(n - 2), address);
	rv = evutil_parse_sockaddr_port(any, (struct sockaddr *)ss, len);
	free(any);
	if (rv == 0 && ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = 0;
	else if (rv == 0 && ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = 0;
	return rv;
}

/* Bind and listen on address; -1 with errno set. */
static int
httpd_bind(struct httpd *h, const char *address)
{
	struct sockaddr_storage ss;
	struct evconnlistener *l;
	int len;

	if (httpd_parse_address(address, &ss, &len) == -1) {
		errno = EINVAL;
		return -1;
	}
	/* A listener without a callback starts disabled; evhttp sets its
	 * own.  Accepted sockets are SOCK_CLOEXEC with it. */
	l = evconnlistener_new_bind(h->base, NULL, NULL,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
					LEV_OPT_CLOSE_ON_EXEC,
				    HTTPD_BACKLOG, (struct sockaddr *)&ss, len);
	if (l == NULL)
		return -1;
	if ((h->bound = evhttp_bind_listener(h->http, l)) == NULL) {
		evconnlistener_free(l);
		errno = ENOMEM;
		return -1;
	}
	evconnlistener_set_error_cb(l, httpd_accept_error_cb);
	h->listener = l;
	h->address = xstrdup(address);
	return 0;
}

/* What a bind error usually means here, for the one log line. */
static const char *
httpd_hint(int err)
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
httpd_listen(struct httpd *h, const char *address, char **cause)
{
	char *old;
	int err;

	if (address == NULL
		? h->address == NULL
		: h->address != NULL && strcmp(address, h->address) == 0)
		return 0;
	/* Let go of the old address first: the new one may be the same port
	 * on another address, which the old socket would keep taken.  This
	 * runs in one loop callback, so no request falls in the gap. */
	old = h->address != NULL ? xstrdup(h->address) : NULL;
	httpd_unbind(h);
	if (address == NULL || httpd_bind(h, address) == 0) {
		free(old);
		return 0;
	}
	err = errno;
	xasprintf(cause, "cannot listen on %s: %s%s", address, strerror(err),
		  httpd_hint(err));
	if (old != NULL && httpd_bind(h, old) == -1) {
		free(*cause);
		xasprintf(cause,
			  "cannot listen on %s: %s%s; nor again on %s: %s",
			  address, strerror(err), httpd_hint(err), old,
			  strerror(errno));
	}
	free(old);
	return -1;
}

const char *
httpd_address(const struct httpd *h)
{
	return h->address;
}

int
httpd_port(const struct httpd *h)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (h->listener == NULL ||
	    getsockname(evconnlistener_get_fd(h->listener),
			(struct sockaddr *)&ss, &len) == -1)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

void
httpd_route(struct httpd *h, const char *path, int methods,
	    void (*cb)(struct evhttp_request *, void *), void *arg)
{
	h->routes =
	    xreallocarray(h->routes, h->nroutes + 1, sizeof(*h->routes));
	h->routes[h->nroutes++] = (struct httpd_route){
		.path = path != NULL ? xstrdup(path) : NULL,
		.methods = methods,
		.cb = cb,
		.arg = arg,
	};
}

/* The server a request came to. */
static struct httpd *
httpd_of(struct evhttp_request *req)
{
	struct httpd *h;

	LIST_FOREACH(h, &httpd_all, all)
	if (httpd_conn_of(h, req) != NULL)
		return h;
	return NULL;
}

static void
httpd_header_default(struct evkeyvalq *headers, const char *name,
		     const char *value)
{
	if (evhttp_find_header(headers, name) == NULL)
		evhttp_add_header(headers, name, value);
}

void
httpd_reply(struct evhttp_request *req, int code, const char *content_type,
	    const void *body, size_t len)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	struct httpd *h = httpd_of(req);
	struct evbuffer *buf;

	httpd_header_default(headers, "Content-Security-Policy",
			     h != NULL ? h->csp : HTTPD_CSP);
	httpd_header_default(headers, "X-Content-Type-Options", "nosniff");
	httpd_header_default(headers, "Referrer-Policy", "same-origin");
	httpd_header_default(headers, "X-Frame-Options", "DENY");
	if (content_type != NULL) {
		evhttp_remove_header(headers, "Content-Type");
		evhttp_add_header(headers, "Content-Type", content_type);
	}
	/* evhttp writes the headers alone for HEAD, with the body's length */
	if ((buf = evbuffer_new()) == NULL ||
	    (len > 0 && evbuffer_add(buf, body, len) == -1)) {
		if (buf != NULL)
			evbuffer_free(buf);
		evhttp_send_reply(req, HTTP_INTERNAL, NULL, NULL);
		return;
	}
	evhttp_send_reply(req, code, NULL, buf);
	evbuffer_free(buf);
}

/* The reason phrases we answer with (evhttp's own for the rest). */
static const char *
httpd_reason(int code)
{
	static const struct {
		int code;
		const char *reason;
	} reasons[] = {
		{ 200, "OK" },
		{ 400, "Bad Request" },
		{ 401, "Unauthorized" },
		{ 403, "Forbidden" },
		{ 404, "Not Found" },
		{ 405, "Method Not Allowed" },
		{ 413, "Payload Too Large" },
		{ 429, "Too Many Requests" },
		{ 500, "Internal Server Error" },
		{ 503, "Service Unavailable" },
	};

	for (size_t i = 0; i < nitems(reasons); i++)
		if (reasons[i].code == code)
			return reasons[i].reason;
	return "Error";
}

void
httpd_reply_text(struct evhttp_request *req, int code, const char *text)
{
	char *body;
	int n;

	n = xasprintf(&body, "%s\n", text != NULL ? text : httpd_reason(code));
	httpd_reply(req, code, "text/plain; charset=utf-8", body, (size_t)n);
	free(body);
}

const char *
httpd_peer(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	char *address = NULL;
	ev_uint16_t port;

	if (evcon == NULL)
		return "";
	evhttp_connection_get_peer(evcon, &address, &port);
	return address != NULL ? address : "";
}

int
httpd_is_tls(struct evhttp_request *req)
{
	struct httpd *h = httpd_of(req);

	return h != NULL && h->tls != NULL;
}

SSL_CTX *
httpd_tls_new(const char *cert, const char *key, char **cause)
{
	char reason[256] = "";
	const char *file = cert;
	unsigned long e;
	SSL_CTX *ctx;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
		goto fail;
	file = key;
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		goto fail;
	return ctx;
fail:
	if ((e = ERR_peek_last_error()) != 0)
		ERR_error_string_n(e, reason, sizeof(reason));
	ERR_clear_error();
	xasprintf(cause, "%s: %s", file, *reason ? reason : "TLS setup failed");
	SSL_CTX_free(ctx);
	return NULL;
}

void
httpd_stats(const struct httpd *h, struct httpd_stats *ret)
{
	*ret = h->st;
}

void
httpd_stats_all(void (*cb)(const char *, const struct httpd_stats *, void *),
		void *arg)
{
	struct httpd *h;

	LIST_FOREACH(h, &httpd_all, all)
	cb(h->name, &h->st, arg);
}

void
httpd_close_all_in_child(void)
{
	struct httpd_conn *c;
	struct httpd *h;
	int fd;

	LIST_FOREACH(h, &httpd_all, all)
	{
		if (h->listener != NULL)
			close(evconnlistener_get_fd(h->listener));
		TAILQ_FOREACH(c, &h->conns, entry)
		if ((fd = bufferevent_getfd(c->bev)) != -1)
			close(fd);
		TAILQ_FOREACH(c, &h->fresh, entry)
		if ((fd = bufferevent_getfd(c->bev)) != -1)
			close(fd);
	}
}

size_t
httpd_fd_budget(size_t reserve)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
		return SIZE_MAX / 2;
	return rl.rlim_cur > reserve ? (size_t)rl.rlim_cur - reserve : 0;
}
