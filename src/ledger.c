/* The ledger: what webcoursed applied to Moodle, kept in an sqlite database. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ledger.h"
#include "log.h"
#include "util.h"

#define LEDGER_BUSY_TIMEOUT_MS 5000
/* Runs kept: older runs and their errors go when a new run starts. */
#define LEDGER_RUNS_KEEP 1000

/*
 * Forward migrations: step i takes the schema from version i to i + 1, and
 * the newest version is the number of steps.  Released steps never change;
 * a schema change appends a step.
 */
static const char *const ledger_migrations[] = {
	/* 1: the initial schema. */
	"CREATE TABLE courses ("
	" shortname TEXT NOT NULL PRIMARY KEY,"
	" moodle_id INTEGER NOT NULL DEFAULT 0,"
	" fullname TEXT,"
	" status INTEGER NOT NULL CHECK (status BETWEEN 0 AND 4),"
	" absent_runs INTEGER NOT NULL DEFAULT 0,"
	" created INTEGER NOT NULL DEFAULT 0,"
	" participants INTEGER NOT NULL DEFAULT 0,"
	" first_seen INTEGER NOT NULL DEFAULT 0,"
	" last_seen INTEGER NOT NULL DEFAULT 0"
	") STRICT, WITHOUT ROWID;"
	"CREATE TABLE enrolments ("
	" course TEXT NOT NULL"
	"  REFERENCES courses (shortname) ON DELETE CASCADE,"
	" username TEXT NOT NULL,"
	" roleid INTEGER NOT NULL,"
	" status INTEGER NOT NULL CHECK (status IN (1, 2)),"
	" PRIMARY KEY (course, username, roleid)"
	") STRICT, WITHOUT ROWID;"
	/* Moodle keeps one status per user enrolment, whatever the roles.
	 * The WHEN test halves the cost of a put that changes nothing. */
	"CREATE TRIGGER enrolments_status_insert AFTER INSERT ON enrolments"
	" WHEN EXISTS (SELECT 1 FROM enrolments WHERE course = NEW.course"
	"  AND username = NEW.username AND status <> NEW.status)"
	" BEGIN UPDATE enrolments SET status = NEW.status"
	"  WHERE course = NEW.course AND username = NEW.username"
	"  AND status <> NEW.status; END;"
	"CREATE TRIGGER enrolments_status_update"
	" AFTER UPDATE OF status ON enrolments"
	" WHEN EXISTS (SELECT 1 FROM enrolments WHERE course = NEW.course"
	"  AND username = NEW.username AND status <> NEW.status)"
	" BEGIN UPDATE enrolments SET status = NEW.status"
	"  WHERE course = NEW.course AND username = NEW.username"
	"  AND status <> NEW.status; END;"
	"CREATE TABLE users ("
	" username TEXT NOT NULL PRIMARY KEY,"
	" moodle_id INTEGER NOT NULL"
	") STRICT, WITHOUT ROWID;"
	"CREATE TABLE missing ("
	" username TEXT NOT NULL,"
	" course TEXT NOT NULL,"
	" roleid INTEGER NOT NULL,"
	" first_seen INTEGER NOT NULL,"
	" mark INTEGER NOT NULL DEFAULT 1,"
	" PRIMARY KEY (username, course, roleid)"
	") STRICT, WITHOUT ROWID;"
	"CREATE TABLE runs ("
	" id INTEGER PRIMARY KEY,"
	" started INTEGER NOT NULL,"
	" ended INTEGER NOT NULL DEFAULT 0,"
	" outcome TEXT NOT NULL,"
	" message TEXT,"
	" courses_created INTEGER NOT NULL DEFAULT 0,"
	" courses_adopted INTEGER NOT NULL DEFAULT 0,"
	" courses_renamed INTEGER NOT NULL DEFAULT 0,"
	" courses_hidden INTEGER NOT NULL DEFAULT 0,"
	" courses_pending INTEGER NOT NULL DEFAULT 0,"
	" enrolled INTEGER NOT NULL DEFAULT 0,"
	" role_changes INTEGER NOT NULL DEFAULT 0,"
	" suspended INTEGER NOT NULL DEFAULT 0,"
	" unenrolled INTEGER NOT NULL DEFAULT 0,"
	" missing_users INTEGER NOT NULL DEFAULT 0,"
	" errors INTEGER NOT NULL DEFAULT 0,"
	" removals_withheld INTEGER NOT NULL DEFAULT 0"
	") STRICT;"
	"CREATE TABLE errors ("
	" id INTEGER PRIMARY KEY,"
	" run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
	" kind TEXT NOT NULL,"
	" item TEXT,"
	" code TEXT,"
	" message TEXT"
	") STRICT;"
	"CREATE INDEX errors_run ON errors (run_id);"
	"CREATE TABLE meta ("
	" key TEXT NOT NULL PRIMARY KEY,"
	" value TEXT NOT NULL"
	") STRICT, WITHOUT ROWID;",
	/* 2: enrol calls in flight, several at once (was one meta value),
	 * and until when Moodle may still be applying them. */
	"CREATE TABLE inflight ("
	" id TEXT NOT NULL PRIMARY KEY,"
	" settle_by INTEGER NOT NULL,"
	" items TEXT NOT NULL"
	") STRICT, WITHOUT ROWID;"
	"INSERT INTO inflight (id, settle_by, items)"
	" SELECT 'legacy', 0, value FROM meta WHERE key = 'inflight_enrol';"
	"DELETE FROM meta WHERE key = 'inflight_enrol';",
	/* 3: the history of every change and decision, with its reason.
	 * No index but the row id: an index costs every row of a million
	 * enrolment import more than the row itself (tests/bench/README.md);
	 * reading it filtered is a scan.  The decisions in force (withheld,
	 * skipped, refused), to write each once, when it is made. */
	"CREATE TABLE history ("
	" id INTEGER PRIMARY KEY,"
	" run_id INTEGER NOT NULL,"
	" time INTEGER NOT NULL,"
	" action TEXT NOT NULL,"
	" course TEXT,"
	" username TEXT,"
	" role TEXT,"
	" reason TEXT NOT NULL"
	") STRICT;"
	"CREATE TABLE decisions ("
	" course TEXT NOT NULL,"
	" username TEXT NOT NULL,"
	" action TEXT NOT NULL,"
	" reason TEXT NOT NULL,"
	" run_id INTEGER NOT NULL,"
	" time INTEGER NOT NULL,"
	" mark INTEGER NOT NULL DEFAULT 1,"
	" PRIMARY KEY (course, username, action)"
	") STRICT, WITHOUT ROWID;",
	/* 4: drift.  When each course was last checked against Moodle and
	 * the visibility we last set (-1: unknown); what is out of step. */
	"ALTER TABLE courses ADD COLUMN checked INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE courses ADD COLUMN visible INTEGER NOT NULL DEFAULT -1;"
	"CREATE TABLE drift ("
	" course TEXT NOT NULL,"
	" username TEXT NOT NULL,"
	" roleid INTEGER NOT NULL,"
	" kind TEXT NOT NULL,"
	" ledger_said TEXT NOT NULL,"
	" moodle_has TEXT NOT NULL,"
	" since INTEGER NOT NULL,"
	" run_id INTEGER NOT NULL,"
	" PRIMARY KEY (course, username, roleid, kind)"
	") STRICT, WITHOUT ROWID;",
};
#define LEDGER_VERSION ((int)nitems(ledger_migrations))

/* The run counters, in the column order of the runs statements below. */
static const size_t ledger_run_counters[] = {
	offsetof(struct ledger_run, courses_created),
	offsetof(struct ledger_run, courses_adopted),
	offsetof(struct ledger_run, courses_renamed),
	offsetof(struct ledger_run, courses_hidden),
	offsetof(struct ledger_run, courses_pending),
	offsetof(struct ledger_run, enrolled),
	offsetof(struct ledger_run, role_changes),
	offsetof(struct ledger_run, suspended),
	offsetof(struct ledger_run, unenrolled),
	offsetof(struct ledger_run, missing_users),
	offsetof(struct ledger_run, errors),
	offsetof(struct ledger_run, removals_withheld),
};

