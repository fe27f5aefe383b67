/* One sync run: fetch, decode, plan, guard, apply, record — in that order. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply.h"
#include "config.h"
#include "feed.h"
#include "history.h"
#include "http.h"
#include "ledger.h"
#include "log.h"
#include "moodle.h"
#include "plan.h"
#include "reconcile.h"
#include "report.h"
#include "run.h"
#include "util.h"

/* What a run holds between its steps. */
struct run {
	const struct config *conf;
	struct ledger *ledger;
	const struct run_options *opts;
	struct ledger_run *res;
	struct http *http;
	struct moodle *moodle;
	struct apply apply;
	struct feed_validators last, fetched;
	char *body;
	size_t len;
	struct feed *feed;
	struct plan *plan;
	struct reconcile rec;
	bool withheld;
	int64_t start_ms;
};

/* Calls grow no larger than this many form variables, whatever PHP takes:
 * a call of 3,300 enrolments already keeps Moodle busy for 40 s. */
#define RUN_MAX_INPUT_VARS 10000

/* History rows pruned per run at most: a long-unpruned ledger catches up
 * over a few runs instead of stalling one. */
#define RUN_HISTORY_PRUNE 10000

/* Meta keys of the last fully applied feed. */
static const char *const run_validator_keys[] = { "feed_etag",
						  "feed_last_modified",
						  "feed_digest" };

static void
run_progress(struct run *r, const char *phase)
{
	if (r->opts->progress != NULL)
		r->opts->progress(r->opts->arg, phase, 0, 0);
}

static bool
run_cancelled(const struct run *r)
{
	return r->opts->cancel != NULL && *r->opts->cancel;
}

/* Tell the fetch observer what the fetch came to (rejected: the body did
 * not pass validation).  A cancelled fetch says nothing about the feed. */
static void
run_observe_fetch(struct run *r, enum feed_fetch_result fr, bool rejected,
		  int64_t usec)
{
	static const struct {
		enum feed_fetch_result fr;
		const char *result;
	} results[] = {
		{ FEED_FETCH_NEW, "new" },
		{ FEED_FETCH_UNCHANGED, "unchanged" },
		{ FEED_FETCH_NOT_MODIFIED, "304" },
		{ FEED_FETCH_ERROR, "error" },
	};

	if (r->opts->observe_fetch == NULL)
		return;
	for (size_t i = 0; i < nitems(results); i++)
		if (results[i].fr == fr)
			r->opts->observe_fetch(r->opts->arg,
					       rejected ? "rejected"
							: results[i].result,
					       r->len, usec);
}

/* Fail the run with a message (taking ownership of msg). */
static int
run_fail(struct run *r, const char *outcome, char *msg)
{
	free(r->res->outcome);
	free(r->res->message);
	r->res->outcome = xstrdup(run_cancelled(r) ? "cancelled" : outcome);
	r->res->message = msg;
	return -1;
}

static char **
run_validator_field(struct feed_validators *v, size_t i)
{
	char **fields[] = { &v->etag, &v->last_modified, &v->digest };

	return fields[i];
}

static int
run_count_cb(const struct ledger_inflight *f, void *arg)
{
	(void)f;
	(*(size_t *)arg)++;
	return 0;
}

/* The validators of the last fully applied feed; none while enrolments of
 * an earlier run are in flight, whose fate the plan must see. */
static int
run_load_validators(struct run *r)
{
	size_t inflight = 0;

	if (ledger_inflight_foreach(r->ledger, run_count_cb, &inflight) == -1)
		return -1;
	if (inflight > 0)
		return 0;
	for (size_t i = 0; i < nitems(run_validator_keys); i++)
		if (ledger_meta_get(r->ledger, run_validator_keys[i],
				    run_validator_field(&r->last, i)) == -1)
			return -1;
	return 0;
}

/* Called only after a run applied the whole feed: the next run may then
 * skip an identical feed. */
static int
run_save_validators(struct run *r)
{
	if (ledger_begin(r->ledger) == -1)
		return -1;
	for (size_t i = 0; i < nitems(run_validator_keys); i++)
		if (ledger_meta_set(r->ledger, run_validator_keys[i],
				    *run_validator_field(&r->fetched, i)) ==
		    -1) {
			ledger_rollback(r->ledger);
			return -1;
		}
	return ledger_commit(r->ledger);
}

