/* A registry of metrics and their Prometheus text exposition (0.0.4). */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

#define METRICS_MAX_LABELS  8
#define METRICS_VALUE_CHARS 32

/* One labelled value of a family. */
struct metrics_series {
	char **values;     /* one per label name */
	double value;      /* counters and gauges */
	uint64_t *buckets; /* histograms: per bucket, +Inf last; not summed */
	uint64_t count;
	double sum;
};

struct metrics_family {
	char *name, *help;
	enum metrics_type type;
	char **labels;
	size_t nlabels;
	double *bounds; /* histograms: the finite upper bounds */
	size_t nbounds;
	struct metrics_series *series; /* sorted by label values */
	size_t nseries;
};

struct metrics {
	struct metrics_family **families; /* sorted by name */
	size_t nfamilies;
};

static const char *const metrics_type_names[] = {
	[METRICS_COUNTER] = "counter",
	[METRICS_GAUGE] = "gauge",
	[METRICS_HISTOGRAM] = "histogram",
};

struct metrics *
metrics_new(void)
{
	return xcalloc(1, sizeof(struct metrics));
}

static void
metrics_series_clear(const struct metrics_family *f, struct metrics_series *s)
{
	for (size_t i = 0; i < f->nlabels; i++)
		free(s->values[i]);
	free(s->values);
	free(s->buckets);
}

static void
metrics_family_free(struct metrics_family *f)
{
	for (size_t i = 0; i < f->nseries; i++)
		metrics_series_clear(f, &f->series[i]);
	free(f->series);
	for (size_t i = 0; i < f->nlabels; i++)
		free(f->labels[i]);
	free(f->labels);
	free(f->bounds);
	free(f->name);
	free(f->help);
	free(f);
}

void
metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nfamilies; i++)
		metrics_family_free(m->families[i]);
	free(m->families);
	free(m);
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* for a metric, without ':' for a label. */
static bool
metrics_valid_name(const char *s, bool label)
{
	const char *first = label ? "abcdefghijklmnopqrstuvwxyz"
				    "ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
				  : "abcdefghijklmnopqrstuvwxyz"
				    "ABCDEFGHIJKLMNOPQRSTUVWXYZ_:";

	if (s == NULL || *s == '\0' || strchr(first, *s) == NULL)
		return false;
	for (s++; *s != '\0'; s++)
		if (strchr(first, *s) == NULL && (*s < '0' || *s > '9'))
			return false;
	return true;
}

/* Fail at definition: these are programming errors, found by any run. */
static void
metrics_check_def(const struct metrics *m, const struct metrics_def *def,
		  size_t nlabels)
{
	const char *name = def->name;

	if (!metrics_valid_name(name, false) || def->help == NULL)
		fatalx("metrics: bad family name \"%s\"", name ? name : "");
	if (nlabels > METRICS_MAX_LABELS)
		fatalx("metrics: %s: too many labels", name);
	for (size_t i = 0; i < nlabels; i++) {
		const char *l = def->labels[i];

		/* "__" is Prometheus's own; "le" names a histogram bucket. */
		if (!metrics_valid_name(l, true) || strncmp(l, "__", 2) == 0 ||
		    (def->type == METRICS_HISTOGRAM && strcmp(l, "le") == 0))
			fatalx("metrics: %s: bad label name \"%s\"", name, l);
		for (size_t k = 0; k < i; k++)
			if (strcmp(def->labels[k], l) == 0)
				fatalx("metrics: %s: label %s twice", name, l);
	}
	if (def->type == METRICS_HISTOGRAM && def->nbuckets == 0)
		fatalx("metrics: %s: a histogram needs buckets", name);
	for (size_t i = 0; def->type == METRICS_HISTOGRAM && i < def->nbuckets;
	     i++)
		if (!isfinite(def->buckets[i]) ||
		    (i > 0 && def->buckets[i] <= def->buckets[i - 1]))
			fatalx("metrics: %s: buckets must be finite and "
			       "increasing",
			       name);
	for (size_t i = 0; i < m->nfamilies; i++)
		if (strcmp(m->families[i]->name, name) == 0)
			fatalx("metrics: %s defined twice", name);
}