enum ledger_sql {
	SQL_BEGIN,
	SQL_COMMIT,
	SQL_ROLLBACK,
	SQL_COURSE_ALL,
	SQL_COURSE_GET,
	SQL_COURSE_PUT,
	SQL_COURSE_DELETE,
	SQL_COURSE_COUNT,
	SQL_COURSE_DUE,
	SQL_COURSE_CHECKS,
	SQL_ENROL_ALL,
	SQL_ENROL_COURSE,
	SQL_ENROL_PUT,
	SQL_ENROL_STATUS,
	SQL_ENROL_DELETE,
	SQL_ENROL_COUNT,
	SQL_USER_GET,
	SQL_USER_PUT,
	SQL_USER_DELETE,
	SQL_USER_ALL,
	SQL_MISSING_UNMARK,
	SQL_MISSING_PUT,
	SQL_MISSING_DELETE,
	SQL_MISSING_SWEEP,
	SQL_MISSING_ALL,
	SQL_MISSING_USERS,
	SQL_RUN_PRUNE,
	SQL_RUN_START,
	SQL_RUN_FINISH,
	SQL_RUN_RECENT,
	SQL_ERROR_ADD,
	SQL_ERROR_RUN,
	SQL_META_GET,
	SQL_META_SET,
	SQL_META_DELETE,
	SQL_INFLIGHT_PUT,
	SQL_INFLIGHT_DELETE,
	SQL_INFLIGHT_ALL,
	SQL_HISTORY_ADD,
	SQL_HISTORY_ALL,
	SQL_HISTORY_PRUNE,
	SQL_DECISION_UNMARK,
	SQL_DECISION_GET,
	SQL_DECISION_PUT,
	SQL_DECISION_SWEEP,
	SQL_DECISION_ACTION,
	SQL_DRIFT_PUT,
	SQL_DRIFT_DELETE,
	SQL_DRIFT_ALL,
	SQL_MAX
};

#define COURSE_COLUMNS                                                         \
	"shortname, moodle_id, fullname, status, absent_runs, created, "       \
	"participants, first_seen, last_seen, checked, visible"
#define DRIFT_COLUMNS                                                          \
	"course, username, roleid, kind, ledger_said, moodle_has, since, "     \
	"run_id"
#define HISTORY_COLUMNS                                                        \
	"id, run_id, time, action, course, username, role, reason"
#define RUN_COLUMNS                                                            \
	"id, started, ended, outcome, message, courses_created, "              \
	"courses_adopted, courses_renamed, courses_hidden, courses_pending, "  \
	"enrolled, role_changes, suspended, unenrolled, missing_users, "       \
	"errors, removals_withheld"

static const char *const ledger_sql_text[SQL_MAX] = {
	/* IMMEDIATE: wait for the write lock now, not at the first write. */
	[SQL_BEGIN] = "BEGIN IMMEDIATE",
	[SQL_COMMIT] = "COMMIT",
	[SQL_ROLLBACK] = "ROLLBACK",
	[SQL_COURSE_ALL] =
	    "SELECT " COURSE_COLUMNS " FROM courses ORDER BY shortname",
	[SQL_COURSE_GET] =
	    "SELECT " COURSE_COLUMNS " FROM courses WHERE shortname = ?1",
	/* An upsert, not REPLACE: a delete would cascade to the enrolments. */
	[SQL_COURSE_PUT] =
	    "INSERT INTO courses (" COURSE_COLUMNS ")"
	    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
	    " ON CONFLICT (shortname) DO UPDATE SET"
	    " moodle_id = excluded.moodle_id, fullname = excluded.fullname,"
	    " status = excluded.status, absent_runs = excluded.absent_runs,"
	    " created = excluded.created,"
	    " participants = excluded.participants,"
	    " first_seen = excluded.first_seen,"
	    " last_seen = excluded.last_seen, checked = excluded.checked,"
	    " visible = excluded.visible",
	/* Courses in Moodle, the longest unchecked first. */
	[SQL_COURSE_DUE] = "SELECT " COURSE_COLUMNS " FROM courses"
			   " WHERE moodle_id > 0 AND status IN (0, 4)"
			   " ORDER BY checked, shortname LIMIT ?1",
	[SQL_COURSE_CHECKS] = "SELECT count(*), count(*) FILTER (WHERE"
			      " checked < ?1), coalesce(min(checked), 0)"
			      " FROM courses WHERE moodle_id > 0"
			      " AND status IN (0, 4)",
	[SQL_COURSE_DELETE] = "DELETE FROM courses WHERE shortname = ?1",
	[SQL_COURSE_COUNT] = "SELECT count(*) FROM courses WHERE status = ?1",
	[SQL_ENROL_ALL] = "SELECT course, username, roleid, status"
			  " FROM enrolments ORDER BY course, username, roleid",
	[SQL_ENROL_COURSE] = "SELECT course, username, roleid, status"
			     " FROM enrolments WHERE course = ?1"
			     " ORDER BY course, username, roleid",
	[SQL_ENROL_PUT] = "INSERT INTO enrolments (course, username, roleid,"
			  " status) VALUES (?1, ?2, ?3, ?4)"
			  " ON CONFLICT DO UPDATE SET status = excluded.status",
	[SQL_ENROL_STATUS] = "UPDATE enrolments SET status = ?3"
			     " WHERE course = ?1 AND username = ?2",
	[SQL_ENROL_DELETE] = "DELETE FROM enrolments"
			     " WHERE course = ?1 AND username = ?2"
			     " AND (?3 < 0 OR roleid = ?3)",
	[SQL_ENROL_COUNT] = "SELECT count(*) FROM (SELECT DISTINCT course,"
			    " username FROM enrolments"
			    " WHERE ?1 = 0 OR status = ?1)",
	[SQL_USER_GET] = "SELECT moodle_id FROM users WHERE username = ?1",
	[SQL_USER_PUT] = "INSERT INTO users (username, moodle_id)"
			 " VALUES (?1, ?2) ON CONFLICT DO UPDATE"
			 " SET moodle_id = excluded.moodle_id",
	[SQL_USER_DELETE] = "DELETE FROM users WHERE username = ?1",
	[SQL_USER_ALL] = "SELECT username, moodle_id FROM users"
			 " ORDER BY username",
	[SQL_MISSING_UNMARK] = "UPDATE missing SET mark = 0 WHERE mark <> 0",
	[SQL_MISSING_PUT] = "INSERT INTO missing (username, course, roleid,"
			    " first_seen, mark) VALUES (?1, ?2, ?3, ?4, 1)"
			    /* 2: kept from before, so RETURNING tells
			     * a new row (1) from an old one */
			    " ON CONFLICT DO UPDATE SET mark = 2"
			    " RETURNING mark = 1",
	[SQL_MISSING_DELETE] = "DELETE FROM missing WHERE username = ?1"
			       " AND course = ?2 AND roleid = ?3",
	[SQL_MISSING_SWEEP] = "DELETE FROM missing WHERE mark = 0",
	[SQL_MISSING_ALL] = "SELECT username, course, roleid, first_seen"
			    " FROM missing ORDER BY username, course, roleid",
	[SQL_MISSING_USERS] = "SELECT count(DISTINCT username) FROM missing",
	[SQL_RUN_PRUNE] = "DELETE FROM runs WHERE id <= (SELECT max(id)"
			  " FROM runs) - ?1",
	[SQL_RUN_START] = "INSERT INTO runs (started, ended, outcome)"
			  " VALUES (?1, 0, 'running')",
	[SQL_RUN_FINISH] =
	    "UPDATE runs SET started = ?2, ended = ?3, outcome = ?4,"
	    " message = ?5, courses_created = ?6, courses_adopted = ?7,"
	    " courses_renamed = ?8, courses_hidden = ?9,"
	    " courses_pending = ?10, enrolled = ?11, role_changes = ?12,"
	    " suspended = ?13, unenrolled = ?14, missing_users = ?15,"
	    " errors = ?16, removals_withheld = ?17 WHERE id = ?1",
	[SQL_RUN_RECENT] =
	    "SELECT " RUN_COLUMNS " FROM runs ORDER BY id DESC LIMIT ?1",
	[SQL_ERROR_ADD] = "INSERT INTO errors (run_id, kind, item, code,"
			  " message) VALUES (?1, ?2, ?3, ?4, ?5)",
	/*
	 * Run 0 means the highest run id that recorded any error, as the
	 * header promises, even when later runs had none: callers compare
	 * ledger_error.run_id with the last run to say how old the list is.
	 */
	[SQL_ERROR_RUN] = "SELECT run_id, kind, item, code, message"
			  " FROM errors WHERE run_id = coalesce(nullif(?1, 0),"
			  " (SELECT max(run_id) FROM errors)) ORDER BY id",
	[SQL_META_GET] = "SELECT value FROM meta WHERE key = ?1",
	[SQL_META_SET] = "INSERT INTO meta (key, value) VALUES (?1, ?2)"
			 " ON CONFLICT DO UPDATE SET value = excluded.value",
	[SQL_META_DELETE] = "DELETE FROM meta WHERE key = ?1",
	[SQL_INFLIGHT_PUT] =
	    "INSERT INTO inflight (id, settle_by, items) VALUES (?1, ?2, ?3)"
	    " ON CONFLICT DO UPDATE SET settle_by = excluded.settle_by,"
	    " items = excluded.items",
	[SQL_INFLIGHT_DELETE] = "DELETE FROM inflight WHERE id = ?1",
	[SQL_INFLIGHT_ALL] = "SELECT id, settle_by, items FROM inflight"
			     " ORDER BY id",
	[SQL_HISTORY_ADD] = "INSERT INTO history (run_id, time, action, course,"
			    " username, role, reason)"
			    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[SQL_HISTORY_ALL] =
	    "SELECT " HISTORY_COLUMNS " FROM history"
	    " WHERE (?1 IS NULL OR username = ?1) AND (?2 IS NULL OR course = "
	    "?2)"
	    " AND time >= ?3 AND (?4 = 0 OR run_id = ?4) ORDER BY id DESC",
	/* Of the ?2 oldest rows (rows are added in time order), those before
	 * ?1: a bounded look, however large the history. */
	[SQL_HISTORY_PRUNE] = "DELETE FROM history WHERE id IN (SELECT id"
			      " FROM history ORDER BY id LIMIT ?2)"
			      " AND time < ?1",
	[SQL_DECISION_UNMARK] = "UPDATE decisions SET mark = 0 WHERE mark <> 0",
	[SQL_DECISION_GET] = "SELECT reason, run_id, time FROM decisions"
			     " WHERE course = ?1 AND username = ?2"
			     " AND action = ?3",
	/* Kept (mark 2) with its first run while the reason stays. */
	[SQL_DECISION_PUT] =
	    "INSERT INTO decisions (course, username, action, reason, run_id,"
	    " time, mark) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)"
	    " ON CONFLICT DO UPDATE SET mark = 2, reason = excluded.reason,"
	    " run_id = iif(reason = excluded.reason, run_id, excluded.run_id),"
	    " time = iif(reason = excluded.reason, time, excluded.time)",
	[SQL_DECISION_SWEEP] = "DELETE FROM decisions WHERE mark = 0",
	[SQL_DECISION_ACTION] = "SELECT course, username, action, reason,"
				" run_id, time FROM decisions"
				" WHERE action = ?1 ORDER BY course, username",
	/* Kept as first found: since says since when. */
	[SQL_DRIFT_PUT] = "INSERT INTO drift (" DRIFT_COLUMNS ")"
			  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
			  " ON CONFLICT DO NOTHING",
	/* kind NULL: every kind; username NULL: every user of the course. */
	[SQL_DRIFT_DELETE] = "DELETE FROM drift WHERE course = ?1"
			     " AND (?2 IS NULL OR username = ?2)"
			     " AND (?3 < 0 OR roleid = ?3)"
			     " AND (?4 IS NULL OR kind = ?4)",
	[SQL_DRIFT_ALL] = "SELECT " DRIFT_COLUMNS " FROM drift"
			  " ORDER BY course, username, roleid, kind",
};

