/* `webcoursectl check`: ask the configured Moodle whether a run can work. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "check.h"
#include "config.h"
#include "moodle.h"
#include "util.h"

/* A username Moodle would lower-case, so the lookup fails on purpose and
 * the error shows whether debugging is on (moodle-ws 26d). */
#define CHECK_PROBE_USERNAME "WEBCOURSED-CHECK"
/* A user id no site has: unassigning a role from it changes nothing, but
 * Moodle first refuses a role the token's user may not assign (15d, 15g;
 * core_role_external::unassign_roles checks get_assignable_roles()). */
#define CHECK_NOBODY INT32_MAX

enum check_result { CHECK_OK, CHECK_FAILED, CHECK_SKIPPED, CHECK_WARNING };

static const char *const check_words[] = {
	[CHECK_OK] = "ok",
	[CHECK_FAILED] = "NOT OK",
	[CHECK_SKIPPED] = "skipped",
	[CHECK_WARNING] = "warning",
};

struct check {
	const struct config *cfg;
	FILE *out;
	struct moodle *m; /* NULL while Moodle has not answered */
	int counts[4];
	bool debugging;
};

/* One line: "RESULT: WHAT: text". */
__attribute__((format(printf, 4, 5))) static void
check_say(struct check *c, enum check_result r, const char *what,
	  const char *fmt, ...)
{
	va_list ap;

	fprintf(c->out, "%s: %s: ", check_words[r], what);
	va_start(ap, fmt);
	vfprintf(c->out, fmt, ap);
	va_end(ap);
	fputc('\n', c->out);
	c->counts[r]++;
}

static void
check_saw(struct check *c, const struct moodle_error *err)
{
	if (err->debuginfo != NULL)
		c->debugging = true;
}

/* The token reaches Moodle: site info, which also names the functions. */
static int
check_token(struct check *c, struct moodle_site_info **ret)
{
	const struct config *cfg = c->cfg;
	struct moodle_error err = { 0 };
	struct moodle *m;

	if (cfg->moodle_token == NULL || cfg->moodle_token[0] == '\0') {
		check_say(c, CHECK_FAILED, "token",
			  "no token: set moodle.token_file or give the "
			  "credential moodle-token");
		return -1;
	}
	m = moodle_new(cfg, NULL);
	if (moodle_site_info(m, ret, &err) == -1) {
		check_saw(c, &err);
		check_say(c, CHECK_FAILED, "token", "Moodle at %s: %s",
			  cfg->moodle_url, err.message);
		moodle_error_clear(&err);
		moodle_free(m);
		return -1;
	}
	c->m = m;
	check_say(c, CHECK_OK, "token",
		  "Moodle \"%s\" at %s, release %s, token user %s",
		  (*ret)->sitename, (*ret)->siteurl, (*ret)->release,
		  (*ret)->username);
	return 0;
}

/* Which of the functions webcoursed calls the token's service lacks. */
static void
check_functions(struct check *c, const struct moodle_site_info *si)
{
	const char *const *fn;
	char *missing = NULL, *next;
	size_t i, n = 0, total = 0;

	for (fn = moodle_required_functions; *fn != NULL; fn++) {
		total++;
		for (i = 0; i < si->nfunctions; i++) {
			if (strcmp(si->functions[i], *fn) == 0)
				break;
		}
		if (i < si->nfunctions)
			continue;
		xasprintf(&next, "%s%s%s", missing != NULL ? missing : "",
			  missing != NULL ? ", " : "", *fn);
		free(missing);
		missing = next;
		n++;
	}
	if (n == 0)
		check_say(c, CHECK_OK, "functions",
			  "the token's service has all %zu functions "
			  "webcoursed calls",
			  total);
	else
		check_say(c, CHECK_FAILED, "functions",
			  "the token's service lacks %zu function%s: %s; add "
			  "them under Site administration > Server > Web "
			  "services > External services > Functions",
			  n, n == 1 ? "" : "s", missing);
	free(missing);
}

static void
check_category(struct check *c)
{
	const struct config *cfg = c->cfg;
	struct moodle_error err = { 0 };
	char *name = NULL;

	if (moodle_category_get(c->m, cfg->sync_category_id, &name, &err) ==
	    -1) {
		check_saw(c, &err);
		check_say(c, CHECK_FAILED, "category",
			  "cannot look up category %d: %s",
			  cfg->sync_category_id, err.message);
	} else if (name == NULL)
		check_say(c, CHECK_FAILED, "category",
			  "category %d (sync.category_id) does not exist in "
			  "Moodle",
			  cfg->sync_category_id);
	else
		check_say(c, CHECK_OK, "category", "category %d is \"%s\"",
			  cfg->sync_category_id, name);
	free(name);
	moodle_error_clear(&err);
}

/* The [roles] as written, e.g. "student = 5, teacher = 3". */
static char *
check_role_list(const struct config *cfg)
{
	char *s = xstrdup(""), *next;

	for (size_t i = 0; i < cfg->nroles; i++) {
		xasprintf(&next, "%s%s%s = %d", s, i ? ", " : "",
			  cfg->roles[i].name, cfg->roles[i].id);
		free(s);
		s = next;
	}
	return s;
}

