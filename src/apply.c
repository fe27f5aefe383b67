/* Apply a plan to Moodle in batches; each confirmed batch is committed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply.h"
#include "config.h"
#include "feed.h"
#include "ledger.h"
#include "log.h"
#include "moodle.h"
#include "plan.h"
#include "util.h"

#define APPLY_LOG_ITEMS 50 /* per-item warnings logged per run, then quiet */

/* Moodle error codes after which we know the item changed nothing. */
static const char *const apply_certain_codes[] = {
	"shortnametaken", "invalidparameter",        "codingerror",
	"wsnoinstance",   "wsusercannotassign",      "errorinvalidparam",
	"invalidrecord",  "errorcatcontextnotvalid",
};

/* The enrolment-shaped operations, in the order a run applies them.
 * Fields per item: enrol sends roleid, userid, courseid (no suspend, which
 * re-activates); suspend adds suspend=1; unenrol sends userid, courseid. */
enum apply_op { OP_ENROL, OP_ROLE_ADD, OP_ROLE_REMOVE, OP_SUSPEND, OP_UNENROL };

struct apply_op_desc {
	const char *kind;     /* for the error table */
	const char *phase;    /* progress and log wording */
	const char *function; /* for the error table and the journal */
	int fields;           /* form variables per item */
};

static const struct apply_op_desc apply_ops[] = {
	[OP_ENROL] = { "enrol", "enrolling", "enrol_manual_enrol_users", 3 },
	[OP_ROLE_ADD] = { "role", "assigning roles", "core_role_assign_roles",
			  MOODLE_ROLE_FIELDS },
	[OP_ROLE_REMOVE] = { "role", "unassigning roles",
			     "core_role_unassign_roles", MOODLE_ROLE_FIELDS },
	[OP_SUSPEND] = { "suspend", "suspending", "enrol_manual_enrol_users",
			 4 },
	[OP_UNENROL] = { "unenrol", "unenrolling", "enrol_manual_unenrol_users",
			 2 },
};

/* State of one batched operation over a list of plan items. */
struct apply_batch {
	struct apply *a;
	enum apply_op op;
	struct plan_enrol **items;
	size_t n, done;
	bool from_missing; /* items come from the missing-users table */
};

/* Per-run maps: shortname -> course id, username -> user id (-1: the
 * lookup failed), "course\037user" -> 1 for enrolments that failed,
 * "courseid/userid/roleid" -> 1 for what adopted courses already hold. */
struct apply_maps {
	struct strmap *courses;
	struct strmap *users;
	struct strmap *failed;
	struct strmap *present;
};

static void
apply_progress(struct apply *a, const char *phase, size_t done, size_t total)
{
	if (a->opts->progress != NULL)
		a->opts->progress(a->opts->arg, phase, done, total);
}

static bool
apply_cancelled(const struct apply *a)
{
	return a->opts->cancel != NULL && *a->opts->cancel;
}

static void
apply_stop(struct apply *a, const struct moodle_error *err)
{
	free(a->cause);
	if (err->kind == MOODLE_CANCELLED)
		a->cause = xstrdup("cancelled");
	else
		xasprintf(&a->cause, "%s: %s",
			  err->function ? err->function : "moodle",
			  err->message ? err->message : "failed");
}

/* Run a batched call; a service-wide fault stops the apply with a cause. */
static int
apply_batch_run(struct apply *a, const struct moodle_batch *mb)
{
	struct moodle_error err = { 0 };
	int rv = 0;

	if (mb->n == 0)
		return 0;
	if (moodle_batch_run(a->moodle, mb, &err) == -1) {
		if (a->cause == NULL)
			apply_stop(a, &err);
		rv = -1;
	}
	moodle_error_clear(&err);
	return rv;
}

/* A ledger write failed: roll back and stop the apply. */
static int
apply_ledger_failed(struct apply *a)
{
	ledger_rollback(a->ledger);
	free(a->cause);
	xasprintf(&a->cause, "ledger write failed: %s",
		  ledger_errmsg(a->ledger));
	return -1;
}

/* Record one failed item: error table, counter, and a capped log line. */
static void
apply_item_error(struct apply *a, const char *kind, const char *course,
		 const char *item, const char *function, const char *code,
		 const char *message)
{
	char run[32], f_course[300], f_func[80], f_code[120];
	const char *fields[] = { run, f_course, f_func, f_code, NULL };

	if (ledger_error_add(a->ledger, a->counts->id, kind, item, code,
			     message) == -1)
		log_warnx("cannot record error for %s: %s", item,
			  ledger_errmsg(a->ledger));
	if (a->counts->errors++ >= APPLY_LOG_ITEMS)
		return;
	snprintf(run, sizeof(run), "WEBCOURSED_RUN=%" PRId64, a->counts->id);
	snprintf(f_course, sizeof(f_course), "COURSE_SHORTNAME=%s", course);
	snprintf(f_func, sizeof(f_func), "MOODLE_FUNCTION=%s", function);
	snprintf(f_code, sizeof(f_code), "MOODLE_ERRORCODE=%s", code);
	log_fields(LOG_WARNING, fields, "%s %s failed: %s: %s%s", kind, item,
		   code, message,
		   a->counts->errors == APPLY_LOG_ITEMS
		       ? " (further item errors: webcoursectl errors)"
		       : "");
}

