/* Unit tests of the ledger: schema, migrations, rows, iterators, the lock. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ledger.h"
#include "tap.h"
#include "util.h"

/* The schema version this build migrates to. */
#define LATEST 4

#define NOBODY 65534

static char *tmpdir;
/* Paths stay reachable from here, so forked children leak nothing. */
static char *paths[32];
static size_t npaths;

static const char *
tmp_path(const char *name)
{
	if (npaths == nitems(paths))
		abort();
	xasprintf(&paths[npaths], "%s/%s", tmpdir, name);
	return paths[npaths++];
}

static int
rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Run SQL on a database behind the ledger's back. */
static int
raw_exec(const char *path, const char *sql)
{
	sqlite3 *db;
	int rc;

	if (sqlite3_open(path, &db) != SQLITE_OK) {
		sqlite3_close(db);
		return -1;
	}
	rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

/* The first column of the first row as text ("" for none), read-only. */
static char *
raw_text(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st = NULL;
	char *ret = NULL;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) ==
		SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		ret = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ret != NULL ? ret : xstrdup("");
}

static long long
raw_int(const char *path, const char *sql)
{
	char *s = raw_text(path, sql);
	long long v = strtoll(s, NULL, 10);

	free(s);
	return v;
}

/* A small file's content ("" when unreadable). */
static char *
read_small(const char *path)
{
	char buf[512];
	ssize_t n = -1;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) != -1) {
		n = read(fd, buf, sizeof buf - 1);
		close(fd);
	}
	buf[n > 0 ? n : 0] = '\0';
	return xstrdup(buf);
}

/* What an iterator delivered, one line per row. */
struct collect {
	char buf[8192];
	size_t len;
	int calls;
	int stop_at; /* stop (return stop_at + 100) at this call, 0: never */
};

__attribute__((format(printf, 2, 3))) static int
collect_add(struct collect *c, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(c->buf + c->len, sizeof c->buf - c->len, fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof c->buf - c->len)
		c->len += (size_t)n;
	c->calls++;
	return c->calls == c->stop_at ? c->stop_at + 100 : 0;
}

static int
course_cb(const struct ledger_course *c, void *arg)
{
	return collect_add(arg, "%s=%" PRId64 ";", c->shortname, c->moodle_id);
}

/* Iterate again from inside an iterator's callback. */
struct nested {
	struct ledger *l;
	struct collect inner;
	int outer, got;
};

static int
nested_cb(const struct ledger_course *c, void *arg)
{
	struct nested *n = arg;
	struct ledger_course copy;

	n->outer++;
	if (ledger_course_foreach(n->l, course_cb, &n->inner) != 0)
		return -1;
	if (ledger_course_get(n->l, c->shortname, &copy) == 0) {
		n->got += strcmp(copy.shortname, c->shortname) == 0;
		ledger_course_clear(&copy);
	}
	return 0;
}

static int
enrol_cb(const struct ledger_enrol *e, void *arg)
{
	return collect_add(arg, "%s|%s|%d|%d\n", e->course, e->username,
			   e->roleid, e->status);
}

static int
user_cb(const char *username, int64_t id, void *arg)
{
	return collect_add(arg, "%s=%" PRId64 ";", username, id);
}

static int
missing_cb(const struct ledger_missing *m, void *arg)
{
	return collect_add(arg, "%s|%s|%d|%" PRId64 "\n", m->username,
			   m->course, m->roleid, m->first_seen);
}

static int
error_cb(const struct ledger_error *e, void *arg)
{
	return collect_add(arg, "%" PRId64 "|%s|%s|%s|%s\n", e->run_id, e->kind,
			   e->item ? e->item : "-", e->code ? e->code : "-",
			   e->message ? e->message : "-");
}

static struct ledger *
open_rw(const char *path)
{
	struct ledger *l = NULL;
	char *cause = NULL;

	if (ledger_open(path, false, &l, &cause) != 0) {
		printf("# cannot open %s: %s\n", path, cause);
		free(cause);
		exit(1);
	}
	return l;
}

static void
put_course(struct ledger *l, const char *shortname, int64_t moodle_id)
{
	struct ledger_course c = { .shortname = (char *)shortname,
				   .moodle_id = moodle_id,
				   .fullname = (char *)shortname,
				   .status = LEDGER_COURSE_ACTIVE };

	if (ledger_course_put(l, &c) != 0) {
		printf("# cannot put course %s: %s\n", shortname,
		       ledger_errmsg(l));
		exit(1);
	}
}

static void
test_create(void)
{
	struct ledger *l = NULL;
	const char *path = tmp_path("new.db");
	char *cause = NULL, *s;
	struct stat sb;

	ok(ledger_open(path, false, &l, &cause) == 0, "a new ledger opens");
	is_int(ledger_schema_version(l), LATEST,
	       "new ledger at the latest version");
	is_int(raw_int(path, "PRAGMA user_version"), LATEST,
	       "user_version is set");
	s = raw_text(path, "PRAGMA journal_mode");
	is_str(s, "wal", "the ledger is in WAL mode");
	free(s);
	ok(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0640,
	   "the ledger file is 0640");
	ledger_free(l);

	l = NULL;
	ok(ledger_open(path, false, &l, &cause) == 0 &&
	       ledger_schema_version(l) == LATEST,
	   "reopening a current ledger works");
	ledger_free(l);
	ledger_free(NULL);
}