struct ledger {
	sqlite3 *db;
	char *path;
	bool readonly;
	bool memory; /* ":memory:": a throw-away ledger (`plan` before a run) */
	bool in_txn;
	bool enrol_changed; /* the cached counts are dropped in this txn */
	int version;
	int lockfd;
	const char *err; /* the last failure, for ledger_errmsg() */
	char errbuf[256];
	sqlite3_stmt *stmt[SQL_MAX];
};

/* An iterator's callback and its argument, for the row visitors. */
struct ledger_visit {
	union {
		ledger_course_cb course;
		ledger_enrol_cb enrol;
		ledger_user_cb user;
		ledger_missing_cb missing;
		ledger_error_cb error;
		ledger_inflight_cb inflight;
		ledger_history_cb history;
		ledger_drift_cb drift;
	} cb;
	void *arg;
};

typedef int (*ledger_row_fn)(sqlite3_stmt *, struct ledger_visit *);

/* Note a failure of ours (a misuse) so that ledger_errmsg() can name it. */
static int
ledger_misuse(struct ledger *l, const char *what)
{
	l->err = what;
	log_debug("ledger %s: %s", l->path, what);
	return -1;
}

/* Note an sqlite failure.  Its text is copied: a rollback after it would
 * leave sqlite3_errmsg() saying "not an error". */
static int
ledger_sqlite_fail(struct ledger *l, enum ledger_sql id)
{
	snprintf(l->errbuf, sizeof l->errbuf, "%s", sqlite3_errmsg(l->db));
	l->err = l->errbuf;
	log_debug("ledger %s: \"%s\": %s", l->path, ledger_sql_text[id],
		  sqlite3_errmsg(l->db));
	return -1;
}

/*
 * The statement for id, prepared once and kept.  An iterator's callback may
 * re-enter with a statement that is still stepping: it gets a fresh one,
 * which ledger_release() finalizes.
 */
static sqlite3_stmt *
ledger_stmt(struct ledger *l, enum ledger_sql id)
{
	sqlite3_stmt *st;

	if (l->stmt[id] != NULL && !sqlite3_stmt_busy(l->stmt[id]))
		return l->stmt[id];
	if (sqlite3_prepare_v3(l->db, ledger_sql_text[id], -1,
			       SQLITE_PREPARE_PERSISTENT, &st,
			       NULL) != SQLITE_OK) {
		ledger_sqlite_fail(l, id);
		return NULL;
	}
	if (l->stmt[id] == NULL)
		l->stmt[id] = st;
	return st;
}

/*
 * Done with a statement.  Resetting ends its read transaction; the
 * SQLITE_STATIC text bindings left in it are never read before the next
 * call binds afresh.
 */
static void
ledger_release(struct ledger *l, enum ledger_sql id, sqlite3_stmt *st)
{
	if (st == l->stmt[id])
		sqlite3_reset(st);
	else
		sqlite3_finalize(st);
}

/* Step a statement that returns no rows.  binds is the OR of the
 * sqlite3_bind_*() results, so any failed bind stops it. */
static int
ledger_exec(struct ledger *l, enum ledger_sql id, sqlite3_stmt *st, int binds)
{
	int rv = 0;

	if (l->in_txn && sqlite3_get_autocommit(l->db)) {
		/* sqlite rolled the batch back after an I/O error or the like;
		 * writing on would commit piecemeal. */
		rv = ledger_misuse(l, "the transaction was rolled back");
	} else if (binds != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE)
		rv = ledger_sqlite_fail(l, id);
	ledger_release(l, id, st);
	return rv;
}

/* Run a statement without parameters, such as BEGIN. */
static int
ledger_simple(struct ledger *l, enum ledger_sql id)
{
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, id)) == NULL)
		return -1;
	return ledger_exec(l, id, st, SQLITE_OK);
}

