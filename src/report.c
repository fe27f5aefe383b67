/* What webcoursed tells people: the missing-users CSV, status and errors. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"
#include "ledger.h"
#include "log.h"
#include "reconcile.h"
#include "report.h"
#include "util.h"

#define REPORT_RUNS 5 /* recent runs shown by status */

void
report_csv_cell(FILE *f, const char *s)
{
	/* A spreadsheet runs a cell starting with one of these as a formula
	 * (OWASP "CSV injection"): prefix a quote so it stays text. */
	bool formula = s[0] != '\0' && strchr("=+-@\t\r", s[0]) != NULL;
	bool quote = formula || strpbrk(s, ",\"\r\n") != NULL;

	if (quote)
		fputc('"', f);
	if (formula)
		fputc('\'', f);
	for (; *s != '\0'; s++) {
		if (*s == '"')
			fputc('"', f); /* RFC 4180: double the quote */
		fputc(*s, f);
	}
	if (quote)
		fputc('"', f);
}

/* The texts of one printed line, cleaned for a terminal (text_clean) and
 * freed together once the line is out. */
struct report_line {
	char *s[8];
	size_t n;
};

static const char *
report_clean(struct report_line *rl, const char *s)
{
	if (rl->n == nitems(rl->s))
		fatalx("report_clean: more than %zu texts", nitems(rl->s));
	return rl->s[rl->n++] = text_clean(s != NULL ? s : "");
}

static void
report_line_done(struct report_line *rl)
{
	while (rl->n > 0)
		free(rl->s[--rl->n]);
}

static void
report_role(const struct config *conf, int roleid, char *buf, size_t len)
{
	const char *name = config_role_name(conf, roleid);

	if (name != NULL)
		snprintf(buf, len, "%s", name);
	else
		snprintf(buf, len, "%d", roleid);
}

struct report_out {
	const struct config *conf;
	FILE *f;
	json_t *array;
};

static int
report_missing_csv_cb(const struct ledger_missing *m, void *arg)
{
	struct report_out *o = arg;
	char role[64], when[32];

	report_role(o->conf, m->roleid, role, sizeof(role));
	format_time(m->first_seen, when, sizeof(when));
	report_csv_cell(o->f, m->username);
	fputc(',', o->f);
	report_csv_cell(o->f, m->course);
	fputc(',', o->f);
	report_csv_cell(o->f, role);
	fputc(',', o->f);
	report_csv_cell(o->f, when);
	fputs("\r\n", o->f);
	return 0;
}

int
report_missing_csv(const struct config *conf, struct ledger *l, FILE *f)
{
	struct report_out o = { conf, f, NULL };

	fputs("username,course_shortname,role,first_seen\r\n", f);
	return ledger_missing_foreach(l, report_missing_csv_cb, &o);
}

int
report_write_missing_csv(const struct config *conf, struct ledger *l,
			 char **cause)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int rv;

	if (conf->state_missing_users_csv == NULL ||
	    *conf->state_missing_users_csv == '\0')
		return 0;
	if ((f = open_memstream(&buf, &len)) == NULL) {
		*cause = xstrdup("out of memory");
		return -1;
	}
	rv = report_missing_csv(conf, l, f);
	fclose(f);
	if (rv == -1)
		xasprintf(cause, "ledger: %s", ledger_errmsg(l));
	else
		rv = write_file_atomic(conf->state_missing_users_csv, buf, len,
				       0640, cause);
	free(buf);
	return rv;
}

static int
report_missing_json_cb(const struct ledger_missing *m, void *arg)
{
	struct report_out *o = arg;
	char role[64], when[32];

	report_role(o->conf, m->roleid, role, sizeof(role));
	format_time(m->first_seen, when, sizeof(when));
	json_array_append_new(o->array,
			      json_pack("{s:s, s:s, s:s, s:i, s:s}", "username",
					m->username, "course_shortname",
					m->course, "role", role, "roleid",
					m->roleid, "first_seen", when));
	return 0;
}