static bool
apply_code_is_certain(const char *code)
{
	for (size_t i = 0; i < nitems(apply_certain_codes); i++)
		if (code != NULL && strcmp(code, apply_certain_codes[i]) == 0)
			return true;
	return false;
}

static char *
apply_item_name(const struct plan_enrol *e)
{
	char *s;

	xasprintf(&s, "%s/%s", e->course, e->username);
	return s;
}

/* --- enrolment-shaped operations ------------------------------------ */

static int
apply_batch_call(struct moodle *m, size_t first, size_t count, void *arg,
		 struct moodle_error *err)
{
	struct apply_batch *b = arg;
	struct plan_enrol **items = b->items + first;
	int rv;

	if (b->op == OP_ROLE_ADD || b->op == OP_ROLE_REMOVE) {
		struct moodle_role_assignment *ra = xcalloc(count, sizeof(*ra));

		for (size_t i = 0; i < count; i++)
			ra[i] = (struct moodle_role_assignment){
				items[i]->roleid, items[i]->userid,
				items[i]->courseid
			};
		rv = b->op == OP_ROLE_ADD
			 ? moodle_role_assign(m, ra, count, err)
			 : moodle_role_unassign(m, ra, count, err);
		free(ra);
		return rv;
	}

	struct moodle_enrolment *en = xcalloc(count, sizeof(*en));

	for (size_t i = 0; i < count; i++)
		en[i] = (struct moodle_enrolment){
			b->op == OP_UNENROL ? 0 : items[i]->roleid,
			items[i]->userid, items[i]->courseid,
			b->op == OP_SUSPEND ? 1 : -1
		};
	if (b->op == OP_ENROL) {
		/* Before sending, note what is in flight: a crash between
		 * Moodle's answer and our commit is then resolved by asking
		 * Moodle instead of sending the enrolment again. */
		char *intent = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&intent, &len);

		for (size_t i = 0; i < count; i++)
			fprintf(f, "%s\037%s\037%d\037%" PRId64 "\n",
				items[i]->course, items[i]->username,
				items[i]->roleid, items[i]->courseid);
		fclose(f);
		if (ledger_meta_set(b->a->ledger, "inflight_enrol", intent) ==
		    -1)
			log_warnx("cannot note the enrolments in flight: %s",
				  ledger_errmsg(b->a->ledger));
		free(intent);
	}
	rv = b->op == OP_UNENROL ? moodle_unenrol(m, en, count, err)
				 : moodle_enrol(m, en, count, err);
	free(en);
	return rv;
}

/* Write one confirmed item to the ledger. */
static int
apply_commit_item(struct apply_batch *b, const struct plan_enrol *e)
{
	struct ledger *l = b->a->ledger;
	struct ledger_run *c = b->a->counts;
	int rv = 0;

	switch (b->op) {
	case OP_ENROL:
		if (e->reactivate)
			rv = ledger_enrol_set_status(l, e->course, e->username,
						     LEDGER_ENROL_ACTIVE);
		if (rv == 0)
			rv = ledger_enrol_put(l, e->course, e->username,
					      e->roleid, LEDGER_ENROL_ACTIVE);
		if (rv == 0 && b->from_missing)
			rv = ledger_missing_delete(l, e->username, e->course,
						   e->roleid);
		c->enrolled++;
		break;
	case OP_ROLE_ADD:
		rv = ledger_enrol_put(l, e->course, e->username, e->roleid,
				      LEDGER_ENROL_ACTIVE);
		c->role_changes++;
		break;
	case OP_ROLE_REMOVE:
		rv = ledger_enrol_delete(l, e->course, e->username, e->roleid);
		c->role_changes++;
		break;
	case OP_SUSPEND:
		rv = ledger_enrol_set_status(l, e->course, e->username,
					     LEDGER_ENROL_SUSPENDED);
		c->suspended++;
		break;
	case OP_UNENROL:
		rv = ledger_enrol_delete(l, e->course, e->username, -1);
		c->unenrolled++;
		break;
	}
	return rv;
}

static int
apply_batch_done(size_t first, size_t count, void *arg)
{
	struct apply_batch *b = arg;
	struct ledger *l = b->a->ledger;

	if (ledger_begin(l) == -1)
		goto fail;
	for (size_t i = 0; i < count; i++)
		if (apply_commit_item(b, b->items[first + i]) == -1)
			goto fail;
	if (b->op == OP_ENROL &&
	    ledger_meta_set(l, "inflight_enrol", NULL) == -1)
		goto fail;
	if (ledger_commit(l) == -1)
		goto fail;
	b->done += count;
	apply_progress(b->a, apply_ops[b->op].phase, b->done, b->n);
	return 0;
fail:
	return apply_ledger_failed(b->a);
}

/* Does Moodle hold user e with role e->roleid in its course? */
static int
apply_enrolment_present(struct apply *a, const struct plan_enrol *e, bool *ret)
{
	struct moodle_enrolled_user *users = NULL;
	struct moodle_error err = { 0 };
	size_t n = 0;

	*ret = false;
	if (moodle_enrolled_users(a->moodle, e->courseid, &users, &n, &err) ==
	    -1) {
		moodle_error_clear(&err);
		return -1;
	}
	for (size_t i = 0; i < n && !*ret; i++)
		if (users[i].id == e->userid)
			for (size_t r = 0; r < users[i].nroles; r++)
				if (users[i].roleids[r] == e->roleid)
					*ret = true;
	moodle_enrolled_users_free(users, n);
	return 0;
}