/* max_input_vars = auto: the limit measured on this Moodle version, kept
 * in the ledger as "LIMIT VERSION"; measured again when the version
 * changes or a cut forgot it (run_steps). */
static int
run_max_input_vars(struct run *r, const char *version)
{
	struct moodle_error err = { 0 };
	char *kept = NULL, *sp, value[128];
	int64_t n;
	int limit, rv = -1;

	if (ledger_meta_get(r->ledger, "max_input_vars", &kept) == -1)
		return run_fail(r, "failed", xstrdup(ledger_errmsg(r->ledger)));
	if (kept != NULL && (sp = strchr(kept, ' ')) != NULL &&
	    strcmp(sp + 1, version) == 0 && (*sp = '\0', 1) &&
	    parse_int64(kept, 100, INT32_MAX, &n) == 0) {
		moodle_set_max_input_vars(r->moodle, (int)n);
		rv = 0;
		goto out;
	}
	run_progress(r, "measuring max_input_vars");
	if (moodle_probe_max_input_vars(r->moodle, RUN_MAX_INPUT_VARS, &limit,
					&err) == -1) {
		run_fail(r, "failed",
			 xstrdup(err.message ? err.message : "probe failed"));
		goto out;
	}
	moodle_set_max_input_vars(r->moodle, limit);
	log_info("Moodle's PHP takes %d form variables per call "
		 "(max_input_vars, measured with read-only look-ups%s)",
		 limit, limit == RUN_MAX_INPUT_VARS ? ", or more" : "");
	snprintf(value, sizeof(value), "%d %s", limit, version);
	if (ledger_meta_set(r->ledger, "max_input_vars", value) == -1)
		log_warnx("cannot keep max_input_vars: %s",
			  ledger_errmsg(r->ledger));
	rv = 0;
out:
	free(kept);
	moodle_error_clear(&err);
	return rv;
}

/* The token must reach every function a run calls; say which it cannot. */
static int
run_check_moodle(struct run *r)
{
	struct moodle_site_info *si = NULL;
	struct moodle_error err = { 0 };
	char *missing = NULL, *tmp;
	int rv = -1;

	if (moodle_site_info(r->moodle, &si, &err) == -1) {
		run_fail(r, "failed",
			 xstrdup(err.message ? err.message : "Moodle failed"));
		goto out;
	}
	for (const char *const *f = moodle_required_functions; *f; f++) {
		bool found = false;

		for (size_t i = 0; i < si->nfunctions && !found; i++)
			found = strcmp(si->functions[i], *f) == 0;
		if (found)
			continue;
		xasprintf(&tmp, "%s%s%s", missing ? missing : "",
			  missing ? ", " : "", *f);
		free(missing);
		missing = tmp;
	}
	if (missing != NULL) {
		xasprintf(&tmp,
			  "the web service lacks functions: %s (add them to "
			  "the external service of the token)",
			  missing);
		run_fail(r, "failed", tmp);
		goto out;
	}
	if (r->conf->moodle_max_input_vars == 0 &&
	    run_max_input_vars(r, si->version) == -1)
		goto out;
	rv = 0;
out:
	free(missing);
	moodle_site_info_free(si);
	moodle_error_clear(&err);
	return rv;
}

/* A skipped record in the history, once: "shortname/username" items name
 * a participant, others a course (or a place in the feed). */
static int
run_history_issue(struct run *r, const struct feed_issue *fi)
{
	char *course = xstrdup(fi->item), *user = strchr(course, '/');
	int rv;

	if (user != NULL && strcmp(fi->kind, "participant") == 0)
		*user++ = '\0';
	else
		user = NULL;
	rv = history_decide(&r->apply.hist, "skip", course, user, 0,
			    "feed record skipped: %s", fi->message);
	free(course);
	return rv;
}

/* The skipped records in the error table and the history, at once. */
static int
run_record_skipped(struct run *r)
{
	const struct feed *f = r->feed;

	/* A full run makes its decisions anew (skipped records here,
	 * withheld removals and refusals in apply): those it no longer
	 * makes are swept once it applied the plan. */
	if (ledger_begin(r->ledger) == -1)
		return -1;
	if (ledger_decision_unmark_all(r->ledger) == -1)
		goto fail;
	for (size_t i = 0; i < f->nissues; i++)
		if (ledger_error_add(r->ledger, r->res->id, f->issues[i].kind,
				     f->issues[i].item, f->issues[i].code,
				     f->issues[i].message) == -1 ||
		    run_history_issue(r, &f->issues[i]) == -1)
			goto fail;
	return ledger_commit(r->ledger);
fail:
	ledger_rollback(r->ledger);
	return -1;
}