/* Step a query, handing each row to fn until it returns non-zero. */
static int
ledger_iterate(struct ledger *l, enum ledger_sql id, sqlite3_stmt *st,
	       int binds, ledger_row_fn fn, struct ledger_visit *v)
{
	int rc, rv = 0;

	if (binds != SQLITE_OK) {
		ledger_release(l, id, st);
		return ledger_sqlite_fail(l, id);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if ((rv = fn(st, v)) != 0)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		rv = ledger_sqlite_fail(l, id);
	ledger_release(l, id, st);
	return rv;
}

/* Step a query for one row: 0 with the row ready, 1 when there is none,
 * -1 on error (the statement is released unless 0 is returned). */
static int
ledger_row(struct ledger *l, enum ledger_sql id, sqlite3_stmt *st, int binds)
{
	int rc;

	if (binds == SQLITE_OK) {
		if ((rc = sqlite3_step(st)) == SQLITE_ROW)
			return 0;
		if (rc == SQLITE_DONE) {
			ledger_release(l, id, st);
			return 1;
		}
	}
	ledger_sqlite_fail(l, id);
	ledger_release(l, id, st);
	return -1;
}

/* One integer from a query with at most one parameter, arg. */
static int
ledger_query_int(struct ledger *l, enum ledger_sql id, int64_t arg,
		 int64_t *ret)
{
	sqlite3_stmt *st;
	int binds = SQLITE_OK;

	if ((st = ledger_stmt(l, id)) == NULL)
		return -1;
	if (sqlite3_bind_parameter_count(st) > 0)
		binds = sqlite3_bind_int64(st, 1, arg);
	if (ledger_row(l, id, st, binds) != 0)
		return -1;
	*ret = sqlite3_column_int64(st, 0);
	ledger_release(l, id, st);
	return 0;
}

static const char *
ledger_col_text(sqlite3_stmt *st, int col)
{
	return (const char *)sqlite3_column_text(st, col);
}

/* One-off SQL for opening and migrating: 0 or -1 with sqlite's message. */
static int
ledger_pragma_int(struct ledger *l, const char *sql, int *ret)
{
	sqlite3_stmt *st;
	int rv = -1;

	if (sqlite3_prepare_v2(l->db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW) {
		*ret = sqlite3_column_int(st, 0);
		rv = 0;
	}
	sqlite3_finalize(st);
	return rv;
}

/* A writer's settings, made once the version is known to be ours. */
static int
ledger_configure(struct ledger *l, char **cause)
{
	sqlite3_stmt *st = NULL;
	const char *mode;
	int one = 1, rv = -1;

	if (sqlite3_exec(l->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL) !=
	    SQLITE_OK)
		goto fail;
	if (sqlite3_prepare_v2(l->db, "PRAGMA journal_mode = WAL", -1, &st,
			       NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW)
		goto fail;
	mode = ledger_col_text(st, 0);
	/* An in-memory database has no WAL; everything else must. */
	if (mode == NULL || (strcmp(mode, "wal") != 0 && !l->memory)) {
		xasprintf(cause, "ledger %s cannot use WAL mode (journal %s)",
			  l->path, mode != NULL ? mode : "unknown");
		goto out;
	}
	/*
	 * In WAL mode synchronous=NORMAL loses no committed transaction in a
	 * process crash, and keeps the database consistent through a power
	 * cut; only the last commits before a power cut may roll back, which
	 * re-applying the batch repairs.  FULL would fsync every batch.
	 * A million enrolments take ~45 MB; a 32 MB cache (grown only as
	 * used) halves the time of writes that come out of key order.
	 */
	if (sqlite3_exec(l->db,
			 "PRAGMA synchronous = NORMAL;"
			 "PRAGMA journal_size_limit = 16777216;"
			 "PRAGMA cache_size = -32768",
			 NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	/* Keep -wal and -shm after the last close, so that a reader without
	 * write access to the directory (webcoursectl) can still open it. */
	sqlite3_file_control(l->db, "main", SQLITE_FCNTL_PERSIST_WAL, &one);
	rv = 0;
	goto out;
fail:
	xasprintf(cause, "cannot use ledger %s: %s", l->path,
		  sqlite3_errmsg(l->db));
out:
	sqlite3_finalize(st);
	return rv;
}

/* Bring an older schema to LEDGER_VERSION in one transaction. */
static int
ledger_migrate(struct ledger *l, char **cause)
{
	char *sql = NULL;
	int version, rv = -1;

	if (sqlite3_exec(l->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK)
		goto fail;
	/* Read again under the write lock: another opener may have won. */
	if (ledger_pragma_int(l, "PRAGMA user_version", &version) == -1)
		goto fail;
	for (; version < LEDGER_VERSION; version++) {
		if (sqlite3_exec(l->db, ledger_migrations[version], NULL, NULL,
				 NULL) != SQLITE_OK) {
			xasprintf(cause,
				  "cannot upgrade ledger %s to schema "
				  "version %d: %s",
				  l->path, version + 1, sqlite3_errmsg(l->db));
			goto out;
		}
	}
	xasprintf(&sql, "PRAGMA user_version = %d", version);
	if (sqlite3_exec(l->db, sql, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(l->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	log_debug("ledger %s: schema now at version %d", l->path, version);
	l->version = version;
	rv = 0;
	goto out;
fail:
	xasprintf(cause, "cannot upgrade ledger %s: %s", l->path,
		  sqlite3_errmsg(l->db));
out:
	if (rv == -1 && !sqlite3_get_autocommit(l->db))
		sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
	free(sql);
	return rv;
}

/* Read the schema version and refuse one we cannot use, changing nothing. */
static int
ledger_check_version(struct ledger *l, char **cause)
{
	if (ledger_pragma_int(l, "PRAGMA user_version", &l->version) == -1) {
		xasprintf(cause, "cannot read ledger %s: %s", l->path,
			  sqlite3_errmsg(l->db));
		return -1;
	}
	if (l->version > LEDGER_VERSION) {
		xasprintf(cause,
			  "ledger %s has schema version %d, newer than this "
			  "program knows (%d); run the newer webcoursed or "
			  "move the ledger aside",
			  l->path, l->version, LEDGER_VERSION);
		return -1;
	}
	if (l->version < LEDGER_VERSION && l->readonly) {
		xasprintf(cause,
			  "ledger %s has schema version %d, older than %d; "
			  "webcoursed upgrades it when it next starts",
			  l->path, l->version, LEDGER_VERSION);
		return -1;
	}
	return 0;
}

/*
 * Check the file before sqlite opens it.  A writer creates it 0640 (it lists
 * people) and is refused a file it cannot write, which sqlite would quietly
 * open read-only until the first batch failed.  A reader creates nothing.
 */
static int
ledger_prepare_file(struct ledger *l, char **cause)
{
	struct stat sb;
	int fd;

	if (l->readonly) {
		if (stat(l->path, &sb) == 0)
			return 0;
		if (errno == ENOENT)
			xasprintf(cause,
				  "no ledger at %s yet (no run has happened)",
				  l->path);
		else
			xasprintf(cause, "cannot open ledger %s: %s", l->path,
				  strerror(errno));
		return -1;
	}
	if (l->memory)
		return 0;
	fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd == -1) {
		xasprintf(cause, "cannot open ledger %s: %s", l->path,
			  strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

int
ledger_open(const char *path, bool readonly, struct ledger **ret, char **cause)
{
	struct ledger *l;
	int flags, rc;

	l = xcalloc(1, sizeof *l);
	l->path = xstrdup(path);
	l->readonly = readonly;
	l->memory = strcmp(path, ":memory:") == 0;
	l->lockfd = -1;
	if (ledger_prepare_file(l, cause) == -1)
		goto fail;

	flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
	if ((rc = sqlite3_open_v2(path, &l->db, flags, NULL)) != SQLITE_OK) {
		xasprintf(cause, "cannot open ledger %s: %s", path,
			  l->db != NULL ? sqlite3_errmsg(l->db)
					: sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_extended_result_codes(l->db, 1);
	sqlite3_busy_timeout(l->db, LEDGER_BUSY_TIMEOUT_MS);
	if (ledger_check_version(l, cause) == -1)
		goto fail;
	if (!readonly &&
	    (ledger_configure(l, cause) == -1 ||
	     (l->version < LEDGER_VERSION && ledger_migrate(l, cause) == -1)))
		goto fail;
	*ret = l;
	return 0;
fail:
	ledger_free(l);
	return -1;
}

void
ledger_free(struct ledger *l)
{
	size_t i;

	if (l == NULL)
		return;
	for (i = 0; i < nitems(l->stmt); i++)
		sqlite3_finalize(l->stmt[i]);
	/* Closing rolls back a transaction still open. */
	sqlite3_close_v2(l->db);
	ledger_unlock(l);
	free(l->path);
	free(l);
}

int
ledger_schema_version(struct ledger *l)
{
	return l->version;
}

/* "pid N (name)" from the lock file of the holder, for a person. */
static char *
ledger_lock_holder(int fd)
{
	char buf[256], *name, *holder;
	ssize_t n;
	int64_t pid;

	if ((n = pread(fd, buf, sizeof buf - 1, 0)) <= 0)
		return xstrdup("another process");
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	if ((name = strchr(buf, ' ')) != NULL)
		*name++ = '\0';
	if (parse_int64(buf, 1, INT32_MAX, &pid) == -1)
		return xstrdup("another process");
	if (name == NULL || *name == '\0')
		xasprintf(&holder, "pid %" PRId64, pid);
	else
		xasprintf(&holder, "pid %" PRId64 " (%s)", pid, name);
	return holder;
}

int
ledger_lock(struct ledger *l, char **cause)
{
	char *lockpath, *holder, *line = NULL;
	int fd, len, rv = -1;

	if (l->lockfd != -1)
		return 0;
	xasprintf(&lockpath, "%s.lock", l->path);
	/* Never through a symbolic link: we truncate and write the file. */
	fd = open(lockpath,
		  O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
	if (fd == -1) {
		xasprintf(cause, "cannot open %s: %s", lockpath,
			  errno == ELOOP ? "it is a symbolic link, not followed"
					 : strerror(errno));
		goto out;
	}
	/* flock(2): held per open file description, gone when we die. */
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EWOULDBLOCK) {
			holder = ledger_lock_holder(fd);
			xasprintf(cause,
				  "ledger %s is locked by %s; another sync is "
				  "running",
				  l->path, holder);
			free(holder);
		} else
			xasprintf(cause, "cannot lock %s: %s", lockpath,
				  strerror(errno));
		goto out;
	}
	len = xasprintf(&line, "%ld %s\n", (long)getpid(),
			program_invocation_short_name);
	errno = EIO; /* what a short write reports */
	if (ftruncate(fd, 0) == -1 || pwrite(fd, line, len, 0) != len) {
		xasprintf(cause, "cannot write %s: %s", lockpath,
			  strerror(errno));
		goto out;
	}
	l->lockfd = fd;
	fd = -1;
	rv = 0;
out:
	if (fd != -1)
		close(fd);
	free(line);
	free(lockpath);
	return rv;
}

void
ledger_unlock(struct ledger *l)
{
	/* Only close: a forked child sharing the descriptor keeps the lock. */
	if (l->lockfd != -1)
		close(l->lockfd);
	l->lockfd = -1;
}

/*
 * The enrolment counts (ledger_enrol_count) of the last run's end, kept in
 * meta as "ACTIVE SUSPENDED": counting a million enrolments takes 0.7 s,
 * too long for the daemon's loop (the console's overview, /metrics).  Any
 * change to the enrolments drops them, once per transaction, in it.
 */
#define LEDGER_ENROL_COUNTS "enrol_counts"

static int
ledger_enrol_changed(struct ledger *l)
{
	if (l->enrol_changed)
		return 0;
	if (ledger_meta_set(l, LEDGER_ENROL_COUNTS, NULL) == -1)
		return -1;
	l->enrol_changed = l->in_txn;
	return 0;
}

int
ledger_begin(struct ledger *l)
{
	if (l->in_txn)
		return ledger_misuse(l, "a transaction is already open");
	if (ledger_simple(l, SQL_BEGIN) == -1)
		return -1;
	l->in_txn = true;
	return 0;
}

/* Commit the batch; when that fails it is rolled back, never left open. */
int
ledger_commit(struct ledger *l)
{
	if (!l->in_txn)
		return ledger_misuse(l, "no transaction is open");
	l->in_txn = false;
	l->enrol_changed = false;
	if (ledger_simple(l, SQL_COMMIT) == 0)
		return 0;
	if (!sqlite3_get_autocommit(l->db))
		ledger_simple(l, SQL_ROLLBACK);
	return -1;
}

void
ledger_rollback(struct ledger *l)
{
	/* sqlite may have rolled back already after an I/O error. */
	if (l->in_txn && !sqlite3_get_autocommit(l->db))
		ledger_simple(l, SQL_ROLLBACK);
	l->in_txn = false;
	l->enrol_changed = false;
}

const char *
ledger_errmsg(struct ledger *l)
{
	if (l == NULL)
		return "no ledger";
	return l->err != NULL ? l->err : "no error";
}

/* A course row from a statement; strings point into it unless copy. */
static void
ledger_course_fill(sqlite3_stmt *st, struct ledger_course *c, bool copy)
{
	const char *shortname = ledger_col_text(st, 0);
	const char *fullname = ledger_col_text(st, 2);

	if (copy) {
		c->shortname = xstrdup(shortname);
		c->fullname = fullname != NULL ? xstrdup(fullname) : NULL;
	} else {
		c->shortname = (char *)shortname;
		c->fullname = (char *)fullname;
	}
	c->moodle_id = sqlite3_column_int64(st, 1);
	c->status = sqlite3_column_int(st, 3);
	c->absent_runs = sqlite3_column_int(st, 4);
	c->created = sqlite3_column_int(st, 5) != 0;
	c->participants = sqlite3_column_int(st, 6);
	c->first_seen = sqlite3_column_int64(st, 7);
	c->last_seen = sqlite3_column_int64(st, 8);
	c->checked = sqlite3_column_int64(st, 9);
	c->visible = sqlite3_column_int(st, 10);
}

static int
ledger_course_row(sqlite3_stmt *st, struct ledger_visit *v)
{
	struct ledger_course c;

	ledger_course_fill(st, &c, false);
	return v->cb.course(&c, v->arg);
}

/* Ordered by shortname; the row's strings live until the callback returns. */
int
ledger_course_foreach(struct ledger *l, ledger_course_cb cb, void *arg)
{
	struct ledger_visit v = { .cb.course = cb, .arg = arg };
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_COURSE_ALL)) == NULL)
		return -1;
	return ledger_iterate(l, SQL_COURSE_ALL, st, SQLITE_OK,
			      ledger_course_row, &v);
}

/* ret is written only when the course is found (0). */
int
ledger_course_get(struct ledger *l, const char *shortname,
		  struct ledger_course *ret)
{
	sqlite3_stmt *st;
	int rv;

	if ((st = ledger_stmt(l, SQL_COURSE_GET)) == NULL)
		return -1;
	rv = ledger_row(l, SQL_COURSE_GET, st,
			sqlite3_bind_text(st, 1, shortname, -1, SQLITE_STATIC));
	if (rv != 0)
		return rv;
	ledger_course_fill(st, ret, true);
	ledger_release(l, SQL_COURSE_GET, st);
	return 0;
}

int
ledger_course_put(struct ledger *l, const struct ledger_course *c)
{
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_COURSE_PUT)) == NULL)
		return -1;
	return ledger_exec(
	    l, SQL_COURSE_PUT, st,
	    sqlite3_bind_text(st, 1, c->shortname, -1, SQLITE_STATIC) |
		sqlite3_bind_int64(st, 2, c->moodle_id) |
		sqlite3_bind_text(st, 3, c->fullname, -1, SQLITE_STATIC) |
		sqlite3_bind_int(st, 4, c->status) |
		sqlite3_bind_int(st, 5, c->absent_runs) |
		sqlite3_bind_int(st, 6, c->created) |
		sqlite3_bind_int(st, 7, c->participants) |
		sqlite3_bind_int64(st, 8, c->first_seen) |
		sqlite3_bind_int64(st, 9, c->last_seen) |
		sqlite3_bind_int64(st, 10, c->checked) |
		sqlite3_bind_int(st, 11, c->visible));
}

int
ledger_course_delete(struct ledger *l, const char *shortname)
{
	sqlite3_stmt *st;

	if (ledger_enrol_changed(l) == -1 ||
	    (st = ledger_stmt(l, SQL_COURSE_DELETE)) == NULL)
		return -1;
	return ledger_exec(
	    l, SQL_COURSE_DELETE, st,
	    sqlite3_bind_text(st, 1, shortname, -1, SQLITE_STATIC));
}

void
ledger_course_clear(struct ledger_course *c)
{
	free(c->shortname);
	free(c->fullname);
	memset(c, 0, sizeof *c);
}

static int
ledger_enrol_row(sqlite3_stmt *st, struct ledger_visit *v)
{
	struct ledger_enrol e = {
		.course = ledger_col_text(st, 0),
		.username = ledger_col_text(st, 1),
		.roleid = sqlite3_column_int(st, 2),
		.status = sqlite3_column_int(st, 3),
	};

	return v->cb.enrol(&e, v->arg);
}

/* The keys use sqlite's BINARY collation: memcmp, so strcmp() order. */
int
ledger_enrol_foreach(struct ledger *l, ledger_enrol_cb cb, void *arg)
{
	struct ledger_visit v = { .cb.enrol = cb, .arg = arg };
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_ENROL_ALL)) == NULL)
		return -1;
	return ledger_iterate(l, SQL_ENROL_ALL, st, SQLITE_OK, ledger_enrol_row,
			      &v);
}

int
ledger_enrol_foreach_course(struct ledger *l, const char *course,
			    ledger_enrol_cb cb, void *arg)
{
	struct ledger_visit v = { .cb.enrol = cb, .arg = arg };
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_ENROL_COURSE)) == NULL)
		return -1;
	return ledger_iterate(
	    l, SQL_ENROL_COURSE, st,
	    sqlite3_bind_text(st, 1, course, -1, SQLITE_STATIC),
	    ledger_enrol_row, &v);
}