static void
test_bad_files(void)
{
	const char *junk = tmp_path("junk.db"), *nodir = tmp_path("no/l.db");
	struct ledger *l = NULL;
	char *cause = NULL, *want;
	FILE *f;

	if ((f = fopen(junk, "w")) != NULL) {
		fputs("this is not an sqlite database, not even close\n", f);
		fclose(f);
	}
	ok(ledger_open(junk, false, &l, &cause) == -1 && l == NULL,
	   "a file that is not a database is refused");
	xasprintf(&want, "cannot read ledger %s: file is not a database", junk);
	is_str(cause, want, "with sqlite's reason");
	free(cause);
	free(want);
	cause = NULL;
	ok(ledger_open(junk, true, &l, &cause) == -1, "read-only too");
	free(cause);
	cause = NULL;

	ok(ledger_open(nodir, false, &l, &cause) == -1 && l == NULL,
	   "a ledger in a missing directory is refused");
	xasprintf(&want, "cannot open ledger %s: No such file or directory",
		  nodir);
	is_str(cause, want, "with the errno text");
	free(cause);
	free(want);
}

static void
test_migrate(void)
{
	struct ledger *l = NULL;
	const char *path = tmp_path("v0.db");
	char *cause = NULL, *s;

	ok(raw_exec(path, "CREATE TABLE keepme (x TEXT);"
			  "INSERT INTO keepme VALUES ('data');"
			  "PRAGMA user_version = 0") == 0,
	   "a version-0 database made by hand");
	ok(ledger_open(path, false, &l, &cause) == 0,
	   "a version-0 ledger opens");
	is_int(ledger_schema_version(l), LATEST,
	       "migrated to the latest version");
	ok(ledger_meta_set(l, "k", "v") == 0, "the new tables work");
	ledger_free(l);
	is_int(raw_int(path, "PRAGMA user_version"), LATEST,
	       "user_version stored");
	s = raw_text(path, "SELECT x FROM keepme");
	is_str(s, "data", "migration keeps the data already there");
	free(s);

	/* A step that fails part-way must leave nothing behind. */
	path = tmp_path("clash.db");
	raw_exec(path, "CREATE TABLE meta (k TEXT); INSERT INTO meta "
		       "VALUES ('old')");
	l = NULL;
	ok(ledger_open(path, false, &l, &cause) == -1 && l == NULL,
	   "a migration that fails refuses to open");
	ok(cause != NULL && strstr(cause, "cannot upgrade ledger") &&
	       strstr(cause, "schema version 1"),
	   "the cause names the upgrade: %s", cause);
	free(cause);
	cause = NULL;
	is_int(raw_int(path, "PRAGMA user_version"), 0,
	       "a failed migration keeps the old version");
	is_int(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE "
			     "name = 'courses'"),
	       0, "a failed migration is rolled back whole");
	s = raw_text(path, "SELECT k FROM meta");
	is_str(s, "old", "a failed migration keeps the data");
	free(s);
}

static void
test_newer(void)
{
	struct ledger *l = NULL;
	const char *path = tmp_path("v99.db");
	char *cause = NULL, *s;

	raw_exec(path, "CREATE TABLE future (x); PRAGMA user_version = 99");
	ok(ledger_open(path, false, &l, &cause) == -1 && l == NULL,
	   "a newer ledger is refused");
	ok(cause != NULL && strstr(cause, "schema version 99, newer") &&
	       strstr(cause, path),
	   "the cause says so: %s", cause);
	free(cause);
	cause = NULL;
	ok(ledger_open(path, true, &l, &cause) == -1 && cause != NULL &&
	       strstr(cause, "newer"),
	   "a newer ledger is refused read-only too");
	free(cause);
	is_int(raw_int(path, "PRAGMA user_version"), 99,
	       "a newer ledger keeps its version");
	s = raw_text(path, "PRAGMA journal_mode");
	is_str(s, "delete", "and its journal mode");
	free(s);
}

static void
test_readonly(void)
{
	struct ledger *l = NULL, *ro = NULL;
	const char *path = tmp_path("ro.db");
	char *cause = NULL, *want, *v = NULL;
	struct stat sb;

	xasprintf(&want, "no ledger at %s yet (no run has happened)", path);
	ok(ledger_open(path, true, &ro, &cause) == -1 && ro == NULL,
	   "read-only open of a missing ledger fails");
	is_str(cause, want, "with a clear cause");
	ok(stat(path, &sb) == -1 && errno == ENOENT,
	   "read-only open creates nothing");
	free(cause);
	free(want);
	cause = NULL;

	raw_exec(path, "CREATE TABLE keepme (x)");
	ok(ledger_open(path, true, &ro, &cause) == -1 && ro == NULL,
	   "read-only open of an old ledger fails");
	ok(cause != NULL && strstr(cause, "schema version 0, older"),
	   "the cause says so: %s", cause);
	free(cause);
	cause = NULL;
	is_int(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE "
			     "name = 'courses'"),
	       0, "read-only open does not migrate");
	unlink(path);

	l = open_rw(path);
	ledger_meta_set(l, "feed_etag", "\"abc\"");
	ok(ledger_open(path, true, &ro, &cause) == 0,
	   "read-only open while a writer has it open");
	ok(ledger_meta_get(ro, "feed_etag", &v) == 0, "reader reads");
	is_str(v, "\"abc\"", "reader sees committed data");
	free(v);
	ok(ledger_meta_set(ro, "x", "y") == -1, "a reader cannot write");
	ok(strstr(ledger_errmsg(ro), "readonly") != NULL, "errmsg says: %s",
	   ledger_errmsg(ro));
	ledger_free(ro);
	ledger_free(l);

	ro = NULL;
	v = NULL;
	ok(ledger_open(path, true, &ro, &cause) == 0 &&
	       ledger_meta_get(ro, "feed_etag", &v) == 0 && v != NULL,
	   "read-only open after the writer closed");
	free(v);
	ledger_free(ro);
}