/* The roles in the config make sense: ids from 1, the default among them. */
static int
check_roles_config(struct check *c)
{
	const struct config *cfg = c->cfg;
	int bad = 0;

	for (size_t i = 0; i < cfg->nroles; i++)
		if (cfg->roles[i].id < 1) {
			check_say(c, CHECK_FAILED, "roles",
				  "role \"%s\" maps to %d, but Moodle role ids "
				  "start at 1",
				  cfg->roles[i].name, cfg->roles[i].id);
			bad++;
		}
	if (cfg->sync_default_role != NULL &&
	    config_role_id(cfg, cfg->sync_default_role) == -1) {
		check_say(c, CHECK_FAILED, "roles",
			  "sync.default_role \"%s\" is not a name in [roles]",
			  cfg->sync_default_role);
		bad++;
	}
	return bad ? -1 : 0;
}

/* Each role id may be given by the token's user in a course of the
 * category: no web service lists roles, so ask Moodle to unassign the role
 * from a user who does not exist, which it refuses for a role the token
 * may not assign there and otherwise does nothing. */
static void
check_roles_live(struct check *c, const char *list)
{
	const struct config *cfg = c->cfg;
	struct moodle_error err = { 0 };
	struct moodle_course *courses = NULL;
	char category[32];
	size_t n = 0;
	int bad = 0;

	snprintf(category, sizeof(category), "%d", cfg->sync_category_id);
	if (moodle_courses_by_field(c->m, "category", category, &courses, &n,
				    &err) == -1) {
		check_saw(c, &err);
		check_say(c, CHECK_SKIPPED, "roles",
			  "not checked in Moodle (cannot list category %d: "
			  "%s); in the config: %s",
			  cfg->sync_category_id, err.message, list);
		goto out;
	}
	if (n == 0) {
		check_say(c, CHECK_SKIPPED, "roles",
			  "not checked in Moodle: category %d has no course "
			  "to try them in yet (the first enrolments will "
			  "show a wrong role); in the config: %s",
			  cfg->sync_category_id, list);
		goto out;
	}
	for (size_t i = 0; i < cfg->nroles; i++) {
		struct moodle_role_assignment probe = { cfg->roles[i].id,
							CHECK_NOBODY,
							courses[0].id };

		if (moodle_role_unassign(c->m, &probe, 1, &err) == 0)
			continue;
		check_saw(c, &err);
		check_say(c, CHECK_FAILED, "roles",
			  "role \"%s\" (id %d) cannot be given by the token's "
			  "user in course %s: %s",
			  cfg->roles[i].name, cfg->roles[i].id,
			  courses[0].shortname, err.message);
		bad++;
	}
	if (bad == 0)
		check_say(c, CHECK_OK, "roles",
			  "%s: the token's user may give each of them in "
			  "course %s",
			  list, courses[0].shortname);
out:
	moodle_courses_free(courses, n);
	moodle_error_clear(&err);
}

/* Debugging adds debuginfo to error answers: provoke a harmless one. */
static void
check_debugging(struct check *c)
{
	const char *probe[] = { CHECK_PROBE_USERNAME };
	struct moodle_error err = { 0 };
	struct moodle_user *u = NULL;
	size_t n = 0;

	if (moodle_users_by_username(c->m, probe, 1, &u, &n, &err) == -1)
		check_saw(c, &err);
	moodle_users_free(u, n);
	moodle_error_clear(&err);
	if (c->debugging)
		check_say(c, CHECK_WARNING, "debugging",
			  "Moodle shows debugging information (debuginfo) in "
			  "its answers; turn it off on a production site "
			  "under Site administration > Development > "
			  "Debugging");
	else
		check_say(c, CHECK_OK, "debugging",
			  "Moodle does not show debugging information");
}

int
check_run(const struct config *cfg, FILE *out)
{
	struct check c = { .cfg = cfg, .out = out };
	struct moodle_site_info *si = NULL;
	char *roles = check_role_list(cfg);
	bool roles_ok;

	check_say(&c, CHECK_OK, "config", "%s", cfg->path);
	roles_ok = check_roles_config(&c) == 0;
	if (check_token(&c, &si) == 0) {
		check_functions(&c, si);
		check_category(&c);
		if (roles_ok)
			check_roles_live(&c, roles);
		check_debugging(&c);
	} else {
		check_say(&c, CHECK_SKIPPED, "functions",
			  "not checked: Moodle did not answer");
		check_say(&c, CHECK_SKIPPED, "category",
			  "not checked: Moodle did not answer");
		if (roles_ok)
			check_say(&c, CHECK_SKIPPED, "roles",
				  "not checked in Moodle: Moodle did not "
				  "answer; in the config: %s",
				  roles);
		check_say(&c, CHECK_SKIPPED, "debugging",
			  "not checked: Moodle did not answer");
	}
	fprintf(out, "%d passed, %d failed, %d skipped, %d warnings\n",
		c.counts[CHECK_OK], c.counts[CHECK_FAILED],
		c.counts[CHECK_SKIPPED], c.counts[CHECK_WARNING]);
	free(roles);
	moodle_site_info_free(si);
	moodle_free(c.m);
	return c.counts[CHECK_FAILED] == 0 ? 0 : 1;
}
