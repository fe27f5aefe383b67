/* A registry of metrics and their Prometheus text exposition (0.0.4). */
#ifndef METRICS_H
#define METRICS_H

#include <stddef.h>
#include <stdio.h>

struct metrics;
struct metrics_family;

/* The Content-Type of metrics_write()'s output. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Series per family at most: a label fed something unexpected cannot grow
 * the registry without bound. */
#define METRICS_MAX_SERIES 1000
/* Longest label value accepted, in bytes. */
#define METRICS_MAX_VALUE 256

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

/* One family: a name with its help text, type and label names.  Names
 * follow the Prometheus conventions (base units, _total for counters);
 * metrics_define() refuses what the exposition format cannot carry. */
struct metrics_def {
	const char *name;
	enum metrics_type type;
	const char *const *labels; /* NULL-terminated names, or NULL */
	const double *buckets;     /* histograms: increasing upper bounds */
	size_t nbuckets;           /* (+Inf is always added) */
	const char *help;
};

struct metrics *metrics_new(void);
void metrics_free(struct metrics *);

/* Add a family.  A bad name, label, bucket list or a name defined twice is
 * a programming error: fatalx().  A family without labels has its one
 * series (at 0) at once; a labelled one shows a series once it is used. */
struct metrics_family *metrics_define(struct metrics *,
				      const struct metrics_def *);

/* values holds one value per label name, in the order of the definition
 * (NULL for a family without labels).  Each returns 0, or -1 when refused:
 * the wrong type, a counter going down, NaN, a missing or overlong value,
 * or a family already at METRICS_MAX_SERIES. */
int metrics_inc(struct metrics_family *, const char *const *values,
		double by); /* counters and gauges */
int metrics_set(struct metrics_family *, const char *const *values,
		double v); /* gauges */
int metrics_observe(struct metrics_family *, const char *const *values,
		    double v); /* histograms */

/* The whole registry in the text exposition format: families sorted by
 * name with their HELP and TYPE lines, series sorted by label values.
 * -1 on a write error. */
int metrics_write(const struct metrics *, FILE *);

/* A sample value as the format writes it: the shortest decimal that reads
 * back as v, "+Inf", "-Inf" or "NaN" (buf: at least 32 bytes). */
void metrics_format_value(double v, char *buf, size_t len);

#endif