int
report_missing_json(const struct config *conf, struct ledger *l, FILE *f)
{
	struct report_out o = { conf, f, json_array() };
	int rv;

	if ((rv = ledger_missing_foreach(l, report_missing_json_cb, &o)) == 0) {
		json_dumpf(o.array, f, JSON_INDENT(2));
		fputc('\n', f);
	}
	json_decref(o.array);
	return rv;
}

static json_t *
report_run_json(const struct ledger_run *r)
{
	char started[32], ended[32];

	format_time(r->started, started, sizeof(started));
	format_time(r->ended, ended, sizeof(ended));
	return json_pack(
	    "{s:I, s:s, s:s?, s:s, s:s?, s:{s:I, s:I, s:I, s:I, s:I, s:I, "
	    "s:I, s:I, s:I, s:I, s:I, s:I}}",
	    "id", (json_int_t)r->id, "started", started, "ended",
	    r->ended ? ended : NULL, "outcome", r->outcome, "message",
	    r->message, "counts", "courses_created",
	    (json_int_t)r->courses_created, "courses_adopted",
	    (json_int_t)r->courses_adopted, "courses_renamed",
	    (json_int_t)r->courses_renamed, "courses_hidden",
	    (json_int_t)r->courses_hidden, "courses_pending",
	    (json_int_t)r->courses_pending, "enrolled", (json_int_t)r->enrolled,
	    "role_changes", (json_int_t)r->role_changes, "suspended",
	    (json_int_t)r->suspended, "unenrolled", (json_int_t)r->unenrolled,
	    "missing_users", (json_int_t)r->missing_users, "errors",
	    (json_int_t)r->errors, "removals_withheld",
	    (json_int_t)r->removals_withheld);
}

struct report_courses {
	int64_t tracked, hidden;
	json_t *pending; /* [{shortname, fullname, participants}] */
};

static int
report_courses_cb(const struct ledger_course *c, void *arg)
{
	struct report_courses *rc = arg;

	if (c->status == LEDGER_COURSE_ACTIVE)
		rc->tracked++;
	else if (c->status == LEDGER_COURSE_HIDDEN)
		rc->hidden++;
	else if (c->status == LEDGER_COURSE_PENDING ||
		 c->status == LEDGER_COURSE_APPROVED)
		json_array_append_new(
		    rc->pending,
		    json_pack("{s:s, s:s?, s:i, s:b}", "shortname",
			      c->shortname, "fullname", c->fullname,
			      "participants", c->participants, "approved",
			      c->status == LEDGER_COURSE_APPROVED));
	return 0;
}

static int
report_drift_count_cb(const struct ledger_drift *d, void *arg)
{
	json_t *kinds = arg;
	json_t *n = json_object_get(kinds, d->kind);

	json_object_set_new(kinds, d->kind,
			    json_integer(json_integer_value(n) + 1));
	return 0;
}

/* {"total", "kinds": {kind: n}, "oldest_check", "courses_checked"}. */
static json_t *
report_drift_summary(struct ledger *l)
{
	json_t *kinds = json_object(), *v;
	int64_t tracked, overdue, oldest, total = 0;
	const char *k;
	char when[32];

	if (ledger_drift_foreach(l, report_drift_count_cb, kinds) == -1 ||
	    ledger_course_checks(l, 0, &tracked, &overdue, &oldest) == -1) {
		json_decref(kinds);
		return NULL;
	}
	json_object_foreach(kinds, k, v) total += json_integer_value(v);
	format_time(oldest, when, sizeof(when));
	return json_pack("{s:I, s:o, s:s?}", "total", (json_int_t)total,
			 "kinds", kinds, "oldest_check",
			 tracked > 0 && oldest > 0 ? when : NULL);
}

/* Gather the status as one JSON object; text output is printed from it,
 * and the console's overview. */
