/* Apply a plan to Moodle in batches; each confirmed batch is committed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply.h"
#include "apply_int.h"
#include "batch.h"
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

const struct apply_op_desc apply_ops[] = {
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

/* Longest wait between two looks at enrolments Moodle may still apply. */
#define APPLY_SETTLE_POLL_MS 5000
/* maps->unsettled values: held at the start of the run, and wanted by it. */
#define APPLY_HELD   1
#define APPLY_WANTED 2

/* Per-run maps: shortname -> course id, username -> user id (-1: the
 * lookup failed), "course\037user" -> 1 for enrolments that failed,
 * "courseid/userid/roleid" -> 1 for what Moodle was seen to hold (adopted
 * courses, enrolments in flight), "course\037user\037roleid" -> 1 for
 * enrolments Moodle may still be applying (not sent again meanwhile). */
struct apply_maps {
	struct strmap *courses;
	struct strmap *users;
	struct strmap *failed;
	struct strmap *present;
	struct strmap *unsettled;
};

void
apply_progress(struct apply *a, const char *phase, size_t done, size_t total)
{
	if (a->opts->progress != NULL)
		a->opts->progress(a->opts->arg, phase, done, total);
}

void
apply_stop(struct apply *a, const struct moodle_error *err)
{
	/* An XML answer: PHP cut the request, moodlewsrestformat (sent last)
	 * and all (moodle.c). */
	if (err->errorcode != NULL && strcmp(err->errorcode, "xml") == 0)
		a->cut = true;
	free(a->cause);
	if (err->kind == MOODLE_CANCELLED)
		a->cause = xstrdup("cancelled");
	else if (err->kind == MOODLE_DOWN) /* no call is to blame */
		a->cause = xstrdup(err->message);
	else
		xasprintf(&a->cause, "%s: %s",
			  err->function ? err->function : "moodle",
			  err->message ? err->message : "failed");
}