/* Compare a series' label values with values, label by label. */
static int
metrics_series_cmp(const struct metrics_family *f,
		   const struct metrics_series *s, const char *const *values)
{
	int c;

	for (size_t i = 0; i < f->nlabels; i++)
		if ((c = strcmp(s->values[i], values[i])) != 0)
			return c;
	return 0;
}

/* The series of values, made (in its sorted place) when it is new; NULL
 * when values are missing or too long, or the family is full. */
static struct metrics_series *
metrics_series_get(struct metrics_family *f, const char *const *values)
{
	struct metrics_series *s;
	size_t lo = 0, hi = f->nseries, mid;
	int c;

	if (f->nlabels > 0 && values == NULL)
		return NULL;
	for (size_t i = 0; i < f->nlabels; i++)
		if (values[i] == NULL ||
		    strnlen(values[i], METRICS_MAX_VALUE + 1) >
			METRICS_MAX_VALUE)
			return NULL;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((c = metrics_series_cmp(f, &f->series[mid], values)) == 0)
			return &f->series[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (f->nseries == METRICS_MAX_SERIES)
		return NULL;
	f->series =
	    xreallocarray(f->series, f->nseries + 1, sizeof(*f->series));
	memmove(&f->series[lo + 1], &f->series[lo],
		(f->nseries - lo) * sizeof(*f->series));
	f->nseries++;
	s = &f->series[lo];
	memset(s, 0, sizeof(*s));
	s->values = xcalloc(f->nlabels + 1, sizeof(*s->values));
	for (size_t i = 0; i < f->nlabels; i++)
		s->values[i] = xstrdup(values[i]);
	if (f->type == METRICS_HISTOGRAM)
		s->buckets = xcalloc(f->nbounds + 1, sizeof(*s->buckets));
	return s;
}

struct metrics_family *
metrics_define(struct metrics *m, const struct metrics_def *def)
{
	struct metrics_family *f;
	size_t nlabels = 0, at;

	while (def->labels != NULL && def->labels[nlabels] != NULL)
		nlabels++;
	metrics_check_def(m, def, nlabels);
	f = xcalloc(1, sizeof(*f));
	f->name = xstrdup(def->name);
	f->help = xstrdup(def->help);
	f->type = def->type;
	f->nlabels = nlabels;
	f->labels = xcalloc(nlabels + 1, sizeof(*f->labels));
	for (size_t i = 0; i < nlabels; i++)
		f->labels[i] = xstrdup(def->labels[i]);
	if (f->type == METRICS_HISTOGRAM) {
		f->nbounds = def->nbuckets;
		f->bounds = xreallocarray(NULL, f->nbounds, sizeof(double));
		memcpy(f->bounds, def->buckets, f->nbounds * sizeof(double));
	}
	for (at = 0;
	     at < m->nfamilies && strcmp(m->families[at]->name, f->name) < 0;
	     at++)
		;
	m->families =
	    xreallocarray(m->families, m->nfamilies + 1, sizeof(*m->families));
	memmove(&m->families[at + 1], &m->families[at],
		(m->nfamilies - at) * sizeof(*m->families));
	m->families[at] = f;
	m->nfamilies++;
	if (nlabels == 0)
		metrics_series_get(f, NULL);
	return f;
}

int
metrics_inc(struct metrics_family *f, const char *const *values, double by)
{
	struct metrics_series *s;

	if (f->type == METRICS_HISTOGRAM || isnan(by) ||
	    (f->type == METRICS_COUNTER && by < 0))
		return -1;
	if ((s = metrics_series_get(f, values)) == NULL)
		return -1;
	s->value += by;
	return 0;
}

int
metrics_set(struct metrics_family *f, const char *const *values, double v)
{
	struct metrics_series *s;

	if (f->type != METRICS_GAUGE)
		return -1;
	if ((s = metrics_series_get(f, values)) == NULL)
		return -1;
	s->value = v;
	return 0;
}

int
metrics_observe(struct metrics_family *f, const char *const *values, double v)
{
	struct metrics_series *s;
	size_t i;

	if (f->type != METRICS_HISTOGRAM || isnan(v))
		return -1;
	if ((s = metrics_series_get(f, values)) == NULL)
		return -1;
	/* A bucket counts the observations less than or equal to its bound. */
	for (i = 0; i < f->nbounds && v > f->bounds[i]; i++)
		;
	s->buckets[i]++;
	s->count++;
	s->sum += v;
	return 0;
}

void
metrics_format_value(double v, char *buf, size_t len)
{
	if (isnan(v)) {
		snprintf(buf, len, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(buf, len, "%s", v > 0 ? "+Inf" : "-Inf");
		return;
	}
	/* Whole numbers (counts, timestamps, bucket bounds) in plain digits,
	 * where %g would write 10 as 1e+01. */
	if (v == trunc(v) && fabs(v) < 1e15) {
		snprintf(buf, len, "%.0f", v);
		return;
	}
	/* Else the shortest precision that reads back exactly: 0.1 stays 0.1.
	 * 17 always does. */
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

/* A HELP text (label is false) or a label value (true), escaped as the
 * format wants: backslash and newline, and for labels the double quote. */
static void
metrics_write_escaped(FILE *f, const char *s, bool label)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else if (*s == '"' && label)
			fputs("\\\"", f);
		else
			fputc(*s, f);
	}
}

/* name{a="x",b="y"} (with le="bound" for a bucket), then the value. */
static void
metrics_write_sample(FILE *f, const struct metrics_family *fam,
		     const struct metrics_series *s, const char *suffix,
		     const char *le, const char *value)
{
	fprintf(f, "%s%s", fam->name, suffix);
	if (fam->nlabels > 0 || le != NULL) {
		fputc('{', f);
		for (size_t i = 0; i < fam->nlabels; i++) {
			fprintf(f, "%s%s=\"", i > 0 ? "," : "", fam->labels[i]);
			metrics_write_escaped(f, s->values[i], true);
			fputc('"', f);
		}
		if (le != NULL)
			fprintf(f, "%sle=\"%s\"", fam->nlabels > 0 ? "," : "",
				le);
		fputc('}', f);
	}
	fprintf(f, " %s\n", value);
}

static void
metrics_write_histogram(FILE *f, const struct metrics_family *fam,
			const struct metrics_series *s)
{
	char le[METRICS_VALUE_CHARS], v[METRICS_VALUE_CHARS];
	uint64_t cumulative = 0;

	for (size_t i = 0; i <= fam->nbounds; i++) {
		cumulative += s->buckets[i];
		if (i < fam->nbounds)
			metrics_format_value(fam->bounds[i], le, sizeof(le));
		else
			snprintf(le, sizeof(le), "+Inf");
		snprintf(v, sizeof(v), "%" PRIu64, cumulative);
		metrics_write_sample(f, fam, s, "_bucket", le, v);
	}
	metrics_format_value(s->sum, v, sizeof(v));
	metrics_write_sample(f, fam, s, "_sum", NULL, v);
	snprintf(v, sizeof(v), "%" PRIu64, s->count);
	metrics_write_sample(f, fam, s, "_count", NULL, v);
}

int
metrics_write(const struct metrics *m, FILE *f)
{
	char v[METRICS_VALUE_CHARS];

	for (size_t i = 0; i < m->nfamilies; i++) {
		const struct metrics_family *fam = m->families[i];

		if (fam->nseries == 0)
			continue;
		fprintf(f, "# HELP %s ", fam->name);
		metrics_write_escaped(f, fam->help, false);
		fprintf(f, "\n# TYPE %s %s\n", fam->name,
			metrics_type_names[fam->type]);
		for (size_t k = 0; k < fam->nseries; k++) {
			if (fam->type == METRICS_HISTOGRAM) {
				metrics_write_histogram(f, fam,
							&fam->series[k]);
				continue;
			}
			metrics_format_value(fam->series[k].value, v,
					     sizeof(v));
			metrics_write_sample(f, fam, &fam->series[k], "", NULL,
					     v);
		}
	}
	return ferror(f) ? -1 : 0;
}