static void
test_courses(void)
{
	struct ledger *l;
	const char *path = tmp_path("courses.db");
	struct ledger_course c = { .shortname = "MATH101",
				   .moodle_id = 42,
				   .fullname = "Mathematics",
				   .status = LEDGER_COURSE_HIDDEN,
				   .absent_runs = 2,
				   .created = true,
				   .participants = 30,
				   .first_seen = 1000,
				   .last_seen = 2000 };
	struct ledger_course art = { .shortname = "ART",
				     .status = LEDGER_COURSE_PENDING };
	struct ledger_course got = { .shortname = "sentinel" };
	struct collect col = { 0 };
	struct nested nest = { 0 };
	int64_t n;

	l = open_rw(path);
	put_course(l, "PHYS", 7);
	ok(ledger_course_put(l, &art) == 0, "put a course without fullname");
	ok(ledger_course_put(l, &c) == 0, "put a course");
	is_int(ledger_course_foreach(l, course_cb, &col), 0, "foreach ends");
	is_str(col.buf, "ART=0;MATH101=42;PHYS=7;", "courses by shortname");
	ok(ledger_course_count(l, LEDGER_COURSE_ACTIVE, &n) == 0 && n == 1,
	   "one active course");
	ok(ledger_course_count(l, LEDGER_COURSE_PENDING, &n) == 0 && n == 1,
	   "one pending");
	ok(ledger_course_count(l, LEDGER_COURSE_HIDDEN, &n) == 0 && n == 1,
	   "one hidden");
	ok(ledger_course_count(l, LEDGER_COURSE_REJECTED, &n) == 0 && n == 0,
	   "none rejected");

	ok(ledger_course_get(l, "NOPE", &got) == 1, "get a missing course");
	is_str(got.shortname, "sentinel", "a miss leaves ret alone");
	ok(ledger_course_get(l, "MATH101", &got) == 0, "get a course");
	ok(got.moodle_id == 42 && got.status == LEDGER_COURSE_HIDDEN &&
	       got.absent_runs == 2 && got.created && got.participants == 30 &&
	       got.first_seen == 1000 && got.last_seen == 2000,
	   "every field comes back");
	is_str(got.fullname, "Mathematics", "fullname comes back");
	ledger_course_clear(&got);
	ok(got.shortname == NULL && got.fullname == NULL, "clear empties");
	ok(ledger_course_get(l, "ART", &got) == 0 && got.fullname == NULL &&
	       got.status == LEDGER_COURSE_PENDING && !got.created,
	   "a NULL fullname comes back NULL");
	ledger_course_clear(&got);

	ledger_enrol_put(l, "MATH101", "alice", 5, LEDGER_ENROL_ACTIVE);
	c.fullname = "Mathematics I";
	c.absent_runs = 0;
	ok(ledger_course_put(l, &c) == 0, "update a course");
	ok(ledger_course_get(l, "MATH101", &got) == 0 && got.absent_runs == 0,
	   "the update is stored");
	is_str(got.fullname, "Mathematics I", "the new name is stored");
	ledger_course_clear(&got);
	ledger_enrol_count(l, 0, &n);
	is_int(n, 1, "updating a course keeps its enrolments");

	c.status = 99;
	ok(ledger_course_put(l, &c) == -1, "a bad status is refused");

	nest.l = l;
	is_int(ledger_course_foreach(l, nested_cb, &nest), 0,
	       "a callback may iterate the same table again");
	ok(nest.outer == 3 && nest.inner.calls == 9 && nest.got == 3,
	   "outer %d, inner %d, got %d rows", nest.outer, nest.inner.calls,
	   nest.got);

	memset(&col, 0, sizeof col);
	col.stop_at = 2;
	is_int(ledger_course_foreach(l, course_cb, &col), 102,
	       "foreach returns the callback's value");
	is_int(col.calls, 2, "and stops there");

	ok(ledger_course_delete(l, "MATH101") == 0, "delete a course");
	ok(ledger_course_get(l, "MATH101", &got) == 1, "it is gone");
	ledger_enrol_count(l, 0, &n);
	is_int(n, 0, "its enrolments went with it");
	ok(ledger_course_delete(l, "MATH101") == 0, "deleting twice is fine");
	ledger_free(l);
}

struct key {
	const char *course, *username;
	int roleid;
};

/* The order the header promises: strcmp, strcmp, then numeric roleid. */
static int
cmp_key(const void *a, const void *b)
{
	const struct key *x = a, *y = b;
	int c;

	if ((c = strcmp(x->course, y->course)) != 0)
		return c;
	if ((c = strcmp(x->username, y->username)) != 0)
		return c;
	return (x->roleid > y->roleid) - (x->roleid < y->roleid);
}

