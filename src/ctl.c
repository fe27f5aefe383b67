/* webcoursectl: look at and steer webcoursed from the command line. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "approval.h"
#include "check.h"
#include "config.h"
#include "feed.h"
#include "history.h"
#include "http.h"
#include "ledger.h"
#include "log.h"
#include "moodle.h"
#include "plan.h"
#include "progress.h"
#include "reconcile.h"
#include "report.h"
#include "run.h"
#include "util.h"
#include "webuser.h"

#define CTL_PLAN_LINES  20    /* lines per kind in `plan` without --verbose */
#define CTL_PROGRESS_MS 10000 /* progress lines when not on a terminal */

/* Exit statuses: 0 ok, 1 failed, 2 usage. */
enum { CTL_OK = 0, CTL_FAILED = 1, CTL_USAGE = 2 };

#define CTL_MAX_OPTS 8

struct ctl;

/* A command's options: "--json" is a flag, "--user=" takes a value. */
struct ctl_command {
	const char *name;
	const char *args;
	const char *help;
	const char *const opts[CTL_MAX_OPTS];
	bool operands; /* takes SHORTNAME... */
	int (*fn)(struct ctl *);
};

struct ctl {
	const char *conf_path;
	struct config *conf;
	bool verbose;
	const struct ctl_command *cmd;
	const char *opt[CTL_MAX_OPTS]; /* per cmd->opts: value, "" or NULL */
	char **operands;
	int noperands;
};

static int ctl_status(struct ctl *);
static int ctl_plan(struct ctl *);
static int ctl_sync(struct ctl *);
static int ctl_approve(struct ctl *);
static int ctl_reject(struct ctl *);
static int ctl_missing_users(struct ctl *);
static int ctl_errors(struct ctl *);
static int ctl_check(struct ctl *);
static int ctl_history(struct ctl *);
static int ctl_drift(struct ctl *);
static int ctl_reconcile(struct ctl *);
static int ctl_web_user(struct ctl *);

static const struct ctl_command ctl_commands[] = {
	{ "status",
	  "[--json]",
	  "last runs, counts, next run, withheld removals, courses awaiting "
	  "approval, missing users",
	  { "--json" },
	  false,
	  ctl_status },
	{ "plan",
	  "[--json] [--verbose]",
	  "fetch the feed and print what a run would do; writes nothing",
	  { "--json", "--verbose" },
	  false,
	  ctl_plan },
	{ "sync",
	  "[--allow-removals]",
	  "one run now, in the foreground, with progress",
	  { "--allow-removals" },
	  false,
	  ctl_sync },
	{ "approve",
	  "SHORTNAME...|--all",
	  "let held new courses be created (sync.new_courses = approve)",
	  { "--all" },
	  true,
	  ctl_approve },
	{ "reject",
	  "SHORTNAME...",
	  "never create these held courses",
	  { NULL },
	  true,
	  ctl_reject },
	{ "missing-users",
	  "[--json]",
	  "users of the feed not found in Moodle, as CSV",
	  { "--json" },
	  false,
	  ctl_missing_users },
	{ "errors",
	  "[--json]",
	  "why the last run failed, and the per-item errors of the last run "
	  "that had any",
	  { "--json" },
	  false,
	  ctl_errors },
	{ "check",
	  "",
	  "check config, token, web service functions, category and roles "
	  "against Moodle",
	  { NULL },
	  false,
	  ctl_check },
	{ "drift",
	  "[--json]",
	  "what differs between the ledger and Moodle, since when, and what "
	  "sync.on_drift does about it",
	  { "--json" },
	  false,
	  ctl_drift },
	{ "reconcile",
	  "SHORTNAME...|--all",
	  "check these courses (or all) against Moodle for drift now, with "
	  "progress and the time left",
	  { "--all" },
	  true,
	  ctl_reconcile },
	{ "history",
	  "[--json] [--user U] [--course SN] [--since DATE] [--run N]",
	  "every change made in Moodle, and every decision not to, with why; "
	  "newest first (DATE: 2026-11-02, 2026-11-02T08:00, or 7d ago)",
	  { "--json", "--user=", "--course=", "--since=", "--run=" },
	  false,
	  ctl_history },
	{ "web-user",
	  "add|remove|list [NAME]",
	  "the web console's users (web.users_file): add one or change its "
	  "password (asked without echo, or one line on stdin), remove one, "
	  "list them",
	  { NULL },
	  true,
	  ctl_web_user },
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: webcoursectl [-c FILE] [-v] COMMAND [ARGS]\n"
		   "       webcoursectl --version | --help\n\ncommands:\n");
	for (size_t i = 0; i < nitems(ctl_commands); i++) {
		fprintf(f, "  %s%s%s\n      ", ctl_commands[i].name,
			*ctl_commands[i].args ? " " : "", ctl_commands[i].args);
		print_wrapped(f, 6, 6, ctl_commands[i].help);
	}
	fprintf(f, "\nThe default configuration file is %s.\n",
		CONFIG_DEFAULT_PATH);
}

