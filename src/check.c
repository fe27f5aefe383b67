/* `webcoursectl check`: ask the configured Moodle whether a run can work. */
#include <stdarg.h>
#include <stdbool.h>
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

struct check {
	FILE *out;
	int failed;
	bool debugging;
};

__attribute__((format(printf, 3, 4))) static void
check_say(struct check *c, bool ok, const char *fmt, ...)
{
	va_list ap;

	fputs(ok ? "ok: " : "NOT OK: ", c->out);
	va_start(ap, fmt);
	vfprintf(c->out, fmt, ap);
	va_end(ap);
	fputc('\n', c->out);
	if (!ok)
		c->failed++;
}

static void
check_saw(struct check *c, const struct moodle_error *err)
{
	if (err->debuginfo != NULL)
		c->debugging = true;
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
		check_say(c, true,
			  "the token's service has all %zu functions "
			  "webcoursed calls",
			  total);
	else
		check_say(c, false,
			  "the token's service lacks %zu function%s: %s; add "
			  "them under Site administration > Server > Web "
			  "services > External services > Functions",
			  n, n == 1 ? "" : "s", missing);
	free(missing);
}

static void
check_category(struct check *c, const struct config *cfg, struct moodle *m)
{
	struct moodle_error err = { 0 };
	char *name = NULL;

	if (cfg->sync_category_id <= 0) {
		check_say(c, false, "sync.category_id is not set");
		return;
	}
	if (moodle_category_get(m, cfg->sync_category_id, &name, &err) == -1) {
		check_saw(c, &err);
		check_say(c, false, "cannot look up category %d: %s",
			  cfg->sync_category_id, err.message);
	} else if (name == NULL)
		check_say(c, false,
			  "category %d (sync.category_id) does not exist in "
			  "Moodle",
			  cfg->sync_category_id);
	else
		check_say(c, true, "category %d is \"%s\"",
			  cfg->sync_category_id, name);
	free(name);
	moodle_error_clear(&err);
}

/* Role ids can only be checked for sanity: no core function lists roles. */
static void
check_roles(struct check *c, const struct config *cfg)
{
	bool found = cfg->sync_default_role == NULL;
	size_t i;

	for (i = 0; i < cfg->nroles; i++) {
		const struct config_role *r = &cfg->roles[i];

		if (cfg->sync_default_role != NULL &&
		    strcasecmp(r->name, cfg->sync_default_role) == 0)
			found = true;
		if (r->id >= 1)
			check_say(c, true, "role \"%s\" is Moodle role id %d",
				  r->name, r->id);
		else
			check_say(c, false,
				  "role \"%s\" maps to %d, but Moodle role ids "
				  "start at 1",
				  r->name, r->id);
	}
	if (!found)
		check_say(c, false,
			  "sync.default_role \"%s\" is not a name in [roles]",
			  cfg->sync_default_role);
}

/* Debugging adds debuginfo to error answers: provoke a harmless one. */
static void
check_debugging(struct check *c, struct moodle *m)
{
	const char *probe[] = { CHECK_PROBE_USERNAME };
	struct moodle_error err = { 0 };
	struct moodle_user *u = NULL;
	size_t n = 0;

	if (moodle_users_by_username(m, probe, 1, &u, &n, &err) == -1)
		check_saw(c, &err);
	moodle_users_free(u, n);
	moodle_error_clear(&err);
	if (c->debugging)
		fprintf(c->out, "warning: Moodle shows debugging information "
				"(debuginfo) in its answers; turn it off on a "
				"production site under Site administration > "
				"Development > Debugging\n");
	else
		check_say(c, true,
			  "Moodle does not show debugging "
			  "information");
}

int
check_run(const struct config *cfg, FILE *out)
{
	struct check c = { out, 0, false };
	struct moodle_error err = { 0 };
	struct moodle_site_info *si = NULL;
	struct moodle *m = NULL;

	if (cfg->moodle_url == NULL || cfg->moodle_token == NULL ||
	    cfg->moodle_token[0] == '\0') {
		check_say(&c, false, "moodle.url or the token is not set");
		goto roles;
	}
	m = moodle_new(cfg, NULL);
	if (moodle_site_info(m, &si, &err) == -1) {
		check_saw(&c, &err);
		check_say(&c, false, "Moodle at %s: %s", cfg->moodle_url,
			  err.message);
		goto roles;
	}
	check_say(&c, true, "Moodle \"%s\" at %s, release %s, token user %s",
		  si->sitename, si->siteurl, si->release, si->username);
	check_functions(&c, si);
	check_category(&c, cfg, m);
	check_debugging(&c, m);
roles:
	check_roles(&c, cfg);
	if (c.failed == 0)
		fprintf(out, "all checks passed\n");
	else
		fprintf(out, "%d check%s failed\n", c.failed,
			c.failed == 1 ? "" : "s");
	moodle_site_info_free(si);
	moodle_error_clear(&err);
	moodle_free(m);
	return c.failed == 0 ? 0 : 1;
}