static void
test_enrolments(void)
{
	/* Byte order traps: case, prefixes, UTF-8, and roleid 10 after 3. */
	static const char *const courses[] = { "b", "B", "a", "a-1",
					       "\xc3\xa9t" };
	static const char *const users[] = { "zoe", "Zoe",          "ab",
					     "abc", "\xc3\xa9mile", "a_b" };
	static const int roles[] = { 10, 3, 5 };
	struct key rows[nitems(courses) * nitems(users) * nitems(roles)];
	static const char first[] = "a-1|Zoe|3|1\na-1|Zoe|5|1\na-1|Zoe|10|1\n";
	const char *path = tmp_path("enrol.db");
	char want[8192];
	struct collect col = { 0 };
	struct ledger *l;
	size_t i, j, k, n = 0, len = 0;
	int64_t count;
	char *kept;
	int fails = 0;

	l = open_rw(path);
	for (i = 0; i < nitems(courses); i++)
		put_course(l, courses[i], (int64_t)i + 1);
	for (j = 0; j < nitems(users); j++) {
		for (k = 0; k < nitems(roles); k++) {
			for (i = 0; i < nitems(courses); i++) {
				fails += ledger_enrol_put(l, courses[i],
							  users[j], roles[k],
							  LEDGER_ENROL_ACTIVE);
			}
		}
	}
	is_int(fails, 0, "put %zu enrolments", nitems(rows));
	for (i = 0; i < nitems(courses); i++)
		for (j = 0; j < nitems(users); j++)
			for (k = 0; k < nitems(roles); k++)
				rows[n++] = (struct key){ courses[i], users[j],
							  roles[k] };
	qsort(rows, n, sizeof *rows, cmp_key);
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(want + len, sizeof want - len,
					"%s|%s|%d|1\n", rows[i].course,
					rows[i].username, rows[i].roleid);
	is_int(ledger_enrol_foreach(l, enrol_cb, &col), 0, "foreach ends");
	is_str(col.buf, want, "enrolments in strcmp order of the key");

	memset(&col, 0, sizeof col);
	ok(ledger_enrol_foreach_course(l, "a-1", enrol_cb, &col) == 0 &&
	       col.calls == 18,
	   "foreach_course gives one course's rows");
	ok(strncmp(col.buf, first, strlen(first)) == 0,
	   "foreach_course is ordered");
	memset(&col, 0, sizeof col);
	col.stop_at = 3;
	is_int(ledger_enrol_foreach(l, enrol_cb, &col), 103,
	       "foreach stops early with the callback's value");
	is_int(col.calls, 3, "after three rows");

	ok(ledger_enrol_count(l, 0, &count) == 0, "count");
	is_int(count, 30, "count is per (course, user), not per role");
	ok(ledger_enrol_set_status(l, "b", "zoe", LEDGER_ENROL_SUSPENDED) == 0,
	   "suspend");
	ledger_enrol_count(l, LEDGER_ENROL_SUSPENDED, &count);
	is_int(count, 1, "one suspended enrolment");
	ledger_enrol_count(l, LEDGER_ENROL_ACTIVE, &count);
	is_int(count, 29, "the others active");

	/* Counts kept at a run's end are read until the enrolments change. */
	ok(ledger_enrol_count_keep(l) == 0, "keep the counts");
	ledger_meta_get(l, "enrol_counts", &kept);
	is_str(kept, "29 1", "kept as ACTIVE SUSPENDED");
	free(kept);
	ledger_meta_set(l, "enrol_counts", "7 3");
	ledger_enrol_count(l, 0, &count);
	is_int(count, 10, "kept counts are read, not counted");
	ledger_enrol_count(l, LEDGER_ENROL_SUSPENDED, &count);
	is_int(count, 3, "kept suspended count read");
	ledger_enrol_set_status(l, "b", "zoe", LEDGER_ENROL_SUSPENDED);
	ledger_enrol_count(l, LEDGER_ENROL_ACTIVE, &count);
	is_int(count, 29, "a status change drops them");
	ok(ledger_enrol_count_keep(l) == 0 && ledger_begin(l) == 0 &&
	       ledger_enrol_delete(l, "b", "nobody", -1) == 0,
	   "a delete in a transaction");
	ledger_rollback(l);
	ledger_meta_get(l, "enrol_counts", &kept);
	is_str(kept, "29 1", "a rollback keeps them");
	free(kept);
	ledger_meta_set(l, "enrol_counts", "7 3");
	ok(ledger_begin(l) == 0 &&
	       ledger_enrol_put(l, "b", "zoe", 3, LEDGER_ENROL_SUSPENDED) ==
		   0 &&
	       ledger_commit(l) == 0,
	   "a put in a transaction after a rollback");
	ledger_enrol_count(l, LEDGER_ENROL_ACTIVE, &count);
	is_int(count, 29, "a put drops them, after a rollback too");
	ledger_meta_set(l, "enrol_counts", "7 3");
	ledger_enrol_delete(l, "b", "nobody", -1);
	ledger_enrol_count(l, LEDGER_ENROL_ACTIVE, &count);
	is_int(count, 29, "a delete drops them");
	ledger_meta_set(l, "enrol_counts", "7 3");
	ledger_course_delete(l, "no-such-course");
	ledger_enrol_count(l, LEDGER_ENROL_ACTIVE, &count);
	is_int(count, 29, "a course's delete drops them");
	memset(&col, 0, sizeof col);
	ledger_enrol_foreach_course(l, "b", enrol_cb, &col);
	ok(strstr(col.buf, "b|zoe|3|2\nb|zoe|5|2\nb|zoe|10|2\n") != NULL,
	   "suspension covers every role");

	ok(ledger_enrol_put(l, "b", "zoe", 4, LEDGER_ENROL_ACTIVE) == 0,
	   "a new active role for the suspended user");
	ledger_enrol_count(l, LEDGER_ENROL_SUSPENDED, &count);
	is_int(count, 0, "re-enrolling reactivates every role, as Moodle does");

	ok(ledger_enrol_delete(l, "b", "zoe", 4) == 0, "delete one role");
	memset(&col, 0, sizeof col);
	ledger_enrol_foreach_course(l, "b", enrol_cb, &col);
	ok(strstr(col.buf, "b|zoe|4|") == NULL &&
	       strstr(col.buf, "b|zoe|3|1") != NULL,
	   "only that role went");
	ok(ledger_enrol_delete(l, "b", "zoe", -1) == 0, "delete all roles");
	memset(&col, 0, sizeof col);
	ledger_enrol_foreach_course(l, "b", enrol_cb, &col);
	ok(strstr(col.buf, "b|zoe|") == NULL && col.calls == 15,
	   "roleid < 0 removed every role of the user, nothing else");
	ledger_enrol_count(l, 0, &count);
	is_int(count, 29, "count after delete");

	ok(ledger_enrol_put(l, "nosuch", "zoe", 5, LEDGER_ENROL_ACTIVE) == -1,
	   "an enrolment in a course not in the ledger is refused");
	ok(ledger_enrol_put(l, "b", "zoe", 5, 7) == -1,
	   "a bad status is refused");
	ledger_free(l);
}