/* Skipped feed records: one error row each, one warning per kind. */
static void
run_record_issues(struct run *r)
{
	const struct feed *f = r->feed;
	size_t count;

	if (run_record_skipped(r) == -1)
		log_warnx("cannot record the skipped records: %s",
			  ledger_errmsg(r->ledger));
	r->res->errors += (int64_t)f->nissues;
	for (size_t i = 0; i < f->nissues; i++) {
		bool first = true;

		for (size_t k = 0; k < i && first; k++)
			first =
			    strcmp(f->issues[k].code, f->issues[i].code) != 0;
		if (!first)
			continue;
		count = 0;
		for (size_t k = i; k < f->nissues; k++)
			count +=
			    strcmp(f->issues[k].code, f->issues[i].code) == 0;
		log_warnx("feed: %zu %s record%s skipped (%s), e.g. %s: %s",
			  count, f->issues[i].kind, count == 1 ? "" : "s",
			  f->issues[i].code, f->issues[i].item,
			  f->issues[i].message);
	}
}

/* The limit for removing n of tracked things at once: a count, or a
 * percentage with a floor (a small college and a large university both
 * get a sensible limit from the default). */
static int64_t
run_limit(const struct config *c, int64_t tracked, int64_t floor)
{
	int64_t limit;

	if (!c->sync_max_removals_percent)
		return c->sync_max_removals;
	limit = tracked * c->sync_max_removals / 100;
	return limit < floor ? floor : limit;
}

/* Remember the withheld removals (msg NULL: none): the warning for status
 * and STATUS=, the count for the metrics. */
static void
run_note_withheld(struct run *r, const char *msg, int64_t count)
{
	char n[24];

	snprintf(n, sizeof(n), "%" PRId64, count);
	ledger_meta_set(r->ledger, "removals_withheld", msg);
	ledger_meta_set(r->ledger, "removals_withheld_count",
			msg != NULL ? n : NULL);
}

/* The removal guard: too many removals at once are withheld until an
 * operator allows them or the feed recovers.  Enrolments (suspended or
 * unenrolled) and courses (hidden) are measured each against their own
 * total, so that a halved feed cannot hide half the courses. */
static void
run_guard(struct run *r)
{
	const struct config *c = r->conf;
	const struct plan *p = r->plan;
	int64_t enrolments = (int64_t)(p->nsuspend + p->nunenrol);
	int64_t courses = (int64_t)p->nhide;
	int64_t elimit =
	    run_limit(c, p->tracked_enrolments, c->sync_removals_allowance);
	int64_t climit = run_limit(c, p->tracked_courses, 1);
	char *msg;

	if (enrolments <= elimit && courses <= climit) {
		run_note_withheld(r, NULL, 0);
		return;
	}
	if (r->opts->allow_removals) {
		log_warnx("applying %" PRId64 " enrolment and %" PRId64
			  " course removals over the limit, as allowed by the "
			  "operator",
			  enrolments, courses);
		run_note_withheld(r, NULL, 0);
		return;
	}
	r->withheld = true;
	r->res->removals_withheld = enrolments + courses;
	if (enrolments > elimit)
		xasprintf(&msg,
			  "removals withheld: %" PRId64 " of %" PRId64
			  " enrolments (%" PRId64
			  " %%) would go, limit %" PRId64
			  "; run `webcoursectl sync --allow-removals` to apply "
			  "them",
			  enrolments, p->tracked_enrolments,
			  p->tracked_enrolments
			      ? enrolments * 100 / p->tracked_enrolments
			      : 100,
			  elimit);
	else
		xasprintf(
		    &msg,
		    "removals withheld: %" PRId64 " of %" PRId64
		    " courses (%" PRId64 " %%) would be hidden, limit %" PRId64
		    "; run `webcoursectl sync --allow-removals` to apply "
		    "them",
		    courses, p->tracked_courses,
		    p->tracked_courses ? courses * 100 / p->tracked_courses
				       : 100,
		    climit);
	log_fields(LOG_WARNING, NULL, "%s", msg);
	run_note_withheld(r, msg, r->res->removals_withheld);
	free(msg);
}

/* A feed may be skipped as unchanged next time only when this run applied
 * all of it: no withheld removals, held courses, item errors, or vanished
 * courses still counting their absences towards hiding. */
