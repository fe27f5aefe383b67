/* webcoursed: the daemon — a libevent loop that runs syncs on a timer.
 *
 * Each run happens in a child process that reports over a pipe.  We chose
 * a child over a worker thread because a run parses outside input (the
 * feed, Moodle's answers) with several libraries: a crash or a leak there
 * ends one run, not the service, and all memory of a run (a large feed
 * decodes to hundreds of MB) goes back to the system when it exits.  The
 * parent keeps the single-writer lock for its whole life and only reads
 * the ledger through its own connection; the child opens its own (SQLite
 * connections must not cross fork(2)).  SIGTERM reaches the child as a
 * cancel flag that libcurl's progress callback and the retry sleeps check,
 * so a run stops at its next safe point: the current request is
 * abandoned, the transaction of the current batch is never committed.
 *
 * The same loop serves the metrics (exporter.c on httpd.c): a scrape
 * answers from numbers kept in memory (stats.c), which the child's lines
 * update as it goes and the ledger refreshes when it ends, so a sync never
 * holds a scrape up.  The child closes the listening socket and the client
 * connections it inherits through fork(2) at once
 * (httpd_close_all_in_child): a client's connection must end when the
 * daemon ends it, and a child must not spend its descriptors on them.
 * The servers' connection caps come out of RLIMIT_NOFILE (daemon_fd_plan),
 * so that clients can never take the descriptors a sync needs to start.
 *
 * The child's journal records reach the journal through us (log_relay_to):
 * journald files a record under the unit only if its sender still lives. */
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "console.h"
#include "exporter.h"
#include "http.h"
#include "httpd.h"
#include "history.h"
#include "ledger.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "progress.h"
#include "run.h"
#include "stats.h"
#include "util.h"

#define DAEMON_FIRST_RUN_MS   500   /* first run shortly after start */
#define DAEMON_BACKOFF_MAX_MS 60000 /* first back-off, at most */
#define DAEMON_STOP_GRACE_MS  8000  /* then the run is killed */
#define DAEMON_STATS_MS       5000  /* ledger counts read at most this often */
#define DAEMON_LINE_FIELDS    4     /* fields of a line from the sync */
#define DAEMON_PHASE_LOG_MS   10000 /* a long phase is logged this often */
#define DAEMON_LOG_WAIT_S     2     /* a sync's log record waits, at most */
#define DAEMON_OUTAGE_LOG_MS  60000 /* Moodle still down: a line this often */
#define DAEMON_FD_RESERVE     64    /* descriptors kept from the servers */

/* The daemon's one context. */
struct daemon {
	struct event_base *base;
	struct config *conf;
	struct config *pending_conf; /* a reload waiting for the run to end */
	const char *conf_path;
	struct ledger *ledger;
	struct metrics *metrics;
	struct stats *stats;
	struct httpd *metrics_httpd;
	struct exporter *exporter;
	struct console *console;
	struct event *ev_timer, *ev_watchdog, *ev_pipe, *ev_log, *ev_kill;
	struct event *ev_sig[5];
	pid_t child;
	int pipe_fd;
	int log_fd; /* the sync's journal records, relayed (log_relay_to) */
	char pipebuf[512];
	size_t pipelen;
	int64_t last_beat_ms, watchdog_ms, next_run;
	int64_t child_start_us, child_errors, stats_ms;
	int failures;
	bool stopping, run_again;
	/* the console's "sync with the withheld removals": for the next
	 * run, then for the run in progress */
	bool allow_removals_next, allow_removals_run;
	struct progress progress; /* of the sync in progress */
	char phase[192];          /* progress_format of it */
	char child_outcome[16];   /* from the child's R line; "" until then */
	int child_up;             /* its U line: Moodle up 1, down 0, -1 */
	char child_down[160];     /* and why it is down */
	/* Moodle down: since when (epoch, 0: it is not), why, the tries
	 * since, and when the last line about it was logged. */
	int64_t down_since, down_logged_ms;
	int outage_tries;
	char down_cause[160];
};

static volatile sig_atomic_t child_cancel;

static void daemon_arm(struct daemon *, int64_t delay_ms);
static void daemon_status(struct daemon *);
static void daemon_pipe_cb(evutil_socket_t, short, void *);
static void daemon_log_cb(evutil_socket_t, short, void *);

static void
child_term_cb(int sig)
{
	(void)sig;
	child_cancel = 1;
}

/* In the child: one line to the parent (daemon_lines), whole or not at
 * all: a line this short reaches the pipe in one write(2). */
__attribute__((format(printf, 2, 3))) static void
child_write(void *arg, const char *fmt, ...)
{
	int fd = *(int *)arg;
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof(line))
		(void)!write(fd, line, (size_t)n);
}

