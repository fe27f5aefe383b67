/* Unit tests for plan.c: the delta between a feed and prepared ledgers. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "feed.h"
#include "ledger.h"
#include "plan.h"
#include "tap.h"
#include "util.h"

static struct config_role test_roles[] = {
	{ "student", 5 },
	{ "teacher", 3 },
	{ "professor", 3 },
	{ "editor", 4 },
};

static char tmpdir[64];
static int nledgers;

static void
test_config(struct config *c)
{
	memset(c, 0, sizeof *c);
	c->roles = test_roles;
	c->nroles = nitems(test_roles);
	c->sync_default_role = "student";
	c->sync_new_courses = NEW_COURSES_CREATE;
	c->sync_update_names = true;
	c->sync_on_removed_participant = REMOVED_PARTICIPANT_SUSPEND;
	c->sync_on_removed_course = REMOVED_COURSE_HIDE;
	c->sync_idnumber_prefix = "wc-";
	c->sync_category_id = 4;
	c->sync_course_visible = true;
	c->source_max_size = 1 << 20;
}

static const char seed[] =
    "{\"courses\": ["
    "{\"shortname\": \"unique_field1\", \"name\": \"Geography\", "
    "\"participants\": [{\"username\": \"00000000074\"}, {\"username\": "
    "\"00000000076\"}, {\"username\": \"00000000077\"}, {\"username\": "
    "\"00000000078\", \"roleid\": \"teacher\"}, {\"username\": "
    "\"00000000069\"}]},"
    "{\"shortname\": \"unique_field2\", \"name\": \"Physics\", "
    "\"participants\": [{\"username\": \"00000000023\", \"roleid\": "
    "\"teacher\"}, {\"username\": \"00000000076\"}, {\"username\": "
    "\"00000000087\"}, {\"username\": \"00000000078\"}]},"
    "{\"shortname\": \"unique_field3\", \"name\": \"Math\", "
    "\"participants\": [{\"username\": \"00000000023\", \"roleid\": "
    "\"professor\"}, {\"username\": \"00000000076\"}, {\"username\": "
    "\"00000000087\"}, {\"username\": \"00000000078\"}]}]}";

static struct ledger *
new_ledger(char **ret_path)
{
	struct ledger *l = NULL;
	char *path, *cause = NULL;

	xasprintf(&path, "%s/ledger%d.db", tmpdir, ++nledgers);
	if (ledger_open(path, false, &l, &cause) == -1) {
		printf("# ledger_open: %s\n", cause);
		free(cause);
	}
	if (ret_path != NULL)
		*ret_path = path;
	else
		free(path);
	return l;
}

static void
put_course(struct ledger *l, const char *shortname, const char *fullname,
	   int64_t moodle_id, int status, int absent_runs)
{
	struct ledger_course c;

	memset(&c, 0, sizeof c);
	c.shortname = (char *)shortname;
	c.fullname = (char *)fullname;
	c.moodle_id = moodle_id;
	c.status = status;
	c.absent_runs = absent_runs;
	c.created = true;
	if (ledger_course_put(l, &c) == -1)
		printf("# ledger_course_put: %s\n", ledger_errmsg(l));
}

static void
put_enrol(struct ledger *l, const char *course, const char *user, int roleid,
	  int status)
{
	if (ledger_enrol_put(l, course, user, roleid, status) == -1)
		printf("# ledger_enrol_put: %s\n", ledger_errmsg(l));
}

static struct feed *
decode(const struct config *cfg, const char *json)
{
	struct feed *f = NULL;
	char *cause = NULL;

	if (feed_decode(cfg, json, strlen(json), &f, &cause) == -1) {
		printf("# feed_decode: %s\n", cause);
		free(cause);
	}
	return f;
}

static struct plan *
build(const struct config *cfg, const struct feed *f, struct ledger *l)
{
	struct plan *p = NULL;
	char *cause = NULL;

	if (f == NULL || l == NULL)
		return NULL;
	if (plan_build(cfg, f, l, &p, &cause) == -1) {
		printf("# plan_build: %s\n", cause);
		free(cause);
	}
	return p;
}

/* Items of one list as "course user role[ r]" lines, for is_str. */
static char *
items(const struct plan_enrol *e, size_t n)
{
	char *out = NULL;
	size_t len, i;
	FILE *f = open_memstream(&out, &len);

	for (i = 0; i < n; i++)
		fprintf(f, "%s%s %s %d%s", i ? "," : "", e[i].course,
			e[i].username, e[i].roleid,
			e[i].reactivate ? " r" : "");
	fclose(f);
	return out;
}