static int
apply_batch_failed(size_t index, const struct moodle_error *err, void *arg)
{
	struct apply_batch *b = arg;
	const struct plan_enrol *e = b->items[index];
	char *item, *key;
	bool present;

	/* An error answer does not prove nothing changed (Moodle commits
	 * the enrolment, then fails to send the welcome mail): look. */
	if ((b->op == OP_ENROL || b->op == OP_ROLE_ADD) &&
	    !apply_code_is_certain(err->errorcode) &&
	    apply_enrolment_present(b->a, e, &present) == 0 && present)
		return apply_batch_done(index, 1, b);
	if (b->op == OP_ENROL && !b->from_missing) {
		xasprintf(&key, "%s\037%s", e->course, e->username);
		strmap_put(b->a->maps->failed, key, 1);
		free(key);
	}
	/* codingerror: "User ID does not exist or is deleted" (09a), so the
	 * cached id is stale; the next run looks the user up again. */
	if (err->errorcode != NULL &&
	    strcmp(err->errorcode, "codingerror") == 0 &&
	    ledger_user_delete(b->a->ledger, e->username) == -1)
		log_warnx("cannot forget the id of %s: %s", e->username,
			  ledger_errmsg(b->a->ledger));
	item = apply_item_name(e);
	apply_item_error(b->a, apply_ops[b->op].kind, e->course, item,
			 apply_ops[b->op].function,
			 err->errorcode ? err->errorcode : "error",
			 err->message ? err->message : "");
	free(item);
	return 0;
}

/* Send the resolved items of list through one operation. */
static int
apply_op_run(struct apply *a, enum apply_op op, struct plan_enrol **items,
	     size_t n, bool from_missing)
{
	struct apply_batch b = { a, op, items, n, 0, from_missing };
	struct moodle_batch mb = { n,
				   apply_ops[op].fields,
				   0,
				   apply_batch_call,
				   apply_batch_done,
				   apply_batch_failed,
				   &b };

	if (n == 0)
		return 0;
	log_info("%s: %zu to send", apply_ops[op].phase, n);
	apply_progress(a, apply_ops[op].phase, 0, n);
	if (apply_batch_run(a, &mb) == -1)
		return -1;
	if (op == OP_ENROL &&
	    ledger_meta_set(a->ledger, "inflight_enrol", NULL) == -1)
		log_warnx("cannot clear the enrolments in flight: %s",
			  ledger_errmsg(a->ledger));
	return 0;
}

/* --- users ----------------------------------------------------------- */

struct apply_lookup {
	struct apply *a;
	const char **names;
	size_t n;
	struct moodle_user *found; /* answer of the last call */
	size_t nfound;
};

static int
apply_lookup_call(struct moodle *m, size_t first, size_t count, void *arg,
		  struct moodle_error *err)
{
	struct apply_lookup *lk = arg;

	moodle_users_free(lk->found, lk->nfound);
	lk->found = NULL;
	lk->nfound = 0;
	return moodle_users_by_username(m, lk->names + first, count, &lk->found,
					&lk->nfound, err);
}

static int
apply_lookup_done(size_t first, size_t count, void *arg)
{
	struct apply_lookup *lk = arg;
	struct apply *a = lk->a;
	struct strmap *found = strmap_new(lk->nfound);
	int64_t id;

	for (size_t i = 0; i < lk->nfound; i++)
		strmap_put(found, lk->found[i].username, lk->found[i].id);
	if (ledger_begin(a->ledger) == -1)
		goto fail;
	for (size_t i = first; i < first + count; i++) {
		if (strmap_get(found, lk->names[i], &id) == -1)
			id = 0; /* not in Moodle (yet) */
		strmap_put(a->maps->users, lk->names[i], id);
		if (ledger_user_put(a->ledger, lk->names[i], id) == -1)
			goto fail;
	}
	if (ledger_commit(a->ledger) == -1)
		goto fail;
	strmap_free(found);
	apply_progress(a, "looking up users", first + count, lk->n);
	return 0;
fail:
	strmap_free(found);
	return apply_ledger_failed(a);
}

static int
apply_lookup_failed(size_t index, const struct moodle_error *err, void *arg)
{
	struct apply_lookup *lk = arg;

	strmap_put(lk->a->maps->users, lk->names[index], -1);
	apply_item_error(lk->a, "user", "", lk->names[index],
			 "core_user_get_users_by_field",
			 err->errorcode ? err->errorcode : "error",
			 err->message ? err->message : "");
	return 0;
}

/* Resolve usernames to Moodle ids into a->maps->users. */
static int
apply_lookup(struct apply *a, const char **names, size_t n)
{
	struct apply_lookup lk = { a, names, n, NULL, 0 };
	struct moodle_batch mb = { n,
				   MOODLE_LOOKUP_FIELDS,
				   MOODLE_LOOKUP_EXTRA,
				   apply_lookup_call,
				   apply_lookup_done,
				   apply_lookup_failed,
				   &lk };
	int rv;

	if (n > 0)
		apply_progress(a, "looking up users", 0, n);
	rv = apply_batch_run(a, &mb);
	moodle_users_free(lk.found, lk.nfound);
	return rv;
}

