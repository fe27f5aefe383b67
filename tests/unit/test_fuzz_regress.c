/* Replays the fuzz seed corpora and regressions through the fuzz entries. */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../fuzz/fuzz.h"
#include "config.h"
#include "feed.h"
#include "moodle.h"
#include "tap.h"
#include "util.h"

static const char *top;

/* A whole file, or NULL. */
static char *
slurp(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, len = 0, n;

	if (f == NULL)
		return NULL;
	do {
		if (len + 65536 > cap) {
			cap = len + 65536;
			buf = xreallocarray(buf, cap, 1);
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	fclose(f);
	*ret_len = len;
	return buf;
}

/* What the file's name says it must do: 0 decode, -1 fail, 1 either. */
static int
expected(const char *name)
{
	if (strncmp(name, "valid-", 6) == 0 ||
	    strcmp(name, "example.conf") == 0 ||
	    strcmp(name, "seed-feed.json") == 0)
		return 0;
	return strncmp(name, "invalid-", 8) == 0 ? -1 : 1;
}

static void
replay_feed(const char *name, const char *data, size_t len)
{
	struct config cfg;
	struct feed *f = NULL;
	char *cause = NULL;
	const char *why;
	int rc;

	fuzz_feed_config(&cfg);
	rc = feed_decode(&cfg, data, len, &f, &cause);
	why = fuzz_feed_check(rc, f, cause);
	if (!ok(why == NULL, "feed %s: decodes, or fails with a cause", name))
		printf("#   %s\n", why);
	if (expected(name) != 1 &&
	    !ok(rc == expected(name), "feed %s: %s", name,
		expected(name) == 0 ? "decodes" : "is refused"))
		printf("#   cause: %s\n", cause != NULL ? cause : "(none)");
	feed_free(f);
	free(cause);
}

static void
replay_config(const char *name, const char *data, size_t len, const char *path)
{
	struct config *c = NULL;
	char *errors = NULL;
	const char *why;
	int rc;

	fuzz_write_file(path, data, len);
	rc = config_load(path, &c, &errors);
	why = fuzz_config_check(rc, c, errors, path, data, len);
	if (!ok(why == NULL, "config %s: loads, or fails with errors", name))
		printf("#   %s\n", why);
	if (expected(name) != 1 &&
	    !ok(rc == expected(name), "config %s: %s", name,
		expected(name) == 0 ? "loads" : "is refused"))
		printf("#   errors: %s\n", errors != NULL ? errors : "(none)");
	config_free(c);
	free(errors);
}

/* Recorded answers to requests webcoursed does not make as recorded. */
static const char *const foreign_requests[] = {
	"20c_check_enrolled_count", /* asked for fullname, not username */
};

/* A transcript's answer (its name starts with the transcript number) that
 * Moodle meant as a success: HTTP 200 and JSON without an exception. */
static int
recorded_success(const char *name, const struct moodle_reply *r)
{
	json_t *j;
	size_t i;
	int yes;

	if (name[0] < '0' || name[0] > '9' || name[1] < '0' || name[1] > '9' ||
	    r->status != 200)
		return 0;
	for (i = 0; i < nitems(foreign_requests); i++) {
		if (strcmp(name, foreign_requests[i]) == 0)
			return 0;
	}
	if ((j = json_loadb(r->body, r->len, JSON_DECODE_ANY, NULL)) == NULL)
		return 0;
	yes = !json_is_object(j) || json_object_get(j, "exception") == NULL;
	json_decref(j);
	return yes;
}

static void
replay_moodle(const char *name, const char *data, size_t len, struct moodle *m)
{
	struct moodle_error err = { 0 };
	struct moodle_reply r;
	const char *why;
	int rc;

	if (!ok(fuzz_moodle_reply((const uint8_t *)data, len, &r) == 0,
		"moodle %s: has the two bytes of prefix", name))
		return;
	rc = moodle_parse_answer(m, &r, &err);
	why = fuzz_moodle_check(rc, &err, &r);
	if (!ok(why == NULL, "moodle %s: %s decodes or fails classified", name,
		r.function))
		printf("#   %s: %s: %s\n", why,
		       err.errorcode ? err.errorcode : "(null)",
		       err.message ? err.message : "(null)");
	if (recorded_success(name, &r) &&
	    !ok(rc == 0, "moodle %s: recorded success decodes", name))
		printf("#   %s: %s\n", err.errorcode, err.message);
	moodle_error_clear(&err);
}

/* Every file of tests/fuzz/SUB/target through the target's entry. */
static size_t
replay(const char *sub, const char *target, struct moodle *m, const char *path)
{
	char *pattern, *data, *name;
	size_t i, len;
	glob_t g;

	xasprintf(&pattern, "%s/tests/fuzz/%s/%s/*", top, sub, target);
	if (glob(pattern, 0, NULL, &g) != 0)
		g.gl_pathc = 0;
	for (i = 0; i < g.gl_pathc; i++) {
		name = strrchr(g.gl_pathv[i], '/') + 1;
		if ((data = slurp(g.gl_pathv[i], &len)) == NULL) {
			ok(0, "%s/%s/%s: readable", sub, target, name);
			continue;
		}
		if (strcmp(target, "feed") == 0)
			replay_feed(name, data, len);
		else if (strcmp(target, "config") == 0)
			replay_config(name, data, len, path);
		else
			replay_moodle(name, data, len, m);
		free(data);
	}
	globfree(&g);
	free(pattern);
	return i;
}

int
main(void)
{
	static const char *const targets[] = { "feed", "config", "moodle" };
	struct moodle *m;
	char *dir, *path;
	size_t i;

	if ((top = getenv("TOP")) == NULL)
		top = ".";
	path = fuzz_config_dir(&dir);
	m = fuzz_moodle_new();
	for (i = 0; i < nitems(targets); i++) {
		ok(replay("corpus", targets[i], m, path) >= 20,
		   "corpus/%s: seeds replayed", targets[i]);
		replay("regress", targets[i], m, path);
	}
	moodle_free(m);
	fuzz_config_dir_remove(dir, path);
	return done_testing();
}