json_t *
report_status_get(struct ledger *l)
{
	struct report_courses rc = { 0, 0, json_array() };
	struct ledger_run *runs = NULL;
	size_t nruns = 0;
	int64_t active = 0, suspended = 0, missing = 0;
	char *withheld = NULL, *next = NULL;
	json_t *o, *drift, *jruns = json_array();

	if (ledger_runs_recent(l, REPORT_RUNS, &runs, &nruns) == -1 ||
	    ledger_course_foreach(l, report_courses_cb, &rc) == -1 ||
	    ledger_enrol_count(l, LEDGER_ENROL_ACTIVE, &active) == -1 ||
	    ledger_enrol_count(l, LEDGER_ENROL_SUSPENDED, &suspended) == -1 ||
	    ledger_missing_count_users(l, &missing) == -1 ||
	    ledger_meta_get(l, "removals_withheld", &withheld) == -1 ||
	    ledger_meta_get(l, "next_run", &next) == -1) {
		json_decref(rc.pending);
		json_decref(jruns);
		ledger_runs_free(runs, nruns);
		return NULL;
	}
	for (size_t i = 0; i < nruns; i++)
		json_array_append_new(jruns, report_run_json(&runs[i]));
	if ((drift = report_drift_summary(l)) == NULL) {
		json_decref(rc.pending);
		json_decref(jruns);
		ledger_runs_free(runs, nruns);
		free(withheld);
		free(next);
		return NULL;
	}
	o = json_pack(
	    "{s:o, s:{s:I, s:I}, s:{s:I, s:I}, s:I, s:s?, s:o, s:s?, s:o}",
	    "runs", jruns, "courses", "tracked", (json_int_t)rc.tracked,
	    "hidden", (json_int_t)rc.hidden, "enrolments", "active",
	    (json_int_t)active, "suspended", (json_int_t)suspended,
	    "missing_users", (json_int_t)missing, "removals_withheld", withheld,
	    "awaiting_approval", rc.pending, "next_run", next, "drift", drift);
	ledger_runs_free(runs, nruns);
	free(withheld);
	free(next);
	return o;
}

static void
report_status_text(json_t *o, FILE *f)
{
	json_t *runs = json_object_get(o, "runs"), *pending, *r, *c;
	struct report_line rl = { .n = 0 };
	const char *s;
	size_t i;

	if (json_array_size(runs) == 0)
		fprintf(f,
			"last run:          none: no run has happened yet\n");
	json_array_foreach(runs, i, r)
	{
		fprintf(f, "%s #%" JSON_INTEGER_FORMAT " %s %s: %s\n",
			i == 0 ? "last run:         " : "                  ",
			json_integer_value(json_object_get(r, "id")),
			json_string_value(json_object_get(r, "started")),
			json_string_value(json_object_get(r, "outcome")),
			report_clean(&rl, json_string_value(
					      json_object_get(r, "message"))));
		report_line_done(&rl);
	}
	if ((s = json_string_value(json_object_get(o, "next_run"))) != NULL)
		fprintf(f, "next run:          %s\n", s);
	c = json_object_get(o, "courses");
	fprintf(f,
		"courses:           %" JSON_INTEGER_FORMAT
		" tracked, %" JSON_INTEGER_FORMAT " hidden\n",
		json_integer_value(json_object_get(c, "tracked")),
		json_integer_value(json_object_get(c, "hidden")));
	c = json_object_get(o, "enrolments");
	fprintf(f,
		"enrolments:        %" JSON_INTEGER_FORMAT
		" active, %" JSON_INTEGER_FORMAT " suspended\n",
		json_integer_value(json_object_get(c, "active")),
		json_integer_value(json_object_get(c, "suspended")));
	fprintf(f, "missing users:     %" JSON_INTEGER_FORMAT "%s\n",
		json_integer_value(json_object_get(o, "missing_users")),
		json_integer_value(json_object_get(o, "missing_users"))
		    ? " (webcoursectl missing-users)"
		    : "");
	c = json_object_get(o, "drift");
	fprintf(f, "drift:             %" JSON_INTEGER_FORMAT "%s",
		json_integer_value(json_object_get(c, "total")),
		json_integer_value(json_object_get(c, "total"))
		    ? " (webcoursectl drift)"
		    : "");
	if ((s = json_string_value(json_object_get(c, "oldest_check"))) != NULL)
		fprintf(f, "; oldest course check %s", s);
	fputc('\n', f);
	if ((s = json_string_value(json_object_get(o, "removals_withheld"))) !=
	    NULL)
		fprintf(f, "WARNING:           %s\n", report_clean(&rl, s));
	report_line_done(&rl);
	pending = json_object_get(o, "awaiting_approval");
	if (json_array_size(pending) > 0)
		fprintf(f,
			"awaiting approval: %zu courses "
			"(webcoursectl approve SHORTNAME... | --all)\n",
			json_array_size(pending));
	json_array_foreach(pending, i, c)
	{
		fprintf(
		    f, "  %-20s %s (%" JSON_INTEGER_FORMAT " participants)%s\n",
		    report_clean(&rl, json_string_value(
					  json_object_get(c, "shortname"))),
		    report_clean(
			&rl, json_string_value(json_object_get(c, "fullname"))),
		    json_integer_value(json_object_get(c, "participants")),
		    json_is_true(json_object_get(c, "approved")) ? ", approved"
								 : "");
		report_line_done(&rl);
	}
}

