/* The /metrics endpoint, served by an httpd on the daemon's loop. */
#ifndef EXPORTER_H
#define EXPORTER_H

struct exporter;
struct httpd;
struct metrics;

/* Serve the registry at /metrics on httpd (GET and HEAD; other paths 404,
 * other methods 405).  collect, when not NULL, is called before each
 * answer is written, to update what is kept lazily.  The connection
 * counters of every httpd server of the process are published as
 * webcoursed_http_* with the server's name as label. */
struct exporter *exporter_new(struct httpd *, struct metrics *,
			      void (*collect)(void *), void *arg);
void exporter_free(struct exporter *);

#endif