static bool
run_applied_whole(const struct run *r)
{
	if (r->withheld || r->res->errors > 0 || r->plan->nhold > 0 ||
	    r->apply.unsettled > 0)
		return false;
	if (r->conf->sync_on_removed_course == REMOVED_COURSE_HIDE)
		for (size_t i = 0; i < r->plan->nvanished; i++)
			if (r->plan->vanished[i].absent_runs < 2)
				return false;
	return true;
}

/* Fetch and decode the feed, with the last validators unless fresh:
 * the fetch result, or -1 with the outcome set. */
static int
run_fetch(struct run *r, bool fresh)
{
	enum feed_fetch_result fr;
	char *cause = NULL;
	int64_t usec;

	run_progress(r, "fetching feed");
	usec = now_monotonic_us();
	fr = feed_fetch(r->conf, r->http, fresh ? NULL : &r->last, &r->body,
			&r->len, &r->fetched, &cause);
	usec = now_monotonic_us() - usec;
	if (fr == FEED_FETCH_ERROR || fr == FEED_FETCH_CANCELLED) {
		run_observe_fetch(r, fr, false, usec);
		return run_fail(r, "failed",
				cause ? cause : xstrdup("fetch failed"));
	}
	if (fr == FEED_FETCH_NEW) {
		run_progress(r, "decoding feed");
		if (feed_decode(r->conf, r->body, r->len, &r->feed, &cause) ==
		    -1) {
			run_observe_fetch(r, fr, true, usec);
			return run_fail(r, "failed", cause);
		}
		free(r->body);
		r->body = NULL;
		run_record_issues(r);
	}
	run_observe_fetch(r, fr, false, usec);
	return (int)fr;
}

static int
run_repairable_cb(const struct ledger_drift *d, void *arg)
{
	(void)arg;
	return strcmp(d->kind, "gone") == 0 ||
	       strcmp(d->kind, "role_gone") == 0 ||
	       strcmp(d->kind, "course_gone") == 0;
}

/* Is there drift that sync.on_drift = repair puts back? */
static bool
run_drift_to_repair(struct run *r)
{
	return r->conf->sync_on_drift == ON_DRIFT_REPAIR &&
	       ledger_drift_foreach(r->ledger, run_repairable_cb, NULL) == 1;
}

/* Check this run's share of the courses for drift (reconcile.c). */
static int
run_reconcile(struct run *r)
{
	struct reconcile *rec = &r->rec;

	*rec = (struct reconcile){ .conf = r->conf,
				   .ledger = r->ledger,
				   .moodle = r->moodle,
				   .hist = &r->apply.hist,
				   .progress = r->opts->progress,
				   .arg = r->opts->arg };
	if (reconcile_slice(rec) == -1) {
		free(r->apply.cause);
		r->apply.cause = rec->cause;
		rec->cause = NULL;
		return -1;
	}
	if (rec->checked > 0)
		log_info("drift check: %zu courses checked, %zu new drift, "
			 "%zu resolved",
			 rec->checked, rec->found, rec->resolved);
	return 0;
}

/* After the steps: whether Moodle was found down (the breaker opened).
 * The run then ends with the breaker's plain reason, whatever call hit
 * it; the ledger remembers it for the next run's breaker, and forgets it
 * once a run reached a Moodle that serves. */
static bool
run_moodle_state(struct run *r)
{
	char *cause = NULL;
	bool down = moodle_down(r->moodle, &cause);

	if (down) {
		if (!run_cancelled(r))
			run_fail(r, "failed", xstrdup(cause));
		if (ledger_meta_set(r->ledger, RUN_META_DOWN, cause) == -1)
			log_debug("cannot note that Moodle is down: %s",
				  ledger_errmsg(r->ledger));
	} else if (moodle_requests(r->moodle) > 0 &&
		   ledger_meta_set(r->ledger, RUN_META_DOWN, NULL) == -1)
		log_debug("cannot note that Moodle is up: %s",
			  ledger_errmsg(r->ledger));
	if (r->opts->moodle_state != NULL &&
	    (down || moodle_requests(r->moodle) > 0))
		r->opts->moodle_state(r->opts->arg, !down, cause);
	free(cause);
	return down;
}