/* The course must be in the ledger.  status applies to every role the user
 * has in the course, as Moodle's does (see the triggers). */
int
ledger_enrol_put(struct ledger *l, const char *course, const char *username,
		 int roleid, int status)
{
	sqlite3_stmt *st;

	if (ledger_enrol_changed(l) == -1 ||
	    (st = ledger_stmt(l, SQL_ENROL_PUT)) == NULL)
		return -1;
	return ledger_exec(
	    l, SQL_ENROL_PUT, st,
	    sqlite3_bind_text(st, 1, course, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 2, username, -1, SQLITE_STATIC) |
		sqlite3_bind_int(st, 3, roleid) |
		sqlite3_bind_int(st, 4, status));
}

int
ledger_enrol_set_status(struct ledger *l, const char *course,
			const char *username, int status)
{
	sqlite3_stmt *st;

	if (ledger_enrol_changed(l) == -1 ||
	    (st = ledger_stmt(l, SQL_ENROL_STATUS)) == NULL)
		return -1;
	return ledger_exec(
	    l, SQL_ENROL_STATUS, st,
	    sqlite3_bind_text(st, 1, course, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 2, username, -1, SQLITE_STATIC) |
		sqlite3_bind_int(st, 3, status));
}

int
ledger_enrol_delete(struct ledger *l, const char *course, const char *username,
		    int roleid)
{
	sqlite3_stmt *st;

	if (ledger_enrol_changed(l) == -1 ||
	    (st = ledger_stmt(l, SQL_ENROL_DELETE)) == NULL)
		return -1;
	return ledger_exec(
	    l, SQL_ENROL_DELETE, st,
	    sqlite3_bind_text(st, 1, course, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 2, username, -1, SQLITE_STATIC) |
		sqlite3_bind_int(st, 3, roleid));
}