#define is_items(list, n, want, ...)                                           \
	do {                                                                   \
		char *s_ = items(list, n);                                     \
		is_str(s_, want, __VA_ARGS__);                                 \
		free(s_);                                                      \
	} while (0)

/* Seed the ledger as if the seed feed had been applied completely. */
static void
mirror_seed(struct ledger *l)
{
	static const char *const users[] = { "00000000023", "00000000069",
					     "00000000074", "00000000076",
					     "00000000077", "00000000078",
					     "00000000087" };
	size_t i;

	ledger_begin(l);
	put_course(l, "unique_field1", "Geography", 101, LEDGER_COURSE_ACTIVE,
		   0);
	put_course(l, "unique_field2", "Physics", 102, LEDGER_COURSE_ACTIVE, 0);
	put_course(l, "unique_field3", "Math", 103, LEDGER_COURSE_ACTIVE, 0);
	put_enrol(l, "unique_field1", "00000000069", 5, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "unique_field1", "00000000074", 5, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "unique_field1", "00000000076", 5, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "unique_field1", "00000000077", 5, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "unique_field1", "00000000078", 3, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "unique_field2", "00000000023", 3, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "unique_field2", "00000000076", 5, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "unique_field2", "00000000078", 5, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "unique_field2", "00000000087", 5, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "unique_field3", "00000000023", 3, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "unique_field3", "00000000076", 5, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "unique_field3", "00000000078", 5, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "unique_field3", "00000000087", 5, LEDGER_ENROL_ACTIVE);
	for (i = 0; i < nitems(users); i++)
		ledger_user_put(l, users[i], 1000 + (int64_t)i);
	ledger_commit(l);
}

static void
test_new_courses(void)
{
	struct config cfg;
	struct ledger *l = new_ledger(NULL);
	struct feed *f;
	struct plan *p;
	size_t i;

	test_config(&cfg);
	f = decode(&cfg, seed);
	ledger_user_put(l, "00000000076", 76);
	ledger_user_put(l, "00000000077", 0); /* looked up, not in Moodle */
	p = build(&cfg, f, l);
	if (!ok(p != NULL, "plan for an empty ledger"))
		goto out;
	is_int(p->ncreate, 3, "three courses to create");
	is_str(p->create[0].shortname, "unique_field1", "sorted by shortname");
	is_str(p->create[0].fullname, "Geography", "the feed's name");
	is_str(p->create[0].idnumber, "wc-unique_field1",
	       "idnumber = prefix + shortname");
	is_int(p->create[0].categoryid, 4, "sync.category_id");
	is_int(p->create[0].visible, 1, "sync.course_visible");
	is_int(p->create[0].participants, 5, "participant count");
	is_int(p->nenrol, 13, "every participant to enrol");
	is_int(p->nrole_add + p->nrole_remove + p->nsuspend + p->nunenrol, 0,
	       "nothing else");
	is_items(p->enrol, 5,
		 "unique_field1 00000000069 5,unique_field1 00000000074 5,"
		 "unique_field1 00000000076 5,unique_field1 00000000077 5,"
		 "unique_field1 00000000078 3",
		 "enrolments of the first course, with mapped roles");
	for (i = 0; i < p->nenrol && p->enrol[i].courseid == 0; i++)
		;
	is_int(i, p->nenrol, "courseid 0 for courses created in this run");
	is_int(p->enrol[2].userid, 76, "a cached user id is used");
	is_int(p->enrol[3].userid, 0, "cached as missing: id 0");
	is_int(p->nlookup, 6, "six users to look up");
	ok(p->nlookup == 6 && strcmp(p->lookup[0], "00000000023") == 0 &&
	       strcmp(p->lookup[3], "00000000077") == 0,
	   "lookup is sorted, has the missing one, not the cached one");
	is_int(p->tracked_courses, 0, "no tracked courses");
	is_int(plan_removals(p), 0, "no removals");
	ok(!plan_is_empty(p), "not empty");
out:
	plan_free(p);
	feed_free(f);
	ledger_free(l);
}