static void
child_progress(void *arg, const char *phase, size_t done, size_t total)
{
	child_write(arg, "P\t%s\t%zu\t%zu\n", phase, done, total);
}

static void
child_tick(void *arg)
{
	child_write(arg, "T\n");
}

static void
child_observe_moodle(void *arg, const char *function, const char *outcome,
		     int64_t usec)
{
	child_write(arg, "M\t%s\t%s\t%" PRId64 "\n", function, outcome, usec);
}

static void
child_observe_fetch(void *arg, const char *result, size_t bytes, int64_t usec)
{
	child_write(arg, "F\t%s\t%zu\t%" PRId64 "\n", result, bytes, usec);
}

static void
child_moodle_state(void *arg, int up, const char *cause)
{
	child_write(arg, "U\t%d\t%.160s\n", up, cause != NULL ? cause : "");
}

/* The child's whole life: its own ledger connection, one run, exit. */
static __attribute__((noreturn)) void
child_main(struct daemon *d, int fd, int log_fd)
{
	struct timeval wait = { DAEMON_LOG_WAIT_S, 0 };
	struct run_options opts = { .cancel = &child_cancel,
				    .progress = child_progress,
				    .tick = child_tick,
				    .observe_moodle = child_observe_moodle,
				    .observe_fetch = child_observe_fetch,
				    .allow_removals = d->allow_removals_run,
				    .moodle_state = child_moodle_state,
				    .quiet_outage = d->down_since != 0,
				    .arg = &fd };
	struct sigaction sa = { .sa_handler = child_term_cb };
	struct ledger_run res;
	struct ledger *l;
	char *cause = NULL;
	int rv;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	(void)setsockopt(log_fd, SOL_SOCKET, SO_SNDTIMEO, &wait, sizeof(wait));
	log_relay_to(log_fd);
	if (ledger_open(d->conf->state_database, false, &l, &cause) == -1) {
		log_warnx("cannot open the ledger: %s", cause);
		_exit(2);
	}
	rv = run_sync(d->conf, l, &opts, &res);
	child_write(&fd, "R\t%s\t%" PRId64 "\n", res.outcome, res.errors);
	run_result_clear(&res);
	ledger_free(l);
	_exit(rv == 0 ? 0 : 1);
}

static void
daemon_run_start(struct daemon *d)
{
	int fds[2], lfds[2];
	pid_t pid;

	if (d->child > 0) {
		d->run_again = true;
		log_info("a sync is in progress; another follows it");
		return;
	}
	if (pipe2(fds, O_CLOEXEC) == -1) {
		log_warn("pipe");
		daemon_arm(d, DAEMON_BACKOFF_MAX_MS);
		return;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, lfds) == -1) {
		log_warn("socketpair");
		close(fds[0]);
		close(fds[1]);
		daemon_arm(d, DAEMON_BACKOFF_MAX_MS);
		return;
	}
	child_cancel = 0;
	d->allow_removals_run = d->allow_removals_next;
	d->allow_removals_next = false;
	if ((pid = fork()) == -1) {
		log_warn("fork");
		close(fds[0]);
		close(fds[1]);
		close(lfds[0]);
		close(lfds[1]);
		daemon_arm(d, DAEMON_BACKOFF_MAX_MS);
		return;
	}
	if (pid == 0) {
		httpd_close_all_in_child();
		close(fds[0]);
		close(lfds[0]);
		child_main(d, fds[1], lfds[1]);
	}
	close(fds[1]);
	close(lfds[1]);
	d->log_fd = lfds[0];
	evutil_make_socket_nonblocking(d->log_fd);
	d->ev_log = event_new(d->base, d->log_fd, EV_READ | EV_PERSIST,
			      daemon_log_cb, d);
	event_add(d->ev_log, NULL);
	d->child = pid;
	d->pipe_fd = fds[0];
	d->pipelen = 0;
	d->last_beat_ms = now_monotonic_ms();
	d->child_start_us = now_monotonic_us();
	d->child_outcome[0] = '\0';
	d->child_errors = 0;
	d->child_up = -1;
	stats_sync_started(d->stats);
	memset(&d->progress, 0, sizeof(d->progress));
	snprintf(d->phase, sizeof(d->phase), "starting");
	evutil_make_socket_nonblocking(d->pipe_fd);
	d->ev_pipe = event_new(d->base, d->pipe_fd, EV_READ | EV_PERSIST,
			       daemon_pipe_cb, d);
	event_add(d->ev_pipe, NULL);
	if (d->down_since != 0) /* tries while down: not worth a line */
		log_debug("sync started (pid %ld)", (long)pid);
	else
		log_info("sync started (pid %ld)", (long)pid);
	daemon_status(d);
}

