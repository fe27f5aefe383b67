/* The metrics registry: types, labels, sorting, escaping, histogram
 * buckets and the exposition text, compared byte for byte. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "tap.h"
#include "util.h"

/* The registry's exposition as a string (free it). */
static char *
render(const struct metrics *m)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ok(f != NULL && metrics_write(m, f) == 0, "metrics_write succeeds");
	fclose(f);
	return buf;
}

static void
test_format_value(void)
{
	static const struct {
		double v;
		const char *want;
	} cases[] = {
		{ 0, "0" },
		{ 1, "1" },
		{ -3, "-3" },
		{ 0.1, "0.1" },
		{ 2.5, "2.5" },
		{ 0.000123, "0.000123" },
		{ 1764154882, "1764154882" },
		{ 1764154882.25, "1764154882.25" },
		{ 123456789012, "123456789012" },
		{ 1e21, "1e+21" },
	};
	char buf[32];

	for (size_t i = 0; i < nitems(cases); i++) {
		metrics_format_value(cases[i].v, buf, sizeof(buf));
		is_str(buf, cases[i].want, "value %.17g", cases[i].v);
	}
	metrics_format_value(INFINITY, buf, sizeof(buf));
	is_str(buf, "+Inf", "+Inf");
	metrics_format_value(-INFINITY, buf, sizeof(buf));
	is_str(buf, "-Inf", "-Inf");
	metrics_format_value(NAN, buf, sizeof(buf));
	is_str(buf, "NaN", "NaN");
	metrics_format_value(1.0 / 3, buf, sizeof(buf));
	ok(strtod(buf, NULL) == 1.0 / 3, "1/3 reads back exactly (%s)", buf);
}

static void
test_counter_and_gauge(void)
{
	static const char *const outcome[] = { "outcome", NULL };
	struct metrics *m = metrics_new();
	struct metrics_family *c, *g, *l;
	char *out;

	out = render(m);
	is_str(out, "", "an empty registry writes nothing");
	free(out);

	/* Defined out of order: written sorted by name. */
	g = metrics_define(m, &(struct metrics_def){ "b_temperature_celsius",
						     METRICS_GAUGE, NULL, NULL,
						     0, "A gauge." });
	c = metrics_define(m, &(struct metrics_def){ "a_things_total",
						     METRICS_COUNTER, NULL,
						     NULL, 0, "A counter." });
	l = metrics_define(m, &(struct metrics_def){ "c_runs_total",
						     METRICS_COUNTER, outcome,
						     NULL, 0, "Labelled." });
	out = render(m);
	is_str(out,
	       "# HELP a_things_total A counter.\n"
	       "# TYPE a_things_total counter\n"
	       "a_things_total 0\n"
	       "# HELP b_temperature_celsius A gauge.\n"
	       "# TYPE b_temperature_celsius gauge\n"
	       "b_temperature_celsius 0\n",
	       "unlabelled families start at 0; a labelled one without "
	       "series is left out");
	free(out);

	is_int(metrics_inc(c, NULL, 1), 0, "a counter goes up by 1");
	is_int(metrics_inc(c, NULL, 2.5), 0, "and by 2.5");
	is_int(metrics_inc(c, NULL, -1), -1, "never down");
	is_int(metrics_inc(c, NULL, NAN), -1, "nor by NaN");
	is_int(metrics_set(c, NULL, 0), -1, "a counter cannot be set");
	is_int(metrics_observe(c, NULL, 1), -1, "nor observed");
	is_int(metrics_set(g, NULL, -12.5), 0, "a gauge is set");
	is_int(metrics_inc(g, NULL, -0.5), 0, "and goes down");
	is_int(metrics_inc(l, NULL, 1), -1, "a labelled family needs values");
	is_int(metrics_inc(l, (const char *[]){ NULL }, 1), -1, "every value");
	is_int(metrics_inc(l, (const char *[]){ "ok" }, 3), 0,
	       "a labelled counter");
	is_int(metrics_inc(l, (const char *[]){ "failed" }, 1), 0,
	       "another series");
	is_int(metrics_inc(l, (const char *[]){ "cancelled" }, 0), 0,
	       "a series made at 0");
	out = render(m);
	is_str(out,
	       "# HELP a_things_total A counter.\n"
	       "# TYPE a_things_total counter\n"
	       "a_things_total 3.5\n"
	       "# HELP b_temperature_celsius A gauge.\n"
	       "# TYPE b_temperature_celsius gauge\n"
	       "b_temperature_celsius -13\n"
	       "# HELP c_runs_total Labelled.\n"
	       "# TYPE c_runs_total counter\n"
	       "c_runs_total{outcome=\"cancelled\"} 0\n"
	       "c_runs_total{outcome=\"failed\"} 1\n"
	       "c_runs_total{outcome=\"ok\"} 3\n",
	       "values and series sorted by label value");
	free(out);
	metrics_free(m);
}