/* What was wrong on the command line, and where to read more. */
static int
ctl_usage_error(const char *arg, const char *what)
{
	if (arg != NULL)
		fprintf(stderr, "webcoursectl: \"%s\" %s\n", arg, what);
	else
		fprintf(stderr, "webcoursectl: %s\n", what);
	fprintf(stderr, "Try 'webcoursectl --help' for the commands and "
			"options.\n");
	return CTL_USAGE;
}

/* The command's options and operands, before anything is loaded: a
 * mistake is a usage error whatever the config.  "--user U" and
 * "--user=U" both give a value. */
static int
ctl_parse_error(const char *arg, const char *what)
{
	ctl_usage_error(arg, what);
	return -1;
}

static int
ctl_parse(struct ctl *c, int argc, char **argv)
{
	const struct ctl_command *cmd = c->cmd;
	int i;

	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		size_t k, len = strcspn(argv[i], "=");
		const char *o;

		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		for (k = 0; k < CTL_MAX_OPTS && (o = cmd->opts[k]) != NULL; k++)
			if (strncmp(o, argv[i], len) == 0 &&
			    (o[len] == '\0' || o[len] == '='))
				break;
		if (k == CTL_MAX_OPTS || cmd->opts[k] == NULL)
			return ctl_parse_error(argv[i], "is not an option of "
							"this command");
		if (o[len] != '=') {
			if (argv[i][len] == '=')
				return ctl_parse_error(argv[i],
						       "takes no value");
			c->opt[k] = "";
		} else if (argv[i][len] == '=')
			c->opt[k] = argv[i] + len + 1;
		else if (i + 1 < argc)
			c->opt[k] = argv[++i];
		else
			return ctl_parse_error(argv[i], "needs a value");
	}
	if (i < argc && !cmd->operands)
		return ctl_parse_error(argv[i], "is not expected here");
	c->operands = argv + i;
	c->noperands = argc - i;
	return 0;
}