/* "P\tphase\tdone\ttotal": STATUS= says where the sync is, with its rate
 * and time left, and a long phase is logged every DAEMON_PHASE_LOG_MS. */
static void
daemon_line_progress(struct daemon *d, char **f)
{
	int64_t done, total, now = now_monotonic_ms();

	if (parse_int64(f[1], 0, INT64_MAX, &done) == -1 ||
	    parse_int64(f[2], 0, INT64_MAX, &total) == -1)
		return;
	progress_update(&d->progress, f[0], (size_t)done, (size_t)total, now);
	progress_format(&d->progress, now, d->phase, sizeof(d->phase));
	if (total > 0 && done < total &&
	    progress_due(&d->progress, now, DAEMON_PHASE_LOG_MS))
		log_info("sync: %s", d->phase);
	daemon_status(d);
}

/* "M\tfunction\toutcome\tusec": one Moodle request attempt. */
static void
daemon_line_moodle(struct daemon *d, char **f)
{
	int64_t usec;

	if (parse_int64(f[2], 0, INT64_MAX, &usec) == -1 ||
	    stats_moodle_request(d->stats, f[0], f[1], usec) == -1)
		log_debug("sync process: bad line M %s %s %s", f[0], f[1],
			  f[2]);
}

/* "F\tresult\tbytes\tusec": the feed fetch. */
static void
daemon_line_fetch(struct daemon *d, char **f)
{
	int64_t bytes, usec;

	if (parse_int64(f[1], 0, INT64_MAX, &bytes) == -1 ||
	    parse_int64(f[2], 0, INT64_MAX, &usec) == -1 ||
	    stats_feed_fetch(d->stats, f[0], bytes, usec) == -1)
		log_debug("sync process: bad line F %s %s %s", f[0], f[1],
			  f[2]);
}

/* "R\toutcome\terrors": the run's result, the last line. */
static void
daemon_line_result(struct daemon *d, char **f)
{
	snprintf(d->child_outcome, sizeof(d->child_outcome), "%s", f[0]);
	if (parse_int64(f[1], 0, INT64_MAX, &d->child_errors) == -1)
		d->child_errors = 0;
}

/* "U\tup\tcause": whether the run found Moodle able to serve. */
static void
daemon_line_up(struct daemon *d, char **f)
{
	d->child_up = strcmp(f[0], "1") == 0 ? 1 : 0;
	snprintf(d->child_down, sizeof(d->child_down), "%s", f[1]);
}

/* The lines a sync process writes on its pipe: a kind, then its fields,
 * each after a tab.  Short, so that each reaches the pipe whole. */
static const struct daemon_line {
	char kind;
	size_t nfields;
	void (*fn)(struct daemon *, char **fields);
} daemon_lines[] = {
	{ 'P', 3, daemon_line_progress }, /* phase, done, total */
	{ 'T', 0, NULL },                 /* a heartbeat */
	{ 'M', 3, daemon_line_moodle },   /* function, outcome, usec */
	{ 'F', 3, daemon_line_fetch },    /* result, bytes, usec */
	{ 'R', 2, daemon_line_result },   /* outcome, item errors */
	{ 'U', 2, daemon_line_up },       /* Moodle up 1 or 0, why down */
};

/* One line from the child.  Any line is a heartbeat; one of an unknown
 * kind or with the wrong number of fields is ignored. */
static void
daemon_child_line(struct daemon *d, char *line)
{
	char *fields[DAEMON_LINE_FIELDS], *p = line + 1;
	size_t n = 0;

	d->last_beat_ms = now_monotonic_ms();
	if (line[0] == '\0')
		return;
	while (*p == '\t' && n < nitems(fields)) {
		*p++ = '\0';
		fields[n++] = p;
		p += strcspn(p, "\t");
	}
	if (*p != '\0')
		return;
	for (size_t i = 0; i < nitems(daemon_lines); i++)
		if (daemon_lines[i].kind == line[0] &&
		    daemon_lines[i].nfields == n) {
			if (daemon_lines[i].fn != NULL)
				daemon_lines[i].fn(d, fields);
			return;
		}
}

/* Read what the pipe holds and act on its whole lines: the bytes read, 0
 * at the end, -1 when there is nothing now. */
