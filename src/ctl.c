/* webcoursectl: look at and steer webcoursed from the command line. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "feed.h"
#include "http.h"
#include "ledger.h"
#include "log.h"
#include "plan.h"
#include "report.h"
#include "run.h"
#include "util.h"

#define CTL_PLAN_LINES 20 /* lines per kind in `plan` without --verbose */

/* Exit statuses: 0 ok, 1 failed, 2 usage. */
enum { CTL_OK = 0, CTL_FAILED = 1, CTL_USAGE = 2 };

struct ctl {
	const char *conf_path;
	struct config *conf;
	bool verbose;
};

struct ctl_command {
	const char *name;
	const char *args;
	const char *help;
	int (*fn)(struct ctl *, int, char **);
};

static int ctl_status(struct ctl *, int, char **);
static int ctl_plan(struct ctl *, int, char **);
static int ctl_sync(struct ctl *, int, char **);
static int ctl_approve(struct ctl *, int, char **);
static int ctl_reject(struct ctl *, int, char **);
static int ctl_missing_users(struct ctl *, int, char **);
static int ctl_errors(struct ctl *, int, char **);
static int ctl_check(struct ctl *, int, char **);

static const struct ctl_command ctl_commands[] = {
	{ "status", "[--json]",
	  "last runs, counts, next run, withheld removals, courses awaiting "
	  "approval, missing users",
	  ctl_status },
	{ "plan", "[--json] [--verbose]",
	  "fetch the feed and print what a run would do; writes nothing",
	  ctl_plan },
	{ "sync", "[--allow-removals]",
	  "one run now, in the foreground, with progress", ctl_sync },
	{ "approve", "SHORTNAME...|--all",
	  "let held new courses be created (sync.new_courses = approve)",
	  ctl_approve },
	{ "reject", "SHORTNAME...", "never create these held courses",
	  ctl_reject },
	{ "missing-users", "[--json]",
	  "users of the feed not found in Moodle, as CSV", ctl_missing_users },
	{ "errors", "[--json]", "per-item errors of the last run", ctl_errors },
	{ "check", "",
	  "check config, token, web service functions, category and roles "
	  "against Moodle",
	  ctl_check },
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: webcoursectl [-c FILE] [-v] COMMAND [ARGS]\n"
		   "       webcoursectl --version | --help\n\ncommands:\n");
	for (size_t i = 0; i < nitems(ctl_commands); i++)
		fprintf(f, "  %-14s %-22s %s\n", ctl_commands[i].name,
			ctl_commands[i].args, ctl_commands[i].help);
	fprintf(f, "\nThe default configuration file is %s.\n",
		CONFIG_DEFAULT_PATH);
}

/* Flags of a command: only those in `allowed`, else a usage error. */
static int
ctl_flags(int argc, char **argv, const char *const *allowed, bool *set,
	  int *ret_first_arg)
{
	int i;

	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		size_t k;

		for (k = 0; allowed[k] != NULL; k++)
			if (strcmp(argv[i], allowed[k]) == 0)
				break;
		if (allowed[k] == NULL) {
			fprintf(stderr, "webcoursectl %s: unknown option %s\n",
				argv[0], argv[i]);
			return -1;
		}
		set[k] = true;
	}
	if (ret_first_arg != NULL)
		*ret_first_arg = i;
	else if (i != argc) {
		fprintf(stderr, "webcoursectl %s: unexpected argument %s\n",
			argv[0], argv[i]);
		return -1;
	}
	return 0;
}

static int
ctl_open(struct ctl *c, bool readonly, struct ledger **ret)
{
	char *cause = NULL;

	if (ledger_open(c->conf->state_database, readonly, ret, &cause) == -1) {
		fprintf(stderr, "webcoursectl: %s\n", cause);
		free(cause);
		return -1;
	}
	return 0;
}

/* Read-only reports: status, missing-users, errors. */
static int
ctl_report(struct ctl *c, int argc, char **argv, int what)
{
	static const char *const flags[] = { "--json", NULL };
	bool json[1] = { false };
	struct ledger *l;
	int rv;

	if (ctl_flags(argc, argv, flags, json, NULL) == -1)
		return CTL_USAGE;
	if (ctl_open(c, true, &l) == -1)
		return CTL_FAILED;
	if (what == 0)
		rv = report_status(c->conf, l, stdout, json[0]);
	else if (what == 1)
		rv = json[0] ? report_missing_json(c->conf, l, stdout)
			     : report_missing_csv(c->conf, l, stdout);
	else
		rv = report_errors(l, stdout, json[0]);
	if (rv == -1)
		fprintf(stderr, "webcoursectl: ledger: %s\n", ledger_errmsg(l));
	ledger_free(l);
	return rv == 0 ? CTL_OK : CTL_FAILED;
}

static int
ctl_status(struct ctl *c, int argc, char **argv)
{
	return ctl_report(c, argc, argv, 0);
}