/* --- courses --------------------------------------------------------- */

/* Record a course as ours in the ledger, as created or adopted. */
static int
apply_course_record(struct apply *a, const struct plan_course *pc, int64_t id,
		    bool created)
{
	struct ledger_course lc = { 0 };
	int found, rv;

	if ((found = ledger_course_get(a->ledger, pc->shortname, &lc)) == -1)
		return -1;
	if (found == 1) {
		lc.shortname = xstrdup(pc->shortname);
		lc.first_seen = a->now;
	}
	free(lc.fullname);
	lc.fullname = xstrdup(pc->fullname);
	lc.moodle_id = id;
	lc.status = LEDGER_COURSE_ACTIVE;
	lc.created = created;
	lc.participants = pc->participants;
	lc.last_seen = a->now;
	rv = ledger_course_put(a->ledger, &lc);
	ledger_course_clear(&lc);
	if (rv == 0)
		strmap_put(a->maps->courses, pc->shortname, id);
	return rv;
}

static void
apply_present_key(char *buf, size_t len, int64_t courseid, int64_t userid,
		  int roleid)
{
	snprintf(buf, len, "%" PRId64 "/%" PRId64 "/%d", courseid, userid,
		 roleid);
}

/* Remember who an adopted course already holds with which roles: those
 * enrolments are recorded as ours without sending them again (after a
 * lost ledger, sending would re-activate what an admin suspended). */
static int
apply_course_holdings(struct apply *a, int64_t courseid)
{
	struct moodle_enrolled_user *users = NULL;
	struct moodle_error err = { 0 };
	char key[80];
	size_t n = 0;

	if (moodle_enrolled_users(a->moodle, courseid, &users, &n, &err) ==
	    -1) {
		int rv = err.kind == MOODLE_ITEM ? 0 : -1;

		if (rv == -1)
			apply_stop(a, &err);
		moodle_error_clear(&err);
		return rv;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t r = 0; r < users[i].nroles; r++) {
			apply_present_key(key, sizeof(key), courseid,
					  users[i].id, users[i].roleids[r]);
			strmap_put(a->maps->present, key, 1);
		}
	moodle_enrolled_users_free(users, n);
	return 0;
}

/* Adopt the Moodle course that already has this shortname, if any.
 * Returns 1 adopted, 0 no such course, -1 stop. */
static int
apply_course_adopt(struct apply *a, const struct plan_course *pc)
{
	struct moodle_course mc = { 0 };
	struct moodle_error err = { 0 };
	bool ours;
	int rv = -1;

	if (moodle_course_by_shortname(a->moodle, pc->shortname, &mc, &err) ==
	    -1) {
		if (err.kind == MOODLE_ITEM) {
			apply_item_error(a, "course", pc->shortname,
					 pc->shortname, err.function,
					 err.errorcode ? err.errorcode
						       : "error",
					 err.message ? err.message : "");
			rv = 0;
		} else
			apply_stop(a, &err);
		goto out;
	}
	if (mc.id == 0) {
		rv = 0;
		goto out;
	}
	/* Our idnumber marks a course we created before losing the ledger. */
	ours = mc.idnumber != NULL && strcmp(mc.idnumber, pc->idnumber) == 0;
	if (apply_course_record(a, pc, mc.id, ours) == -1) {
		apply_ledger_failed(a);
		goto out;
	}
	a->counts->courses_adopted++;
	log_debug("course %s exists in Moodle (id %" PRId64 "): adopted",
		  pc->shortname, mc.id);
	if (apply_course_holdings(a, mc.id) == -1)
		goto out;
	rv = 1;
out:
	moodle_course_clear(&mc);
	moodle_error_clear(&err);
	return rv;
}

struct apply_create {
	struct apply *a;
	struct plan_course **items;
	struct moodle_new_course *courses; /* items as Moodle takes them */
	size_t n;
	int64_t *ids;
};

static int
apply_create_call(struct moodle *m, size_t first, size_t count, void *arg,
		  struct moodle_error *err)
{
	struct apply_create *cr = arg;

	return moodle_courses_create(m, cr->courses + first, count,
				     cr->ids + first, err);
}

static int
apply_create_done(size_t first, size_t count, void *arg)
{
	struct apply_create *cr = arg;
	struct apply *a = cr->a;

	if (ledger_begin(a->ledger) == -1)
		goto fail;
	for (size_t i = first; i < first + count; i++)
		if (apply_course_record(a, cr->items[i], cr->ids[i], true) ==
		    -1)
			goto fail;
	if (ledger_commit(a->ledger) == -1)
		goto fail;
	a->counts->courses_created += count;
	apply_progress(a, "creating courses", first + count, cr->n);
	return 0;
fail:
	return apply_ledger_failed(a);
}

static int
apply_create_failed(size_t index, const struct moodle_error *err, void *arg)
{
	struct apply_create *cr = arg;
	const struct plan_course *pc = cr->items[index];

	/* Someone created it between our look-up and our create: adopt. */
	if (err->errorcode != NULL &&
	    strcmp(err->errorcode, "shortnametaken") == 0)
		return apply_course_adopt(cr->a, pc) == -1 ? -1 : 0;
	apply_item_error(cr->a, "course", pc->shortname, pc->shortname,
			 "core_course_create_courses",
			 err->errorcode ? err->errorcode : "error",
			 err->message ? err->message : "");
	return 0;
}

