/* Chaos for the ledger: fail sqlite's Nth allocation during a batch, for
 * every N, and check the batch is all or nothing and the database sound. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger.h"
#include "tap.h"
#include "util.h"

#define BATCH 60

static sqlite3_mem_methods real_mem;
static long chaos_at = -1, chaos_count;

static int
chaos_due(void)
{
	return chaos_at >= 0 && ++chaos_count == chaos_at;
}

static void *
chaos_malloc(int n)
{
	return chaos_due() ? NULL : real_mem.xMalloc(n);
}

static void *
chaos_realloc(void *p, int n)
{
	return chaos_due() ? NULL : real_mem.xRealloc(p, n);
}

static int
count_cb(const struct ledger_enrol *e, void *arg)
{
	(void)e;
	(*(int *)arg)++;
	return 0;
}

static int
count_course(struct ledger *l, const char *course)
{
	int n = 0;

	if (ledger_enrol_foreach_course(l, course, count_cb, &n) == -1)
		return -1;
	return n;
}

/* One batch as apply writes it: a course, its enrolments, users, meta. */
static int
write_batch(struct ledger *l)
{
	struct ledger_course c = { .shortname = "CHAOS",
				   .fullname = "Chaos",
				   .moodle_id = 99,
				   .created = true };
	char user[32];

	if (ledger_begin(l) == -1)
		return -1;
	if (ledger_course_put(l, &c) == -1)
		goto fail;
	for (int i = 0; i < BATCH; i++) {
		snprintf(user, sizeof(user), "chaos%03d", i);
		if (ledger_user_put(l, user, 1000 + i) == -1 ||
		    ledger_enrol_put(l, "CHAOS", user, 5,
				     LEDGER_ENROL_ACTIVE) == -1)
			goto fail;
	}
	if (ledger_meta_set(l, "inflight_enrol", NULL) == -1)
		goto fail;
	return ledger_commit(l);
fail:
	ledger_rollback(l);
	return -1;
}

static int
integrity_ok(const char *path)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int ok = 0;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		goto out;
	if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) ==
	    SQLITE_OK) {
		ok =
		    sqlite3_step(st) == SQLITE_ROW &&
		    strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
		sqlite3_finalize(st);
	}
out:
	sqlite3_close(db);
	return ok;
}

int
main(void)
{
	sqlite3_mem_methods chaos;
	char dir[] = "/tmp/webcoursed-chaos-XXXXXX", *path = NULL, *cause;
	struct ledger_course base = { .shortname = "BASE",
				      .fullname = "Base",
				      .moodle_id = 7 };
	struct ledger *l;
	int failures = 0, partial = 0, broken = 0, lost = 0, n;
	long at;

	sqlite3_config(SQLITE_CONFIG_GETMALLOC, &real_mem);
	chaos = real_mem;
	chaos.xMalloc = chaos_malloc;
	chaos.xRealloc = chaos_realloc;
	sqlite3_config(SQLITE_CONFIG_MALLOC, &chaos);

	if (mkdtemp(dir) == NULL)
		return 1;
	xasprintf(&path, "%s/ledger.db", dir);
	ok(ledger_open(path, false, &l, &cause) == 0, "open a fresh ledger");
	ok(ledger_course_put(l, &base) == 0 &&
	       ledger_enrol_put(l, "BASE", "keeper", 5, LEDGER_ENROL_ACTIVE) ==
		   0,
	   "committed baseline");
	ledger_free(l);

	for (at = 1;; at++) {
		cause = NULL;
		if (ledger_open(path, false, &l, &cause) == -1) {
			free(cause);
			break;
		}
		chaos_count = 0;
		chaos_at = at;
		n = write_batch(l);
		chaos_at = -1;
		if (n == -1)
			failures++;
		n = count_course(l, "CHAOS");
		if (n != 0 && n != BATCH)
			partial++;
		if (count_course(l, "BASE") != 1)
			lost++;
		/* Undo a batch that went through, for the next N. */
		if (n == BATCH && ledger_course_delete(l, "CHAOS") == -1)
			lost++;
		ledger_free(l);
		if (!integrity_ok(path))
			broken++;
		if (chaos_count < at)
			break; /* the batch needed fewer allocations: done */
	}
	printf("# %ld allocation points, %d batches failed\n", at, failures);
	ok(failures > 10, "the chaos hit many batches (%d)", failures);
	is_int(partial, 0, "no batch was half-written");
	is_int(lost, 0, "committed data survived every failure");
	is_int(broken, 0, "integrity_check passed after every failure");

	unlink(path);
	for (const char *suffix = "-wal"; suffix != NULL;
	     suffix = strcmp(suffix, "-wal") == 0   ? "-shm"
		      : strcmp(suffix, "-shm") == 0 ? ".lock"
						    : NULL) {
		char *f;

		xasprintf(&f, "%s%s", path, suffix);
		unlink(f);
		free(f);
	}
	rmdir(dir);
	free(path);
	return done_testing();
}