static void
test_feed_fields(void)
{
	struct config cfg;
	struct ledger *l = new_ledger(NULL);
	struct feed *f;
	struct plan *p;

	test_config(&cfg);
	cfg.sync_idnumber_prefix = NULL;
	cfg.sync_course_visible = false;
	f = decode(&cfg, "[{\"shortname\": \"x\", \"name\": \"X\", "
			 "\"idnumber\": \"SIS-9\", \"category\": 12, "
			 "\"visible\": true, \"summary\": \"S\", "
			 "\"startdate\": 100, \"enddate\": 200},"
			 "{\"shortname\": \"y\", \"name\": \"Y\"}]");
	p = build(&cfg, f, l);
	if (!ok(p != NULL && p->ncreate == 2, "two courses to create"))
		goto out;
	is_str(p->create[0].idnumber, "SIS-9", "the feed's idnumber wins");
	is_int(p->create[0].categoryid, 12, "the feed's category wins");
	is_int(p->create[0].visible, 1, "the feed's visible wins");
	is_str(p->create[0].summary, "S", "summary");
	is_int(p->create[0].startdate, 100, "startdate");
	is_int(p->create[0].enddate, 200, "enddate");
	is_str(p->create[1].idnumber, "y", "no prefix: the shortname");
	is_int(p->create[1].visible, 0, "sync.course_visible = false");
out:
	plan_free(p);
	feed_free(f);
	ledger_free(l);
}

static void
test_unchanged(void)
{
	struct config cfg;
	struct ledger *l = new_ledger(NULL);
	struct feed *f;
	struct plan *p;
	char *out = NULL;
	size_t len;
	FILE *mf;

	test_config(&cfg);
	mirror_seed(l);
	f = decode(&cfg, seed);
	p = build(&cfg, f, l);
	if (!ok(p != NULL, "plan for a mirrored ledger"))
		goto out;
	ok(plan_is_empty(p), "unchanged feed: empty plan");
	is_int(p->nlookup, 0, "nobody to look up");
	is_int(p->nvanished + p->nhold, 0, "nothing vanished or held");
	is_int(p->tracked_enrolments, 13, "tracked enrolments");
	is_int(p->tracked_courses, 3, "tracked courses");
	mf = open_memstream(&out, &len);
	plan_print(p, mf, 10);
	fclose(mf);
	ok(strncmp(out, "plan: 0 to create, 0 held for approval", 38) == 0,
	   "plan_print starts with the counts: %.60s", out);
	ok(strchr(out, '\n') == out + len - 1, "and nothing else");
	free(out);
out:
	plan_free(p);
	feed_free(f);
	ledger_free(l);
}

/* plan_build only reads: it works on a read-only handle. */
static void
test_readonly(void)
{
	struct config cfg;
	char *path, *cause = NULL;
	struct ledger *l = new_ledger(&path), *ro = NULL;
	struct feed *f;
	struct plan *p;

	test_config(&cfg);
	mirror_seed(l);
	put_enrol(l, "unique_field1", "00000000099", 5, LEDGER_ENROL_ACTIVE);
	ledger_free(l);
	if (!ok(ledger_open(path, true, &ro, &cause) == 0,
		"the ledger opens read-only"))
		printf("# %s\n", cause);
	f = decode(&cfg, seed);
	p = build(&cfg, f, ro);
	ok(p != NULL && p->nsuspend == 1,
	   "a plan is built from a read-only ledger");
	plan_free(p);
	feed_free(f);
	ledger_free(ro);
	free(cause);
	free(path);
}

static void
test_approval(void)
{
	struct config cfg;
	struct ledger *l = new_ledger(NULL);
	struct feed *f;
	struct plan *p;

	test_config(&cfg);
	cfg.sync_new_courses = NEW_COURSES_APPROVE;
	f = decode(&cfg, seed);
	p = build(&cfg, f, l);
	if (!ok(p != NULL, "plan with approval"))
		goto out;
	is_int(p->nhold, 3, "brand-new courses are held");
	is_int(p->ncreate, 0, "none created");
	is_int(p->nenrol, 0, "no enrolments for held courses");
	is_int(p->nlookup, 0, "no lookups for held courses");
	is_str(p->hold[1].idnumber, "wc-unique_field2", "held with defaults");
	ok(plan_is_empty(p), "holds alone write nothing to Moodle");
	plan_free(p);

	put_course(l, "unique_field1", "Geography", 0, LEDGER_COURSE_PENDING,
		   0);
	put_course(l, "unique_field2", "Physics", 0, LEDGER_COURSE_APPROVED, 0);
	put_course(l, "unique_field3", "Math", 0, LEDGER_COURSE_REJECTED, 0);
	p = build(&cfg, f, l);
	if (!ok(p != NULL, "plan with pending, approved, rejected"))
		goto out;
	is_int(p->nhold, 1, "pending stays held");
	is_str(p->hold[0].shortname, "unique_field1", "the pending one");
	is_int(p->ncreate, 1, "approved is created");
	is_str(p->create[0].shortname, "unique_field2", "the approved one");
	is_items(p->enrol, p->nenrol,
		 "unique_field2 00000000023 3,unique_field2 00000000076 5,"
		 "unique_field2 00000000078 5,unique_field2 00000000087 5",
		 "enrolments only for the approved course");
	is_int(p->nvanished, 0, "nothing vanished");
	plan_free(p);

	/* With create, a pending course stays pending too (approve is the
	 * only way out); an ACTIVE one without a Moodle id is created. */
	cfg.sync_new_courses = NEW_COURSES_CREATE;
	put_course(l, "unique_field3", "Math", 0, LEDGER_COURSE_ACTIVE, 0);
	p = build(&cfg, f, l);
	ok(p != NULL && p->nhold == 1 && p->ncreate == 2,
	   "pending held, approved and id-less active created");
out:
	plan_free(p);
	feed_free(f);
	ledger_free(l);
}