/* Adopt or create every course of the list. */
static int
apply_courses_create(struct apply *a, struct plan_course *list, size_t n)
{
	struct apply_create cr = { a, xcalloc(n, sizeof(*cr.items)),
				   xcalloc(n, sizeof(*cr.courses)), 0,
				   xcalloc(n, sizeof(int64_t)) };
	struct moodle_batch mb = { 0,
				   0,
				   0,
				   apply_create_call,
				   apply_create_done,
				   apply_create_failed,
				   &cr };
	int rv = -1, r;

	for (size_t i = 0; i < n; i++) {
		const struct plan_course *pc = &list[i];

		apply_progress(a, "matching courses", i, n);
		if (apply_cancelled(a)) {
			a->cause = xstrdup("cancelled");
			goto out;
		}
		if ((r = apply_course_adopt(a, pc)) == -1)
			goto out;
		if (r == 1)
			continue;
		cr.courses[cr.n] =
		    (struct moodle_new_course){ pc->shortname,
						pc->fullname,
						pc->idnumber,
						pc->summary,
						a->conf->sync_course_format,
						pc->categoryid,
						pc->visible,
						pc->startdate,
						pc->enddate };
		cr.items[cr.n++] = &list[i];
	}
	if (a->counts->courses_adopted > 0)
		log_info("%" PRId64 " courses of the feed already exist in "
			 "Moodle: adopted by shortname",
			 a->counts->courses_adopted);
	mb.n = cr.n;
	mb.fields = moodle_courses_create_fields(cr.courses, cr.n);
	rv = apply_batch_run(a, &mb);
out:
	free(cr.ids);
	free(cr.courses);
	free(cr.items);
	return rv;
}

/* Courses of the feed that wait for `webcoursectl approve`. */
static int
apply_courses_hold(struct apply *a, const struct plan_course *list, size_t n)
{
	struct ledger_course lc;
	int found;

	if (ledger_begin(a->ledger) == -1)
		return apply_ledger_failed(a);
	for (size_t i = 0; i < n; i++) {
		memset(&lc, 0, sizeof(lc));
		if ((found = ledger_course_get(a->ledger, list[i].shortname,
					       &lc)) == -1)
			goto fail;
		if (found == 1) {
			lc.shortname = xstrdup(list[i].shortname);
			lc.status = LEDGER_COURSE_PENDING;
			lc.first_seen = a->now;
		}
		free(lc.fullname);
		lc.fullname = xstrdup(list[i].fullname);
		lc.participants = list[i].participants;
		lc.last_seen = a->now;
		if (ledger_course_put(a->ledger, &lc) == -1) {
			ledger_course_clear(&lc);
			goto fail;
		}
		ledger_course_clear(&lc);
	}
	a->counts->courses_pending = (int64_t)n;
	if (ledger_commit(a->ledger) == 0)
		return 0;
fail:
	return apply_ledger_failed(a);
}

enum apply_update { UPDATE_RENAME, UPDATE_HIDE, UPDATE_UNHIDE };

struct apply_updates {
	struct apply *a;
	const struct plan_course *list;
	size_t n;
	enum apply_update what;
	struct moodle_warning *warnings; /* of the last call */
	size_t nwarnings;
};

static int
apply_update_call(struct moodle *m, size_t first, size_t count, void *arg,
		  struct moodle_error *err)
{
	struct apply_updates *u = arg;
	struct moodle_course_update *cu = xcalloc(count, sizeof(*cu));
	int rv;

	for (size_t i = 0; i < count; i++) {
		const struct plan_course *pc = &u->list[first + i];

		cu[i].id = pc->moodle_id;
		cu[i].fullname = u->what == UPDATE_RENAME ? pc->fullname : NULL;
		cu[i].visible = u->what == UPDATE_RENAME ? -1
				: u->what == UPDATE_HIDE ? 0
							 : 1;
	}
	moodle_warnings_free(u->warnings, u->nwarnings);
	u->warnings = NULL;
	u->nwarnings = 0;
	rv = moodle_courses_update(m, cu, count, &u->warnings, &u->nwarnings,
				   err);
	free(cu);
	return rv;
}

/* update_courses applies the good items and warns about the bad ones. */
static int
apply_update_done(size_t first, size_t count, void *arg)
{
	struct apply_updates *u = arg;
	struct apply *a = u->a;
	struct ledger_course lc;

	if (ledger_begin(a->ledger) == -1)
		goto fail;
	for (size_t i = first; i < first + count; i++) {
		const struct plan_course *pc = &u->list[i];
		const struct moodle_warning *w = NULL;

		for (size_t k = 0; k < u->nwarnings; k++)
			if (u->warnings[k].itemid == pc->moodle_id)
				w = &u->warnings[k];
		if (w != NULL) {
			apply_item_error(
			    a, "course", pc->shortname, pc->shortname,
			    "core_course_update_courses",
			    w->warningcode ? w->warningcode : "warning",
			    w->message ? w->message : "");
			continue;
		}
		memset(&lc, 0, sizeof(lc));
		if (ledger_course_get(a->ledger, pc->shortname, &lc) != 0)
			goto fail;
		if (u->what == UPDATE_RENAME) {
			free(lc.fullname);
			lc.fullname = xstrdup(pc->fullname);
			a->counts->courses_renamed++;
		} else if (u->what == UPDATE_HIDE) {
			lc.status = LEDGER_COURSE_HIDDEN;
			a->counts->courses_hidden++;
		} else
			lc.status = LEDGER_COURSE_ACTIVE;
		if (ledger_course_put(a->ledger, &lc) == -1) {
			ledger_course_clear(&lc);
			goto fail;
		}
		ledger_course_clear(&lc);
	}
	if (ledger_commit(a->ledger) == -1)
		goto fail;
	return 0;
fail:
	return apply_ledger_failed(a);
}