static ssize_t
daemon_pipe_read(struct daemon *d)
{
	char *nl;
	ssize_t n;

	n = read(d->pipe_fd, d->pipebuf + d->pipelen,
		 sizeof(d->pipebuf) - 1 - d->pipelen);
	if (n <= 0)
		return n;
	d->pipelen += (size_t)n;
	d->pipebuf[d->pipelen] = '\0';
	while ((nl = strchr(d->pipebuf, '\n')) != NULL) {
		*nl = '\0';
		daemon_child_line(d, d->pipebuf);
		d->pipelen -= (size_t)(nl + 1 - d->pipebuf);
		memmove(d->pipebuf, nl + 1, d->pipelen + 1);
	}
	if (d->pipelen == sizeof(d->pipebuf) - 1)
		d->pipelen = 0; /* an overlong line: drop it */
	return n;
}

static void
daemon_pipe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	ssize_t n;

	(void)fd;
	(void)what;
	n = daemon_pipe_read(d);
	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
		event_del(d->ev_pipe); /* the end, or a broken pipe */
}

/* The console's "sync now" (an approval starts one too): a history row
 * with who asked, then a run now, or right after the one in progress. */
static void
daemon_console_sync_cb(void *arg, bool allow_removals, const char *who)
{
	struct daemon *d = arg;
	struct history hist = { .ledger = d->ledger,
				.conf = d->conf,
				.now = now_epoch() };

	if (history_add(&hist, "sync", NULL, NULL, 0, "sync%s requested by %s",
			allow_removals ? " with the withheld removals" : "",
			who) == -1)
		log_warnx("web: cannot write the history: %s",
			  ledger_errmsg(d->ledger));
	log_info("web: sync now%s, requested by %s",
		 allow_removals ? " with the withheld removals" : "", who);
	d->allow_removals_next = d->allow_removals_next || allow_removals;
	if (d->child > 0) {
		d->run_again = true;
		return;
	}
	evtimer_del(d->ev_timer);
	daemon_run_start(d);
}

static bool
daemon_console_syncing_cb(void *arg, char *buf, size_t len)
{
	struct daemon *d = arg;

	if (d->child <= 0)
		return false;
	snprintf(buf, len, "%s", d->phase);
	return true;
}

/* Serve the console where [web] says; a failure costs the console, never
 * the syncs. */
static void
daemon_listen_web(struct daemon *d)
{
	char *was = console_address(d->console) != NULL
			? xstrdup(console_address(d->console))
			: NULL;
	char *cause = NULL;

	if (console_configure(d->console, d->conf, d->ledger, &cause) == -1) {
		log_warnx("web: %s; the console is off until a reload (syncs "
			  "go on)",
			  cause);
		free(cause);
	} else if (d->conf->web_listen == NULL && was != NULL)
		log_info("web: no longer serving the console on %s", was);
	else if (d->conf->web_listen != NULL &&
		 (was == NULL || strcmp(was, d->conf->web_listen) != 0))
		log_info("web: serving the console on %s%s",
			 d->conf->web_listen,
			 d->conf->web_tls_cert != NULL ? " (HTTPS)" : "");
	free(was);
}

/* Serve the metrics where the configuration says (also after a reload: a
 * new address is bound, and one that failed before is tried again).  A
 * failure costs the metrics, never the syncs. */
static void
daemon_listen(struct daemon *d)
{
	const char *was = httpd_address(d->metrics_httpd);
	char *cause = NULL;

	daemon_listen_web(d);
	if (d->conf->metrics_listen == NULL) {
		if (was != NULL)
			log_info("metrics: no longer listening on %s", was);
		httpd_listen(d->metrics_httpd, NULL, &cause);
		return;
	}
	if (was != NULL && strcmp(was, d->conf->metrics_listen) == 0)
		return;
	if (httpd_listen(d->metrics_httpd, d->conf->metrics_listen, &cause) ==
	    -1) {
		if (httpd_address(d->metrics_httpd) != NULL)
			log_warnx("metrics: %s; still serving /metrics on %s",
				  cause, httpd_address(d->metrics_httpd));
		else
			log_warnx("metrics: %s; /metrics is off until a "
				  "reload (syncs go on)",
				  cause);
		free(cause);
		return;
	}
	log_info("metrics: serving /metrics on %s", d->conf->metrics_listen);
}

/* The sync's journal records, written by us on its behalf. */
static void
daemon_log_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	(void)what;
	if (log_relay_read(fd) == -1)
		event_del(d->ev_log);
}

/* Swap in a configuration that loaded cleanly.  The ledger stays where it
 * is: moving it needs a restart. */
static void
daemon_swap_config(struct daemon *d, struct config *conf)
{
	if (strcmp(conf->state_database, d->conf->state_database) != 0) {
		log_warnx("state.database changed to %s: restart webcoursed to "
			  "use it; keeping %s",
			  conf->state_database, d->conf->state_database);
		free(conf->state_database);
		conf->state_database = xstrdup(d->conf->state_database);
	}
	config_free(d->conf);
	d->conf = conf;
	log_setlevel(conf->log_level);
	daemon_listen(d);
	log_info("configuration %s reloaded", d->conf_path);
	notify_ready();
}