int
report_status(const struct config *conf, struct ledger *l, FILE *f, bool json)
{
	json_t *o;

	(void)conf;
	if ((o = report_status_get(l)) == NULL)
		return -1;
	if (json) {
		json_dumpf(o, f, JSON_INDENT(2));
		fputc('\n', f);
	} else
		report_status_text(o, f);
	json_decref(o);
	return 0;
}

struct report_errors {
	FILE *f;
	json_t *array;
	size_t n;
};

static int
report_errors_cb(const struct ledger_error *e, void *arg)
{
	struct report_errors *re = arg;
	struct report_line rl = { .n = 0 };

	if (re->n++ == 0 && re->array == NULL)
		fprintf(re->f, "item errors recorded by run #%" PRId64 ":\n",
			e->run_id);
	if (re->array != NULL)
		json_array_append_new(
		    re->array,
		    json_pack("{s:I, s:s, s:s, s:s, s:s}", "run",
			      (json_int_t)e->run_id, "kind", e->kind, "item",
			      e->item, "code", e->code, "message", e->message));
	else
		fprintf(re->f, "%-12s %-30s %-20s %s\n",
			report_clean(&rl, e->kind), report_clean(&rl, e->item),
			report_clean(&rl, e->code),
			report_clean(&rl, e->message));
	report_line_done(&rl);
	return 0;
}

/* The last run, when it failed or was cancelled, counts as an error of
 * kind "run"; then the item errors of the last run that recorded any. */
int
report_errors(struct ledger *l, FILE *f, bool json)
{
	struct report_errors re = { f, json ? json_array() : NULL, 0 };
	struct ledger_run *runs = NULL;
	size_t nruns = 0;
	bool failed;
	char item[32];
	int rv;

	if (ledger_runs_recent(l, 1, &runs, &nruns) == -1) {
		json_decref(re.array);
		return -1;
	}
	failed = nruns == 1 && (strcmp(runs[0].outcome, "failed") == 0 ||
				strcmp(runs[0].outcome, "cancelled") == 0);
	if (failed && json) {
		snprintf(item, sizeof(item), "#%" PRId64, runs[0].id);
		json_array_append_new(
		    re.array, json_pack("{s:I, s:s, s:s, s:s, s:s}", "run",
					(json_int_t)runs[0].id, "kind", "run",
					"item", item, "code", runs[0].outcome,
					"message", runs[0].message ?: ""));
	} else if (failed) {
		fprintf(f, "the last run, #%" PRId64 ", %s: ", runs[0].id,
			runs[0].outcome);
		text_put(f, runs[0].message);
		fputc('\n', f);
	}
	rv = ledger_error_foreach(l, 0, report_errors_cb, &re);
	if (rv == 0 && json) {
		json_dumpf(re.array, f, JSON_INDENT(2));
		fputc('\n', f);
	} else if (rv == 0 && re.n == 0 && !failed && nruns == 1)
		fprintf(f, "no errors in the last run (#%" PRId64 ")\n",
			runs[0].id);
	else if (rv == 0 && re.n == 0 && nruns == 0)
		fprintf(f, "no run has happened yet\n");
	ledger_runs_free(runs, nruns);
	json_decref(re.array);
	return rv;
}

struct report_history {
	FILE *f;
	json_t *array;
	size_t n;
};