static int
apply_update_failed(size_t index, const struct moodle_error *err, void *arg)
{
	struct apply_updates *u = arg;
	const struct plan_course *pc = &u->list[index];

	apply_item_error(u->a, "course", pc->shortname, pc->shortname,
			 "core_course_update_courses",
			 err->errorcode ? err->errorcode : "error",
			 err->message ? err->message : "");
	return 0;
}

static int
apply_courses_update(struct apply *a, const struct plan_course *list, size_t n,
		     enum apply_update what)
{
	struct apply_updates u = { a, list, n, what, NULL, 0 };
	struct moodle_batch mb = { n,
				   2,
				   0,
				   apply_update_call,
				   apply_update_done,
				   apply_update_failed,
				   &u };
	int rv = apply_batch_run(a, &mb);

	moodle_warnings_free(u.warnings, u.nwarnings);
	return rv;
}

/* Remember presence: courses in the feed were seen now (absences reset),
 * vanished ones count one more absence. */
static int
apply_courses_seen(struct apply *a, const struct plan *p,
		   const struct feed *feed)
{
	struct ledger_course lc;
	int found;

	if (ledger_begin(a->ledger) == -1)
		return apply_ledger_failed(a);
	for (size_t i = 0; i < feed->ncourses + p->nvanished; i++) {
		bool seen = i < feed->ncourses;
		const char *shortname =
		    seen ? feed->courses[i].shortname
			 : p->vanished[i - feed->ncourses].shortname;

		memset(&lc, 0, sizeof(lc));
		if ((found = ledger_course_get(a->ledger, shortname, &lc)) ==
		    -1)
			goto fail;
		if (found == 1)
			continue; /* not ours (held, failed to create) */
		if (seen) {
			lc.absent_runs = 0;
			lc.last_seen = a->now;
			lc.participants = (int)feed->courses[i].nparticipants;
		} else
			lc.absent_runs =
			    p->vanished[i - feed->ncourses].absent_runs;
		if (ledger_course_put(a->ledger, &lc) == -1) {
			ledger_course_clear(&lc);
			goto fail;
		}
		ledger_course_clear(&lc);
	}
	if (ledger_commit(a->ledger) == 0)
		return 0;
fail:
	return apply_ledger_failed(a);
}

/* --- the run's steps -------------------------------------------------- */

/* Fill in ids and keep the items that can be sent.  Enrolments of users
 * not in Moodle go to the missing-users table instead. */
static struct plan_enrol **
apply_resolve(struct apply *a, struct plan_enrol *list, size_t n,
	      enum apply_op op, size_t *ret_n)
{
	struct plan_enrol **out = xcalloc(n, sizeof(*out));
	char *key, pkey[80];
	int64_t id, failed;
	size_t k = 0;
	bool adopting = strmap_count(a->maps->present) > 0;

	for (size_t i = 0; i < n; i++) {
		struct plan_enrol *e = &list[i];

		if (e->courseid == 0 &&
		    strmap_get(a->maps->courses, e->course, &e->courseid) == -1)
			continue; /* course held or failed: already reported */
		if (e->userid == 0 &&
		    strmap_get(a->maps->users, e->username, &id) == 0)
			e->userid = id;
		if (e->userid == 0 && op == OP_ENROL) {
			if (ledger_missing_put(a->ledger, e->username,
					       e->course, e->roleid,
					       a->now) == -1)
				log_warnx("cannot record missing user %s: %s",
					  e->username,
					  ledger_errmsg(a->ledger));
			continue;
		}
		if (e->userid <= 0)
			continue;
		if (op == OP_ROLE_ADD) {
			xasprintf(&key, "%s\037%s", e->course, e->username);
			failed = strmap_get(a->maps->failed, key, &id) == 0;
			free(key);
			if (failed)
				continue; /* its enrolment failed just now */
		}
		if (adopting && (op == OP_ENROL || op == OP_ROLE_ADD)) {
			apply_present_key(pkey, sizeof(pkey), e->courseid,
					  e->userid, e->roleid);
			if (strmap_get(a->maps->present, pkey, &id) == 0) {
				if (ledger_enrol_put(a->ledger, e->course,
						     e->username, e->roleid,
						     LEDGER_ENROL_ACTIVE) == -1)
					log_warnx("cannot record %s/%s: %s",
						  e->course, e->username,
						  ledger_errmsg(a->ledger));
				continue; /* Moodle holds it already */
			}
		}
		out[k++] = e;
	}
	*ret_n = k;
	return out;
}

/* Missing-user rows whose course or participant record was skipped in
 * this feed stay as they are: the feed said nothing new about them. */
