/* The floor for the benchmarks: jansson loads the feed file, nothing more. */
#include <jansson.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	struct rusage ru;
	json_error_t err;
	json_t *root;
	double t0, t1;

	if (argc != 2) {
		fprintf(stderr, "usage: parse_only FEED.json\n");
		return 2;
	}
	t0 = now();
	root = json_load_file(argv[1], 0, &err);
	t1 = now();
	if (root == NULL) {
		fprintf(stderr, "%s:%d:%d: %s\n", argv[1], err.line, err.column,
			err.text);
		return 1;
	}
	getrusage(RUSAGE_SELF, &ru);
	/* No json_decref: exiting is the cheapest way out, and the floor. */
	printf("{\"seconds\": %.4f, \"maxrss_kb\": %ld}\n", t1 - t0,
	       ru.ru_maxrss);
	return 0;
}