/* Run a batched call; a service-wide fault stops the apply with a cause. */
static int
apply_batch_run(struct apply *a, struct moodle *m, const struct batch *mb)
{
	struct moodle_error err = { 0 };
	int rv = 0;

	if (mb->n == 0)
		return 0;
	if (batch_run(m, mb, &err) == -1) {
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

	size_t clen = strlen(course);
	const char *user =
	    clen > 0 && strncmp(item, course, clen) == 0 && item[clen] == '/'
		? item + clen + 1
	    : *course == '\0' ? item
			      : NULL;

	if (ledger_error_add(a->ledger, a->counts->id, kind, item, code,
			     message) == -1 ||
	    history_decide(&a->hist, "error", *course ? course : NULL, user, 0,
			   "%s refused by Moodle: %s: %s", kind, code,
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

/* --- enrolments in flight ------------------------------------------- */

/* The call's id in the inflight table: its first item, which no other
 * call in flight carries. */
static char *
apply_inflight_id(const struct plan_enrol *e)
{
	char *id;

	xasprintf(&id, "%s\037%s\037%d", e->course, e->username, e->roleid);
	return id;
}

/* Note an enrol call before it goes (or after it went unanswered): a
 * crash between Moodle's answer and our commit is then resolved by asking
 * Moodle instead of sending the enrolments again. */
static int
apply_inflight_put(struct apply *a, struct plan_enrol *const *items,
		   size_t count, int64_t settle_by)
{
	struct ledger_inflight f = { 0 };
	char *text = NULL, *id = apply_inflight_id(items[0]);
	size_t len = 0;
	FILE *mf = open_memstream(&text, &len);
	int rv;

	for (size_t i = 0; i < count; i++)
		fprintf(mf, "%s\037%s\037%d\037%" PRId64 "\n", items[i]->course,
			items[i]->username, items[i]->roleid,
			items[i]->courseid);
	fclose(mf);
	f.id = id;
	f.settle_by = settle_by;
	f.items = text;
	rv = ledger_inflight_put(a->ledger, &f);
	free(text);
	free(id);
	return rv;
}

static int
apply_inflight_delete(struct apply *a, const struct plan_enrol *first)
{
	char *id = apply_inflight_id(first);
	int rv = ledger_inflight_delete(a->ledger, id);

	free(id);
	return rv;
}

/* Until when a call sent now may still be at work in Moodle. */
static int64_t
apply_settle_by(const struct apply *a)
{
	return now_epoch() + (a->conf->moodle_timeout_ms + 999) / 1000;
}

static char *
apply_unsettled_key(const char *course, const char *username, int roleid)
{
	char *key;

	xasprintf(&key, "%s\037%s\037%d", course, username, roleid);
	return key;
}

/* Enrolments Moodle may still be applying: not sent again meanwhile.  An
 * unsettled call of this run is one it wants. */
static void
apply_unsettled_add(struct apply *a, const char *course, const char *username,
		    int roleid)
{
	char *key = apply_unsettled_key(course, username, roleid);

	strmap_put(a->maps->unsettled, key, APPLY_WANTED);
	free(key);
}

/* Is e an enrolment Moodle may still be applying?  Then it is held back,
 * and marked as one this run wants: if Moodle turns out not to have
 * applied it, the run sends it once that is certain (apply_settle). */
static bool
apply_hold_unsettled(struct apply *a, const struct plan_enrol *e)
{
	char *key;
	int64_t v;
	bool found;

	if (strmap_count(a->maps->unsettled) == 0)
		return false;
	key = apply_unsettled_key(e->course, e->username, e->roleid);
	found = strmap_get(a->maps->unsettled, key, &v) == 0 && v != 0;
	if (found)
		strmap_put(a->maps->unsettled, key, APPLY_WANTED);
	free(key);
	return found;
}

/* --- enrolment-shaped operations ------------------------------------ */

int64_t
apply_batch_key(size_t i, void *arg)
{
	struct apply_batch *b = arg;

	return b->items[i]->userid;
}

int
apply_batch_call(struct moodle *m, const size_t *idx, size_t count, void *arg,
		 struct moodle_error *err)
{
	struct apply_batch *b = arg;
	int rv;

	if (b->op == OP_ROLE_ADD || b->op == OP_ROLE_REMOVE) {
		struct moodle_role_assignment *ra = xcalloc(count, sizeof(*ra));

		for (size_t i = 0; i < count; i++) {
			const struct plan_enrol *e = b->items[idx[i]];

			ra[i] = (struct moodle_role_assignment){ e->roleid,
								 e->userid,
								 e->courseid };
		}
		rv = b->op == OP_ROLE_ADD
			 ? moodle_role_assign(m, ra, count, err)
			 : moodle_role_unassign(m, ra, count, err);
		free(ra);
		return rv;
	}

	struct moodle_enrolment *en = xcalloc(count, sizeof(*en));

	for (size_t i = 0; i < count; i++) {
		const struct plan_enrol *e = b->items[idx[i]];

		en[i] = (struct moodle_enrolment){
			b->op == OP_UNENROL ? 0 : e->roleid, e->userid,
			e->courseid, b->op == OP_SUSPEND ? 1 : -1
		};
	}
	rv = b->op == OP_UNENROL ? moodle_unenrol(m, en, count, err)
				 : moodle_enrol(m, en, count, err);
	free(en);
	return rv;
}

/* The plan items of a call, in order. */
static struct plan_enrol **
apply_batch_items(const struct apply_batch *b, const size_t *idx, size_t count)
{
	struct plan_enrol **items = xcalloc(count, sizeof(*items));

	for (size_t i = 0; i < count; i++)
		items[i] = b->items[idx[i]];
	return items;
}

/* Enrol calls note what is in flight, and until when. */
int
apply_batch_note(enum batch_event ev, const size_t *idx, size_t count,
		 void *arg)
{
	struct apply_batch *b = arg;
	struct apply *a = b->a;
	struct plan_enrol **items = apply_batch_items(b, idx, count);
	int rv = -1;

	if (ledger_begin(a->ledger) == -1)
		goto out;
	if (ev == BATCH_REFUSED)
		rv = apply_inflight_delete(a, items[0]);
	else
		rv = apply_inflight_put(a, items, count, apply_settle_by(a));
	if (rv == 0 && ev == BATCH_UNSETTLED) {
		if (a->unsettled_calls++ == 0)
			log_warnx("%s: no answer to a call of %zu enrolments: "
				  "Moodle may still apply it; looking again "
				  "before sending any of them again",
				  apply_ops[b->op].function, count);
		else
			log_debug("%s: no answer to a call of %zu enrolments",
				  apply_ops[b->op].function, count);
		for (size_t i = 0; i < count; i++)
			apply_unsettled_add(a, items[i]->course,
					    items[i]->username,
					    items[i]->roleid);
	}
	if (rv == 0)
		rv = ledger_commit(a->ledger);
	else
		ledger_rollback(a->ledger);
out:
	free(items);
	if (rv == -1)
		apply_ledger_failed(a);
	return rv;
}

/* The history row of a confirmed item: what was done, and why. */
static int
apply_history_item(struct apply_batch *b, const struct plan_enrol *e)
{
	const struct history *h = &b->a->hist;
	const struct config *c = b->a->conf;
	const char *policy =
	    c->sync_on_removed_participant == REMOVED_PARTICIPANT_SUSPEND
		? "suspend"
		: "unenrol";
	const char *other = config_role_name(c, e->other_roleid),
		   *role = config_role_name(c, e->roleid);
	char since[64];
	bool add;

	switch (b->op) {
	case OP_ENROL:
		if (b->from_missing)
			return history_add(h, "enrol", e->course, e->username,
					   e->roleid,
					   "listed in the feed; the Moodle "
					   "account now exists");
		if (e->reactivate)
			return history_add(h, "reactivate", e->course,
					   e->username, e->roleid,
					   "back in the feed after our "
					   "suspension");
		return history_add(h, "enrol", e->course, e->username,
				   e->roleid, "listed in the feed");
	case OP_ROLE_ADD:
	case OP_ROLE_REMOVE:
		add = b->op == OP_ROLE_ADD;
		if (e->other_roleid > 0)
			return history_add(h, add ? "role_add" : "role_remove",
					   e->course, e->username, e->roleid,
					   "role changed in the feed: %s → %s",
					   (add ? other : role) ?: "?",
					   (add ? role : other) ?: "?");
		return history_add(h, add ? "role_add" : "role_remove",
				   e->course, e->username, e->roleid,
				   add ? "role added in the feed"
				       : "role no longer in the feed");
	case OP_SUSPEND:
	case OP_UNENROL:
		if (history_since(h, "withhold", e->course, e->username, since,
				  sizeof(since)) == -1)
			return -1;
		return history_add(
		    h, b->op == OP_SUSPEND ? "suspend" : "unenrol", e->course,
		    e->username, e->roleid,
		    "absent from the feed since %s; policy %s", since, policy);
	}
	return 0;
}

/* What reported drift a change puts back: the row goes, with a history
 * row saying so. */
static int
apply_drift_repaired(struct apply *a, const char *course, const char *user,
		     int roleid, const char *kind, const char *why)
{
	int n;

	if (!a->drift_known)
		return 0;
	if ((n = ledger_drift_delete(a->ledger, course, user ? user : "",
				     roleid, kind)) <= 0)
		return n;
	return history_add(&a->hist, "drift_resolved", course, user, roleid,
			   "no more: %s", why);
}

/* Write one confirmed item to the ledger. */
static int
apply_commit_item(struct apply_batch *b, const struct plan_enrol *e)
{
	struct ledger *l = b->a->ledger;
	struct ledger_run *c = b->a->counts;
	int rv = 0;

	if (apply_history_item(b, e) == -1 ||
	    ((b->op == OP_ENROL || b->op == OP_ROLE_ADD) &&
	     apply_drift_repaired(b->a, e->course, e->username, e->roleid, NULL,
				  "put back in Moodle (sync.on_drift = "
				  "repair)") == -1))
		return -1;
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

/* Moodle confirmed items[0..count): one transaction with their intent. */
static int
apply_batch_commit(struct apply_batch *b, struct plan_enrol *const *items,
		   size_t count)
{
	struct ledger *l = b->a->ledger;

	if (ledger_begin(l) == -1)
		goto fail;
	for (size_t i = 0; i < count; i++)
		if (apply_commit_item(b, items[i]) == -1)
			goto fail;
	if (b->op == OP_ENROL && apply_inflight_delete(b->a, items[0]) == -1)
		goto fail;
	if (ledger_commit(l) == -1)
		goto fail;
	b->done += count;
	if (!b->quiet)
		apply_progress(b->a, apply_ops[b->op].phase, b->done, b->n);
	return 0;
fail:
	return apply_ledger_failed(b->a);
}

int
apply_batch_done(struct moodle *m, const size_t *idx, size_t count, void *arg)
{
	struct apply_batch *b = arg;
	struct plan_enrol **items = apply_batch_items(b, idx, count);
	int rv;

	(void)m;
	rv = apply_batch_commit(b, items, count);
	free(items);
	return rv;
}

/* Does Moodle hold user e with role e->roleid in its course? */
static int
apply_enrolment_present(struct moodle *m, const struct plan_enrol *e, bool *ret)
{
	struct moodle_enrolled_user *users = NULL;
	struct moodle_error err = { 0 };
	size_t n = 0;

	*ret = false;
	if (moodle_enrolled_users(m, e->courseid, &users, &n, &err) == -1) {
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

int
apply_batch_failed(struct moodle *m, size_t index,
		   const struct moodle_error *err, void *arg)
{
	struct apply_batch *b = arg;
	struct plan_enrol *e = b->items[index];
	char *item, *key;
	bool present;

	/* An error answer does not prove nothing changed (Moodle commits
	 * the enrolment, then fails to send the welcome mail): look. */
	if ((b->op == OP_ENROL || b->op == OP_ROLE_ADD) &&
	    !apply_code_is_certain(err->errorcode) &&
	    apply_enrolment_present(m, e, &present) == 0 && present)
		return apply_batch_commit(b, &e, 1);
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
	struct apply_batch b = { a,     op,   items, n, 0, from_missing,
				 false, NULL, 0 };
	struct batch mb = {
		.n = n,
		.fields = apply_ops[op].fields,
		.min_items = APPLY_SPREAD_ITEMS,
		.key = apply_batch_key,
		/* Enrolments are mailed and re-activate what an admin
		 * suspended: one without an answer is never sent blindly. */
		.once = op == OP_ENROL,
		.call = apply_batch_call,
		.note = op == OP_ENROL ? apply_batch_note : NULL,
		.done = apply_batch_done,
		.failed = apply_batch_failed,
		.arg = &b,
	};

	if (n == 0)
		return 0;
	log_info("%s: %zu to send", apply_ops[op].phase, n);
	apply_progress(a, apply_ops[op].phase, 0, n);
	return apply_batch_run(a, a->moodle, &mb);
}

/* --- users ----------------------------------------------------------- */

int
apply_lookup_call(struct moodle *m, const size_t *idx, size_t count, void *arg,
		  struct moodle_error *err)
{
	struct apply_lookup *lk = arg;
	const char **names = xcalloc(count, sizeof(*names));
	struct moodle_user *found = NULL;
	struct strmap *byname;
	size_t nfound = 0;
	int64_t id;
	int rv;

	for (size_t i = 0; i < count; i++)
		names[i] = lk->names[idx[i]];
	rv = moodle_users_by_username(m, names, count, &found, &nfound, err);
	if (rv == 0) {
		byname = strmap_new(nfound);
		for (size_t i = 0; i < nfound; i++)
			strmap_put(byname, found[i].username, found[i].id);
		for (size_t i = 0; i < count; i++)
			lk->ids[idx[i]] = strmap_get(byname, names[i], &id) == 0
					      ? id
					      : 0; /* not in Moodle (yet) */
		strmap_free(byname);
	}
	moodle_users_free(found, nfound);
	free(names);
	return rv;
}

int
apply_lookup_done(struct moodle *m, const size_t *idx, size_t count, void *arg)
{
	struct apply_lookup *lk = arg;
	struct apply *a = lk->a;

	(void)m;
	if (ledger_begin(a->ledger) == -1)
		goto fail;
	for (size_t i = 0; i < count; i++) {
		const char *name = lk->names[idx[i]];

		strmap_put(a->maps->users, name, lk->ids[idx[i]]);
		if (ledger_user_put(a->ledger, name, lk->ids[idx[i]]) == -1)
			goto fail;
	}
	if (ledger_commit(a->ledger) == -1)
		goto fail;
	lk->done += count;
	if (!lk->quiet)
		apply_progress(a, "looking up users", lk->done, lk->n);
	return 0;
fail:
	return apply_ledger_failed(a);
}

int
apply_lookup_failed(struct moodle *m, size_t index,
		    const struct moodle_error *err, void *arg)
{
	struct apply_lookup *lk = arg;

	(void)m;
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
	struct apply_lookup lk = {
		a, names, n, 0, xcalloc(n + 1, sizeof(int64_t)), false
	};
	struct batch mb = {
		.n = n,
		.fields = MOODLE_LOOKUP_FIELDS,
		.extra = MOODLE_LOOKUP_EXTRA,
		.min_items = APPLY_SPREAD_LOOKUPS,
		.call = apply_lookup_call,
		.done = apply_lookup_done,
		.failed = apply_lookup_failed,
		.arg = &lk,
	};
	int rv;

	if (n > 0)
		apply_progress(a, "looking up users", 0, n);
	rv = apply_batch_run(a, a->moodle, &mb);
	free(lk.ids);
	return rv;
}

/* --- what Moodle holds ----------------------------------------------- */

static void
apply_present_key(char *buf, size_t len, int64_t courseid, int64_t userid,
		  int roleid)
{
	snprintf(buf, len, "%" PRId64 "/%" PRId64 "/%d", courseid, userid,
		 roleid);
}

static bool
apply_is_present(struct apply *a, int64_t courseid, int64_t userid, int roleid)
{
	char key[80];
	int64_t v;

	apply_present_key(key, sizeof(key), courseid, userid, roleid);
	return strmap_get(a->maps->present, key, &v) == 0;
}

/* Who each course holds, one call per course, several in flight. */
struct apply_holdings {
	struct apply *a;
	const int64_t *courseids;
	struct moodle_enrolled_user **users; /* per course, from its call */
	size_t *nusers;
};

static int
apply_holdings_call(struct moodle *m, const size_t *idx, size_t count,
		    void *arg, struct moodle_error *err)
{
	struct apply_holdings *h = arg;

	(void)count; /* one course per call */
	return moodle_enrolled_users(m, h->courseids[idx[0]], &h->users[idx[0]],
				     &h->nusers[idx[0]], err);
}

static int
apply_holdings_done(struct moodle *m, const size_t *idx, size_t count,
		    void *arg)
{
	struct apply_holdings *h = arg;
	size_t c = idx[0];
	char key[80];

	(void)m;
	(void)count;
	for (size_t i = 0; i < h->nusers[c]; i++)
		for (size_t r = 0; r < h->users[c][i].nroles; r++) {
			apply_present_key(key, sizeof(key), h->courseids[c],
					  h->users[c][i].id,
					  h->users[c][i].roleids[r]);
			strmap_put(h->a->maps->present, key, 1);
		}
	moodle_enrolled_users_free(h->users[c], h->nusers[c]);
	h->users[c] = NULL;
	h->nusers[c] = 0;
	return 0;
}

/* A course that is gone (invalidrecord, 13c) holds nothing. */
static int
apply_holdings_failed(struct moodle *m, size_t index,
		      const struct moodle_error *err, void *arg)
{
	(void)m;
	(void)index;
	(void)err;
	(void)arg;
	return 0;
}

/* Remember who these courses hold with which roles: what Moodle holds is
 * recorded as ours without being sent again (after a lost ledger, sending
 * would re-activate what an admin suspended). */
static int
apply_holdings(struct apply *a, struct moodle *m, const int64_t *courseids,
	       size_t n)
{
	struct apply_holdings h = { a, courseids,
				    xcalloc(n + 1, sizeof(*h.users)),
				    xcalloc(n + 1, sizeof(size_t)) };
	struct batch mb = {
		.n = n,
		.fields = 1,
		.max_items = 1,
		.min_items = 1,
		.call = apply_holdings_call,
		.done = apply_holdings_done,
		.failed = apply_holdings_failed,
		.arg = &h,
	};
	int rv = apply_batch_run(a, m, &mb);

	for (size_t i = 0; i < n; i++)
		moodle_enrolled_users_free(h.users[i], h.nusers[i]);
	free(h.users);
	free(h.nusers);
	return rv;
}

/* --- courses --------------------------------------------------------- */

/* Record a course as ours in the ledger, as created or adopted. */
static int
apply_course_record(struct apply *a, const struct plan_course *pc, int64_t id,
		    bool created, int visible)
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
	lc.checked = a->now; /* just seen as it is: no drift to look for */
	lc.visible = visible;
	rv = ledger_course_put(a->ledger, &lc);
	ledger_course_clear(&lc);
	if (rv == 0)
		strmap_put(a->maps->courses, pc->shortname, id);
	return rv;
}

/* Adopt the Moodle course mc for pc: ours when it carries our idnumber
 * (we created it before losing the ledger).  Its holdings are fetched by
 * the caller. */
static int
apply_course_adopt(struct apply *a, const struct plan_course *pc,
		   const struct moodle_course *mc)
{
	bool ours = mc->idnumber != NULL && pc->idnumber != NULL &&
		    strcmp(mc->idnumber, pc->idnumber) == 0;

	if (apply_course_record(a, pc, mc->id, ours, mc->visible) == -1 ||
	    history_add(&a->hist, "adopt", pc->shortname, NULL, 0,
			"in the feed and already in Moodle (id %" PRId64
			"%s), matched by shortname; what it holds that the "
			"feed lists is recorded as ours",
			mc->id, ours ? ", made by webcoursed" : "") == -1)
		return apply_ledger_failed(a);
	a->counts->courses_adopted++;
	log_debug("course %s exists in Moodle (id %" PRId64 "): adopted",
		  pc->shortname, mc->id);
	return 0;
}

/* A course not in its category turned out to exist (shortnametaken: it
 * was moved elsewhere, or made meanwhile): look it up and adopt it.
 * Returns 1 adopted, 0 not found after all, -1 stop. */
static int
apply_course_adopt_elsewhere(struct apply *a, struct moodle *m,
			     const struct plan_course *pc)
{
	struct moodle_course mc = { 0 };
	struct moodle_error err = { 0 };
	int rv = -1;

	if (moodle_course_by_shortname(m, pc->shortname, &mc, &err) == -1) {
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
	if (ledger_begin(a->ledger) == -1 ||
	    apply_course_adopt(a, pc, &mc) == -1 ||
	    ledger_commit(a->ledger) == -1) {
		apply_ledger_failed(a);
		goto out;
	}
	rv = apply_holdings(a, m, &mc.id, 1) == -1 ? -1 : 1;
out:
	moodle_course_clear(&mc);
	moodle_error_clear(&err);
	return rv;
}

int
apply_create_call(struct moodle *m, const size_t *idx, size_t count, void *arg,
		  struct moodle_error *err)
{
	struct apply_create *cr = arg;
	struct moodle_new_course *c = xcalloc(count, sizeof(*c));
	int64_t *ids = xcalloc(count, sizeof(*ids));
	int rv;

	for (size_t i = 0; i < count; i++)
		c[i] = cr->courses[idx[i]];
	if ((rv = moodle_courses_create(m, c, count, ids, err)) == 0)
		for (size_t i = 0; i < count; i++)
			cr->ids[idx[i]] = ids[i];
	free(ids);
	free(c);
	return rv;
}

int
apply_create_done(struct moodle *m, const size_t *idx, size_t count, void *arg)
{
	struct apply_create *cr = arg;
	struct apply *a = cr->a;

	(void)m;
	if (ledger_begin(a->ledger) == -1)
		goto fail;
	for (size_t i = 0; i < count; i++)
		if (apply_course_record(a, cr->items[idx[i]], cr->ids[idx[i]],
					true,
					cr->items[idx[i]]->visible) == -1 ||
		    apply_drift_repaired(a, cr->items[idx[i]]->shortname, NULL,
					 0, "course_gone",
					 "created again (sync.on_drift = "
					 "repair)") == -1 ||
		    history_add(&a->hist, "create",
				cr->items[idx[i]]->shortname, NULL, 0,
				"new in the feed; Moodle id %" PRId64,
				cr->ids[idx[i]]) == -1)
			goto fail;
	if (ledger_commit(a->ledger) == -1)
		goto fail;
	a->counts->courses_created += count;
	cr->done += count;
	if (!cr->quiet)
		apply_progress(a, "creating courses", cr->done, cr->n);
	return 0;
fail:
	return apply_ledger_failed(a);
}

int
apply_create_failed(struct moodle *m, size_t index,
		    const struct moodle_error *err, void *arg)
{
	struct apply_create *cr = arg;
	const struct plan_course *pc = cr->items[index];

	/* Not in its category, yet taken: moved elsewhere, or someone made
	 * it since we listed the category.  Adopt it. */
	if (err->errorcode != NULL &&
	    strcmp(err->errorcode, "shortnametaken") == 0)
		return apply_course_adopt_elsewhere(cr->a, m, pc) == -1 ? -1
									: 0;
	apply_item_error(cr->a, "course", pc->shortname, pc->shortname,
			 "core_course_create_courses",
			 err->errorcode ? err->errorcode : "error",
			 err->message ? err->message : "");
	return 0;
}

/* Moodle's cost of finding existing courses, measured on a real 4.4 site
 * (issue 16): listing a category builds every course's full record, about
 * 15 ms a course (4.6 s for 300); a look-up by shortname takes 50-100 ms
 * whatever the category's size.  core_course_get_courses_by_field takes
 * one shortname a call (PARAM_TEXT, matched exactly), so look-ups are not
 * batched, only spread over the calls allowed in flight. */
#define APPLY_LIST_MS_PER_COURSE 15
#define APPLY_LOOKUP_MS          75

/* New courses of a category the ledger tracks that go straight to a
 * create call: a course a feed adds in steady state is new in Moodle too,
 * and a create refused as shortnametaken (checked before anything is
 * written) still adopts it, at the cost of the look-up saved. */
#define APPLY_CREATE_FIRST 2

enum apply_find_how { FIND_LIST, FIND_LOOKUP, FIND_CREATE };

/* How to find which of a category's nnew new courses Moodle holds
 * already: list the category when the ledger knows none of its courses
 * (a first import, a lost ledger: many of them may exist, and nothing may
 * be written twice) or when look-ups would cost Moodle more than listing
 * the nknown courses the ledger tracks there; create the few a steady
 * run adds at once; else look each up by shortname. */
static enum apply_find_how
apply_category_how(size_t nnew, size_t nknown)
{
	if (nknown == 0 ||
	    nnew * APPLY_LOOKUP_MS >= nknown * APPLY_LIST_MS_PER_COURSE)
		return FIND_LIST;
	return nnew <= APPLY_CREATE_FIRST ? FIND_CREATE : FIND_LOOKUP;
}

/* The courses of a category, one call (31a; an unknown category is an
 * empty list, 31b), appended to *ret: shortname -> index in byname. */
static int
apply_category_list(struct apply *a, int64_t categoryid,
		    struct moodle_course **ret, size_t *ret_n,
		    struct strmap *byname)
{
	struct moodle_error err = { 0 };
	struct moodle_course *got;
	char cat[32];
	size_t ngot;

	snprintf(cat, sizeof(cat), "%" PRId64, categoryid);
	if (moodle_courses_by_field(a->moodle, "category", cat, &got, &ngot,
				    &err) == -1) {
		apply_stop(a, &err);
		moodle_error_clear(&err);
		return -1;
	}
	*ret = xreallocarray(*ret, *ret_n + ngot + 1, sizeof(**ret));
	for (size_t k = 0; k < ngot; k++) {
		strmap_put(byname, got[k].shortname, (int64_t)*ret_n);
		(*ret)[(*ret_n)++] = got[k];
	}
	free(got); /* its strings moved to *ret */
	return 0;
}

/* Look-ups by shortname of the new courses of categories not listed. */
struct apply_find {
	struct plan_course **items;
	struct moodle_course *found; /* per item; id 0: not in Moodle */
};

static int
apply_find_call(struct moodle *m, const size_t *idx, size_t count, void *arg,
		struct moodle_error *err)
{
	struct apply_find *f = arg;

	for (size_t i = 0; i < count; i++)
		if (moodle_course_by_shortname(m, f->items[idx[i]]->shortname,
					       &f->found[idx[i]], err) == -1)
			return -1;
	return 0;
}

static int
apply_find_failed(struct moodle *m, size_t index,
		  const struct moodle_error *err, void *arg)
{
	(void)m, (void)index, (void)err, (void)arg;
	return 0; /* not found then: a create meets shortnametaken if taken */
}

/* Find the courses of the list that Moodle holds already, by listing
 * their categories or looking their shortnames up (apply_category_how,
 * with what the feed holds in each category as the ledger's knowledge):
 * *ret_n courses in *ret, shortname -> index in byname. */
static int
apply_courses_find(struct apply *a, struct plan_course *list, size_t n,
		   const struct feed *feed, struct moodle_course **ret,
		   size_t *ret_n, struct strmap *byname)
{
	struct strmap *nnew = strmap_new(8), *nfeed = strmap_new(8);
	struct apply_find f = { xcalloc(n + 1, sizeof(*f.items)),
				xcalloc(n + 1, sizeof(*f.found)) };
	struct batch mb = {
		.max_items = 1,
		.min_items = 1,
		.fields = 1,
		.call = apply_find_call,
		.failed = apply_find_failed,
		.arg = &f,
	};
	size_t nlisted = 0;
	char cat[32];
	int64_t v, k;
	int rv = -1;

	for (size_t i = 0; i < n; i++) {
		snprintf(cat, sizeof(cat), "%" PRId64, list[i].categoryid);
		strmap_put(nnew, cat,
			   strmap_get(nnew, cat, &v) == 0 ? v + 1 : 1);
	}
	for (size_t i = 0; feed != NULL && i < feed->ncourses; i++) {
		snprintf(cat, sizeof(cat), "%" PRId64,
			 feed->courses[i].categoryid != 0
			     ? feed->courses[i].categoryid
			     : (int64_t)a->conf->sync_category_id);
		strmap_put(nfeed, cat,
			   strmap_get(nfeed, cat, &v) == 0 ? v + 1 : 1);
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(cat, sizeof(cat), "%" PRId64, list[i].categoryid);
		if (strmap_get(nnew, cat, &v) == -1 || v < 0)
			continue; /* listed already */
		if (strmap_get(nfeed, cat, &k) == -1 || k < v)
			k = v; /* an approved course: not counted in the feed */
		switch (apply_category_how((size_t)v, (size_t)(k - v))) {
		case FIND_CREATE:
			continue;
		case FIND_LOOKUP:
			f.items[mb.n++] = &list[i];
			continue;
		case FIND_LIST:
			break;
		}
		strmap_put(nnew, cat, -1);
		apply_progress(a, "listing categories", ++nlisted, 0);
		if (apply_category_list(a, list[i].categoryid, ret, ret_n,
					byname) == -1)
			goto out;
	}
	if (mb.n > 0) {
		log_debug("looking up %zu new courses by shortname instead of "
			  "listing their categories",
			  mb.n);
		if (apply_batch_run(a, a->moodle, &mb) == -1)
			goto out;
	}
	*ret = xreallocarray(*ret, *ret_n + mb.n + 1, sizeof(**ret));
	for (size_t i = 0; i < mb.n; i++) {
		if (f.found[i].id == 0) {
			moodle_course_clear(&f.found[i]);
			continue;
		}
		strmap_put(byname, f.found[i].shortname, (int64_t)*ret_n);
		(*ret)[(*ret_n)++] = f.found[i];
		memset(&f.found[i], 0, sizeof(f.found[i]));
	}
	rv = 0;
out:
	for (size_t i = 0; i < mb.n; i++)
		moodle_course_clear(&f.found[i]);
	free(f.found);
	free(f.items);
	strmap_free(nnew);
	strmap_free(nfeed);
	return rv;
}

/* Adopt the courses of the list that Moodle holds already (found by
 * apply_courses_find) and fetch what they hold; the others go into cr,
 * to be created (a create refused as shortnametaken, a course moved
 * elsewhere or made meanwhile, still adopts).  cr is the caller's to
 * free (apply_create_clear). */
int
apply_courses_prepare(struct apply *a, struct plan_course *list, size_t n,
		      const struct feed *feed, struct apply_create *cr)
{
	struct strmap *byname = strmap_new(n + 16);
	struct moodle_course *in_moodle = NULL;
	size_t nin = 0, nadopted = 0;
	int64_t *adopted = xcalloc(n + 1, sizeof(*adopted)), k;
	int rv = -1;

	*cr =
	    (struct apply_create){ .a = a,
				   .items = xcalloc(n + 1, sizeof(*cr->items)),
				   .courses =
				       xcalloc(n + 1, sizeof(*cr->courses)),
				   .ids = xcalloc(n + 1, sizeof(int64_t)) };
	if (n == 0) {
		rv = 0;
		goto out;
	}
	if (apply_courses_find(a, list, n, feed, &in_moodle, &nin, byname) ==
	    -1)
		goto out;
	if (ledger_begin(a->ledger) == -1) {
		apply_ledger_failed(a);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct plan_course *pc = &list[i];

		if (strmap_get(byname, pc->shortname, &k) == 0) {
			if (apply_course_adopt(a, pc, &in_moodle[k]) == -1)
				goto out; /* rolled back */
			adopted[nadopted++] = in_moodle[k].id;
			continue;
		}
		cr->courses[cr->n] =
		    (struct moodle_new_course){ pc->shortname,
						pc->fullname,
						pc->idnumber,
						pc->summary,
						a->conf->sync_course_format,
						pc->categoryid,
						pc->visible,
						pc->startdate,
						pc->enddate };
		cr->items[cr->n++] = &list[i];
	}
	if (ledger_commit(a->ledger) == -1) {
		apply_ledger_failed(a);
		goto out;
	}
	/* Courses Moodle holds in these categories: those listed, or at
	 * least the feed's that the ledger tracks. */
	cr->in_moodle = nin;
	if (feed != NULL && feed->ncourses > n && feed->ncourses - n > nin)
		cr->in_moodle = feed->ncourses - n;
	if (nadopted > 0) {
		log_info("%zu courses of the feed already exist in Moodle: "
			 "adopted by shortname",
			 nadopted);
		if (apply_holdings(a, a->moodle, adopted, nadopted) == -1)
			goto out;
	}
	rv = 0;
out:
	moodle_courses_free(in_moodle, nin);
	strmap_free(byname);
	free(adopted);
	return rv;
}

void
apply_create_clear(struct apply_create *cr)
{
	free(cr->ids);
	free(cr->courses);
	free(cr->items);
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
			if (history_add(&a->hist, "hold", list[i].shortname,
					NULL, 0,
					"new in the feed; held for approval "
					"(sync.new_courses = approve): "
					"webcoursectl approve creates "
					"it") == -1) {
				ledger_course_clear(&lc);
				goto fail;
			}
		}
		free(lc.fullname);
		lc.fullname = xstrdup(list[i].fullname);
		lc.participants = list[i].participants;
		lc.last_seen = a->now;
		lc.status = LEDGER_COURSE_PENDING; /* a deleted one too */
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

int
apply_update_call(struct moodle *m, const size_t *idx, size_t count, void *arg,
		  struct moodle_error *err)
{
	struct apply_updates *u = arg;
	struct moodle_course_update *cu = xcalloc(count, sizeof(*cu));
	struct moodle_warning *w = NULL;
	size_t nw = 0;
	int rv;

	for (size_t i = 0; i < count; i++) {
		const struct plan_course *pc = &u->list[idx[i]];

		cu[i].id = pc->moodle_id;
		cu[i].fullname = u->what == UPDATE_RENAME ? pc->fullname : NULL;
		cu[i].visible = u->what == UPDATE_RENAME ? -1
				: u->what == UPDATE_HIDE ? 0
							 : 1;
	}
	rv = moodle_courses_update(m, cu, count, &w, &nw, err);
	for (size_t k = 0; rv == 0 && k < nw; k++)
		for (size_t i = 0; i < count; i++)
			if (u->list[idx[i]].moodle_id == w[k].itemid &&
			    u->warning[idx[i]] == NULL)
				xasprintf(&u->warning[idx[i]], "%s\037%s",
					  w[k].warningcode ? w[k].warningcode
							   : "warning",
					  w[k].message ? w[k].message : "");
	moodle_warnings_free(w, nw);
	free(cu);
	return rv;
}

static int
apply_update_history(struct apply_updates *u, const struct plan_course *pc)
{
	const struct history *h = &u->a->hist;

	switch (u->what) {
	case UPDATE_RENAME:
		if (apply_drift_repaired(u->a, pc->shortname, NULL, 0,
					 "renamed",
					 "the feed renamed the course") == -1)
			return -1;
		return history_add(h, "rename", pc->shortname, NULL, 0,
				   "renamed in the feed: \"%s\" → \"%s\"",
				   pc->old_fullname ? pc->old_fullname : "",
				   pc->fullname);
	case UPDATE_HIDE:
		return history_add(h, "hide", pc->shortname, NULL, 0,
				   "absent from %d feeds in a row; policy hide",
				   pc->absent_runs);
	case UPDATE_UNHIDE:
		return history_add(h, "unhide", pc->shortname, NULL, 0,
				   "back in the feed after we hid it");
	}
	return 0;
}

/* update_courses applies the good items and warns about the bad ones. */
int
apply_update_done(struct moodle *m, const size_t *idx, size_t count, void *arg)
{
	struct apply_updates *u = arg;
	struct apply *a = u->a;
	struct ledger_course lc;

	(void)m;
	if (ledger_begin(a->ledger) == -1)
		goto fail;
	for (size_t i = 0; i < count; i++) {
		const struct plan_course *pc = &u->list[idx[i]];
		char *w = u->warning[idx[i]], *msg;

		if (w != NULL) {
			msg = strchr(w, '\037');
			*msg++ = '\0';
			apply_item_error(a, "course", pc->shortname,
					 pc->shortname,
					 "core_course_update_courses", w, msg);
			continue;
		}
		memset(&lc, 0, sizeof(lc));
		if (ledger_course_get(a->ledger, pc->shortname, &lc) != 0)
			goto fail;
		if (apply_update_history(u, pc) == -1) {
			ledger_course_clear(&lc);
			goto fail;
		}
		if (u->what == UPDATE_RENAME) {
			free(lc.fullname);
			lc.fullname = xstrdup(pc->fullname);
			a->counts->courses_renamed++;
		} else if (u->what == UPDATE_HIDE) {
			lc.status = LEDGER_COURSE_HIDDEN;
			lc.visible = 0;
			a->counts->courses_hidden++;
		} else {
			lc.status = LEDGER_COURSE_ACTIVE;
			lc.visible = 1;
		}
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

int
apply_update_failed(struct moodle *m, size_t index,
		    const struct moodle_error *err, void *arg)
{
	struct apply_updates *u = arg;
	const struct plan_course *pc = &u->list[index];

	(void)m;
	apply_item_error(u->a, "course", pc->shortname, pc->shortname,
			 "core_course_update_courses",
			 err->errorcode ? err->errorcode : "error",
			 err->message ? err->message : "");
	return 0;
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

/* Fill in e's ids: whether it can be sent now.  With record, an
 * enrolment of a user not in Moodle goes to the missing-users table. */
bool
apply_resolve_one(struct apply *a, struct plan_enrol *e, enum apply_op op,
		  bool record)
{
	char *key;
	int64_t id, failed;
	bool fresh;

	if (e->courseid == 0 &&
	    strmap_get(a->maps->courses, e->course, &e->courseid) == -1)
		return false; /* course held or failed: already reported */
	if (e->userid == 0 && strmap_get(a->maps->users, e->username, &id) == 0)
		e->userid = id;
	if (e->userid == 0 && op == OP_ENROL) {
		if (record &&
		    (ledger_missing_put(a->ledger, e->username, e->course,
					e->roleid, a->now, &fresh) == -1 ||
		     (fresh &&
		      history_add(&a->hist, "missing", e->course, e->username,
				  e->roleid,
				  "no Moodle account with this username "
				  "yet; enrolled as soon as it exists") == -1)))
			log_warnx("cannot record missing user %s: %s",
				  e->username, ledger_errmsg(a->ledger));
		return false;
	}
	if (e->userid <= 0)
		return false;
	if (op == OP_ENROL && apply_hold_unsettled(a, e))
		return false; /* Moodle may still be applying it */
	if (op == OP_ROLE_ADD) {
		xasprintf(&key, "%s\037%s", e->course, e->username);
		failed = strmap_get(a->maps->failed, key, &id) == 0;
		free(key);
		if (failed)
			return false; /* its enrolment failed just now */
	}
	if (strmap_count(a->maps->present) > 0 &&
	    (op == OP_ENROL || op == OP_ROLE_ADD) &&
	    apply_is_present(a, e->courseid, e->userid, e->roleid)) {
		if (ledger_enrol_put(a->ledger, e->course, e->username,
				     e->roleid, LEDGER_ENROL_ACTIVE) == -1)
			log_warnx("cannot record %s/%s: %s", e->course,
				  e->username, ledger_errmsg(a->ledger));
		return false; /* Moodle holds it already */
	}
	return true;
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
				       k.rows[i].first_seen, NULL) == -1)
			rv = -1;
		free((char *)k.rows[i].username);
		free((char *)k.rows[i].course);
	}
	free(k.rows);
	strmap_free(k.skipped);
	return rv;
}

/* Rewrite the missing set: the enrolments of the list whose users Moodle
 * lacks, and the rows of records the feed skipped. */
int
apply_missing_record(struct apply *a, struct plan_enrol *list, size_t n,
		     const struct feed *feed)
{
	if (ledger_begin(a->ledger) == -1 ||
	    ledger_missing_unmark_all(a->ledger) == -1 ||
	    apply_missing_keep(a, feed) == -1)
		return apply_ledger_failed(a);
	for (size_t i = 0; i < n; i++)
		if (list[i].userid == 0)
			(void)apply_resolve_one(a, &list[i], OP_ENROL, true);
	if (ledger_missing_sweep(a->ledger) == -1 ||
	    ledger_commit(a->ledger) == -1)
		return apply_ledger_failed(a);
	return 0;
}

/* --- enrolments Moodle may still be applying ------------------------- */

/* The enrol calls in flight, parsed: one entry per enrolment. */
struct apply_settling {
	struct apply *a;
	struct plan_enrol *items; /* strings owned */
	int64_t *settle_by;
	size_t *row; /* index into ids */
	size_t n, cap;
	char **ids; /* inflight rows */
	size_t nids;
	int64_t *courseids; /* distinct */
	size_t ncourses;
	struct strmap *courses;
};

static int
apply_settling_cb(const struct ledger_inflight *f, void *arg)
{
	struct apply_settling *s = arg;
	char *text = xstrdup(f->items), *line, *next;
	int64_t roleid, courseid, userid, v;
	char key[32];

	s->ids = xreallocarray(s->ids, s->nids + 1, sizeof(*s->ids));
	s->ids[s->nids++] = xstrdup(f->id);
	for (line = text; *line != '\0'; line = next) {
		char *fld[4] = { line, NULL, NULL, NULL };
		bool ok = true;

		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		else
			next = line + strlen(line);
		for (int k = 1; k < 4 && ok; k++)
			if ((ok =
				 (fld[k] = strchr(fld[k - 1], '\037')) != NULL))
				*fld[k]++ = '\0';
		/* What cannot be read is left to the plan. */
		if (!ok || parse_int64(fld[2], 1, INT32_MAX, &roleid) == -1 ||
		    parse_int64(fld[3], 1, INT64_MAX, &courseid) == -1)
			continue;
		if (strmap_get(s->a->maps->users, fld[1], &userid) == -1 &&
		    ledger_user_get(s->a->ledger, fld[1], &userid) != 0)
			continue;
		if (userid <= 0)
			continue;
		if (s->n == s->cap) {
			s->cap = s->cap ? s->cap * 2 : 64;
			s->items =
			    xreallocarray(s->items, s->cap, sizeof(*s->items));
			s->settle_by = xreallocarray(s->settle_by, s->cap,
						     sizeof(*s->settle_by));
			s->row = xreallocarray(s->row, s->cap, sizeof(*s->row));
			s->courseids = xreallocarray(s->courseids, s->cap,
						     sizeof(*s->courseids));
		}
		s->items[s->n] = (struct plan_enrol){
			.course = xstrdup(fld[0]),
			.username = xstrdup(fld[1]),
			.roleid = (int)roleid,
			.courseid = courseid,
			.userid = userid,
		};
		s->settle_by[s->n] = f->settle_by;
		s->row[s->n++] = s->nids - 1;
		snprintf(key, sizeof(key), "%" PRId64, courseid);
		if (strmap_get(s->courses, key, &v) == -1) {
			strmap_put(s->courses, key, 1);
			s->courseids[s->ncourses++] = courseid;
		}
	}
	free(text);
	return 0;
}

static void
apply_settling_free(struct apply_settling *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free((char *)s->items[i].course);
		free((char *)s->items[i].username);
	}
	for (size_t i = 0; i < s->nids; i++)
		free(s->ids[i]);
	free(s->items);
	free(s->settle_by);
	free(s->row);
	free(s->ids);
	free(s->courseids);
	strmap_free(s->courses);
	memset(s, 0, sizeof(*s));
}

static struct plan_enrol *
apply_enrol_dup(const struct plan_enrol *e)
{
	struct plan_enrol *d = xcalloc(1, sizeof(*d));

	*d = *e;
	d->course = xstrdup(e->course);
	d->username = xstrdup(e->username);
	return d;
}

static void
apply_resend_free(struct plan_enrol **list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)list[i]->course);
		free((char *)list[i]->username);
		free(list[i]);
	}
	free(list);
}

/* What Moodle holds of the enrolments in flight is recorded; what it does
 * not hold once their calls cannot be at work any more (settle_by) is
 * forgotten, and put in *ret_resend when the run wants it; the rest stays
 * in flight.  *ret_next is the earliest settle_by still ahead, or 0. */
static int
apply_settle_look(struct apply *a, struct plan_enrol ***ret_resend,
		  size_t *ret_nresend, int64_t *ret_next, size_t *ret_npending)
{
	struct apply_settling s = { .a = a, .courses = strmap_new(16) };
	struct ledger_inflight f = { 0 };
	bool *pending = NULL;
	char *key;
	int64_t now = now_epoch(), v;
	int rv = -1;

	*ret_next = 0;
	*ret_nresend = 0;
	*ret_npending = 0;
	if (ledger_inflight_foreach(a->ledger, apply_settling_cb, &s) == -1) {
		apply_ledger_failed(a);
		goto out;
	}
	if (s.nids == 0) {
		rv = 0;
		goto out;
	}
	if (apply_holdings(a, a->moodle, s.courseids, s.ncourses) == -1)
		goto out;
	*ret_resend = xcalloc(s.n + 1, sizeof(**ret_resend));
	pending = xcalloc(s.nids + 1, sizeof(*pending));
	if (ledger_begin(a->ledger) == -1)
		goto fail;
	for (size_t i = 0; i < s.n; i++) {
		struct plan_enrol *e = &s.items[i];

		key = apply_unsettled_key(e->course, e->username, e->roleid);
		if (apply_is_present(a, e->courseid, e->userid, e->roleid)) {
			if (history_add(&a->hist, "enrol", e->course,
					e->username, e->roleid,
					"listed in the feed; Moodle applied "
					"it after the call that carried it "
					"got no answer") == -1 ||
			    ledger_enrol_put(a->ledger, e->course, e->username,
					     e->roleid,
					     LEDGER_ENROL_ACTIVE) == -1 ||
			    ledger_missing_delete(a->ledger, e->username,
						  e->course, e->roleid) == -1) {
				free(key);
				goto fail;
			}
			a->counts->enrolled++;
			strmap_put(a->maps->unsettled, key, 0);
		} else if (s.settle_by[i] <= now) {
			if (strmap_get(a->maps->unsettled, key, &v) == 0 &&
			    v == APPLY_WANTED)
				(*ret_resend)[(*ret_nresend)++] =
				    apply_enrol_dup(e);
			strmap_put(a->maps->unsettled, key, 0);
		} else {
			pending[s.row[i]] = true;
			(*ret_npending)++;
			if (strmap_get(a->maps->unsettled, key, &v) == -1 ||
			    v == 0)
				strmap_put(a->maps->unsettled, key, APPLY_HELD);
			if (*ret_next == 0 || s.settle_by[i] < *ret_next)
				*ret_next = s.settle_by[i];
		}
		free(key);
	}
	/* A row keeps only what may still be applied. */
	for (size_t r = 0; r < s.nids; r++)
		if (!pending[r] && ledger_inflight_delete(a->ledger, s.ids[r]))
			goto fail;
	for (size_t r = 0; r < s.nids; r++) {
		char *text = NULL;
		size_t len = 0;
		FILE *mf;

		if (!pending[r])
			continue;
		mf = open_memstream(&text, &len);
		for (size_t i = 0; i < s.n; i++)
			if (s.row[i] == r && s.settle_by[i] > now &&
			    !apply_is_present(a, s.items[i].courseid,
					      s.items[i].userid,
					      s.items[i].roleid))
				fprintf(mf, "%s\037%s\037%d\037%" PRId64 "\n",
					s.items[i].course, s.items[i].username,
					s.items[i].roleid, s.items[i].courseid);
		fclose(mf);
		f = (struct ledger_inflight){ s.ids[r], 0, text };
		for (size_t i = 0; i < s.n; i++)
			if (s.row[i] == r)
				f.settle_by = s.settle_by[i];
		rv = ledger_inflight_put(a->ledger, &f);
		free(text);
		if (rv == -1)
			goto fail;
	}
	if (ledger_commit(a->ledger) == -1)
		goto fail;
	rv = 0;
	goto out;
fail:
	rv = apply_ledger_failed(a);
out:
	free(pending);
	apply_settling_free(&s);
	return rv;
}

/* Settle the enrolments in flight: at the start of a run, record what
 * Moodle holds and hold back what it may still be applying; at the end,
 * wait until each is certain, then send what Moodle did not apply and the
 * run wants.  Never takes "not there yet" for "not applied" while a call
 * may still be at work in Moodle (moodle-ws README: a request outlives its
 * client). */
static int
apply_settle(struct apply *a, bool wait)
{
	struct plan_enrol **resend = NULL;
	size_t nresend = 0, npending;
	int64_t next, ms;
	int rounds = 0, rv;
	char what[64];

	for (;;) {
		if (apply_settle_look(a, &resend, &nresend, &next, &npending) ==
		    -1) {
			apply_resend_free(resend, nresend);
			return -1;
		}
		rv = 0;
		if (nresend > 0 && wait) {
			log_info("Moodle did not apply %zu enrolments whose "
				 "call got no answer: sending them again",
				 nresend);
			rv = apply_op_run(a, OP_ENROL, resend, nresend, true);
			rounds++;
		}
		apply_resend_free(resend, nresend);
		resend = NULL;
		if (rv == -1)
			return -1;
		if (next == 0 && nresend == 0)
			return 0;
		if (!wait) {
			log_info("%zu enrolments of an earlier run's calls may "
				 "still be applied by Moodle: held back until "
				 "that is certain",
				 npending);
			return 0;
		}
		if (rounds > moodle_tries(a->moodle)) {
			a->unsettled = npending;
			snprintf(what, sizeof(what), "%zu enrolments",
				 npending);
			apply_item_error(a, "enrol", "", what,
					 "enrol_manual_enrol_users",
					 "unsettled",
					 "Moodle did not answer the calls that "
					 "carried them; the next run looks "
					 "whether Moodle applied them before "
					 "sending them again");
			return 0;
		}
		if (next == 0)
			continue;
		ms = (next - now_epoch()) * 1000;
		ms = ms < 1000                   ? 1000
		     : ms > APPLY_SETTLE_POLL_MS ? APPLY_SETTLE_POLL_MS
						 : ms;
		apply_progress(a, "waiting for Moodle to finish earlier calls",
			       0, 0);
		if (moodle_wait(a->moodle, ms) == -1) {
			free(a->cause);
			a->cause = xstrdup("cancelled");
			return -1;
		}
	}
}

/* --- the run ---------------------------------------------------------- */

static void
apply_maps_init(struct apply *a)
{
	a->maps = xcalloc(1, sizeof(*a->maps));
	a->maps->courses = strmap_new(64);
	a->maps->users = strmap_new(64);
	a->maps->failed = strmap_new(16);
	a->maps->present = strmap_new(16);
	a->maps->unsettled = strmap_new(16);
}

void
apply_done(struct apply *a)
{
	if (a->maps != NULL) {
		strmap_free(a->maps->courses);
		strmap_free(a->maps->users);
		strmap_free(a->maps->failed);
		strmap_free(a->maps->present);
		strmap_free(a->maps->unsettled);
		free(a->maps);
		a->maps = NULL;
	}
	free(a->cause);
	a->cause = NULL;
}

/* The removals the guard withholds, each written once, when withheld
 * first: the first of them dates "absent since" when it is applied. */
static int
apply_withhold(struct apply *a, const struct plan *p)
{
	static const char *const why =
	    "withheld by the guard: more removals at once than "
	    "sync.max_removals allows; webcoursectl sync --allow-removals "
	    "applies them";
	const struct {
		const struct plan_enrol *list;
		size_t n;
		const char *what;
	} lists[] = { { p->suspend, p->nsuspend, "suspension" },
		      { p->unenrol, p->nunenrol, "unenrolment" } };

	if (ledger_begin(a->ledger) == -1)
		return apply_ledger_failed(a);
	for (size_t l = 0; l < nitems(lists); l++)
		for (size_t i = 0; i < lists[l].n; i++)
			if (history_decide(&a->hist, "withhold",
					   lists[l].list[i].course,
					   lists[l].list[i].username,
					   lists[l].list[i].roleid,
					   "absent from the feed: %s %s",
					   lists[l].what, why) == -1)
				return apply_ledger_failed(a);
	for (size_t i = 0; i < p->nhide; i++)
		if (history_decide(&a->hist, "withhold", p->hide[i].shortname,
				   NULL, 0, "absent from the feed: hiding %s",
				   why) == -1)
			return apply_ledger_failed(a);
	return ledger_commit(a->ledger) == 0 ? 0 : apply_ledger_failed(a);
}

/* Drift of what the feed no longer lists goes; a deleted course the feed
 * dropped goes from the ledger too. */
static int
apply_drift_moot(struct apply *a, const struct plan *p)
{
	if (p->ndrift_moot == 0)
		return 0;
	if (ledger_begin(a->ledger) == -1)
		return apply_ledger_failed(a);
	for (size_t i = 0; i < p->ndrift_moot; i++) {
		const struct plan_drift *d = &p->drift_moot[i];

		if (ledger_drift_delete(a->ledger, d->course, d->username,
					d->roleid, d->kind) == -1 ||
		    history_add(&a->hist, "drift_resolved", d->course,
				*d->username ? d->username : NULL, d->roleid,
				"no more to do: the feed no longer lists "
				"it") == -1 ||
		    (strcmp(d->kind, "course_gone") == 0 &&
		     ledger_course_delete(a->ledger, d->course) == -1))
			return apply_ledger_failed(a);
	}
	return ledger_commit(a->ledger) == 0 ? 0 : apply_ledger_failed(a);
}

int
apply_plan(struct apply *a, struct plan *p, const struct feed *feed,
	   bool withhold_removals)
{
	if (a->maps == NULL)
		apply_maps_init(a);
	a->drift_known = p->ndrift > 0;
	if (apply_drift_moot(a, p) == -1 ||
	    (withhold_removals && apply_withhold(a, p) == -1))
		return -1;
	if (p->nhold > 0 && apply_courses_hold(a, p->hold, p->nhold) == -1)
		return -1;
	if (apply_graph_run(a, p, feed, withhold_removals) == -1)
		return -1;
	if (apply_courses_seen(a, p, feed) == -1)
		return -1;
	return apply_settle(a, true);
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
	ml->items[ml->n] =
	    (struct plan_enrol){ .course = xstrdup(m->course),
				 .username = xstrdup(m->username),
				 .roleid = m->roleid };
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
		if (e->courseid > 0 && !apply_hold_unsettled(a, e))
			items[n++] = e;
	}
	if (apply_op_run(a, OP_ENROL, items, n, true) == -1 ||
	    apply_settle(a, true) == -1)
		goto out;
	rv = 0;
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

int
apply_recover(struct apply *a)
{
	if (a->maps == NULL)
		apply_maps_init(a);
	return apply_settle(a, false);
}