int
ledger_course_count(struct ledger *l, int status, int64_t *ret)
{
	return ledger_query_int(l, SQL_COURSE_COUNT, status, ret);
}

int
ledger_enrol_count(struct ledger *l, int status, int64_t *ret)
{
	long long active, suspended;
	char *kept, end;

	if (ledger_meta_get(l, LEDGER_ENROL_COUNTS, &kept) == -1)
		return -1;
	if (kept == NULL ||
	    sscanf(kept, "%lld %lld%c", &active, &suspended, &end) != 2) {
		free(kept);
		return ledger_query_int(l, SQL_ENROL_COUNT, status, ret);
	}
	free(kept);
	*ret = status == LEDGER_ENROL_ACTIVE      ? active
	       : status == LEDGER_ENROL_SUSPENDED ? suspended
	       : status == 0                      ? active + suspended
						  : 0;
	return 0;
}

/* Count the enrolments for ledger_enrol_count when they are not kept. */
int
ledger_enrol_count_keep(struct ledger *l)
{
	int64_t active, suspended;
	char *kept, *value;
	int rv;

	if (ledger_meta_get(l, LEDGER_ENROL_COUNTS, &kept) == -1)
		return -1;
	if (kept != NULL) {
		free(kept);
		return 0;
	}
	if (ledger_query_int(l, SQL_ENROL_COUNT, LEDGER_ENROL_ACTIVE,
			     &active) == -1 ||
	    ledger_query_int(l, SQL_ENROL_COUNT, LEDGER_ENROL_SUSPENDED,
			     &suspended) == -1)
		return -1;
	xasprintf(&value, "%" PRId64 " %" PRId64, active, suspended);
	rv = ledger_meta_set(l, LEDGER_ENROL_COUNTS, value);
	free(value);
	return rv;
}

int
ledger_user_get(struct ledger *l, const char *username, int64_t *ret_id)
{
	sqlite3_stmt *st;
	int rv;

	if ((st = ledger_stmt(l, SQL_USER_GET)) == NULL)
		return -1;
	rv = ledger_row(l, SQL_USER_GET, st,
			sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC));
	if (rv != 0)
		return rv;
	*ret_id = sqlite3_column_int64(st, 0);
	ledger_release(l, SQL_USER_GET, st);
	return 0;
}

int
ledger_user_put(struct ledger *l, const char *username, int64_t id)
{
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_USER_PUT)) == NULL)
		return -1;
	return ledger_exec(
	    l, SQL_USER_PUT, st,
	    sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC) |
		sqlite3_bind_int64(st, 2, id));
}

int
ledger_user_delete(struct ledger *l, const char *username)
{
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_USER_DELETE)) == NULL)
		return -1;
	return ledger_exec(
	    l, SQL_USER_DELETE, st,
	    sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC));
}

static int
ledger_user_row(sqlite3_stmt *st, struct ledger_visit *v)
{
	return v->cb.user(ledger_col_text(st, 0), sqlite3_column_int64(st, 1),
			  v->arg);
}

int
ledger_user_foreach(struct ledger *l, ledger_user_cb cb, void *arg)
{
	struct ledger_visit v = { .cb.user = cb, .arg = arg };
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_USER_ALL)) == NULL)
		return -1;
	return ledger_iterate(l, SQL_USER_ALL, st, SQLITE_OK, ledger_user_row,
			      &v);
}

int
ledger_missing_unmark_all(struct ledger *l)
{
	return ledger_simple(l, SQL_MISSING_UNMARK);
}

int
ledger_missing_put(struct ledger *l, const char *username, const char *course,
		   int roleid, int64_t now, bool *ret_new)
{
	sqlite3_stmt *st;
	int rc;

	if ((st = ledger_stmt(l, SQL_MISSING_PUT)) == NULL)
		return -1;
	rc =
	    ledger_row(l, SQL_MISSING_PUT, st,
		       sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC) |
			   sqlite3_bind_text(st, 2, course, -1, SQLITE_STATIC) |
			   sqlite3_bind_int(st, 3, roleid) |
			   sqlite3_bind_int64(st, 4, now));
	if (rc != 0)
		return -1; /* RETURNING always gives a row */
	if (ret_new != NULL)
		*ret_new = sqlite3_column_int(st, 0) != 0;
	/* Step to the end: the upsert is done once the statement is. */
	rc = sqlite3_step(st);
	ledger_release(l, SQL_MISSING_PUT, st);
	return rc == SQLITE_DONE ? 0 : ledger_sqlite_fail(l, SQL_MISSING_PUT);
}

int
ledger_missing_delete(struct ledger *l, const char *username,
		      const char *course, int roleid)
{
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_MISSING_DELETE)) == NULL)
		return -1;
	return ledger_exec(
	    l, SQL_MISSING_DELETE, st,
	    sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 2, course, -1, SQLITE_STATIC) |
		sqlite3_bind_int(st, 3, roleid));
}

int
ledger_missing_sweep(struct ledger *l)
{
	return ledger_simple(l, SQL_MISSING_SWEEP);
}

static int
ledger_missing_row(sqlite3_stmt *st, struct ledger_visit *v)
{
	struct ledger_missing m = {
		.username = ledger_col_text(st, 0),
		.course = ledger_col_text(st, 1),
		.roleid = sqlite3_column_int(st, 2),
		.first_seen = sqlite3_column_int64(st, 3),
	};

	return v->cb.missing(&m, v->arg);
}

int
ledger_missing_foreach(struct ledger *l, ledger_missing_cb cb, void *arg)
{
	struct ledger_visit v = { .cb.missing = cb, .arg = arg };
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_MISSING_ALL)) == NULL)
		return -1;
	return ledger_iterate(l, SQL_MISSING_ALL, st, SQLITE_OK,
			      ledger_missing_row, &v);
}

int
ledger_missing_count_users(struct ledger *l, int64_t *ret)
{
	return ledger_query_int(l, SQL_MISSING_USERS, 0, ret);
}

/* A new run, outcome "running".  The oldest runs beyond LEDGER_RUNS_KEEP go,
 * with their errors, so that a ledger on a 15-minute timer stays small. */