static void
test_users(void)
{
	const char *path = tmp_path("users.db");
	struct collect col = { 0 };
	struct ledger *l;
	int64_t id = -5;

	l = open_rw(path);
	ok(ledger_user_get(l, "alice", &id) == 1 && id == -5,
	   "unknown user: 1, ret untouched");
	ok(ledger_user_put(l, "bob", 2) == 0 &&
	       ledger_user_put(l, "alice", 1) == 0 &&
	       ledger_user_put(l, "carol", 3) == 0,
	   "put users");
	ok(ledger_user_put(l, "alice", 11) == 0, "put again updates");
	ok(ledger_user_get(l, "alice", &id) == 0, "get a user");
	is_int(id, 11, "the id");
	ledger_user_foreach(l, user_cb, &col);
	is_str(col.buf, "alice=11;bob=2;carol=3;", "users by name");
	ok(ledger_user_delete(l, "bob") == 0, "delete a user");
	memset(&col, 0, sizeof col);
	col.stop_at = 1;
	is_int(ledger_user_foreach(l, user_cb, &col), 101, "early stop");
	memset(&col, 0, sizeof col);
	ledger_user_foreach(l, user_cb, &col);
	is_str(col.buf, "alice=11;carol=3;", "bob is gone");
	ledger_free(l);
}

static void
test_missing(void)
{
	const char *path = tmp_path("missing.db");
	struct collect col = { 0 };
	struct ledger *l;
	int64_t n;

	l = open_rw(path);
	ok(ledger_missing_put(l, "u2", "C1", 5, 100, NULL) == 0 &&
	       ledger_missing_put(l, "u1", "C2", 5, 100, NULL) == 0 &&
	       ledger_missing_put(l, "u1", "C1", 5, 100, NULL) == 0 &&
	       ledger_missing_put(l, "u1", "C1", 3, 100, NULL) == 0,
	   "put missing users");
	ledger_missing_foreach(l, missing_cb, &col);
	is_str(col.buf, "u1|C1|3|100\nu1|C1|5|100\nu1|C2|5|100\nu2|C1|5|100\n",
	       "ordered by username, course, roleid");
	ok(ledger_missing_count_users(l, &n) == 0, "count users");
	is_int(n, 2, "distinct usernames");

	/* The next full run: u1 still missing in C1 as 5, u3 new. */
	ok(ledger_missing_unmark_all(l) == 0, "unmark all");
	ok(ledger_missing_put(l, "u1", "C1", 5, 200, NULL) == 0 &&
	       ledger_missing_put(l, "u3", "C1", 5, 200, NULL) == 0,
	   "mark the still missing");
	ok(ledger_missing_sweep(l) == 0, "sweep");
	memset(&col, 0, sizeof col);
	ledger_missing_foreach(l, missing_cb, &col);
	is_str(col.buf, "u1|C1|5|100\nu3|C1|5|200\n",
	       "sweep drops the unmarked, first_seen is kept");
	ok(ledger_missing_delete(l, "u3", "C1", 5) == 0, "delete one");
	ledger_missing_count_users(l, &n);
	is_int(n, 1, "one missing user left");
	memset(&col, 0, sizeof col);
	col.stop_at = 1;
	is_int(ledger_missing_foreach(l, missing_cb, &col), 101, "early stop");
	ledger_free(l);
}

