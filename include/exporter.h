/* The /metrics endpoint: a small evhttp server on the daemon's loop. */
#ifndef EXPORTER_H
#define EXPORTER_H

struct event_base;
struct exporter;
struct metrics;

/* Seconds a connection may take to send its request or read the answer,
 * and the largest request head and body taken. */
#define EXPORTER_TIMEOUT_S  10
#define EXPORTER_MAX_HEADER 8192
#define EXPORTER_MAX_BODY   1024

/* Serve the registry at /metrics (GET and HEAD; other paths 404, other
 * methods 405).  collect, when not NULL, is called before each answer is
 * written, to update what is kept lazily. */
struct exporter *exporter_new(struct event_base *, struct metrics *,
			      void (*collect)(void *), void *arg);
void exporter_free(struct exporter *);

/* Listen on address, a numeric "IPv4:PORT" or "[IPv6]:PORT" (NULL: stop
 * listening).  The address already served is kept as is.  When address
 * cannot be bound, -1 with *cause, and the previous address (if any) is
 * served again. */
int exporter_listen(struct exporter *, const char *address, char **cause);
/* The address served now, or NULL. */
const char *exporter_address(const struct exporter *);

#endif
