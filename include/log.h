/* Logging, OpenBSD style: journal with structured fields or stderr. */
#ifndef LOG_H
#define LOG_H

#include <stdarg.h>
#include <stdint.h>
#include <syslog.h>

/* Set up logging.  to_stderr forces stderr; otherwise the journal is used
 * when the process was started by systemd (JOURNAL_STREAM/INVOCATION_ID).
 * level is a syslog priority (LOG_INFO by default, LOG_DEBUG with -v). */
void log_init(const char *procname, int to_stderr, int level);
void log_setlevel(int level);

/* A sync process logs through its parent: the journal files a record under
 * the unit (_SYSTEMD_UNIT) only if it can still look its sender up when it
 * reads the record, and a sync process may have exited by then.  In the
 * child, log_relay_to(fd) sends each journal record as one datagram to fd
 * (a SOCK_SEQPACKET socket; a record that cannot be sent goes to the
 * journal directly).  In the parent, log_relay_read(fd) writes the records
 * waiting on fd to the journal: 0 when none is left, -1 once the child has
 * closed its end. */
void log_relay_to(int fd);
int log_relay_read(int fd);

void log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void fatal(const char *, ...)
    __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void fatalx(const char *, ...)
    __attribute__((format(printf, 1, 2)));

/* A log line with extra journal fields: fields is a NULL-terminated array of
 * "KEY=value" strings (e.g. "MOODLE_ERRORCODE=wsnoinstance").  On stderr the
 * fields are not printed. */
void log_fields(int prio, const char *const *fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void vlog_fields(int prio, const char *const *fields, const char *fmt,
		 va_list ap);

/* A budget of lines for something an outsider can make happen at will
 * (accept errors, libevent's complaints): at most n lines per period;
 * the lines held back are counted and told with the next line let
 * through. */
struct log_rate {
	int n;
	int64_t period_ms;
	int64_t start_ms;
	int used;
	uint64_t held;
};
#define LOG_RATE_INIT(lines, ms)                                               \
	{                                                                      \
		.n = (lines), .period_ms = (ms)                                \
	}
void log_rate_warnx(struct log_rate *, const char *, ...)
    __attribute__((format(printf, 2, 3)));

/* libevent's own messages go through us, warnings at most
 * LOG_LIBEVENT_LINES a minute (it logs a failed accept() each time it
 * fails, which under an fd exhaustion is as often as the loop turns). */
#define LOG_LIBEVENT_LINES 5
void log_libevent_init(void);

#endif