/* The body of a run; -1 has set the outcome. */
static int
run_steps(struct run *r)
{
	char *cause = NULL;
	int fr;

	if (run_load_validators(r) == -1)
		return run_fail(r, "failed", xstrdup(ledger_errmsg(r->ledger)));
	if ((fr = run_fetch(r, false)) == -1)
		return -1;
	run_progress(r, "checking Moodle");
	if (run_check_moodle(r) == -1 || apply_recover(&r->apply) == -1 ||
	    run_reconcile(r) == -1)
		goto fail_apply;
	/* Drift to repair needs a plan, so the feed itself. */
	if (fr != FEED_FETCH_NEW && run_drift_to_repair(r)) {
		log_info("drift to repair: fetching the feed anew to plan");
		feed_validators_clear(&r->fetched);
		if ((fr = run_fetch(r, true)) == -1)
			return -1;
	}
	if (fr != FEED_FETCH_NEW) {
		log_info("feed unchanged; looking up missing users again");
		if (apply_missing(&r->apply) == -1)
			goto fail_apply;
		return 0;
	}
	run_progress(r, "planning");
	if (plan_build(r->conf, r->feed, r->ledger, &r->plan, &cause) == -1)
		return run_fail(r, "failed", cause);
	run_guard(r);
	if (apply_plan(&r->apply, r->plan, r->feed, r->withheld) == -1)
		goto fail_apply;
	if (ledger_decision_sweep(r->ledger) == -1)
		log_warnx("cannot sweep the decisions no longer in force: %s",
			  ledger_errmsg(r->ledger));
	/* Otherwise forget the last validators too: they belong to an older
	 * feed, and the next run must not take that one back as unchanged. */
	if (!run_applied_whole(r))
		feed_validators_clear(&r->fetched);
	if (run_save_validators(r) == -1)
		log_warnx("cannot remember the feed's validators: %s",
			  ledger_errmsg(r->ledger));
	return 0;
fail_apply:
	if (r->apply.cut && r->conf->moodle_max_input_vars == 0 &&
	    ledger_meta_set(r->ledger, "max_input_vars", NULL) == -1)
		log_warnx("cannot forget max_input_vars: %s",
			  ledger_errmsg(r->ledger));
	if (r->res->outcome != NULL && strcmp(r->res->outcome, "running") != 0)
		return -1; /* run_check_moodle said why */
	return run_fail(
	    r, "failed",
	    xstrdup(r->apply.cause ? r->apply.cause : "apply failed"));
}

static void
run_tick(void *arg)
{
	const struct run_options *opts = arg;

	if (opts->tick != NULL)
		opts->tick(opts->arg);
}

/* The summary line, with its counts as journal fields. */
static void
run_log_summary(const struct ledger_run *res)
{
	char f[6][48];
	const char *fields[] = { f[0], f[1], f[2], f[3], f[4], f[5], NULL };

	snprintf(f[0], sizeof(f[0]), "WEBCOURSED_RUN=%" PRId64, res->id);
	snprintf(f[1], sizeof(f[1]), "WEBCOURSED_COURSES_CREATED=%" PRId64,
		 res->courses_created);
	snprintf(f[2], sizeof(f[2]), "WEBCOURSED_ENROLLED=%" PRId64,
		 res->enrolled);
	snprintf(f[3], sizeof(f[3]), "WEBCOURSED_REMOVED=%" PRId64,
		 res->suspended + res->unenrolled);
	snprintf(f[4], sizeof(f[4]), "WEBCOURSED_MISSING_USERS=%" PRId64,
		 res->missing_users);
	snprintf(f[5], sizeof(f[5]), "WEBCOURSED_ERRORS=%" PRId64, res->errors);
	log_fields(LOG_INFO, fields, "%s", res->message);
}