static void
daemon_reload(struct daemon *d)
{
	struct config *conf;
	char *errors = NULL, *line, *next;

	notify_reloading();
	if (config_load(d->conf_path, &conf, &errors) == -1) {
		log_warnx("config file %s has errors, not reloading",
			  d->conf_path);
		for (line = errors; line != NULL && *line; line = next) {
			if ((next = strchr(line, '\n')) != NULL)
				*next++ = '\0';
			log_warnx("%s", line);
		}
		free(errors);
		notify_ready();
		return;
	}
	if (d->child > 0) {
		config_free(d->pending_conf);
		d->pending_conf = conf;
		log_info("reload deferred until the running sync ends");
		return;
	}
	daemon_swap_config(d, conf);
	daemon_arm(d, DAEMON_FIRST_RUN_MS);
}

/* Delay before the next run: the interval with +-10 % jitter, or after
 * failures a back-off doubling from min(60 s, interval / 8), or while
 * Moodle is down one doubling from sync.outage_retry, at most
 * sync.outage_retry_max. */
static int64_t
daemon_next_delay(struct daemon *d)
{
	int64_t interval = d->conf->sync_interval_ms, delay;

	if (d->down_since != 0) {
		/* Moodle is down: sync.outage_retry, doubled per try. */
		delay = d->conf->sync_outage_retry_ms;
		for (int i = 1; i < d->outage_tries &&
				delay < d->conf->sync_outage_retry_max_ms;
		     i++)
			delay *= 2;
		return delay < d->conf->sync_outage_retry_max_ms
			   ? delay
			   : d->conf->sync_outage_retry_max_ms;
	}
	if (d->failures == 0)
		return interval * 9 / 10 + random() % (interval / 5 + 1);
	delay = interval / 8 < DAEMON_BACKOFF_MAX_MS ? interval / 8
						     : DAEMON_BACKOFF_MAX_MS;
	for (int i = 1; i < d->failures && delay < interval; i++)
		delay *= 2;
	return delay < interval ? delay : interval;
}

static void
daemon_arm(struct daemon *d, int64_t delay_ms)
{
	struct timeval tv = { delay_ms / 1000, (delay_ms % 1000) * 1000 };
	char when[32];

	evtimer_add(d->ev_timer, &tv);
	d->next_run = now_epoch() + (delay_ms + 999) / 1000;
	stats_next_sync(d->stats, d->next_run);
	format_time(d->next_run, when, sizeof(when));
	if (ledger_meta_set(d->ledger, "next_run", when) == -1)
		log_debug("cannot note the next run: %s",
			  ledger_errmsg(d->ledger));
	daemon_status(d);
}

/* Local HH:MM of t. */
static void
daemon_hhmm(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	buf[0] = '\0';
	if (localtime_r(&tt, &tm) != NULL)
		strftime(buf, len, "%H:%M", &tm);
}

/* STATUS= for systemctl status: one line. */
static void
daemon_status(struct daemon *d)
{
	struct ledger_run *runs = NULL;
	char *withheld = NULL, last[16] = "", next[16] = "";
	size_t n = 0;
	struct tm tm;
	time_t t;

	if (d->child > 0) {
		notify_status("syncing: %s", d->phase);
		return;
	}
	if (d->down_since != 0) {
		daemon_hhmm(d->down_since, last, sizeof(last));
		daemon_hhmm(d->next_run, next, sizeof(next));
		notify_status("%s (since %s); next try %s", d->down_cause, last,
			      next);
		return;
	}
	if (ledger_meta_get(d->ledger, "removals_withheld", &withheld) == 0 &&
	    withheld != NULL) {
		notify_status("%s", withheld);
		free(withheld);
		return;
	}
	t = (time_t)d->next_run;
	if (localtime_r(&t, &tm) != NULL)
		strftime(next, sizeof(next), "%H:%M", &tm);
	if (ledger_runs_recent(d->ledger, 1, &runs, &n) == 0 && n == 1) {
		t = (time_t)runs[0].started;
		if (localtime_r(&t, &tm) != NULL)
			strftime(last, sizeof(last), "%H:%M", &tm);
		notify_status("idle; last sync %s %s: %s; next %s", last,
			      runs[0].outcome, runs[0].message ?: "", next);
	} else
		notify_status("idle; no sync yet; next %s", next);
	ledger_runs_free(runs, n);
}

/* The ledger's numbers after a sync, for the metrics. */
static void
daemon_read_stats(struct daemon *d)
{
	d->stats_ms = now_monotonic_ms();
	if (stats_refresh(d->stats, d->ledger, true) == -1)
		log_warnx("metrics: cannot read the ledger: %s; the ledger's "
			  "numbers are from before",
			  ledger_errmsg(d->ledger));
}