static int
ctl_missing_users(struct ctl *c, int argc, char **argv)
{
	return ctl_report(c, argc, argv, 1);
}

static int
ctl_errors(struct ctl *c, int argc, char **argv)
{
	return ctl_report(c, argc, argv, 2);
}

/* Fetch and decode the feed without validators, plan against the ledger
 * (or an empty one before the first run), print.  Writes nothing. */
static int
ctl_plan(struct ctl *c, int argc, char **argv)
{
	static const char *const flags[] = { "--json", "--verbose", NULL };
	bool set[2] = { false, false };
	struct feed_validators fresh = { 0 };
	struct http *http = NULL;
	struct ledger *l = NULL;
	struct feed *feed = NULL;
	struct plan *plan = NULL;
	char *body = NULL, *cause = NULL;
	size_t len = 0;
	int rv = CTL_FAILED;

	if (ctl_flags(argc, argv, flags, set, NULL) == -1)
		return CTL_USAGE;
	if (access(c->conf->state_database, F_OK) == 0) {
		if (ctl_open(c, true, &l) == -1)
			return CTL_FAILED;
	} else if (ledger_open(":memory:", false, &l, &cause) == -1) {
		fprintf(stderr, "webcoursectl: %s\n", cause);
		goto out;
	}
	http = http_new(NULL);
	if (feed_fetch(c->conf, http, NULL, &body, &len, &fresh, &cause) !=
	    FEED_FETCH_NEW) {
		fprintf(stderr, "webcoursectl: %s\n",
			cause ? cause : "fetch failed");
		goto out;
	}
	if (feed_decode(c->conf, body, len, &feed, &cause) == -1) {
		fprintf(stderr, "webcoursectl: feed rejected: %s\n", cause);
		goto out;
	}
	for (size_t i = 0; i < feed->nissues; i++)
		fprintf(stderr, "skipped %s %s: %s\n", feed->issues[i].kind,
			feed->issues[i].item, feed->issues[i].message);
	if (plan_build(c->conf, feed, l, &plan, &cause) == -1) {
		fprintf(stderr, "webcoursectl: plan: %s\n", cause);
		goto out;
	}
	if (set[0])
		plan_print_json(plan, stdout);
	else
		plan_print(plan, stdout, set[1] ? 0 : CTL_PLAN_LINES);
	rv = CTL_OK;
out:
	plan_free(plan);
	feed_free(feed);
	free(body);
	free(cause);
	feed_validators_clear(&fresh);
	http_free(http);
	ledger_free(l);
	return rv;
}

static volatile sig_atomic_t ctl_cancel;

static void
ctl_term_cb(int sig)
{
	(void)sig;
	ctl_cancel = 1;
}

/* One progress line per phase; on a terminal the counter updates in place. */
static void
ctl_progress(void *arg, const char *phase, size_t done, size_t total)
{
	bool tty = *(bool *)arg;

	if (total == 0)
		fprintf(stderr, "%s...\n", phase);
	else if (tty)
		fprintf(stderr, "\r%s %zu/%zu%s", phase, done, total,
			done == total ? "\n" : "");
	else if (done == total)
		fprintf(stderr, "%s %zu/%zu\n", phase, done, total);
}

static int
ctl_sync(struct ctl *c, int argc, char **argv)
{
	static const char *const flags[] = { "--allow-removals", NULL };
	bool allow[1] = { false }, tty = isatty(STDERR_FILENO);
	struct run_options opts = { 0 };
	struct ledger_run res;
	struct ledger *l;
	char *cause = NULL;
	int rv;

	if (ctl_flags(argc, argv, flags, allow, NULL) == -1)
		return CTL_USAGE;
	if (ctl_open(c, false, &l) == -1)
		return CTL_FAILED;
	if (ledger_lock(l, &cause) == -1) {
		fprintf(stderr, "webcoursectl: %s\n", cause);
		free(cause);
		ledger_free(l);
		return CTL_FAILED;
	}
	signal(SIGINT, ctl_term_cb);
	signal(SIGTERM, ctl_term_cb);
	opts.allow_removals = allow[0];
	opts.cancel = &ctl_cancel;
	opts.progress = ctl_progress;
	opts.arg = &tty;
	rv = run_sync(c->conf, l, &opts, &res);
	printf("%s: %s\n", res.outcome, res.message ? res.message : "");
	run_result_clear(&res);
	ledger_free(l);
	return rv == 0 ? CTL_OK : CTL_FAILED;
}

struct ctl_held {
	char **names;
	size_t n;
};

static int
ctl_held_cb(const struct ledger_course *lc, void *arg)
{
	struct ctl_held *h = arg;

	if (lc->status == LEDGER_COURSE_PENDING) {
		h->names = xreallocarray(h->names, h->n + 1, sizeof(*h->names));
		h->names[h->n++] = xstrdup(lc->shortname);
	}
	return 0;
}