static int
report_history_cb(const struct ledger_history *h, void *arg)
{
	struct report_history *rh = arg;
	struct report_line rl = { .n = 0 };
	char when[32];

	rh->n++;
	format_time(h->time, when, sizeof(when));
	if (rh->array != NULL) {
		json_array_append_new(
		    rh->array,
		    json_pack("{s:I, s:I, s:s, s:s, s:s?, s:s?, s:s?, s:s}",
			      "id", (json_int_t)h->id, "run",
			      (json_int_t)h->run_id, "time", when, "action",
			      h->action, "course", h->course, "username",
			      h->username, "role", h->role, "reason",
			      h->reason));
		return 0;
	}
	when[10] = ' ';
	when[16] = '\0'; /* "YYYY-MM-DD HH:MM", UTC */
	fprintf(rh->f, "%s  run %-5" PRId64 " %-11s %-16s %-14s %-9s %s\n",
		when, h->run_id, report_clean(&rl, h->action),
		report_clean(&rl, h->course ? h->course : "-"),
		report_clean(&rl, h->username ? h->username : "-"),
		report_clean(&rl, h->role ? h->role : "-"),
		report_clean(&rl, h->reason));
	report_line_done(&rl);
	return 0;
}

int
report_history(struct ledger *l, const struct ledger_history_filter *filter,
	       FILE *f, bool json)
{
	struct report_history rh = { f, json ? json_array() : NULL, 0 };
	int rv;

	if (!json)
		fprintf(f, "%-16s  %-9s %-11s %-16s %-14s %-9s %s\n",
			"time (UTC)", "run", "action", "course", "user", "role",
			"why");
	rv = ledger_history_foreach(l, filter, report_history_cb, &rh);
	if (rv == 0 && json) {
		json_dumpf(rh.array, f, JSON_INDENT(2));
		fputc('\n', f);
	} else if (rv == 0 && rh.n == 0)
		fprintf(f, "no events%s\n",
			filter->username || filter->course || filter->since ||
				filter->run_id
			    ? " match"
			    : " yet");
	json_decref(rh.array);
	return rv;
}

struct report_drift {
	const struct config *conf;
	FILE *f;
	json_t *array;
	size_t n;
};

static int
report_drift_cb(const struct ledger_drift *d, void *arg)
{
	struct report_drift *rd = arg;
	const char *role =
	    d->roleid > 0 ? config_role_name(rd->conf, d->roleid) : NULL;
	const char *policy = reconcile_policy_words(rd->conf, d->kind);
	struct report_line rl = { .n = 0 };
	char since[32];

	rd->n++;
	format_time(d->since, since, sizeof(since));
	if (rd->array != NULL) {
		json_array_append_new(
		    rd->array,
		    json_pack("{s:s, s:s?, s:s?, s:s, s:s, s:s, s:s, s:I, s:s}",
			      "course", d->course, "username",
			      *d->username ? d->username : NULL, "role", role,
			      "kind", d->kind, "ledger_said", d->ledger_said,
			      "moodle_has", d->moodle_has, "since", since,
			      "run", (json_int_t)d->run_id, "policy", policy));
		return 0;
	}
	since[10] = '\0';
	fprintf(rd->f, "%s  %-16s %-14s %-11s ledger: %s; Moodle: %s; %s\n",
		since, report_clean(&rl, d->course),
		report_clean(&rl, *d->username ? d->username : "-"),
		report_clean(&rl, d->kind), report_clean(&rl, d->ledger_said),
		report_clean(&rl, d->moodle_has), policy);
	report_line_done(&rl);
	return 0;
}

int
report_drift(const struct config *conf, struct ledger *l, FILE *f, bool json)
{
	struct report_drift rd = { conf, f, json ? json_array() : NULL, 0 };
	int rv = ledger_drift_foreach(l, report_drift_cb, &rd);

	if (rv == 0 && json) {
		json_dumpf(rd.array, f, JSON_INDENT(2));
		fputc('\n', f);
	} else if (rv == 0 && rd.n == 0)
		fprintf(f, "no drift: the ledger and Moodle agree on every "
			   "course checked\n");
	json_decref(rd.array);
	return rv;
}