/* After a sync that said whether Moodle could serve: start or end an
 * outage (one line when it is back), and the metric. */
static void
daemon_note_moodle(struct daemon *d)
{
	int64_t now = now_epoch();

	if (d->child_up == 1 && d->down_since != 0) {
		log_info("Moodle is available again, after %" PRId64
			 " s unavailable (%d tries)",
			 now - d->down_since, d->outage_tries);
		d->down_since = 0;
		d->outage_tries = 0;
	} else if (d->child_up == 0) {
		if (d->down_since == 0) {
			d->down_since = now;
			d->down_logged_ms = INT64_MIN / 2;
		}
		d->outage_tries++;
		snprintf(d->down_cause, sizeof(d->down_cause), "%s",
			 d->child_down);
	}
	if (d->child_up != -1)
		stats_moodle_up(d->stats, d->child_up == 1);
}

/* While Moodle is down: a line at most every DAEMON_OUTAGE_LOG_MS. */
static void
daemon_outage_log(struct daemon *d)
{
	int64_t now = now_monotonic_ms(), wait = d->next_run - now_epoch();

	if (now - d->down_logged_ms < DAEMON_OUTAGE_LOG_MS) {
		log_debug("%s; will retry in %" PRId64 " s", d->down_cause,
			  wait);
		return;
	}
	if (d->outage_tries <= 1)
		log_warnx("%s; the sync stopped, will retry in %" PRId64 " s",
			  d->down_cause, wait);
	else
		log_warnx("%s, still (for %" PRId64 " s, %d tries); will "
			  "retry in %" PRId64 " s",
			  d->down_cause, now_epoch() - d->down_since,
			  d->outage_tries, wait);
	d->down_logged_ms = now;
}

static void
daemon_child_reaped(struct daemon *d, int wstatus)
{
	if (d->ev_pipe != NULL) {
		while (daemon_pipe_read(d) > 0) /* the last lines */
			;
		event_free(d->ev_pipe);
		d->ev_pipe = NULL;
	}
	close(d->pipe_fd);
	d->pipe_fd = -1;
	if (d->ev_log != NULL) {
		(void)log_relay_read(d->log_fd); /* the last records */
		event_free(d->ev_log);
		d->ev_log = NULL;
	}
	close(d->log_fd);
	d->log_fd = -1;
	d->child = 0;
	/* No result line: the process died before its run said how it went. */
	stats_sync_ended(
	    d->stats, d->child_outcome[0] != '\0' ? d->child_outcome : "failed",
	    d->child_errors, now_monotonic_us() - d->child_start_us);
	daemon_read_stats(d);
	daemon_note_moodle(d);
	if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0)
		d->failures = 0;
	else {
		d->failures++;
		if (WIFSIGNALED(wstatus))
			log_warnx("sync process died of signal %d",
				  WTERMSIG(wstatus));
	}
	if (d->stopping) {
		event_base_loopbreak(d->base);
		return;
	}
	if (d->pending_conf != NULL) {
		daemon_swap_config(d, d->pending_conf);
		d->pending_conf = NULL;
	}
	if (d->run_again) {
		d->run_again = false;
		daemon_arm(d, 0);
		return;
	}
	daemon_arm(d, daemon_next_delay(d));
	if (d->down_since != 0)
		daemon_outage_log(d);
	else if (d->failures > 0)
		log_warnx("sync failed, will retry in %" PRId64 " s",
			  d->next_run - now_epoch());
}

static void
daemon_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	struct timeval grace = { DAEMON_STOP_GRACE_MS / 1000, 0 };
	int wstatus;
	pid_t pid;

	(void)what;
	switch (sig) {
	case SIGHUP:
		daemon_reload(d);
		break;
	case SIGUSR1:
		log_info("SIGUSR1: sync now");
		evtimer_del(d->ev_timer);
		daemon_run_start(d);
		break;
	case SIGCHLD:
		while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0)
			if (pid == d->child)
				daemon_child_reaped(d, wstatus);
		break;
	default: /* SIGTERM, SIGINT */
		if (d->stopping)
			break;
		d->stopping = true;
		notify_stopping();
		log_info("stopping");
		if (d->child <= 0) {
			event_base_loopbreak(d->base);
			break;
		}
		kill(d->child, SIGTERM);
		evtimer_add(d->ev_kill, &grace);
		break;
	}
}

/* Before a scrape.  Between syncs only webcoursectl approve and reject
 * change the ledger (course states, a cheap count): read them again, at
 * most every DAEMON_STATS_MS.  During a sync the rest waits for its end. */