static void
test_runs(void)
{
	const char *path = tmp_path("runs.db");
	struct ledger_run *runs = NULL, r = { 0 };
	struct collect col = { 0 };
	struct ledger *l;
	int64_t id1, id2, id3, last = 0;
	size_t n = 99;
	int i, fails = 0;

	l = open_rw(path);
	ok(ledger_run_start(l, 1000, &id1) == 0 &&
	       ledger_run_start(l, 2000, &id2) == 0 && id2 > id1,
	   "start two runs");
	ok(ledger_runs_recent(l, 10, &runs, &n) == 0 && n == 2, "recent runs");
	ok(n == 2 && runs[0].id == id2 && runs[1].id == id1,
	   "most recent first");
	ok(n == 2 && runs[0].started == 2000 && runs[0].ended == 0 &&
	       strcmp(runs[0].outcome, "running") == 0 &&
	       runs[0].message == NULL,
	   "a started run is running");
	ledger_runs_free(runs, n);

	r = (struct ledger_run){ .id = id1,
				 .started = 1000,
				 .ended = 1500,
				 .outcome = "ok",
				 .message = "all good",
				 .courses_created = 1,
				 .courses_adopted = 2,
				 .courses_renamed = 3,
				 .courses_hidden = 4,
				 .courses_pending = 5,
				 .enrolled = 6,
				 .role_changes = 7,
				 .suspended = 8,
				 .unenrolled = 9,
				 .missing_users = 10,
				 .errors = 11,
				 .removals_withheld = 12 };
	ok(ledger_run_finish(l, &r) == 0, "finish a run");
	r = (struct ledger_run){
		.id = id2, .started = 2000, .ended = 2600, .outcome = "partial"
	};
	ok(ledger_run_finish(l, &r) == 0, "finish another");
	r.id = 999;
	ok(ledger_run_finish(l, &r) == -1, "finishing an unknown run fails");
	is_str(ledger_errmsg(l), "no such run", "and says why");

	ok(ledger_runs_recent(l, 1, &runs, &n) == 0 && n == 1 &&
	       runs[0].id == id2 && strcmp(runs[0].outcome, "partial") == 0,
	   "max limits the list");
	ledger_runs_free(runs, n);
	ok(ledger_runs_recent(l, 5, &runs, &n) == 0 && n == 2, "both runs");
	ok(n == 2 && runs[1].ended == 1500 &&
	       strcmp(runs[1].message, "all good") == 0 &&
	       runs[1].courses_created == 1 && runs[1].courses_adopted == 2 &&
	       runs[1].courses_renamed == 3 && runs[1].courses_hidden == 4 &&
	       runs[1].courses_pending == 5 && runs[1].enrolled == 6 &&
	       runs[1].role_changes == 7 && runs[1].suspended == 8 &&
	       runs[1].unenrolled == 9 && runs[1].missing_users == 10 &&
	       runs[1].errors == 11 && runs[1].removals_withheld == 12,
	   "every counter comes back");
	ledger_runs_free(runs, n);
	ok(ledger_runs_recent(l, 0, &runs, &n) == 0 && n == 0, "max 0");
	ledger_runs_free(runs, n);

	ok(ledger_error_add(l, id1, "enrol", "C1/u1", "wsnoinstance",
			    "no "
			    "manual enrolment instance") == 0 &&
	       ledger_error_add(l, id1, "course", "C2", "shortnametaken",
				"taken") == 0 &&
	       ledger_error_add(l, id2, "user", "u9", NULL, NULL) == 0,
	   "add errors");
	ok(ledger_error_add(l, 4242, "feed", "x", "y", "z") == -1,
	   "an error for an unknown run is refused");
	ledger_error_foreach(l, 0, error_cb, &col);
	is_str(col.buf, "2|user|u9|-|-\n", "run 0: the last run with errors");
	memset(&col, 0, sizeof col);
	ledger_error_foreach(l, id1, error_cb, &col);
	is_str(col.buf,
	       "1|enrol|C1/u1|wsnoinstance|no manual enrolment instance\n"
	       "1|course|C2|shortnametaken|taken\n",
	       "a run's errors in the order added");
	ledger_run_start(l, 3000, &id3);
	memset(&col, 0, sizeof col);
	ledger_error_foreach(l, 0, error_cb, &col);
	is_str(col.buf, "2|user|u9|-|-\n",
	       "a later run without errors does not hide them");
	memset(&col, 0, sizeof col);
	col.stop_at = 1;
	is_int(ledger_error_foreach(l, id1, error_cb, &col), 101, "early stop");

	/* Old runs and their errors are pruned as new ones start. */
	ledger_begin(l);
	for (i = 0; i < 1000; i++)
		fails += ledger_run_start(l, 4000 + i, &last);
	ok(fails == 0 && ledger_commit(l) == 0, "start 1000 more runs");
	ok(ledger_runs_recent(l, 5000, &runs, &n) == 0 && n == 1000 &&
	       runs[0].id == last && runs[999].id == last - 999,
	   "the last 1000 runs are kept");
	ledger_runs_free(runs, n);
	memset(&col, 0, sizeof col);
	ledger_error_foreach(l, id1, error_cb, &col);
	is_int(col.calls, 0, "the errors of pruned runs are gone");
	ledger_free(l);
}

static void
test_meta(void)
{
	const char *path = tmp_path("meta.db");
	char *v = (char *)"junk";
	struct ledger *l;

	l = open_rw(path);
	ok(ledger_meta_get(l, "feed_etag", &v) == 0 && v == NULL,
	   "an unset key is NULL");
	ok(ledger_meta_set(l, "feed_etag", "W/\"1\"") == 0, "set");
	ok(ledger_meta_get(l, "feed_etag", &v) == 0, "get");
	is_str(v, "W/\"1\"", "the value");
	free(v);
	ok(ledger_meta_set(l, "feed_etag", "W/\"2\"") == 0, "overwrite");
	ledger_meta_get(l, "feed_etag", &v);
	is_str(v, "W/\"2\"", "the new value");
	free(v);
	ok(ledger_meta_set(l, "feed_etag", NULL) == 0, "a NULL value deletes");
	ok(ledger_meta_get(l, "feed_etag", &v) == 0 && v == NULL,
	   "the key is gone");
	ok(ledger_meta_set(l, "feed_etag", NULL) == 0,
	   "deleting an unset key is fine");
	ledger_free(l);
}

