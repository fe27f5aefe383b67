/* Logging, OpenBSD style: journal with structured fields or stderr. */
#ifndef LOG_H
#define LOG_H

#include <stdarg.h>
#include <syslog.h>

/* Set up logging.  to_stderr forces stderr; otherwise the journal is used
 * when the process was started by systemd (JOURNAL_STREAM/INVOCATION_ID).
 * level is a syslog priority (LOG_INFO by default, LOG_DEBUG with -v). */
void log_init(const char *procname, int to_stderr, int level);
void log_setlevel(int level);

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

#endif
