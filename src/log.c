/* Logging, OpenBSD style: to the journal with fields, or stderr. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "log.h"
#include "util.h"

#define LOG_MAX_FIELDS 16
#define LOG_RELAY_MAX  65536 /* bytes in one relayed record */

/* The only process-wide state: where log lines go. */
static struct {
	const char *procname;
	int journal;
	int level;
	int relay; /* a sync process: journal records go to the parent */
	struct log_rate libevent;
} log_conf = { "webcoursed", 0, LOG_INFO, -1,
	       LOG_RATE_INIT(LOG_LIBEVENT_LINES, 60000) };

static const char *const log_prio_names[] = {
	[LOG_EMERG] = "emerg",     [LOG_ALERT] = "alert",
	[LOG_CRIT] = "crit",       [LOG_ERR] = "error",
	[LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
	[LOG_INFO] = "info",       [LOG_DEBUG] = "debug",
};

void
log_init(const char *procname, int to_stderr, int level)
{
	log_conf.procname = procname;
	log_conf.level = level;
	log_conf.journal = !to_stderr && (getenv("JOURNAL_STREAM") != NULL ||
					  getenv("INVOCATION_ID") != NULL);
}

void
log_setlevel(int level)
{
	log_conf.level = level;
}

void
log_relay_to(int fd)
{
	log_conf.relay = fd;
}

static void
log_stderr(int prio, const char *msg)
{
	char stamp[32];
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(stderr, "%s %s[%ld]: %s: %s\n", stamp, log_conf.procname,
		(long)getpid(), log_prio_names[prio], msg);
	fflush(stderr);
}

/* One record as one datagram to the parent: each field ended by a NUL. */
static int
log_relay_send(const struct iovec *fields, size_t n)
{
	static char nul[1];
	struct iovec iov[2 * (LOG_MAX_FIELDS + 3)];
	struct msghdr mh = { .msg_iov = iov };
	size_t len = 0;

	for (size_t i = 0; i < n && i < LOG_MAX_FIELDS + 3; i++) {
		iov[mh.msg_iovlen++] = fields[i];
		iov[mh.msg_iovlen++] = (struct iovec){ nul, 1 };
		len += fields[i].iov_len + 1;
	}
	if (len > LOG_RELAY_MAX)
		return -1;
	return sendmsg(log_conf.relay, &mh, MSG_NOSIGNAL) == -1 ? -1 : 0;
}

int
log_relay_read(int fd)
{
	struct iovec iov[LOG_MAX_FIELDS + 3];
	char *buf = xmalloc(LOG_RELAY_MAX + 1), *p, *end;
	ssize_t len;
	int n, rv = 0;

	for (;;) {
		len = recv(fd, buf, LOG_RELAY_MAX, MSG_DONTWAIT | MSG_TRUNC);
		if (len == -1 && errno == EINTR)
			continue;
		if (len == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (len <= 0) {
			rv = -1; /* the sync process closed its end */
			break;
		}
		if (len > LOG_RELAY_MAX)
			continue; /* the sender never sends one this long */
		buf[len] = '\0';
		for (n = 0, p = buf, end = buf + len;
		     p < end && n < (int)nitems(iov); p += strlen(p) + 1)
			iov[n++] = (struct iovec){ p, strlen(p) };
		if (sd_journal_sendv(iov, n) < 0)
			log_stderr(LOG_WARNING,
				   "a sync process's log record was "
				   "lost: the journal refused it");
	}
	free(buf);
	return rv;
}

static void
log_journal(int prio, const char *const *fields, const char *msg)
{
	struct iovec iov[LOG_MAX_FIELDS + 3];
	char *message = NULL, *priority = NULL, *ident = NULL;
	size_t n = 0;

	xasprintf(&message, "MESSAGE=%s", msg);
	xasprintf(&priority, "PRIORITY=%d", prio);
	xasprintf(&ident, "SYSLOG_IDENTIFIER=%s", log_conf.procname);
	iov[n++] = (struct iovec){ message, strlen(message) };
	iov[n++] = (struct iovec){ priority, strlen(priority) };
	iov[n++] = (struct iovec){ ident, strlen(ident) };
	for (; fields != NULL && *fields != NULL && n < nitems(iov); fields++)
		iov[n++] = (struct iovec){ (void *)*fields, strlen(*fields) };
	if ((log_conf.relay == -1 || log_relay_send(iov, n) == -1) &&
	    sd_journal_sendv(iov, (int)n) < 0)
		log_stderr(prio, msg);
	free(message);
	free(priority);
	free(ident);
}

void
vlog_fields(int prio, const char *const *fields, const char *fmt, va_list ap)
{
	char *raw, *msg;
	int saved = errno;

	if (prio > log_conf.level)
		return;
	if (vasprintf(&raw, fmt, ap) == -1)
		return;
	/* One record is one line, and no text in it drives a terminal. */
	msg = text_clean(raw);
	free(raw);
	if (log_conf.journal)
		log_journal(prio, fields, msg);
	else
		log_stderr(prio, msg);
	free(msg);
	errno = saved;
}

void
log_fields(int prio, const char *const *fields, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog_fields(prio, fields, fmt, ap);
	va_end(ap);
}

/* Append ": strerror(errno)" to fmt's expansion. */
static void
vlog_errno(int prio, const char *fmt, va_list ap)
{
	char *msg;
	int saved = errno;

	if (vasprintf(&msg, fmt, ap) == -1)
		return;
	log_fields(prio, NULL, "%s: %s", msg, strerror(saved));
	free(msg);
}

void
log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog_errno(LOG_WARNING, fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog_fields(LOG_WARNING, NULL, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog_fields(LOG_INFO, NULL, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog_fields(LOG_DEBUG, NULL, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog_errno(LOG_CRIT, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog_fields(LOG_CRIT, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}

/* Whether a line may go out now under r; *ret_held: the lines held back
 * since the last one that went out. */
static int
log_rate_allow(struct log_rate *r, uint64_t *ret_held)
{
	int64_t now = now_monotonic_ms();

	if (r->start_ms == 0 || now - r->start_ms >= r->period_ms) {
		r->start_ms = now;
		r->used = 0;
	}
	if (r->used >= r->n) {
		r->held++;
		return 0;
	}
	r->used++;
	*ret_held = r->held;
	r->held = 0;
	return 1;
}

static void
log_rate_vlog(struct log_rate *r, int prio, const char *fmt, va_list ap)
{
	uint64_t held;
	char *msg;

	if (prio > log_conf.level || !log_rate_allow(r, &held))
		return;
	if (vasprintf(&msg, fmt, ap) == -1)
		return;
	if (held > 0)
		log_fields(prio, NULL,
			   "%s (and %llu more like it held back; at most %d "
			   "lines in %lld s)",
			   msg, (unsigned long long)held, r->n,
			   (long long)(r->period_ms / 1000));
	else
		log_fields(prio, NULL, "%s", msg);
	free(msg);
}

void
log_rate_warnx(struct log_rate *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_rate_vlog(r, LOG_WARNING, fmt, ap);
	va_end(ap);
}

static void
log_rate_log(struct log_rate *r, int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_rate_vlog(r, prio, fmt, ap);
	va_end(ap);
}

/* libevent's log callback: its severities are ours; debug lines are not
 * counted against the budget (they are off unless -v). */
static void
log_libevent_cb(int severity, const char *msg)
{
	static const int prios[] = {
		[EVENT_LOG_DEBUG] = LOG_DEBUG,
		[EVENT_LOG_MSG] = LOG_INFO,
		[EVENT_LOG_WARN] = LOG_WARNING,
		[EVENT_LOG_ERR] = LOG_ERR,
	};
	int prio = severity >= 0 && severity < (int)nitems(prios)
		       ? prios[severity]
		       : LOG_WARNING;

	if (prio == LOG_DEBUG)
		log_debug("libevent: %s", msg);
	else
		log_rate_log(&log_conf.libevent, prio, "libevent: %s", msg);
}

void
log_libevent_init(void)
{
	event_set_log_callback(log_libevent_cb);
}