static void
daemon_collect_cb(void *arg)
{
	struct daemon *d = arg;
	int64_t now = now_monotonic_ms();

	if (d->child > 0 || now - d->stats_ms < DAEMON_STATS_MS)
		return;
	d->stats_ms = now;
	if (stats_refresh(d->stats, d->ledger, false) == -1)
		log_debug("metrics: cannot read the ledger: %s",
			  ledger_errmsg(d->ledger));
}

static void
daemon_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	daemon_run_start(arg);
}

/* The run did not stop in time: end it.  Its batch was not committed. */
static void
daemon_kill_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	(void)fd;
	(void)what;
	if (d->child > 0) {
		log_warnx("sync did not stop in time; killing it");
		kill(d->child, SIGKILL);
	}
}

/* WATCHDOG=1 only while the loop runs and any sync reports progress: a
 * sync hung past WatchdogSec= gets the service restarted. */
static void
daemon_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	int64_t quiet = now_monotonic_ms() - d->last_beat_ms;

	(void)fd;
	(void)what;
	if (d->child <= 0 || quiet < d->watchdog_ms) {
		notify_watchdog();
		return;
	}
	notify_status("syncing: no progress for %" PRId64 " s (%s)",
		      quiet / 1000, d->phase);
	log_warnx("sync (pid %ld) has made no progress for %" PRId64
		  " s; not feeding the watchdog",
		  (long)d->child, quiet / 1000);
}

/* At start: Moodle was down at the last run (run.c keeps why). */
static void
daemon_last_outage(struct daemon *d)
{
	char *cause = NULL;

	if (ledger_meta_get(d->ledger, RUN_META_DOWN, &cause) == 0 &&
	    cause != NULL) {
		d->down_since = now_epoch();
		d->down_logged_ms = INT64_MIN / 2;
		snprintf(d->down_cause, sizeof(d->down_cause), "%s", cause);
		stats_moodle_up(d->stats, false);
	}
	free(cause);
}

/* The /metrics server.  Its connections come out of the descriptors that
 * RLIMIT_NOFILE leaves once DAEMON_FD_RESERVE are kept for the daemon
 * itself (ledger, pipes, journal, the loop): a quarter of them at most, so
 * that the web console has the rest. */
static struct httpd *
daemon_metrics_httpd(struct daemon *d)
{
	size_t budget = httpd_fd_budget(DAEMON_FD_RESERVE);
	struct httpd_options o = { .name = "metrics" };

	(void)d;
	o.limits.max_connections = budget / 4 < HTTPD_MAX_CONNECTIONS
				       ? budget / 4
				       : HTTPD_MAX_CONNECTIONS;
	if (o.limits.max_connections < 4) {
		o.limits.max_connections = 4;
		log_warnx("the file descriptor limit (RLIMIT_NOFILE) leaves "
			  "almost nothing to serve /metrics with; "
			  "LimitNOFILE= of the unit should be at least %d",
			  DAEMON_FD_RESERVE + 64);
	}
	return httpd_new(d->base, &o);
}

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: webcoursed [-c FILE] [-f] [--once] [-t] [-v] "
		"[--version] [-h]\n"
		"  -c, --config FILE  configuration file\n"
		"                     (default %s)\n"
		"  -f, --foreground   log to stderr (default: the journal "
		"under systemd)\n"
		"      --once         do one sync and exit (0 ok, 1 failed)\n"
		"  -t, --test         check the configuration and exit\n"
		"  -v, --verbose      log debug messages\n"
		"      --version      print the version\n"
		"  -h, --help         this help\n",
		CONFIG_DEFAULT_PATH);
	fprintf(f, "\nconfiguration keys, their defaults and meaning "
		   "(webcoursed.conf(5)):\n");
	config_print_keys(f);
}

/* What was wrong on the command line, and where to read more: 2. */
static int
usage_error(const char *arg, const char *what)
{
	fprintf(stderr,
		"webcoursed: \"%s\" %s\n"
		"Try 'webcoursed --help' for the options.\n",
		arg, what);
	return 2;
}

static void
print_errors(const char *errors)
{
	fprintf(stderr, "%s%s", errors,
		*errors && errors[strlen(errors) - 1] != '\n' ? "\n" : "");
}

