/* The daemon's HTTP front: evhttp servers on its loop, hardened. */
#ifndef HTTPD_H
#define HTTPD_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evhttp_request;
struct httpd;
typedef struct ssl_ctx_st SSL_CTX;

/* Defaults of struct httpd_limits (a field left 0 takes its default). */
#define HTTPD_MAX_CONNECTIONS 64   /* open at once, per server */
#define HTTPD_MAX_HEADER      8192 /* request line and headers, bytes */
#define HTTPD_MAX_BODY        1024 /* request body, bytes */
#define HTTPD_REQUEST_MS      10000
#define HTTPD_ANSWER_MS       10000

/* What one server takes from its clients.
 * - max_connections: open at once.  When a new connection would pass it,
 *   of the client address holding the most connections, the one that has
 *   waited longest for its request to complete is closed to make room:
 *   slow clients churn, a quick one gets in.
 * - max_per_address: open at once from one client address (0: a
 *   quarter of max_connections, plus one); past it, that address's
 *   connection waiting longest for its request is closed, so that one
 *   address cannot fill the server.
 * - request_ms: the whole request, from the moment the server is ready
 *   for it (accept, or the end of the previous answer on a kept-alive
 *   connection) until its last body byte; a TLS handshake counts.  Not
 *   per byte: a client trickling one byte a second is cut at request_ms.
 * - answer_ms: from the handler's call until the answer is written out;
 *   a client that does not read its answer is cut then. */
struct httpd_limits {
	size_t max_connections;
	size_t max_per_address;
	size_t max_header;
	size_t max_body;
	int64_t request_ms;
	int64_t answer_ms;
};

struct httpd_options {
	const char *name; /* in log lines: "metrics", "web" */
	struct httpd_limits limits;
	/* TLS for every connection when not NULL (the server takes a
	 * reference: SSL_CTX_up_ref; see httpd_tls_new). */
	SSL_CTX *tls;
	/* Content-Security-Policy of every answer; NULL: HTTPD_CSP. */
	const char *csp;
};

#define HTTPD_CSP "default-src 'none'; frame-ancestors 'none'"

/* Counters of one server, for the metrics and the tests. */
struct httpd_stats {
	size_t connections;     /* open now */
	size_t max_connections; /* the cap in force */
	uint64_t accepted;      /* connections accepted */
	uint64_t evicted;       /* closed to make room under the cap */
	uint64_t expired;       /* closed at request_ms or answer_ms */
	uint64_t accept_paused; /* times accepting paused (EMFILE, ENFILE…) */
};

/* A server on base.  Nothing is listened on until httpd_listen. */
struct httpd *httpd_new(struct event_base *, const struct httpd_options *);
/* Close the listener and every connection, then free.  NULL is fine. */
void httpd_free(struct httpd *);

/* Listen on address, a numeric "IPv4:PORT" or "[IPv6]:PORT" (NULL: stop
 * listening).  The address already served is kept as is.  When address
 * cannot be bound, -1 with *cause ("cannot listen on …: … (hint)"), and
 * the previous address (if any) is served again. */
int httpd_listen(struct httpd *, const char *address, char **cause);
/* The address served now, or NULL. */
const char *httpd_address(const struct httpd *);
/* The port bound now (useful with port 0), or 0. */
int httpd_port(const struct httpd *);

/* Methods, for httpd_route's mask (evhttp's EVHTTP_REQ_* values). */
#define HTTPD_GET  (1 << 0)
#define HTTPD_POST (1 << 1)
#define HTTPD_HEAD (1 << 2)

/* Call cb for requests to path (exact match of the URI's path, no query)
 * whose method is in methods; another method is answered 405 with Allow,
 * an unknown path 404, both by the server.  path NULL: every path not
 * routed otherwise (the handler answers 404 itself when it must).
 * The handler runs in the loop and must answer (httpd_reply*) before it
 * returns, or keep req and answer later within answer_ms. */
void httpd_route(struct httpd *, const char *path, int methods,
		 void (*cb)(struct evhttp_request *, void *), void *arg);

/* Answer req.  Every answer carries Content-Security-Policy (the
 * server's), X-Content-Type-Options: nosniff, Referrer-Policy:
 * same-origin and X-Frame-Options: DENY, plus Content-Type; headers the
 * handler set before (Set-Cookie, Cache-Control, Location…) are kept.
 * HEAD gets the headers without the body.  Never use evhttp_send_error:
 * it drops these headers. */
void httpd_reply(struct evhttp_request *, int code, const char *content_type,
		 const void *body, size_t len);
/* The same with a text/plain body: "text\n" (text NULL: the reason
 * phrase of code). */
void httpd_reply_text(struct evhttp_request *, int code, const char *text);

/* The client's address as text ("127.0.0.1", "::1"), or "" when unknown. */
const char *httpd_peer(struct evhttp_request *);
/* Whether req came over TLS (its server has a tls context). */
int httpd_is_tls(struct evhttp_request *);

/* A server context for cert and key (PEM files), TLS 1.2 and newer;
 * NULL with *cause naming the file and OpenSSL's reason.  The caller owns
 * it (SSL_CTX_free) after handing it to httpd_new. */
SSL_CTX *httpd_tls_new(const char *cert, const char *key, char **cause);

void httpd_stats(const struct httpd *, struct httpd_stats *);
/* cb for every server of this process, with its name: the metrics show
 * each server without being told of it. */
void httpd_stats_all(void (*cb)(const char *name, const struct httpd_stats *,
				void *),
		     void *arg);

/* In a child just forked from the process that runs the servers: close
 * every listening and client socket of every server of this process, and
 * touch nothing else (the child never runs the loop; the parent keeps
 * serving).  Safe to call when no server exists. */
void httpd_close_all_in_child(void);

/* How many connections the servers of this process may hold together:
 * RLIMIT_NOFILE's soft limit less what the daemon keeps for itself
 * (reserve).  The daemon divides it among its servers' max_connections. */
size_t httpd_fd_budget(size_t reserve);

#endif
