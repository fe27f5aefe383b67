/* The /metrics endpoint, served by an httpd on the daemon's loop. */
#ifndef EXPORTER_H
#define EXPORTER_H

struct exporter;
struct httpd;
struct metrics;

/* Serve the registry at /metrics on httpd (GET and HEAD; other paths 404,
 * other methods 405).  collect, when not NULL, is called before each
 * answer is written, to update what is kept lazily. */
struct exporter *exporter_new(struct httpd *, struct metrics *,
			      void (*collect)(void *), void *arg);
void exporter_free(struct exporter *);

/* Publish the connection counters of server (its own httpd is watched
 * from the start) as webcoursed_http_* with a server label. */
void exporter_watch(struct exporter *, struct httpd *server, const char *label);

#endif