int
ledger_run_start(struct ledger *l, int64_t now, int64_t *ret_id)
{
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_RUN_PRUNE)) == NULL ||
	    ledger_exec(l, SQL_RUN_PRUNE, st,
			sqlite3_bind_int(st, 1, LEDGER_RUNS_KEEP - 1)) == -1)
		return -1;
	if ((st = ledger_stmt(l, SQL_RUN_START)) == NULL ||
	    ledger_exec(l, SQL_RUN_START, st, sqlite3_bind_int64(st, 1, now)) ==
		-1)
		return -1;
	*ret_id = sqlite3_last_insert_rowid(l->db);
	return 0;
}

int
ledger_run_finish(struct ledger *l, const struct ledger_run *r)
{
	sqlite3_stmt *st;
	size_t i;
	int binds;

	if ((st = ledger_stmt(l, SQL_RUN_FINISH)) == NULL)
		return -1;
	binds = sqlite3_bind_int64(st, 1, r->id) |
		sqlite3_bind_int64(st, 2, r->started) |
		sqlite3_bind_int64(st, 3, r->ended) |
		sqlite3_bind_text(st, 4, r->outcome, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 5, r->message, -1, SQLITE_STATIC);
	for (i = 0; i < nitems(ledger_run_counters); i++)
		binds |= sqlite3_bind_int64(
		    st, 6 + (int)i,
		    *(const int64_t *)((const char *)r +
				       ledger_run_counters[i]));
	if (ledger_exec(l, SQL_RUN_FINISH, st, binds) == -1)
		return -1;
	if (sqlite3_changes(l->db) == 0)
		return ledger_misuse(l, "no such run");
	return 0;
}

/* A run row (RUN_COLUMNS) into r, with copies of its strings. */
static void
ledger_run_fill(sqlite3_stmt *st, struct ledger_run *r)
{
	const char *message = ledger_col_text(st, 4);
	size_t i;

	r->id = sqlite3_column_int64(st, 0);
	r->started = sqlite3_column_int64(st, 1);
	r->ended = sqlite3_column_int64(st, 2);
	r->outcome = xstrdup(ledger_col_text(st, 3));
	r->message = message != NULL ? xstrdup(message) : NULL;
	for (i = 0; i < nitems(ledger_run_counters); i++)
		*(int64_t *)((char *)r + ledger_run_counters[i]) =
		    sqlite3_column_int64(st, 5 + (int)i);
}

int
ledger_runs_recent(struct ledger *l, size_t max, struct ledger_run **ret,
		   size_t *ret_n)
{
	struct ledger_run *runs = NULL;
	sqlite3_stmt *st;
	size_t n = 0, cap = 0;
	int rc;

	if ((st = ledger_stmt(l, SQL_RUN_RECENT)) == NULL)
		return -1;
	/* LIMIT -1 is no limit. */
	rc = sqlite3_bind_int64(st, 1, max > INT64_MAX ? -1 : (int64_t)max);
	if (rc == SQLITE_OK) {
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			if (n == cap) {
				cap = cap == 0 ? 16 : cap * 2;
				runs = xreallocarray(runs, cap, sizeof *runs);
			}
			ledger_run_fill(st, &runs[n++]);
		}
	}
	if (rc != SQLITE_DONE) {
		ledger_sqlite_fail(l, SQL_RUN_RECENT);
		ledger_release(l, SQL_RUN_RECENT, st);
		ledger_runs_free(runs, n);
		return -1;
	}
	ledger_release(l, SQL_RUN_RECENT, st);
	*ret = runs;
	*ret_n = n;
	return 0;
}

void
ledger_runs_free(struct ledger_run *runs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(runs[i].outcome);
		free(runs[i].message);
	}
	free(runs);
}

int
ledger_error_add(struct ledger *l, int64_t run_id, const char *kind,
		 const char *item, const char *code, const char *message)
{
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_ERROR_ADD)) == NULL)
		return -1;
	return ledger_exec(
	    l, SQL_ERROR_ADD, st,
	    sqlite3_bind_int64(st, 1, run_id) |
		sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 3, item, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 4, code, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 5, message, -1, SQLITE_STATIC));
}

static int
ledger_error_row(sqlite3_stmt *st, struct ledger_visit *v)
{
	struct ledger_error e = {
		.run_id = sqlite3_column_int64(st, 0),
		.kind = ledger_col_text(st, 1),
		.item = ledger_col_text(st, 2),
		.code = ledger_col_text(st, 3),
		.message = ledger_col_text(st, 4),
	};

	return v->cb.error(&e, v->arg);
}

/* In the order they were added. */
int
ledger_error_foreach(struct ledger *l, int64_t run_id, ledger_error_cb cb,
		     void *arg)
{
	struct ledger_visit v = { .cb.error = cb, .arg = arg };
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_ERROR_RUN)) == NULL)
		return -1;
	return ledger_iterate(l, SQL_ERROR_RUN, st,
			      sqlite3_bind_int64(st, 1, run_id),
			      ledger_error_row, &v);
}

int
ledger_meta_get(struct ledger *l, const char *key, char **ret)
{
	sqlite3_stmt *st;
	int rv;

	if ((st = ledger_stmt(l, SQL_META_GET)) == NULL)
		return -1;
	rv = ledger_row(l, SQL_META_GET, st,
			sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC));
	if (rv == -1)
		return -1;
	if (rv == 1) {
		*ret = NULL;
		return 0;
	}
	*ret = xstrdup(ledger_col_text(st, 0));
	ledger_release(l, SQL_META_GET, st);
	return 0;
}

int
ledger_meta_set(struct ledger *l, const char *key, const char *value)
{
	sqlite3_stmt *st;

	if (value == NULL) {
		if ((st = ledger_stmt(l, SQL_META_DELETE)) == NULL)
			return -1;
		return ledger_exec(
		    l, SQL_META_DELETE, st,
		    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC));
	}
	if ((st = ledger_stmt(l, SQL_META_SET)) == NULL)
		return -1;
	return ledger_exec(
	    l, SQL_META_SET, st,
	    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC));
}

int
ledger_inflight_put(struct ledger *l, const struct ledger_inflight *f)
{
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_INFLIGHT_PUT)) == NULL)
		return -1;
	return ledger_exec(
	    l, SQL_INFLIGHT_PUT, st,
	    sqlite3_bind_text(st, 1, f->id, -1, SQLITE_STATIC) |
		sqlite3_bind_int64(st, 2, f->settle_by) |
		sqlite3_bind_text(st, 3, f->items, -1, SQLITE_STATIC));
}

int
ledger_inflight_delete(struct ledger *l, const char *id)
{
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_INFLIGHT_DELETE)) == NULL)
		return -1;
	return ledger_exec(l, SQL_INFLIGHT_DELETE, st,
			   sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC));
}

static int
ledger_inflight_row(sqlite3_stmt *st, struct ledger_visit *v)
{
	struct ledger_inflight f = {
		.id = ledger_col_text(st, 0),
		.settle_by = sqlite3_column_int64(st, 1),
		.items = ledger_col_text(st, 2),
	};

	return v->cb.inflight(&f, v->arg);
}

int
ledger_inflight_foreach(struct ledger *l, ledger_inflight_cb cb, void *arg)
{
	struct ledger_visit v = { .cb.inflight = cb, .arg = arg };
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_INFLIGHT_ALL)) == NULL)
		return -1;
	return ledger_iterate(l, SQL_INFLIGHT_ALL, st, SQLITE_OK,
			      ledger_inflight_row, &v);
}

int
ledger_history_add(struct ledger *l, const struct ledger_history *h)
{
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_HISTORY_ADD)) == NULL)
		return -1;
	return ledger_exec(
	    l, SQL_HISTORY_ADD, st,
	    sqlite3_bind_int64(st, 1, h->run_id) |
		sqlite3_bind_int64(st, 2, h->time) |
		sqlite3_bind_text(st, 3, h->action, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 4, h->course, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 5, h->username, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 6, h->role, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 7, h->reason, -1, SQLITE_STATIC));
}

static void
ledger_history_fill(sqlite3_stmt *st, struct ledger_history *h)
{
	h->id = sqlite3_column_int64(st, 0);
	h->run_id = sqlite3_column_int64(st, 1);
	h->time = sqlite3_column_int64(st, 2);
	h->action = ledger_col_text(st, 3);
	h->course = ledger_col_text(st, 4);
	h->username = ledger_col_text(st, 5);
	h->role = ledger_col_text(st, 6);
	h->reason = ledger_col_text(st, 7);
}

static int
ledger_history_row(sqlite3_stmt *st, struct ledger_visit *v)
{
	struct ledger_history h;

	ledger_history_fill(st, &h);
	return v->cb.history(&h, v->arg);
}