struct apply_keep {
	struct strmap *skipped; /* "course" and "course\037user" */
	struct ledger_missing *rows;
	size_t n;
};

static int
apply_missing_keep_cb(const struct ledger_missing *m, void *arg)
{
	struct apply_keep *k = arg;
	char *key;
	int64_t v;
	bool keep;

	xasprintf(&key, "%s\037%s", m->course, m->username);
	keep = strmap_get(k->skipped, m->course, &v) == 0 ||
	       strmap_get(k->skipped, key, &v) == 0;
	free(key);
	if (!keep)
		return 0;
	k->rows = xreallocarray(k->rows, k->n + 1, sizeof(*k->rows));
	k->rows[k->n++] =
	    (struct ledger_missing){ xstrdup(m->username), xstrdup(m->course),
				     m->roleid, m->first_seen };
	return 0;
}

/* Inside the missing-set rewrite: re-mark the rows to keep. */
static int
apply_missing_keep(struct apply *a, const struct feed *feed)
{
	struct apply_keep k = { strmap_new(feed->nskipped + 16), NULL, 0 };
	char *key;
	int rv;

	for (size_t i = 0; i < feed->nskipped; i++)
		strmap_put(k.skipped, feed->skipped[i], 1);
	for (size_t i = 0; i < feed->ncourses; i++)
		for (size_t u = 0; u < feed->courses[i].nskipped_users; u++) {
			xasprintf(&key, "%s\037%s", feed->courses[i].shortname,
				  feed->courses[i].skipped_users[u]);
			strmap_put(k.skipped, key, 1);
			free(key);
		}
	rv = strmap_count(k.skipped) == 0
		 ? 0
		 : ledger_missing_foreach(a->ledger, apply_missing_keep_cb, &k);
	for (size_t i = 0; i < k.n; i++) {
		if (rv == 0 &&
		    ledger_missing_put(a->ledger, k.rows[i].username,
				       k.rows[i].course, k.rows[i].roleid,
				       k.rows[i].first_seen) == -1)
			rv = -1;
		free((char *)k.rows[i].username);
		free((char *)k.rows[i].course);
	}
	free(k.rows);
	strmap_free(k.skipped);
	return rv;
}

static int
apply_enrol_ops(struct apply *a, struct plan *p, const struct feed *feed,
		bool withhold_removals)
{
	struct {
		enum apply_op op;
		struct plan_enrol *list;
		size_t n;
		bool removal;
	} steps[] = {
		{ OP_ENROL, p->enrol, p->nenrol, false },
		{ OP_ROLE_ADD, p->role_add, p->nrole_add, false },
		{ OP_ROLE_REMOVE, p->role_remove, p->nrole_remove, false },
		{ OP_SUSPEND, p->suspend, p->nsuspend, true },
		{ OP_UNENROL, p->unenrol, p->nunenrol, true },
	};
	struct plan_enrol **items;
	size_t n;
	int rv;

	for (size_t i = 0; i < nitems(steps); i++) {
		if (steps[i].removal && withhold_removals)
			continue;
		if (steps[i].op == OP_ENROL) {
			/* The missing set is rewritten while resolving. */
			if (ledger_begin(a->ledger) == -1 ||
			    ledger_missing_unmark_all(a->ledger) == -1 ||
			    apply_missing_keep(a, feed) == -1)
				goto fail;
			items = apply_resolve(a, steps[i].list, steps[i].n,
					      steps[i].op, &n);
			if (ledger_missing_sweep(a->ledger) == -1 ||
			    ledger_commit(a->ledger) == -1) {
				free(items);
				goto fail;
			}
		} else
			items = apply_resolve(a, steps[i].list, steps[i].n,
					      steps[i].op, &n);
		rv = apply_op_run(a, steps[i].op, items, n, false);
		free(items);
		if (rv == -1)
			return -1;
	}
	return 0;
fail:
	return apply_ledger_failed(a);
}

static void
apply_maps_init(struct apply *a)
{
	a->maps = xcalloc(1, sizeof(*a->maps));
	a->maps->courses = strmap_new(64);
	a->maps->users = strmap_new(64);
	a->maps->failed = strmap_new(16);
	a->maps->present = strmap_new(16);
}

void
apply_done(struct apply *a)
{
	if (a->maps != NULL) {
		strmap_free(a->maps->courses);
		strmap_free(a->maps->users);
		strmap_free(a->maps->failed);
		strmap_free(a->maps->present);
		free(a->maps);
		a->maps = NULL;
	}
	free(a->cause);
	a->cause = NULL;
}

int
apply_plan(struct apply *a, struct plan *p, const struct feed *feed,
	   bool withhold_removals)
{
	if (a->maps == NULL)
		apply_maps_init(a);
	if (p->nhold > 0 && apply_courses_hold(a, p->hold, p->nhold) == -1)
		return -1;
	if (apply_lookup(a, p->lookup, p->nlookup) == -1 ||
	    apply_courses_create(a, p->create, p->ncreate) == -1 ||
	    apply_courses_update(a, p->rename, p->nrename, UPDATE_RENAME) ==
		-1 ||
	    apply_courses_update(a, p->unhide, p->nunhide, UPDATE_UNHIDE) ==
		-1 ||
	    apply_enrol_ops(a, p, feed, withhold_removals) == -1)
		return -1;
	if (!withhold_removals &&
	    apply_courses_update(a, p->hide, p->nhide, UPDATE_HIDE) == -1)
		return -1;
	return apply_courses_seen(a, p, feed);
}