static void
test_rename_and_unhide(void)
{
	struct config cfg;
	struct ledger *l = new_ledger(NULL);
	struct feed *f;
	struct plan *p;

	test_config(&cfg);
	mirror_seed(l);
	put_course(l, "unique_field1", "Old geography", 101,
		   LEDGER_COURSE_ACTIVE, 0);
	put_course(l, "unique_field3", "Math", 103, LEDGER_COURSE_HIDDEN, 3);
	put_enrol(l, "unique_field3", "00000000076", 5, LEDGER_ENROL_SUSPENDED);
	f = decode(&cfg, seed);
	p = build(&cfg, f, l);
	if (!ok(p != NULL, "plan with a rename and a hidden course"))
		goto out;
	is_int(p->nrename, 1, "one rename");
	is_str(p->rename[0].shortname, "unique_field1", "of unique_field1");
	is_str(p->rename[0].old_fullname, "Old geography", "old name");
	is_str(p->rename[0].fullname, "Geography", "new name");
	is_int(p->rename[0].moodle_id, 101, "with its Moodle id");
	is_int(p->nunhide, 1, "a hidden course back in the feed is unhidden");
	is_str(p->unhide[0].shortname, "unique_field3", "unique_field3");
	is_int(p->unhide[0].moodle_id, 103, "with its Moodle id");
	is_items(p->enrol, p->nenrol, "unique_field3 00000000076 5 r",
		 "its enrolments are planned as usual");
	is_int(p->enrol[0].courseid, 103, "courseid from the ledger");
	is_int(p->enrol[0].userid, 1003, "userid from the cache");
	is_int(p->tracked_courses, 2, "a hidden course is not tracked");
	plan_free(p);

	cfg.sync_update_names = false;
	p = build(&cfg, f, l);
	ok(p != NULL && p->nrename == 0, "update_names = false: no rename");
out:
	plan_free(p);
	feed_free(f);
	ledger_free(l);
}

/* The ledger has users the feed dropped from unique_field2. */
static struct plan *
removed_plan(enum on_removed_participant policy, struct feed **ret_f,
	     struct ledger **ret_l)
{
	struct config cfg;
	struct ledger *l = new_ledger(NULL);

	test_config(&cfg);
	cfg.sync_on_removed_participant = policy;
	mirror_seed(l);
	ledger_begin(l);
	put_enrol(l, "unique_field2", "gone-active", 5, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "unique_field2", "gone-two", 3, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "unique_field2", "gone-two", 5, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "unique_field2", "gone-suspended", 5,
		  LEDGER_ENROL_SUSPENDED);
	put_course(l, "unique_field9", "Gone", 109, LEDGER_COURSE_ACTIVE, 0);
	put_enrol(l, "unique_field9", "elsewhere", 5, LEDGER_ENROL_ACTIVE);
	ledger_user_put(l, "gone-active", 501);
	ledger_commit(l);
	*ret_f = decode(&cfg, seed);
	*ret_l = l;
	return build(&cfg, *ret_f, l);
}