/* The value of an option of the command (NULL: not given). */
static const char *
ctl_opt(const struct ctl *c, const char *name)
{
	for (size_t k = 0; k < CTL_MAX_OPTS && c->cmd->opts[k] != NULL; k++)
		if (strncmp(c->cmd->opts[k], name, strlen(name)) == 0 &&
		    (c->cmd->opts[k][strlen(name)] == '\0' ||
		     c->cmd->opts[k][strlen(name)] == '='))
			return c->opt[k];
	return NULL;
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

static volatile sig_atomic_t ctl_cancel;

static void
ctl_term_cb(int sig)
{
	(void)sig;
	ctl_cancel = 1;
}

/* For a sync: the ledger, locked against the daemon and other syncs, and
 * SIGINT and SIGTERM stopping the work at its next safe point. */
static int
ctl_open_locked(struct ctl *c, struct ledger **ret)
{
	char *cause = NULL;

	if (ctl_open(c, false, ret) == -1)
		return -1;
	if (ledger_lock(*ret, &cause) == -1) {
		fprintf(stderr, "webcoursectl: %s\n", cause);
		free(cause);
		ledger_free(*ret);
		return -1;
	}
	signal(SIGINT, ctl_term_cb);
	signal(SIGTERM, ctl_term_cb);
	return 0;
}

/* For reading: the ledger, or before the first run an empty one (a fresh
 * install is not an error). */
static int
ctl_open_read(struct ctl *c, struct ledger **ret)
{
	char *cause = NULL;

	if (access(c->conf->state_database, F_OK) == 0 || errno != ENOENT)
		return ctl_open(c, true, ret);
	if (ledger_open(":memory:", false, ret, &cause) == -1) {
		fprintf(stderr, "webcoursectl: %s\n", cause);
		free(cause);
		return -1;
	}
	return 0;
}

/* Read-only reports: status, missing-users, errors. */
/* Read-only reports: status, missing-users, errors, drift. */
enum ctl_report { CTL_STATUS, CTL_MISSING, CTL_ERRORS, CTL_DRIFT };

static int
ctl_report(struct ctl *c, enum ctl_report what)
{
	bool json[1] = { ctl_opt(c, "--json") != NULL };
	struct ledger *l;
	int rv;

	if (ctl_open_read(c, &l) == -1)
		return CTL_FAILED;
	if (what == CTL_STATUS)
		rv = report_status(c->conf, l, stdout, json[0]);
	else if (what == CTL_MISSING)
		rv = json[0] ? report_missing_json(c->conf, l, stdout)
			     : report_missing_csv(c->conf, l, stdout);
	else if (what == CTL_ERRORS)
		rv = report_errors(l, stdout, json[0]);
	else
		rv = report_drift(c->conf, l, stdout, json[0]);
	if (rv == -1)
		fprintf(stderr, "webcoursectl: ledger: %s\n", ledger_errmsg(l));
	ledger_free(l);
	return rv == 0 ? CTL_OK : CTL_FAILED;
}

static int
ctl_status(struct ctl *c)
{
	return ctl_report(c, CTL_STATUS);
}

static int
ctl_missing_users(struct ctl *c)
{
	return ctl_report(c, CTL_MISSING);
}

static int
ctl_errors(struct ctl *c)
{
	return ctl_report(c, CTL_ERRORS);
}

static int
ctl_drift(struct ctl *c)
{
	return ctl_report(c, CTL_DRIFT);
}

/* Fetch and decode the feed without validators, plan against the ledger
 * (or an empty one before the first run), print.  Writes nothing. */
static int
ctl_plan(struct ctl *c)
{
	struct feed_validators fresh = { 0 };
	struct http *http = NULL;
	struct ledger *l = NULL;
	struct feed *feed = NULL;
	struct plan *plan = NULL;
	char *body = NULL, *cause = NULL;
	size_t len = 0;
	int rv = CTL_FAILED;

	if (ctl_open_read(c, &l) == -1)
		return CTL_FAILED;
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
	if (ctl_opt(c, "--json") != NULL)
		plan_print_json(plan, stdout);
	else
		plan_print(plan, stdout,
			   ctl_opt(c, "--verbose") != NULL ? 0
							   : CTL_PLAN_LINES);
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

/* What `sync` shows as it goes. */
struct ctl_progress {
	bool tty;
	struct progress p;
};

/* One line per phase; on a terminal the count, rate and time left update
 * in place, elsewhere a line every CTL_PROGRESS_MS and at the end. */
static void
ctl_progress(void *arg, const char *phase, size_t done, size_t total)
{
	struct ctl_progress *cp = arg;
	int64_t now = now_monotonic_ms();
	char line[192];

	progress_update(&cp->p, phase, done, total, now);
	progress_format(&cp->p, now, line, sizeof(line));
	if (total == 0)
		fprintf(stderr, "%s...\n", line);
	else if (cp->tty)
		fprintf(stderr, "\r\033[K%s%s", line,
			done == total ? "\n" : "");
	else if (done == total || progress_due(&cp->p, now, CTL_PROGRESS_MS))
		fprintf(stderr, "%s\n", line);
}

static int
ctl_sync(struct ctl *c)
{
	struct ctl_progress cp = { .tty = isatty(STDERR_FILENO) };
	struct run_options opts = { 0 };
	struct ledger_run res;
	struct ledger *l;
	int rv;

	if (ctl_open_locked(c, &l) == -1)
		return CTL_FAILED;
	opts.allow_removals = ctl_opt(c, "--allow-removals") != NULL;
	opts.cancel = &ctl_cancel;
	opts.progress = ctl_progress;
	opts.arg = &cp;
	/* The run logs its outcome once (stderr here); no second copy. */
	rv = run_sync(c->conf, l, &opts, &res);
	run_result_clear(&res);
	ledger_free(l);
	return rv == 0 ? CTL_OK : CTL_FAILED;
}

/* Move held courses to approved or rejected. */
static int
ctl_decide(struct ctl *c, bool approve)
{
	bool all = ctl_opt(c, "--all") != NULL;
	struct approval_result res;
	struct ledger *l;
	int rv = CTL_OK;

	if (all == (c->noperands > 0))
		return ctl_usage_error(c->cmd->name,
				       all ? "takes SHORTNAME... or --all, "
					     "not both"
					   : "needs SHORTNAME...");
	if (ctl_open(c, false, &l) == -1)
		return CTL_FAILED;
	if (approval_decide(c->conf, l, (const char *const *)c->operands,
			    (size_t)c->noperands, all, approve,
			    approve ? "an operator (webcoursectl approve)"
				    : "an operator (webcoursectl reject)",
			    &res) == -1) {
		fprintf(stderr, "webcoursectl: ledger: %s\n", ledger_errmsg(l));
		ledger_free(l);
		return CTL_FAILED;
	}
	for (size_t i = 0; i < res.nrefused; i++) {
		fputs("webcoursectl: ", stderr);
		text_put(stderr, res.refused[i]);
		fputs(" is not awaiting approval\n", stderr);
	}
	for (size_t i = 0; i < res.ndone; i++) {
		fputs(approve ? "approved " : "rejected ", stdout);
		text_put(stdout, res.done[i]);
		putchar('\n');
	}
	if (res.nrefused > 0)
		rv = CTL_FAILED;
	else if (approve && res.ndone > 0)
		printf("approved courses are created by the next sync "
		       "(webcoursectl sync, or SIGUSR1 to webcoursed)\n");
	approval_result_clear(&res);
	ledger_free(l);
	return rv;
}

static int
ctl_approve(struct ctl *c)
{
	return ctl_decide(c, true);
}

static int
ctl_reject(struct ctl *c)
{
	return ctl_decide(c, false);
}

static int
ctl_check(struct ctl *c)
{
	return check_run(c->conf, stdout) == 0 ? CTL_OK : CTL_FAILED;
}

/* Check courses for drift now, with the ledger locked like a sync. */
static int
ctl_reconcile(struct ctl *c)
{
	bool all = ctl_opt(c, "--all") != NULL;
	struct ctl_progress cp = { .tty = isatty(STDERR_FILENO) };
	struct history hist = { .conf = c->conf, .now = now_epoch() };
	struct reconcile rec = { .conf = c->conf,
				 .hist = &hist,
				 .progress = ctl_progress,
				 .arg = &cp };
	struct ledger *l;
	int64_t start = now_monotonic_ms();
	int rv = CTL_FAILED;

	if (all == (c->noperands > 0))
		return ctl_usage_error(c->cmd->name,
				       all ? "takes SHORTNAME... or --all, "
					     "not both"
					   : "needs SHORTNAME... or --all");
	if (ctl_open_locked(c, &l) == -1)
		return CTL_FAILED;
	hist.ledger = rec.ledger = l; /* run 0: between runs */
	rec.moodle = moodle_new(c->conf, &ctl_cancel);
	if (reconcile_courses(&rec, c->operands, (size_t)c->noperands) == -1)
		fprintf(stderr, "webcoursectl: %s\n", rec.cause);
	else
		rv = CTL_OK;
	printf(
	    "checked %zu course%s in %.1f s: %zu new drift, %zu resolved%s\n",
	    rec.checked, rec.checked == 1 ? "" : "s",
	    (double)(now_monotonic_ms() - start) / 1000, rec.found,
	    rec.resolved, rec.found ? " (webcoursectl drift)" : "");
	reconcile_done(&rec);
	moodle_free(rec.moodle);
	ledger_free(l);
	return rv;
}

/* --since: a UTC date ("2026-11-02", "2026-11-02T08:00[:00][Z]") or a
 * time ago ("7d", "12h", as config durations). */
static int
ctl_parse_since(const char *s, int64_t *ret)
{
	static const char *const formats[] = { "%Y-%m-%d", "%Y-%m-%dT%H:%M",
					       "%Y-%m-%dT%H:%M:%S" };
	struct tm tm;
	const char *end;
	int64_t ago;

	for (size_t i = 0; strchr(s, '-') != NULL && i < nitems(formats); i++) {
		memset(&tm, 0, sizeof(tm));
		end = strptime(s, formats[i], &tm);
		if (end != NULL && (*end == '\0' || strcmp(end, "Z") == 0)) {
			*ret = (int64_t)timegm(&tm);
			return 0;
		}
	}
	if (strchr(s, '-') == NULL && config_parse_duration(s, &ago) == 0) {
		*ret = now_epoch() - ago / 1000;
		return 0;
	}
	return -1;
}

/* Where the history goes: a pager on a terminal ($PAGER, else less). */
static FILE *
ctl_pager(bool json)
{
	const char *pager = getenv("PAGER");
	FILE *f;

	if (json || !isatty(STDOUT_FILENO))
		return stdout;
	if (pager == NULL || *pager == '\0')
		pager = "less -FRX";
	signal(SIGPIPE, SIG_IGN); /* quitting the pager early is fine */
	if ((f = popen(pager, "w")) == NULL)
		return stdout;
	return f;
}

static int
ctl_history(struct ctl *c)
{
	struct ledger_history_filter filter = {
		.username = ctl_opt(c, "--user"),
		.course = ctl_opt(c, "--course"),
	};
	const char *since = ctl_opt(c, "--since"), *run = ctl_opt(c, "--run");
	bool json = ctl_opt(c, "--json") != NULL;
	struct ledger *l;
	FILE *out;
	int rv;

	if (since != NULL && ctl_parse_since(since, &filter.since) == -1)
		return ctl_usage_error(since, "is not a date (2026-11-02, "
					      "2026-11-02T08:00) or a time "
					      "ago (7d, 12h)");
	if (run != NULL && parse_int64(run, 1, INT64_MAX, &filter.run_id) == -1)
		return ctl_usage_error(run, "is not a run number");
	if (ctl_open_read(c, &l) == -1)
		return CTL_FAILED;
	out = ctl_pager(json);
	rv = report_history(l, &filter, out, json);
	if (rv == -1)
		fprintf(stderr, "webcoursectl: ledger: %s\n", ledger_errmsg(l));
	if (out != stdout)
		pclose(out);
	ledger_free(l);
	return rv == 0 ? CTL_OK : CTL_FAILED;
}

/* The terminal's settings while a password is typed without echo, put
 * back by an interrupt too. */
static struct termios ctl_tty_saved;
static volatile sig_atomic_t ctl_tty_hidden;

static void
ctl_tty_restore_cb(int sig)
{
	if (ctl_tty_hidden)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &ctl_tty_saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* One line from stdin into buf (without its newline); -1 at EOF, on an
 * error, or when it does not fit. */
static int
ctl_read_line(char *buf, size_t size)
{
	size_t len;

	if (fgets(buf, (int)size, stdin) == NULL)
		return -1;
	len = strlen(buf);
	if (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	else if (!feof(stdin))
		return -1; /* longer than the buffer */
	if (len > 0 && buf[len - 1] == '\r')
		buf[--len] = '\0';
	return 0;
}

/* Prompt on the terminal and read a line without echo. */
static int
ctl_read_hidden(const char *prompt, char *buf, size_t size)
{
	struct termios t;
	int rv;

	if (tcgetattr(STDIN_FILENO, &ctl_tty_saved) == -1)
		return -1;
	t = ctl_tty_saved;
	t.c_lflag &= ~(tcflag_t)ECHO;
	t.c_lflag |= ECHONL;
	signal(SIGINT, ctl_tty_restore_cb);
	signal(SIGTERM, ctl_tty_restore_cb);
	ctl_tty_hidden = 1;
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &t);
	/* after the flush: what is typed once the prompt shows is kept */
	fputs(prompt, stderr);
	fflush(stderr);
	rv = ctl_read_line(buf, size);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &ctl_tty_saved);
	ctl_tty_hidden = 0;
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	return rv;
}

/* The new password of name: typed twice without echo on a terminal, else
 * the first line of stdin.  Into buf; -1 once said why. */
static int
ctl_read_password(const char *name, char *buf, size_t size)
{
	char again[WEBUSER_PASSWORD_MAX + 2], *prompt;
	int rv = -1;

	if (!isatty(STDIN_FILENO)) {
		if (ctl_read_line(buf, size) == -1) {
			fprintf(stderr,
				"webcoursectl: no password on stdin "
				"(one line, at most %d characters)\n",
				WEBUSER_PASSWORD_MAX);
			return -1;
		}
		return 0;
	}
	xasprintf(&prompt, "New password for %s: ", name);
	if (ctl_read_hidden(prompt, buf, size) == -1 ||
	    ctl_read_hidden("Again: ", again, sizeof(again)) == -1)
		fprintf(stderr, "webcoursectl: no password read\n");
	else if (strcmp(buf, again) != 0)
		fprintf(stderr, "webcoursectl: the passwords differ; nothing "
				"changed\n");
	else
		rv = 0;
	explicit_bzero(again, sizeof(again));
	free(prompt);
	return rv;
}

/* Lock the users file's directory: two web-user commands at once would
 * each rewrite the file from what they read, and one change would be
 * lost.  The fd, or -1 once said why. */
static int
ctl_lock_dir(const char *path)
{
	char *dir = xstrdup(path), *slash = strrchr(dir, '/');
	int fd;

	if (slash == NULL) {
		free(dir);
		dir = xstrdup(".");
	} else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1 || flock(fd, LOCK_EX) == -1) {
		fprintf(stderr, "webcoursectl: %s: %s\n", dir, strerror(errno));
		if (fd != -1)
			close(fd);
		fd = -1;
	}
	free(dir);
	return fd;
}

/* web-user add|remove|list [NAME] on web.users_file (never on the
 * credential, which is systemd's copy of that file). */
static int
ctl_web_user(struct ctl *c)
{
	const char *path = c->conf->web_users_file, *verb, *name;
	char password[WEBUSER_PASSWORD_MAX + 2], *cause = NULL;
	struct webusers *u = NULL;
	bool list, add;
	int lock, rv = CTL_FAILED;

	verb = c->noperands > 0 ? c->operands[0] : "";
	name = c->noperands > 1 ? c->operands[1] : NULL;
	list = strcmp(verb, "list") == 0;
	add = strcmp(verb, "add") == 0;
	if (!list && !add && strcmp(verb, "remove") != 0)
		return ctl_usage_error(c->cmd->name,
				       "needs add NAME, remove NAME or list");
	if (c->noperands != (list ? 1 : 2))
		return ctl_usage_error(verb, list ? "takes no NAME"
						  : "needs one NAME");
	if (name != NULL && !webuser_name_ok(name))
		return ctl_usage_error(name, "is not a user name (letters, "
					     "digits and . _ @ -)");
	/* asked before the lock, which is not held while a person types */
	if (add && ctl_read_password(name, password, sizeof(password)) == -1)
		return CTL_FAILED;
	if ((lock = ctl_lock_dir(path)) == -1) {
		explicit_bzero(password, sizeof(password));
		return CTL_FAILED;
	}
	if (webusers_load(path, &u, &cause) == -1) {
		fprintf(stderr, "webcoursectl: %s\n", cause);
		goto out;
	}
	if (list) {
		for (size_t i = 0; i < webusers_count(u); i++)
			printf("%s\n", webusers_name(u, i));
		rv = CTL_OK;
		goto out;
	}
	if (!add && webusers_remove(u, name) == -1) {
		fprintf(stderr, "webcoursectl: no web user %s in %s\n", name,
			path);
		goto out;
	}
	if (add && webusers_set(u, name, password, &cause) == -1) {
		fprintf(stderr, "webcoursectl: %s; nothing changed\n", cause);
		goto out;
	}
	if (webusers_save(u, path, &cause) == -1) {
		fprintf(stderr, "webcoursectl: %s; nothing changed\n", cause);
		goto out;
	}
	printf("%s web user %s in %s\n", add ? "set" : "removed", name, path);
	/* systemd copies a credential when the service starts */
	printf("a daemon that reads it as the credential web-users sees the "
	       "change after: systemctl restart webcoursed\n");
	rv = CTL_OK;
out:
	explicit_bzero(password, sizeof(password));
	free(cause);
	webusers_free(u);
	close(lock);
	return rv;
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
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:c:vh", longopts, NULL)) != -1) {
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
			return ctl_usage_error(argv[optind - 1],
					       ch == ':' ? "needs an argument"
							 : "is not an option");
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0)
		return ctl_usage_error(NULL, "no command given");
	for (size_t i = 0; i < nitems(ctl_commands); i++) {
		if (strcmp(argv[0], ctl_commands[i].name) != 0)
			continue;
		c.cmd = &ctl_commands[i];
		if (ctl_parse(&c, argc, argv) == -1)
			return CTL_USAGE;
		if (config_load(c.conf_path, &c.conf, &errors) == -1) {
			fprintf(stderr, "%s%s", errors,
				errors[strlen(errors) - 1] == '\n' ? "" : "\n");
			free(errors);
			return CTL_FAILED;
		}
		log_init("webcoursectl", 1,
			 c.verbose ? LOG_DEBUG : c.conf->log_level);
		rv = c.cmd->fn(&c);
		config_free(c.conf);
		return rv;
	}
	return ctl_usage_error(argv[0], "is an unknown command");
}