/* Move held courses to `to` (approved or rejected). */
static int
ctl_decide(struct ctl *c, int argc, char **argv, int to, bool allow_all)
{
	static const char *const flags[] = { "--all", NULL };
	bool all[1] = { false };
	struct ctl_held held = { NULL, 0 };
	struct ledger_course lc;
	struct ledger *l;
	int first, rv = CTL_OK, found;

	if (ctl_flags(argc, argv, allow_all ? flags : flags + 1, all, &first) ==
	    -1)
		return CTL_USAGE;
	if (all[0] == (first < argc)) {
		fprintf(stderr, "webcoursectl %s: give SHORTNAME... %s\n",
			argv[0], allow_all ? "or --all" : "");
		return CTL_USAGE;
	}
	if (ctl_open(c, false, &l) == -1)
		return CTL_FAILED;
	if (all[0] && ledger_course_foreach(l, ctl_held_cb, &held) == -1)
		goto fail;
	for (int i = first; i < argc; i++) {
		held.names =
		    xreallocarray(held.names, held.n + 1, sizeof(*held.names));
		held.names[held.n++] = xstrdup(argv[i]);
	}
	if (ledger_begin(l) == -1)
		goto fail;
	for (size_t i = 0; i < held.n; i++) {
		memset(&lc, 0, sizeof(lc));
		if ((found = ledger_course_get(l, held.names[i], &lc)) == -1) {
			ledger_rollback(l);
			goto fail;
		}
		if (found == 1 || (lc.status != LEDGER_COURSE_PENDING &&
				   lc.status != LEDGER_COURSE_APPROVED)) {
			fprintf(stderr,
				"webcoursectl: %s is not awaiting approval\n",
				held.names[i]);
			rv = CTL_FAILED;
		} else {
			lc.status = to;
			if (ledger_course_put(l, &lc) == -1) {
				ledger_course_clear(&lc);
				ledger_rollback(l);
				goto fail;
			}
			printf("%s %s\n",
			       to == LEDGER_COURSE_APPROVED ? "approved"
							    : "rejected",
			       held.names[i]);
		}
		ledger_course_clear(&lc);
	}
	if (ledger_commit(l) == -1)
		goto fail;
	if (to == LEDGER_COURSE_APPROVED && held.n > 0 && rv == CTL_OK)
		printf("approved courses are created by the next sync "
		       "(webcoursectl sync, or SIGUSR1 to webcoursed)\n");
	goto out;
fail:
	fprintf(stderr, "webcoursectl: ledger: %s\n", ledger_errmsg(l));
	rv = CTL_FAILED;
out:
	for (size_t i = 0; i < held.n; i++)
		free(held.names[i]);
	free(held.names);
	ledger_free(l);
	return rv;
}

static int
ctl_approve(struct ctl *c, int argc, char **argv)
{
	return ctl_decide(c, argc, argv, LEDGER_COURSE_APPROVED, true);
}

static int
ctl_reject(struct ctl *c, int argc, char **argv)
{
	return ctl_decide(c, argc, argv, LEDGER_COURSE_REJECTED, false);
}

static int
ctl_check(struct ctl *c, int argc, char **argv)
{
	static const char *const flags[] = { NULL };

	if (ctl_flags(argc, argv, flags, NULL, NULL) == -1)
		return CTL_USAGE;
	return check_run(c->conf, stdout) == 0 ? CTL_OK : CTL_FAILED;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl c = { .conf_path = CONFIG_DEFAULT_PATH };
	char *errors = NULL;
	int ch, rv;

	/* "+": stop at the command, whose own flags follow it. */
	while ((ch = getopt_long(argc, argv, "+c:vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			c.conf_path = optarg;
			break;
		case 'v':
			c.verbose = true;
			break;
		case 'V':
			printf("webcoursectl %s\n", WEBCOURSED_VERSION);
			return CTL_OK;
		case 'h':
			usage(stdout);
			return CTL_OK;
		default:
			usage(stderr);
			return CTL_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0) {
		usage(stderr);
		return CTL_USAGE;
	}
	for (size_t i = 0; i < nitems(ctl_commands); i++) {
		if (strcmp(argv[0], ctl_commands[i].name) != 0)
			continue;
		if (config_load(c.conf_path, &c.conf, &errors) == -1) {
			fprintf(stderr, "%s%s", errors,
				errors[strlen(errors) - 1] == '\n' ? "" : "\n");
			free(errors);
			return CTL_FAILED;
		}
		log_init("webcoursectl", 1,
			 c.verbose ? LOG_DEBUG : c.conf->log_level);
		rv = ctl_commands[i].fn(&c, argc, argv);
		config_free(c.conf);
		return rv;
	}
	fprintf(stderr, "webcoursectl: unknown command \"%s\"\n", argv[0]);
	usage(stderr);
	return CTL_USAGE;
}