static void
test_removed_participants(void)
{
	struct feed *f;
	struct ledger *l;
	struct plan *p;

	p = removed_plan(REMOVED_PARTICIPANT_SUSPEND, &f, &l);
	if (ok(p != NULL, "plan with removed participants (suspend)")) {
		is_items(p->suspend, p->nsuspend,
			 "unique_field2 gone-active 5,unique_field2 gone-two 3",
			 "active ones are suspended, once per user");
		is_int(p->nunenrol, 0, "no unenrolments");
		is_int(p->suspend[0].userid, 501, "userid from the cache");
		is_int(p->suspend[0].courseid, 102, "courseid from the ledger");
		is_int(plan_removals(p), 2, "two removals");
		is_int(p->nlookup, 1, "the uncached one is looked up");
		is_int(p->nenrol + p->nrole_add + p->nrole_remove, 0,
		       "nothing else");
	}
	plan_free(p);
	feed_free(f);
	ledger_free(l);

	p = removed_plan(REMOVED_PARTICIPANT_UNENROL, &f, &l);
	if (ok(p != NULL, "plan with removed participants (unenrol)")) {
		is_items(p->unenrol, p->nunenrol,
			 "unique_field2 gone-active 5,unique_field2 "
			 "gone-suspended 5,"
			 "unique_field2 gone-two 3",
			 "all of them unenrolled, suspended ones too");
		is_int(p->nsuspend, 0, "no suspensions");
		is_int(plan_removals(p), 3, "three removals");
	}
	plan_free(p);
	feed_free(f);
	ledger_free(l);

	p = removed_plan(REMOVED_PARTICIPANT_KEEP, &f, &l);
	ok(p != NULL && plan_is_empty(p) && plan_removals(p) == 0,
	   "keep: nothing planned");
	plan_free(p);
	feed_free(f);
	ledger_free(l);
}

static void
test_role_changes(void)
{
	struct config cfg;
	struct ledger *l = new_ledger(NULL);
	struct feed *f;
	struct plan *p;

	test_config(&cfg);
	ledger_begin(l);
	put_course(l, "c", "C", 7, LEDGER_COURSE_ACTIVE, 0);
	put_enrol(l, "c", "swap", 5, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "c", "more", 5, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "c", "fewer", 3, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "c", "fewer", 5, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "c", "back-same", 5, LEDGER_ENROL_SUSPENDED);
	put_enrol(l, "c", "back-other", 5, LEDGER_ENROL_SUSPENDED);
	put_enrol(l, "c", "back-both", 3, LEDGER_ENROL_SUSPENDED);
	put_enrol(l, "c", "back-both", 4, LEDGER_ENROL_SUSPENDED);
	put_enrol(l, "c", "oddrole", 5, LEDGER_ENROL_ACTIVE);
	ledger_commit(l);
	f = decode(
	    &cfg, "[{\"shortname\": \"c\", \"name\": \"C\", \"participants\": ["
		  "{\"username\": \"swap\", \"roleid\": \"teacher\"},"
		  "{\"username\": \"more\"},"
		  "{\"username\": \"more\", \"roleid\": \"editor\"},"
		  "{\"username\": \"fewer\", \"roleid\": \"teacher\"},"
		  "{\"username\": \"back-same\"},"
		  "{\"username\": \"back-other\", \"roleid\": \"teacher\"},"
		  "{\"username\": \"back-both\", \"roleid\": \"student\"},"
		  "{\"username\": \"back-both\", \"roleid\": \"editor\"},"
		  "{\"username\": \"back-both\", \"roleid\": \"teacher\"},"
		  "{\"username\": \"oddrole\", \"roleid\": \"janitor\"},"
		  "{\"username\": \"new\", \"roleid\": \"teacher\"},"
		  "{\"username\": \"new\", \"roleid\": \"student\"}"
		  "]}]");
	p = build(&cfg, f, l);
	if (!ok(p != NULL, "plan with role changes"))
		goto out;
	is_items(p->enrol, p->nenrol,
		 "c back-both 3 r,c back-other 3 r,c back-same 5 r,c new 3",
		 "comebacks reactivated with a shared role, new users with "
		 "their first role");
	is_items(p->role_add, p->nrole_add,
		 "c back-both 5,c more 4,c new 5,c swap 3",
		 "roles the feed added (not the one sent with the enrol)");
	is_items(p->role_remove, p->nrole_remove,
		 "c back-other 5,c fewer 5,c swap 5",
		 "roles the feed dropped; a skipped record keeps its roles");
	is_int(p->nsuspend + p->nunenrol, 0,
	       "a user with only a bad record is not removed");
	is_int(p->enrol[0].courseid, 7, "courseid from the ledger");
out:
	plan_free(p);
	feed_free(f);
	ledger_free(l);
}