int
ledger_history_foreach(struct ledger *l, const struct ledger_history_filter *f,
		       ledger_history_cb cb, void *arg)
{
	struct ledger_visit v = { .cb.history = cb, .arg = arg };
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_HISTORY_ALL)) == NULL)
		return -1;
	return ledger_iterate(
	    l, SQL_HISTORY_ALL, st,
	    sqlite3_bind_text(st, 1, f->username, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 2, f->course, -1, SQLITE_STATIC) |
		sqlite3_bind_int64(st, 3, f->since) |
		sqlite3_bind_int64(st, 4, f->run_id),
	    ledger_history_row, &v);
}

int
ledger_history_prune(struct ledger *l, int64_t before, size_t max,
		     size_t *ret_deleted)
{
	sqlite3_stmt *st;

	*ret_deleted = 0;
	if ((st = ledger_stmt(l, SQL_HISTORY_PRUNE)) == NULL ||
	    ledger_exec(l, SQL_HISTORY_PRUNE, st,
			sqlite3_bind_int64(st, 1, before) |
			    sqlite3_bind_int64(st, 2, (int64_t)max)) == -1)
		return -1;
	*ret_deleted = (size_t)sqlite3_changes(l->db);
	return 0;
}

int
ledger_course_foreach_due(struct ledger *l, size_t max, ledger_course_cb cb,
			  void *arg)
{
	struct ledger_visit v = { .cb.course = cb, .arg = arg };
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_COURSE_DUE)) == NULL)
		return -1;
	return ledger_iterate(l, SQL_COURSE_DUE, st,
			      sqlite3_bind_int64(st, 1, (int64_t)max),
			      ledger_course_row, &v);
}

int
ledger_course_checks(struct ledger *l, int64_t before, int64_t *ret_tracked,
		     int64_t *ret_overdue, int64_t *ret_oldest)
{
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_COURSE_CHECKS)) == NULL ||
	    ledger_row(l, SQL_COURSE_CHECKS, st,
		       sqlite3_bind_int64(st, 1, before)) != 0)
		return -1;
	*ret_tracked = sqlite3_column_int64(st, 0);
	*ret_overdue = sqlite3_column_int64(st, 1);
	*ret_oldest = sqlite3_column_int64(st, 2);
	ledger_release(l, SQL_COURSE_CHECKS, st);
	return 0;
}

int
ledger_drift_put(struct ledger *l, const struct ledger_drift *d)
{
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_DRIFT_PUT)) == NULL ||
	    ledger_exec(
		l, SQL_DRIFT_PUT, st,
		sqlite3_bind_text(st, 1, d->course, -1, SQLITE_STATIC) |
		    sqlite3_bind_text(st, 2, d->username, -1, SQLITE_STATIC) |
		    sqlite3_bind_int(st, 3, d->roleid) |
		    sqlite3_bind_text(st, 4, d->kind, -1, SQLITE_STATIC) |
		    sqlite3_bind_text(st, 5, d->ledger_said, -1,
				      SQLITE_STATIC) |
		    sqlite3_bind_text(st, 6, d->moodle_has, -1, SQLITE_STATIC) |
		    sqlite3_bind_int64(st, 7, d->since) |
		    sqlite3_bind_int64(st, 8, d->run_id)) == -1)
		return -1;
	return sqlite3_changes(l->db) == 1 ? 1 : 0;
}

int
ledger_drift_delete(struct ledger *l, const char *course, const char *username,
		    int roleid, const char *kind)
{
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_DRIFT_DELETE)) == NULL ||
	    ledger_exec(
		l, SQL_DRIFT_DELETE, st,
		sqlite3_bind_text(st, 1, course, -1, SQLITE_STATIC) |
		    sqlite3_bind_text(st, 2, username, -1, SQLITE_STATIC) |
		    sqlite3_bind_int(st, 3, roleid) |
		    sqlite3_bind_text(st, 4, kind, -1, SQLITE_STATIC)) == -1)
		return -1;
	return sqlite3_changes(l->db);
}

static int
ledger_drift_row(sqlite3_stmt *st, struct ledger_visit *v)
{
	struct ledger_drift d = {
		.course = ledger_col_text(st, 0),
		.username = ledger_col_text(st, 1),
		.roleid = sqlite3_column_int(st, 2),
		.kind = ledger_col_text(st, 3),
		.ledger_said = ledger_col_text(st, 4),
		.moodle_has = ledger_col_text(st, 5),
		.since = sqlite3_column_int64(st, 6),
		.run_id = sqlite3_column_int64(st, 7),
	};

	return v->cb.drift(&d, v->arg);
}

int
ledger_drift_foreach(struct ledger *l, ledger_drift_cb cb, void *arg)
{
	struct ledger_visit v = { .cb.drift = cb, .arg = arg };
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_DRIFT_ALL)) == NULL)
		return -1;
	return ledger_iterate(l, SQL_DRIFT_ALL, st, SQLITE_OK, ledger_drift_row,
			      &v);
}

int
ledger_decision_unmark_all(struct ledger *l)
{
	return ledger_simple(l, SQL_DECISION_UNMARK);
}

int
ledger_decision_sweep(struct ledger *l)
{
	return ledger_simple(l, SQL_DECISION_SWEEP);
}

/* 0 found (*ret_run, *ret_time since when, reason compared), 1 none. */
static int
ledger_decision_get(struct ledger *l, const struct ledger_history *d,
		    bool *ret_same, int64_t *ret_run, int64_t *ret_time)
{
	sqlite3_stmt *st;
	int rc;

	if ((st = ledger_stmt(l, SQL_DECISION_GET)) == NULL)
		return -1;
	rc = ledger_row(
	    l, SQL_DECISION_GET, st,
	    sqlite3_bind_text(st, 1, d->course, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 2, d->username, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 3, d->action, -1, SQLITE_STATIC));
	if (rc != 0)
		return rc;
	if (ret_same != NULL)
		*ret_same = d->reason != NULL &&
			    strcmp(ledger_col_text(st, 0), d->reason) == 0;
	*ret_run = sqlite3_column_int64(st, 1);
	*ret_time = sqlite3_column_int64(st, 2);
	ledger_release(l, SQL_DECISION_GET, st);
	return 0;
}

int
ledger_decision_put(struct ledger *l, const struct ledger_history *d,
		    bool *ret_new)
{
	sqlite3_stmt *st;
	int64_t run, time;
	bool same = false;
	int found;

	if ((found = ledger_decision_get(l, d, &same, &run, &time)) == -1 ||
	    (st = ledger_stmt(l, SQL_DECISION_PUT)) == NULL)
		return -1;
	*ret_new = found == 1 || !same;
	return ledger_exec(
	    l, SQL_DECISION_PUT, st,
	    sqlite3_bind_text(st, 1, d->course, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 2, d->username, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 3, d->action, -1, SQLITE_STATIC) |
		sqlite3_bind_text(st, 4, d->reason, -1, SQLITE_STATIC) |
		sqlite3_bind_int64(st, 5, d->run_id) |
		sqlite3_bind_int64(st, 6, d->time));
}

static int
ledger_decision_row(sqlite3_stmt *st, struct ledger_visit *v)
{
	const char *user = ledger_col_text(st, 1);
	struct ledger_history h = {
		.course = ledger_col_text(st, 0),
		.username = user != NULL && *user != '\0' ? user : NULL,
		.action = ledger_col_text(st, 2),
		.reason = ledger_col_text(st, 3),
		.run_id = sqlite3_column_int64(st, 4),
		.time = sqlite3_column_int64(st, 5),
	};

	return v->cb.history(&h, v->arg);
}

int
ledger_decision_foreach(struct ledger *l, const char *action,
			ledger_history_cb cb, void *arg)
{
	struct ledger_visit v = { .cb.history = cb, .arg = arg };
	sqlite3_stmt *st;

	if ((st = ledger_stmt(l, SQL_DECISION_ACTION)) == NULL)
		return -1;
	return ledger_iterate(
	    l, SQL_DECISION_ACTION, st,
	    sqlite3_bind_text(st, 1, action, -1, SQLITE_STATIC),
	    ledger_decision_row, &v);
}

int
ledger_decision_since(struct ledger *l, const char *course,
		      const char *username, const char *action,
		      int64_t *ret_run, int64_t *ret_time)
{
	struct ledger_history d = { .course = course,
				    .username = username,
				    .action = action };

	return ledger_decision_get(l, &d, NULL, ret_run, ret_time);
}