/* --once: one run in this process, like `webcoursectl sync`. */
static int
daemon_once(struct daemon *d)
{
	struct run_options opts = { 0 };
	struct ledger_run res;
	int rv;

	child_cancel = 0;
	opts.cancel = &child_cancel;
	signal(SIGTERM, child_term_cb);
	signal(SIGINT, child_term_cb);
	rv = run_sync(d->conf, d->ledger, &opts, &res);
	run_result_clear(&res);
	return rv == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "once", no_argument, NULL, 'o' },
		{ "test", no_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const int signals[] = { SIGHUP, SIGTERM, SIGINT, SIGUSR1,
				       SIGCHLD };
	struct daemon d = { .conf_path = CONFIG_DEFAULT_PATH,
			    .pipe_fd = -1,
			    .log_fd = -1 };
	int64_t started = now_epoch();
	bool foreground = false, once = false, test = false, verbose = false;
	char *errors = NULL, *cause = NULL, *url;
	struct timeval tv;
	int ch, rv = 0;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:ftvh", longopts, NULL)) !=
	       -1) {
		switch (ch) {
		case 'c':
			d.conf_path = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 'o':
			once = true;
			break;
		case 't':
			test = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 'V':
			printf("webcoursed %s\n", WEBCOURSED_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return usage_error(argv[optind - 1],
					   ch == ':' ? "needs an argument"
						     : "is not an option");
		}
	}
	if (optind != argc)
		return usage_error(argv[optind],
				   "is not expected: webcoursed takes no "
				   "arguments");

	if (config_load(d.conf_path, &d.conf, &errors) == -1) {
		print_errors(errors);
		free(errors);
		return 1;
	}
	if (test) {
		printf("configuration OK\n");
		config_free(d.conf);
		return 0;
	}
	log_init("webcoursed", foreground || once,
		 verbose ? LOG_DEBUG : d.conf->log_level);
	log_libevent_init();
	signal(SIGPIPE, SIG_IGN);
	if (ledger_open(d.conf->state_database, false, &d.ledger, &cause) == -1)
		fatalx("cannot open the ledger: %s", cause);
	if (ledger_lock(d.ledger, &cause) == -1)
		fatalx("%s", cause);
	if (once) {
		rv = daemon_once(&d);
		goto out;
	}

	srandom((unsigned)(getpid() ^ now_monotonic_ms()));
	if ((d.base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	for (size_t i = 0; i < nitems(signals); i++) {
		d.ev_sig[i] =
		    evsignal_new(d.base, signals[i], daemon_signal_cb, &d);
		evsignal_add(d.ev_sig[i], NULL);
	}
	d.ev_timer = evtimer_new(d.base, daemon_timer_cb, &d);
	d.ev_kill = evtimer_new(d.base, daemon_kill_cb, &d);
	if ((d.watchdog_ms = notify_watchdog_ms()) > 0) {
		tv = (struct timeval){ d.watchdog_ms / 3000,
				       (d.watchdog_ms / 3 % 1000) * 1000 };
		d.ev_watchdog =
		    event_new(d.base, -1, EV_PERSIST, daemon_watchdog_cb, &d);
		event_add(d.ev_watchdog, &tv);
	}
	d.metrics = metrics_new();
	d.stats = stats_new(d.metrics, started);
	daemon_read_stats(&d);
	daemon_last_outage(&d);
	d.metrics_httpd = daemon_metrics_httpd(&d);
	d.exporter =
	    exporter_new(d.metrics_httpd, d.metrics, daemon_collect_cb, &d);
	d.console = console_new(
	    d.base,
	    &(struct console_hooks){ .sync_now = daemon_console_sync_cb,
				     .syncing = daemon_console_syncing_cb,
				     .arg = &d });
	daemon_listen(&d);
	daemon_arm(&d, DAEMON_FIRST_RUN_MS);
	url = http_redact_url(d.conf->moodle_url);
	log_info("webcoursed %s started; syncing %s every %" PRId64 " s",
		 WEBCOURSED_VERSION, url, d.conf->sync_interval_ms / 1000);
	free(url);
	notify_ready();

	event_base_dispatch(d.base);

	if (ledger_meta_set(d.ledger, "next_run", NULL) == -1)
		log_debug("cannot clear the next run: %s",
			  ledger_errmsg(d.ledger));
	log_info("stopped");
	for (size_t i = 0; i < nitems(signals); i++)
		event_free(d.ev_sig[i]);
	if (d.ev_watchdog != NULL)
		event_free(d.ev_watchdog);
	event_free(d.ev_kill);
	event_free(d.ev_timer);
	if (d.ev_pipe != NULL)
		event_free(d.ev_pipe);
	if (d.ev_log != NULL)
		event_free(d.ev_log);
	console_free(d.console);
	exporter_free(d.exporter);
	httpd_free(d.metrics_httpd);
	stats_free(d.stats);
	metrics_free(d.metrics);
	event_base_free(d.base);
out:
	ledger_free(d.ledger);
	config_free(d.pending_conf);
	config_free(d.conf);
	return rv;
}