static void
test_vanished(void)
{
	struct config cfg;
	struct ledger *l = new_ledger(NULL);
	struct feed *f;
	struct plan *p;

	test_config(&cfg);
	mirror_seed(l);
	ledger_begin(l);
	put_course(l, "a-first", "First absence", 201, LEDGER_COURSE_ACTIVE, 0);
	put_course(l, "b-second", "Second absence", 202, LEDGER_COURSE_ACTIVE,
		   1);
	put_course(l, "c-hidden", "Hidden already", 203, LEDGER_COURSE_HIDDEN,
		   5);
	put_course(l, "d-pending", "Pending", 0, LEDGER_COURSE_PENDING, 0);
	put_course(l, "e-rejected", "Rejected", 0, LEDGER_COURSE_REJECTED, 0);
	put_course(l, "dup", "Duplicated in the feed", 205,
		   LEDGER_COURSE_ACTIVE, 4);
	put_enrol(l, "a-first", "someone", 5, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "b-second", "someone", 5, LEDGER_ENROL_ACTIVE);
	put_enrol(l, "dup", "someone", 5, LEDGER_ENROL_ACTIVE);
	ledger_commit(l);
	f = decode(
	    &cfg,
	    "{\"courses\": ["
	    "{\"shortname\": \"dup\", \"name\": \"x\"},"
	    "{\"shortname\": \"dup\", \"name\": \"y\"},"
	    "{\"shortname\": \"unique_field1\", \"name\": \"Geography\", "
	    "\"participants\": [{\"username\": \"00000000074\"}, "
	    "{\"username\": \"00000000076\"}, {\"username\": "
	    "\"00000000077\"}, {\"username\": \"00000000078\", "
	    "\"roleid\": \"teacher\"}, {\"username\": \"00000000069\"}]},"
	    "{\"shortname\": \"unique_field2\", \"name\": \"Physics\", "
	    "\"participants\": [{\"username\": \"00000000023\", "
	    "\"roleid\": \"teacher\"}, {\"username\": \"00000000076\"}, "
	    "{\"username\": \"00000000087\"}, {\"username\": "
	    "\"00000000078\"}]},"
	    "{\"shortname\": \"unique_field3\", \"name\": \"Math\", "
	    "\"participants\": [{\"username\": \"00000000023\", "
	    "\"roleid\": \"professor\"}, {\"username\": \"00000000076\"}, "
	    "{\"username\": \"00000000087\"}, {\"username\": "
	    "\"00000000078\"}]}]}");
	p = build(&cfg, f, l);
	if (!ok(p != NULL, "plan with vanished courses"))
		goto out;
	is_int(p->nvanished, 3, "active and hidden courses vanish");
	ok(p->nvanished == 3 &&
	       strcmp(p->vanished[0].shortname, "a-first") == 0 &&
	       p->vanished[0].absent_runs == 1 &&
	       p->vanished[1].absent_runs == 2 &&
	       p->vanished[2].absent_runs == 6,
	   "absent_runs counts this run");
	is_int(p->nhide, 1, "only the second absence is hidden");
	ok(p->nhide == 1 && strcmp(p->hide[0].shortname, "b-second") == 0 &&
	       p->hide[0].moodle_id == 202,
	   "b-second, with its Moodle id");
	is_int(p->nsuspend + p->nunenrol, 0,
	       "a vanished course is not emptied");
	is_int(plan_removals(p), 1, "one removal: the hide");
	is_int(p->tracked_courses, 6, "tracked courses");
	plan_free(p);

	cfg.sync_on_removed_course = REMOVED_COURSE_KEEP;
	p = build(&cfg, f, l);
	ok(p != NULL && p->nvanished == 3 && p->nhide == 0,
	   "on_removed_course = keep: vanished, never hidden");
out:
	plan_free(p);
	feed_free(f);
	ledger_free(l);
}