static void
test_transactions(void)
{
	const char *path = tmp_path("txn.db");
	struct ledger *l, *other;
	int64_t id;

	l = open_rw(path);
	other = open_rw(path);
	ok(ledger_begin(l) == 0, "begin");
	ok(ledger_begin(l) == -1, "a nested begin is refused");
	is_str(ledger_errmsg(l), "a transaction is already open",
	       "and says why");
	ok(ledger_user_put(l, "alice", 1) == 0, "put inside the transaction");
	ok(ledger_user_get(l, "alice", &id) == 0, "visible inside");
	ok(ledger_user_get(other, "alice", &id) == 1,
	   "invisible to another connection");
	ledger_rollback(l);
	ok(ledger_user_get(l, "alice", &id) == 1, "rollback discards");
	ledger_rollback(l);
	ok(ledger_commit(l) == -1, "commit without begin is refused");

	ok(ledger_begin(l) == 0 &&
	       ledger_enrol_put(l, "nosuch", "u", 5, 1) == -1,
	   "a failing write in a batch");
	ledger_rollback(l);
	is_str(ledger_errmsg(l), "FOREIGN KEY constraint failed",
	       "errmsg names it after the rollback");

	ok(ledger_begin(l) == 0 && ledger_user_put(l, "bob", 2) == 0 &&
	       ledger_user_put(l, "carol", 3) == 0,
	   "a batch");
	ok(ledger_commit(l) == 0, "commit");
	ok(ledger_user_get(other, "carol", &id) == 0 && id == 3,
	   "committed data is visible to others");
	ok(ledger_user_put(l, "dave", 4) == 0 &&
	       ledger_user_get(other, "dave", &id) == 0,
	   "outside a transaction each call commits at once");
	ok(ledger_begin(l) == 0 && ledger_user_put(l, "eve", 5) == 0,
	   "begin after commit");
	ledger_free(l);
	ok(ledger_user_get(other, "eve", &id) == 1,
	   "freeing with a transaction open rolls it back");
	ledger_free(other);
}