static void
test_escaping_and_sorting(void)
{
	static const char *const two[] = { "function", "outcome", NULL };
	struct metrics *m = metrics_new();
	struct metrics_family *f;
	char *out, *long_value;

	f = metrics_define(m,
			   &(struct metrics_def){
			       "x_calls_total", METRICS_COUNTER, two, NULL, 0,
			       "Back\\slash, \"quotes\" and\na newline." });
	metrics_inc(f, (const char *[]){ "b", "ok" }, 1);
	metrics_inc(f, (const char *[]){ "a", "timeout" }, 1);
	metrics_inc(f, (const char *[]){ "a", "ok" }, 1);
	metrics_inc(f, (const char *[]){ "q\"\\\nz", "ok" }, 1);
	out = render(m);
	is_str(out,
	       "# HELP x_calls_total Back\\\\slash, \"quotes\" and\\na "
	       "newline.\n"
	       "# TYPE x_calls_total counter\n"
	       "x_calls_total{function=\"a\",outcome=\"ok\"} 1\n"
	       "x_calls_total{function=\"a\",outcome=\"timeout\"} 1\n"
	       "x_calls_total{function=\"b\",outcome=\"ok\"} 1\n"
	       "x_calls_total{function=\"q\\\"\\\\\\nz\",outcome=\"ok\"} 1\n",
	       "HELP and label values escaped; series sorted by every "
	       "label");
	free(out);

	long_value = xmalloc(METRICS_MAX_VALUE + 2);
	memset(long_value, 'v', METRICS_MAX_VALUE + 1);
	long_value[METRICS_MAX_VALUE + 1] = '\0';
	is_int(metrics_inc(f, (const char *[]){ long_value, "ok" }, 1), -1,
	       "an overlong label value is refused");
	long_value[METRICS_MAX_VALUE] = '\0';
	is_int(metrics_inc(f, (const char *[]){ long_value, "ok" }, 1), 0,
	       "one of METRICS_MAX_VALUE bytes is taken");
	free(long_value);
	metrics_free(m);
}

static void
test_histogram(void)
{
	static const double buckets[] = { 0.1, 1, 10 };
	static const char *const fn[] = { "function", NULL };
	struct metrics *m = metrics_new();
	struct metrics_family *h, *hl;
	char *out;

	h = metrics_define(m, &(struct metrics_def){
				  "h_seconds", METRICS_HISTOGRAM, NULL, buckets,
				  nitems(buckets), "A histogram." });
	out = render(m);
	is_str(out,
	       "# HELP h_seconds A histogram.\n"
	       "# TYPE h_seconds histogram\n"
	       "h_seconds_bucket{le=\"0.1\"} 0\n"
	       "h_seconds_bucket{le=\"1\"} 0\n"
	       "h_seconds_bucket{le=\"10\"} 0\n"
	       "h_seconds_bucket{le=\"+Inf\"} 0\n"
	       "h_seconds_sum 0\n"
	       "h_seconds_count 0\n",
	       "an empty histogram");
	free(out);
	/* 0.1 is on the first bound: le means "less than or equal". */
	for (double v = 0.05, *p = (double[]){ 0.05, 0.1, 0.5, 5, 100, -1 };
	     v >= 0; v = *++p)
		metrics_observe(h, NULL, v);
	is_int(metrics_observe(h, NULL, NAN), -1, "NaN is not observed");
	is_int(metrics_inc(h, NULL, 1), -1, "a histogram is not incremented");
	out = render(m);
	is_str(out,
	       "# HELP h_seconds A histogram.\n"
	       "# TYPE h_seconds histogram\n"
	       "h_seconds_bucket{le=\"0.1\"} 2\n"
	       "h_seconds_bucket{le=\"1\"} 3\n"
	       "h_seconds_bucket{le=\"10\"} 4\n"
	       "h_seconds_bucket{le=\"+Inf\"} 5\n"
	       "h_seconds_sum 105.65\n"
	       "h_seconds_count 5\n",
	       "buckets are cumulative, +Inf counts everything");
	free(out);

	hl = metrics_define(
	    m, &(struct metrics_def){ "g_seconds", METRICS_HISTOGRAM, fn,
				      buckets, 1, "Labelled." });
	metrics_observe(hl, (const char *[]){ "f" }, 2);
	out = render(m);
	ok(strncmp(out,
		   "# HELP g_seconds Labelled.\n"
		   "# TYPE g_seconds histogram\n"
		   "g_seconds_bucket{function=\"f\",le=\"0.1\"} 0\n"
		   "g_seconds_bucket{function=\"f\",le=\"+Inf\"} 1\n"
		   "g_seconds_sum{function=\"f\"} 2\n"
		   "g_seconds_count{function=\"f\"} 1\n"
		   "# HELP h_seconds",
		   strlen("# HELP g_seconds Labelled.\n"
			  "# TYPE g_seconds histogram\n"
			  "g_seconds_bucket{function=\"f\",le=\"0.1\"} 0\n"
			  "g_seconds_bucket{function=\"f\",le=\"+Inf\"} 1\n"
			  "g_seconds_sum{function=\"f\"} 2\n"
			  "g_seconds_count{function=\"f\"} 1\n"
			  "# HELP h_seconds")) == 0,
	   "le comes after the family's labels");
	free(out);
	metrics_free(m);
}

static void
test_series_cap(void)
{
	static const char *const key[] = { "key", NULL };
	struct metrics *m = metrics_new();
	struct metrics_family *f;
	char value[16];
	int refused = 0;

	f = metrics_define(m, &(struct metrics_def){ "capped", METRICS_GAUGE,
						     key, NULL, 0, "Capped." });
	for (int i = 0; i <= METRICS_MAX_SERIES; i++) {
		snprintf(value, sizeof(value), "%05d", i);
		refused += metrics_set(f, (const char *[]){ value }, i) == -1;
	}
	is_int(refused, 1, "the series past METRICS_MAX_SERIES is refused");
	is_int(metrics_set(f, (const char *[]){ "00000" }, 7), 0,
	       "an existing series still takes values");
	metrics_free(m);
}

int
main(void)
{
	test_format_value();
	test_counter_and_gauge();
	test_escaping_and_sorting();
	test_histogram();
	test_series_cap();
	return done_testing();
}