static void
test_print(void)
{
	struct config cfg;
	struct ledger *l = new_ledger(NULL);
	struct feed *f;
	struct plan *p;
	char *out = NULL;
	size_t len;
	json_t *j;
	json_error_t err;
	FILE *mf;

	test_config(&cfg);
	put_course(l, "unique_field2", "Physics", 102, LEDGER_COURSE_ACTIVE, 0);
	put_enrol(l, "unique_field2", "00000000099", 5, LEDGER_ENROL_ACTIVE);
	f = decode(&cfg, seed);
	p = build(&cfg, f, l);
	if (!ok(p != NULL, "a plan to print"))
		goto out;
	mf = open_memstream(&out, &len);
	plan_print(p, mf, 2);
	fclose(mf);
	ok(strstr(out, "plan: 2 to create, 0 held for approval, 0 to rename, "
		       "0 to unhide, 0 vanished, 0 to hide, 13 to enrol, 0 "
		       "roles to add, 0 roles to remove, 1 to suspend, 0 to "
		       "unenrol, 8 users to look up;") == out,
	   "counts first");
	ok(strstr(out, "\n+ enrol 00000000069 in unique_field1 as role 5\n") !=
	       NULL,
	   "an enrol line");
	ok(strstr(out, "\n  ... and 11 more to enrol\n") != NULL,
	   "limited to 2 lines per kind");
	ok(strstr(out, "\n- suspend 00000000099 in unique_field2\n") != NULL,
	   "a suspend line");
	ok(strstr(out,
		  "\n+ create unique_field1 \"Geography\" (category 4, "
		  "idnumber wc-unique_field1, visible, 5 participants)\n") !=
	       NULL,
	   "a create line");
	free(out);

	out = NULL;
	mf = open_memstream(&out, &len);
	plan_print_json(p, mf);
	fclose(mf);
	j = json_loads(out, 0, &err);
	if (!ok(j != NULL, "plan_print_json is JSON"))
		printf("# %s: %s\n", err.text, out);
	is_int(json_integer_value(
		   json_object_get(json_object_get(j, "counts"), "enrol")),
	       13, "counts.enrol");
	is_int(json_array_size(json_object_get(j, "enrol")), 13,
	       "all enrolments listed");
	is_int(json_array_size(json_object_get(j, "lookup")), 8,
	       "all lookups listed");
	is_str(
	    json_string_value(json_object_get(
		json_array_get(json_object_get(j, "suspend"), 0), "username")),
	    "00000000099", "suspend[0].username");
	is_int(json_integer_value(
		   json_object_get(json_object_get(j, "counts"), "removals")),
	       1, "counts.removals");
	json_decref(j);
	free(out);
out:
	plan_free(p);
	feed_free(f);
	ledger_free(l);
}

/* ---- randomised cross-check against a straightforward model ----------- */

static unsigned long rnd_state = 12345;

static unsigned
rnd(unsigned n)
{
	rnd_state = rnd_state * 6364136223846793005UL + 1442695040888963407UL;
	return (unsigned)(rnd_state >> 33) % n;
}