/* A forked child's attempt to take the lock, its cause read back. */
static char *
lock_in_child(int *ret_status, int go_fd, int res_rd, pid_t pid)
{
	char buf[512];
	ssize_t n;
	size_t len = 0;

	bool sent = write(go_fd, "g", 1) == 1;

	close(go_fd);
	while ((n = read(res_rd, buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(res_rd);
	waitpid(pid, ret_status, 0);
	return sent ? xstrdup(buf) : NULL;
}

static void
child_try_lock(const char *path, int go_rd, int res_wr)
{
	struct ledger *l = NULL;
	char *cause = NULL, c;
	int rv = 1;

	if (read(go_rd, &c, 1) == 1 &&
	    ledger_open(path, false, &l, &cause) == 0 &&
	    ledger_lock(l, &cause) == -1) {
		if (write(res_wr, cause, strlen(cause)) > 0)
			rv = 0;
	}
	free(cause);
	ledger_free(l);
	_exit(rv);
}

static void
test_lock(void)
{
	const char *path = tmp_path("lock.db");
	const char *lockpath = tmp_path("lock.db.lock");
	char *cause = NULL, *want, *content, *got;
	struct ledger *l1, *l2;
	int go[2], res[2], status = -1;
	struct stat sb;
	pid_t pid;

	/* Fork before our connection exists: sqlite must not cross a fork. */
	if (pipe(go) == -1 || pipe(res) == -1 || (pid = fork()) == -1) {
		ok(0, "fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		close(go[1]);
		close(res[0]);
		child_try_lock(path, go[0], res[1]);
	}
	close(go[0]);
	close(res[1]);

	l1 = open_rw(path);
	ok(ledger_lock(l1, &cause) == 0, "take the lock");
	ok(ledger_lock(l1, &cause) == 0, "taking it again is a no-op");
	xasprintf(&want, "%ld %s\n", (long)getpid(),
		  program_invocation_short_name);
	content = read_small(lockpath);
	is_str(content, want, "the lock file holds our pid and name");
	free(content);
	free(want);
	ok(stat(lockpath, &sb) == 0 && (sb.st_mode & 0777) == 0600,
	   "the lock file is 0600");

	xasprintf(&want,
		  "ledger %s is locked by pid %ld (%s); another sync is "
		  "running",
		  path, (long)getpid(), program_invocation_short_name);
	got = lock_in_child(&status, go[1], res[0], pid);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "a forked child cannot take the lock");
	is_str(got, want, "its cause names our pid");
	free(got);

	l2 = open_rw(path);
	ok(ledger_lock(l2, &cause) == -1,
	   "a second handle in this process cannot take it");
	is_str(cause, want, "its cause names our pid");
	free(cause);
	cause = NULL;

	ledger_unlock(l1);
	ok(ledger_lock(l2, &cause) == 0, "free after unlock");
	ok(ledger_lock(l1, &cause) == -1, "now held by the other handle");
	free(cause);
	cause = NULL;
	ledger_free(l2);
	ok(ledger_lock(l1, &cause) == 0, "free after ledger_free");
	ledger_free(l1);
	free(want);
}

/* Writes that fail mid-way (the file size limit stands in for a full
 * disk) return -1 and leave what was committed before intact. */
static void
test_chaos_full(void)
{
	const char *path = tmp_path("full.db");
	const char *wal = tmp_path("full.db-wal");
	char *big, *v = NULL, *s, num[32];
	struct rlimit old, lim;
	struct ledger *l;
	struct stat sb;
	off_t limit = 0;
	int64_t n;
	int i, fails = 0;

	l = open_rw(path);
	put_course(l, "C1", 1);
	ledger_enrol_put(l, "C1", "kept", 5, LEDGER_ENROL_ACTIVE);
	ledger_meta_set(l, "before", "kept");
	if (stat(path, &sb) == 0)
		limit = sb.st_size;
	if (stat(wal, &sb) == 0 && sb.st_size > limit)
		limit = sb.st_size;

	getrlimit(RLIMIT_FSIZE, &old);
	lim = old;
	lim.rlim_cur = (rlim_t)limit + 65536;
	signal(SIGXFSZ, SIG_IGN);
	ok(setrlimit(RLIMIT_FSIZE, &lim) == 0, "limit file size to %lld bytes",
	   (long long)lim.rlim_cur);

	big = xmalloc(4 << 20);
	memset(big, 'x', (4 << 20) - 1);
	big[(4 << 20) - 1] = '\0';
	ok(ledger_meta_set(l, "big", big) == -1,
	   "a write past the limit fails");
	ok(strlen(ledger_errmsg(l)) > 0, "errmsg: %s", ledger_errmsg(l));

	ledger_begin(l);
	for (i = 0; i < 50000; i++) {
		snprintf(num, sizeof num, "user%06d-with-a-long-name", i);
		fails += ledger_enrol_put(l, "C1", num, 5,
					  LEDGER_ENROL_ACTIVE) == -1;
	}
	if (fails == 0)
		fails += ledger_commit(l) == -1;
	ledger_rollback(l);
	ok(fails > 0, "a batch past the limit fails");
	ok(strcmp(ledger_errmsg(l), "disk I/O error") == 0 ||
	       strcmp(ledger_errmsg(l), "database or disk is full") == 0,
	   "errmsg still names the failure after the rollback: %s",
	   ledger_errmsg(l));

	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, SIG_DFL);
	ok(ledger_meta_get(l, "before", &v) == 0, "read after the failures");
	is_str(v, "kept", "committed data is intact");
	free(v);
	ok(ledger_meta_get(l, "big", &v) == 0 && v == NULL,
	   "the failed write left nothing");
	ok(ledger_enrol_count(l, 0, &n) == 0, "count enrolments");
	is_int(n, 1, "the failed batch left nothing");
	ok(ledger_meta_set(l, "after", "ok") == 0,
	   "writes work again once there is room");
	ledger_free(l);

	s = raw_text(path, "PRAGMA integrity_check");
	is_str(s, "ok", "the database is sound");
	free(s);
	l = open_rw(path);
	ok(ledger_meta_get(l, "before", &v) == 0 && v != NULL &&
	       strcmp(v, "kept") == 0,
	   "committed data survives a reopen");
	free(v);
	ledger_free(l);
	free(big);
}

/* In a child, as an unprivileged user when we are root (root ignores file
 * modes): make the ledger read-only, then open it both ways. */
static void
child_readonly(const char *dir, const char *path, int res_wr)
{
	struct ledger *l = NULL;
	char *cause = NULL, *v = NULL;
	struct dirent *de;
	DIR *d;
	int rw;

	if (geteuid() == 0) {
		if (chmod(tmpdir, 0711) == -1 || chown(dir, NOBODY, NOBODY) ||
		    (d = opendir(dir)) == NULL)
			_exit(2);
		while ((de = readdir(d)) != NULL) {
			char *p;

			xasprintf(&p, "%s/%s", dir, de->d_name);
			if (chown(p, NOBODY, NOBODY) == -1)
				_exit(2);
			free(p);
		}
		closedir(d);
		if (setgid(NOBODY) == -1 || setuid(NOBODY) == -1)
			_exit(2);
	}
	if (chmod(path, 0400) == -1)
		_exit(2);
	rw = ledger_open(path, false, &l, &cause);
	dprintf(res_wr, "%d\n%s\n", rw, cause ? cause : "-");
	ledger_free(l);
	l = NULL;
	free(cause);
	cause = NULL;
	if (ledger_open(path, true, &l, &cause) == 0 &&
	    ledger_meta_get(l, "before", &v) == 0)
		dprintf(res_wr, "%s\n", v ? v : "-");
	else
		dprintf(res_wr, "%s\n", cause ? cause : ledger_errmsg(l));
	free(v);
	free(cause);
	ledger_free(l);
	_exit(0);
}

static void
test_chaos_readonly(void)
{
	const char *dir = tmp_path("ro"), *path = tmp_path("ro/ledger.db");
	char *want;
	char buf[1024];
	struct ledger *l;
	int res[2], status = -1;
	size_t len = 0;
	ssize_t n;
	pid_t pid;

	mkdir(dir, 0700);
	l = open_rw(path);
	ledger_meta_set(l, "before", "kept");
	ledger_free(l);

	if (pipe(res) == -1 || (pid = fork()) == -1) {
		ok(0, "fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		close(res[0]);
		child_readonly(dir, path, res[1]);
	}
	close(res[1]);
	while ((n = read(res[0], buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(res[0]);
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "child ran (status %d)", status);
	xasprintf(&want, "-1\ncannot open ledger %s: Permission denied\nkept\n",
		  path);
	is_str(buf, want,
	       "a read-only ledger is refused for writing, still readable");
	free(want);
}

int
main(void)
{
	const char *base = getenv("TMPDIR");

	umask(022);
	xasprintf(&tmpdir, "%s/test_ledger.XXXXXX",
		  base != NULL && *base != '\0' ? base : "/tmp");
	if (mkdtemp(tmpdir) == NULL) {
		printf("# mkdtemp %s: %s\n", tmpdir, strerror(errno));
		return 1;
	}
	test_create();
	test_bad_files();
	test_migrate();
	test_newer();
	test_readonly();
	test_courses();
	test_enrolments();
	test_users();
	test_missing();
	test_runs();
	test_meta();
	test_transactions();
	test_lock();
	test_chaos_full();
	test_chaos_readonly();
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	while (npaths > 0)
		free(paths[--npaths]);
	free(tmpdir);
	return done_testing();
}
