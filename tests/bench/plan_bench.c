/* Benchmark: feed_decode + plan_build of a big feed against a filled ledger.
 *
 *   plan_bench fill FEED DB   a fresh ledger as if FEED had been applied
 *   plan_bench plan FEED DB   time reading, decoding and planning FEED
 *   plan_bench digest FEED    time the SHA-256 that spots an unchanged body
 *
 * Each mode prints one JSON line; peak RSS comes from getrusage, so fill
 * and plan run as separate processes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "config.h"
#include "feed.h"
#include "ledger.h"
#include "plan.h"
#include "util.h"

static struct config_role bench_roles[] = {
	{ "student", 5 },
	{ "teacher", 3 },
	{ "professor", 3 },
};

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long
maxrss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static void
bench_config(struct config *c)
{
	memset(c, 0, sizeof *c);
	c->roles = bench_roles;
	c->nroles = nitems(bench_roles);
	c->sync_default_role = "student";
	c->sync_new_courses = NEW_COURSES_CREATE;
	c->sync_update_names = true;
	c->sync_on_removed_participant = REMOVED_PARTICIPANT_SUSPEND;
	c->sync_on_removed_course = REMOVED_COURSE_HIDE;
	c->sync_idnumber_prefix = "";
	c->sync_category_id = 1;
	c->sync_course_visible = true;
	c->source_max_size = (int64_t)1 << 32;
}

static char *
slurp(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long size;

	if (f == NULL || fseek(f, 0, SEEK_END) == -1 || (size = ftell(f)) < 0) {
		perror(path);
		exit(1);
	}
	rewind(f);
	buf = xmalloc((size_t)size + 1);
	if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
		perror(path);
		exit(1);
	}
	fclose(f);
	buf[size] = '\0';
	*ret_len = (size_t)size;
	return buf;
}

static struct feed *
decode(const struct config *cfg, const char *body, size_t len)
{
	struct feed *f;
	char *cause;

	if (feed_decode(cfg, body, len, &f, &cause) == -1) {
		fprintf(stderr, "feed_decode: %s\n", cause);
		exit(1);
	}
	return f;
}

static struct ledger *
open_ledger(const char *path)
{
	struct ledger *l;
	char *cause;

	if (ledger_open(path, false, &l, &cause) == -1) {
		fprintf(stderr, "ledger_open: %s\n", cause);
		exit(1);
	}
	return l;
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Everything in FEED is in Moodle; one user in 200 is known to be missing. */
static int
bench_fill(const char *feedpath, const char *db)
{
	struct config cfg;
	struct ledger *l;
	struct ledger_course lc;
	struct feed *f;
	const char **users;
	char *body;
	size_t len, i, j, n = 0, total = 0;
	double t0 = now();
	int rc = 0;

	bench_config(&cfg);
	body = slurp(feedpath, &len);
	f = decode(&cfg, body, len);
	l = open_ledger(db);
	for (i = 0; i < f->ncourses; i++)
		total += f->courses[i].nparticipants;
	users = xreallocarray(NULL, total, sizeof *users);
	ledger_begin(l);
	for (i = 0; i < f->ncourses; i++) {
		memset(&lc, 0, sizeof lc);
		lc.shortname = f->courses[i].shortname;
		lc.fullname = f->courses[i].fullname;
		lc.moodle_id = (int64_t)i + 1;
		lc.status = LEDGER_COURSE_ACTIVE;
		lc.created = true;
		lc.participants = (int)f->courses[i].nparticipants;
		rc |= ledger_course_put(l, &lc);
		for (j = 0; j < f->courses[i].nparticipants; j++) {
			rc |= ledger_enrol_put(
			    l, f->courses[i].shortname,
			    f->courses[i].participants[j].username,
			    f->courses[i].participants[j].roleid,
			    LEDGER_ENROL_ACTIVE);
			users[n++] = f->courses[i].participants[j].username;
		}
	}
	qsort(users, n, sizeof *users, str_cmp);
	for (i = 0, j = 0; i < n; i++) {
		if (i > 0 && strcmp(users[i], users[i - 1]) == 0)
			continue;
		rc |= ledger_user_put(l, users[i],
				      j % 200 == 0 ? 0 : 10 + (int64_t)j);
		j++;
	}
	if (rc != 0 || ledger_commit(l) == -1) {
		fprintf(stderr, "filling the ledger: %s\n", ledger_errmsg(l));
		return 1;
	}
	printf("{\"courses\": %zu, \"enrolments\": %zu, \"users\": %zu, "
	       "\"seconds\": %.2f}\n",
	       f->ncourses, total, j, now() - t0);
	free(users);
	feed_free(f);
	free(body);
	ledger_free(l);
	return 0;
}

static int
bench_plan(const char *feedpath, const char *db)
{
	struct config cfg;
	struct ledger *l;
	struct feed *f;
	struct plan *p;
	char *body, *cause;
	size_t len;
	double t0, t1, t2, t3;

	bench_config(&cfg);
	l = open_ledger(db);
	t0 = now();
	body = slurp(feedpath, &len);
	t1 = now();
	f = decode(&cfg, body, len);
	t2 = now();
	if (plan_build(&cfg, f, l, &p, &cause) == -1) {
		fprintf(stderr, "plan_build: %s\n", cause);
		return 1;
	}
	t3 = now();
	printf("{\"read\": %.4f, \"decode\": %.4f, \"plan\": %.4f, "
	       "\"seconds\": %.4f, \"maxrss_kb\": %ld, \"courses\": %zu, "
	       "\"issues\": %zu, \"create\": %zu, \"rename\": %zu, "
	       "\"vanished\": %zu, \"enrol\": %zu, \"role_add\": %zu, "
	       "\"role_remove\": %zu, \"suspend\": %zu, \"lookup\": %zu}\n",
	       t1 - t0, t2 - t1, t3 - t2, t3 - t0, maxrss_kb(), f->ncourses,
	       f->nissues, p->ncreate, p->nrename, p->nvanished, p->nenrol,
	       p->nrole_add, p->nrole_remove, p->nsuspend, p->nlookup);
	plan_free(p);
	feed_free(f);
	free(body);
	ledger_free(l);
	return 0;
}

static int
bench_digest(const char *feedpath)
{
	char *body, out[65];
	size_t len;
	double t0, t1, t2;

	body = slurp(feedpath, &len);
	t0 = now();
	feed_digest(body, len, out);
	t1 = now();
	feed_digest_generic(body, len, out);
	t2 = now();
	printf(
	    "{\"seconds\": %.4f, \"generic_seconds\": %.4f, \"bytes\": %zu}\n",
	    t1 - t0, t2 - t1, len);
	free(body);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "fill") == 0)
		return bench_fill(argv[2], argv[3]);
	if (argc == 4 && strcmp(argv[1], "plan") == 0)
		return bench_plan(argv[2], argv[3]);
	if (argc == 3 && strcmp(argv[1], "digest") == 0)
		return bench_digest(argv[2]);
	fprintf(stderr, "usage: plan_bench fill|plan FEED DB | digest FEED\n");
	return 2;
}