struct model_row {
	int course, user, role, status;
};

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
test_random(void)
{
	static const int roles[] = { 5, 3, 4 };
	static const char *const rname[] = { "student", "teacher", "editor" };
	enum { NC = 40, NU = 30 };
	struct config cfg;
	struct ledger *l;
	struct feed *f;
	struct plan *p;
	struct model_row *rows = xcalloc(NC * NU * 3, sizeof *rows);
	bool in_feed[NC], fr[NC][NU][3];
	size_t nrows = 0, i, ne = 0, nw = 0, round;
	char *json, *want[4096], *got[4096], *a, *b, name[32];
	FILE *jf;
	size_t jlen;
	int c, u, r, k, failures = 0;
	size_t compared = 0;
	bool known;

	test_config(&cfg);
	for (round = 0; round < 8; round++) {
		l = new_ledger(NULL);
		nrows = 0;
		memset(fr, 0, sizeof fr);
		ledger_begin(l);
		for (c = 0; c < NC; c++) {
			in_feed[c] = rnd(5) != 0;
			snprintf(name, sizeof name, "c%02d", c);
			known = rnd(4) != 0;
			if (known)
				put_course(l, name, "n", 100 + c,
					   LEDGER_COURSE_ACTIVE, 0);
			for (u = 0; u < NU; u++) {
				int st = rnd(6) == 0 ? LEDGER_ENROL_SUSPENDED
						     : LEDGER_ENROL_ACTIVE;

				for (r = 0; r < 3; r++) {
					if (in_feed[c] && rnd(8) == 0)
						fr[c][u][r] = true;
					if (known && rnd(10) == 0) {
						rows[nrows++] =
						    (struct model_row){ c, u, r,
									st };
						snprintf(name, sizeof name,
							 "c%02d", c);
						char un[16];
						snprintf(un, sizeof un, "u%02d",
							 u);
						put_enrol(l, name, un, roles[r],
							  st);
					}
				}
			}
		}
		ledger_commit(l);
		jf = open_memstream(&json, &jlen);
		fputs("[", jf);
		for (c = 0, k = 0; c < NC; c++) {
			if (!in_feed[c])
				continue;
			fprintf(jf,
				"%s{\"shortname\": \"c%02d\", \"name\": \"n\", "
				"\"participants\": [",
				k++ ? "," : "", c);
			for (u = 0, i = 0; u < NU; u++)
				for (r = 0; r < 3; r++)
					if (fr[c][u][r])
						fprintf(
						    jf,
						    "%s{\"username\": "
						    "\"U%02d\", \"roleid\": "
						    "\"%s\"}",
						    i++ ? "," : "", u,
						    rname[r]);
			fputs("]}", jf);
		}
		fputs("]", jf);
		fclose(jf);
		f = decode(&cfg, json);
		free(json);
		p = build(&cfg, f, l);
		if (p == NULL)
			break;

		/* The model: per (course, user) in a feed course. */
		nw = 0;
		for (c = 0; c < NC; c++) {
			if (!in_feed[c])
				continue;
			for (u = 0; u < NU; u++) {
				bool lr[3] = { false, false, false },
				     any = false, susp = false, anyf = false;
				int er = -1;

				for (i = 0; i < nrows; i++)
					if (rows[i].course == c &&
					    rows[i].user == u) {
						lr[rows[i].role] = any = true;
						susp |= rows[i].status ==
							LEDGER_ENROL_SUSPENDED;
					}
				for (r = 0; r < 3; r++)
					anyf |= fr[c][u][r];
				if (!anyf && any && !susp) {
					/* the smallest role id: 3, 4, 5 */
					r = lr[1] ? 1 : lr[2] ? 2 : 0;
					xasprintf(&want[nw++],
						  "suspend c%02d u%02d %d", c,
						  u, roles[r]);
				}
				if (!anyf)
					continue;
				if (!any || susp) {
					/* first feed role in (username,
					 * roleid) order that L has, else
					 * the smallest id */
					int order[3] = { 1, 2, 0 }; /* 3,4,5 */
					for (k = 0; k < 3 && er < 0; k++)
						if (fr[c][u][order[k]] &&
						    lr[order[k]])
							er = order[k];
					for (k = 0; k < 3 && er < 0; k++)
						if (fr[c][u][order[k]])
							er = order[k];
					xasprintf(&want[nw++],
						  "enrol c%02d u%02d %d%s", c,
						  u, roles[er],
						  any ? " r" : "");
				}
				for (r = 0; r < 3; r++) {
					if (fr[c][u][r] && !lr[r] && r != er)
						xasprintf(&want[nw++],
							  "add c%02d u%02d %d",
							  c, u, roles[r]);
					if (lr[r] && !fr[c][u][r])
						xasprintf(&want[nw++],
							  "remove c%02d u%02d "
							  "%d",
							  c, u, roles[r]);
				}
			}
		}
		ne = 0;
		for (i = 0; i < p->nenrol; i++)
			xasprintf(&got[ne++], "enrol %s %s %d%s",
				  p->enrol[i].course, p->enrol[i].username,
				  p->enrol[i].roleid,
				  p->enrol[i].reactivate ? " r" : "");
		for (i = 0; i < p->nrole_add; i++)
			xasprintf(
			    &got[ne++], "add %s %s %d", p->role_add[i].course,
			    p->role_add[i].username, p->role_add[i].roleid);
		for (i = 0; i < p->nrole_remove; i++)
			xasprintf(&got[ne++], "remove %s %s %d",
				  p->role_remove[i].course,
				  p->role_remove[i].username,
				  p->role_remove[i].roleid);
		for (i = 0; i < p->nsuspend; i++)
			xasprintf(&got[ne++], "suspend %s %s %d",
				  p->suspend[i].course, p->suspend[i].username,
				  p->suspend[i].roleid);
		compared += nw;
		qsort(want, nw, sizeof *want, str_cmp);
		qsort(got, ne, sizeof *got, str_cmp);
		for (i = 0; i < nw || i < ne; i++) {
			a = i < nw ? want[i] : NULL;
			b = i < ne ? got[i] : NULL;
			if (a == NULL || b == NULL || strcmp(a, b) != 0) {
				if (failures++ < 5)
					printf("# round %zu: want %s, got %s\n",
					       round, a ? a : "-", b ? b : "-");
			}
		}
		for (i = 0; i < nw; i++)
			free(want[i]);
		for (i = 0; i < ne; i++)
			free(got[i]);
		plan_free(p);
		feed_free(f);
		ledger_free(l);
	}
	is_int(round, 8, "eight random rounds planned");
	ok(compared > 500, "%zu planned items compared", compared);
	is_int(failures, 0, "the merge join agrees with the model");
	free(rows);
}

int
main(void)
{
	char cmd[128];

	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_plan.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		ok(0, "mkdtemp");
		return done_testing();
	}
	test_new_courses();
	test_feed_fields();
	test_unchanged();
	test_readonly();
	test_approval();
	test_rename_and_unhide();
	test_removed_participants();
	test_role_changes();
	test_vanished();
	test_print();
	test_random();
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", tmpdir);
	return done_testing();
}