int
run_sync(const struct config *conf, struct ledger *l,
	 const struct run_options *opts, struct ledger_run *res)
{
	struct run r = { .conf = conf, .ledger = l, .opts = opts, .res = res };
	char *cause = NULL, *summary, *msg;
	int64_t missing = 0;
	bool down;
	int rv;

	memset(res, 0, sizeof(*res));
	res->started = now_epoch();
	res->outcome = xstrdup("running");
	r.start_ms = now_monotonic_ms();
	if (ledger_run_start(l, res->started, &res->id) == -1) {
		run_fail(&r, "failed", xstrdup(ledger_errmsg(l)));
		return -1;
	}
	if (history_prune(&(struct history){ l, conf, res->id, res->started },
			  conf->state_history_days, RUN_HISTORY_PRUNE) == -1)
		log_warnx("cannot prune the history: %s", ledger_errmsg(l));
	r.http = http_new(opts->cancel);
	r.moodle = moodle_new(conf, opts->cancel);
	http_set_tick(r.http, run_tick, (void *)opts);
	moodle_set_tick(r.moodle, run_tick, (void *)opts);
	moodle_set_observer(r.moodle, opts->observe_moodle, opts->arg);
	/* Down at the last run: one site-wide answer is enough now. */
	if (ledger_meta_get(l, RUN_META_DOWN, &cause) == 0 && cause != NULL)
		moodle_set_breaker(r.moodle, 1);
	free(cause);
	cause = NULL;
	r.apply = (struct apply){ .conf = conf,
				  .ledger = l,
				  .moodle = r.moodle,
				  .opts = opts,
				  .counts = res,
				  .now = res->started,
				  .hist = { l, conf, res->id, res->started } };

	rv = run_steps(&r);
	if ((down = run_moodle_state(&r)))
		rv = -1;

	if (ledger_missing_count_users(l, &missing) == 0)
		res->missing_users = missing;
	/* The CSV is one of the run's outputs: a run that cannot write it
	 * has failed (and is retried), whatever Moodle got. */
	if (report_write_missing_csv(conf, l, &cause) == -1) {
		if (rv == 0) {
			summary = run_summary(res);
			xasprintf(&msg,
				  "cannot write the missing-users CSV: %s "
				  "(Moodle got its changes: %s)",
				  cause, summary);
			free(summary);
			rv = run_fail(&r, "failed", msg);
		} else
			log_warnx("cannot write the missing-users CSV: %s",
				  cause);
		free(cause);
	}
	res->ended = now_epoch();
	if (rv == 0) {
		free(res->outcome);
		res->outcome =
		    xstrdup(res->errors || r.withheld ? "partial" : "ok");
		summary = run_summary(res);
		free(res->message);
		xasprintf(&res->message, "sync done in %.1f s: %s",
			  (double)(now_monotonic_ms() - r.start_ms) / 1000,
			  summary);
		free(summary);
		run_log_summary(res);
	} else if (down && opts->quiet_outage)
		log_debug("sync %s: %s", res->outcome, res->message);
	else
		log_warnx("sync %s: %s", res->outcome, res->message);
	if (ledger_run_finish(l, res) == -1)
		log_warnx("cannot record the run: %s", ledger_errmsg(l));
	/* Counted here, off the daemon's loop, for status and the console. */
	if (ledger_enrol_count_keep(l) == -1)
		log_warnx("cannot count the enrolments: %s", ledger_errmsg(l));

	apply_done(&r.apply);
	reconcile_done(&r.rec);
	plan_free(r.plan);
	feed_free(r.feed);
	free(r.body);
	feed_validators_clear(&r.last);
	feed_validators_clear(&r.fetched);
	moodle_free(r.moodle);
	http_free(r.http);
	return rv;
}

void
run_result_clear(struct ledger_run *res)
{
	free(res->outcome);
	free(res->message);
	res->outcome = res->message = NULL;
}

/* "+3 courses, +120 enrolments, 2 role changes, ..." (counts that are 0
 * are left out, but for the main ones). */
char *
run_summary(const struct ledger_run *res)
{
	const struct {
		const char *sign, *label;
		int64_t n;
		bool always;
	} parts[] = {
		{ "+", "courses", res->courses_created, true },
		{ "", "adopted", res->courses_adopted, false },
		{ "", "renamed", res->courses_renamed, false },
		{ "", "hidden", res->courses_hidden, false },
		{ "", "awaiting approval", res->courses_pending, false },
		{ "+", "enrolments", res->enrolled, true },
		{ "", "role changes", res->role_changes, false },
		{ "", "suspended", res->suspended, false },
		{ "", "unenrolled", res->unenrolled, false },
		{ "", "removals withheld", res->removals_withheld, false },
		{ "", "missing users", res->missing_users, true },
		{ "", "errors", res->errors, true },
	};
	char *s = xstrdup(""), *tmp;

	for (size_t i = 0; i < nitems(parts); i++) {
		if (parts[i].n == 0 && !parts[i].always)
			continue;
		xasprintf(&tmp, "%s%s%s%" PRId64 " %s", s, *s ? ", " : "",
			  parts[i].sign, parts[i].n, parts[i].label);
		free(s);
		s = tmp;
	}
	return s;
}