struct apply_missing_list {
	struct plan_enrol *items;
	size_t n, cap;
	struct strmap *names; /* distinct usernames */
	const char **lookup;
	size_t nlookup;
};

static int
apply_missing_cb(const struct ledger_missing *m, void *arg)
{
	struct apply_missing_list *ml = arg;
	int64_t dummy;

	if (ml->n == ml->cap) {
		ml->cap = ml->cap ? ml->cap * 2 : 64;
		ml->items =
		    xreallocarray(ml->items, ml->cap, sizeof(*ml->items));
		ml->lookup =
		    xreallocarray(ml->lookup, ml->cap, sizeof(*ml->lookup));
	}
	ml->items[ml->n] = (struct plan_enrol){
		xstrdup(m->course), xstrdup(m->username), m->roleid, 0, 0, false
	};
	if (strmap_get(ml->names, m->username, &dummy) == -1) {
		strmap_put(ml->names, m->username, 1);
		ml->lookup[ml->nlookup++] = ml->items[ml->n].username;
	}
	ml->n++;
	return 0;
}

int
apply_missing(struct apply *a)
{
	struct apply_missing_list ml = { 0 };
	struct plan_enrol **items = NULL;
	struct ledger_course lc;
	size_t n = 0;
	int rv = -1;

	if (a->maps == NULL)
		apply_maps_init(a);
	ml.names = strmap_new(64);
	if (ledger_missing_foreach(a->ledger, apply_missing_cb, &ml) == -1) {
		xasprintf(&a->cause, "ledger read failed: %s",
			  ledger_errmsg(a->ledger));
		goto out;
	}
	if (apply_lookup(a, ml.lookup, ml.nlookup) == -1)
		goto out;
	items = xcalloc(ml.n + 1, sizeof(*items));
	for (size_t i = 0; i < ml.n; i++) {
		struct plan_enrol *e = &ml.items[i];

		if (strmap_get(a->maps->users, e->username, &e->userid) == -1 ||
		    e->userid <= 0)
			continue;
		memset(&lc, 0, sizeof(lc));
		if (ledger_course_get(a->ledger, e->course, &lc) == 0)
			e->courseid = lc.moodle_id;
		ledger_course_clear(&lc);
		if (e->courseid > 0)
			items[n++] = e;
	}
	rv = apply_op_run(a, OP_ENROL, items, n, true);
out:
	for (size_t i = 0; i < ml.n; i++) {
		free((char *)ml.items[i].course);
		free((char *)ml.items[i].username);
	}
	free(ml.items);
	free(ml.lookup);
	free(items);
	strmap_free(ml.names);
	return rv;
}

/* After a crash between Moodle's answer to an enrol call and our commit:
 * ask Moodle which of the in-flight enrolments it holds, and record those,
 * so that they are not sent (and welcome-mailed) again. */
int
apply_recover(struct apply *a)
{
	struct strmap *fetched = NULL; /* courses whose holdings we have */
	char *intent = NULL, *line, *next, key[80];
	int64_t roleid, courseid, userid, dummy;
	int rv = -1;

	if (a->maps == NULL)
		apply_maps_init(a);
	if (ledger_meta_get(a->ledger, "inflight_enrol", &intent) == -1)
		return apply_ledger_failed(a);
	if (intent == NULL)
		return 0;
	log_info("checking the enrolments in flight when the last run stopped");
	fetched = strmap_new(16);
	if (ledger_begin(a->ledger) == -1)
		goto fail;
	for (line = intent; *line != '\0'; line = next) {
		char *f[4] = { line, NULL, NULL, NULL };

		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		else
			next = line + strlen(line);
		for (int k = 1; k < 4; k++)
			if ((f[k] = strchr(f[k - 1], '\037')) == NULL)
				goto skip;
			else
				*f[k]++ = '\0';
		if (parse_int64(f[2], 1, INT32_MAX, &roleid) == -1 ||
		    parse_int64(f[3], 1, INT64_MAX, &courseid) == -1 ||
		    ledger_user_get(a->ledger, f[1], &userid) != 0)
			goto skip;
		snprintf(key, sizeof(key), "%" PRId64, courseid);
		if (strmap_get(fetched, key, &dummy) == -1) {
			if (apply_course_holdings(a, courseid) == -1) {
				ledger_rollback(a->ledger);
				goto out;
			}
			strmap_put(fetched, key, 1);
		}
		apply_present_key(key, sizeof(key), courseid, userid,
				  (int)roleid);
		if (strmap_get(a->maps->present, key, &dummy) == 0 &&
		    ledger_enrol_put(a->ledger, f[0], f[1], (int)roleid,
				     LEDGER_ENROL_ACTIVE) == -1)
			goto fail;
	skip:;
	}
	if (ledger_meta_set(a->ledger, "inflight_enrol", NULL) == -1 ||
	    ledger_commit(a->ledger) == -1)
		goto fail;
	rv = 0;
	goto out;
fail:
	apply_ledger_failed(a);
out:
	strmap_free(fetched);
	free(intent);
	return rv;
}
