/* The history: one ledger row per change or decision, with its reason. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "history.h"
#include "ledger.h"
#include "util.h"

#define HISTORY_REASON_MAX 1024

static int
history_vadd(const struct history *h, bool once, const char *action,
	     const char *course, const char *username, int roleid,
	     const char *fmt, va_list ap)
{
	struct ledger_history row = { 0 }, last;
	char reason[HISTORY_REASON_MAX], role[16];
	const char *name = NULL;
	int found, rv;

	vsnprintf(reason, sizeof(reason), fmt, ap);
	if (once) {
		if ((found = ledger_history_last(h->ledger, course, username,
						 &last)) == -1)
			return -1;
		rv = found == 0 && strcmp(last.action, action) == 0 &&
		     strcmp(last.reason, reason) == 0;
		ledger_history_clear(&last);
		if (rv)
			return 0;
	}
	if (roleid > 0 && (h->conf == NULL || (name = config_role_name(
						   h->conf, roleid)) == NULL)) {
		snprintf(role, sizeof(role), "%d", roleid);
		name = role;
	}
	row.run_id = h->run_id;
	row.time = h->now;
	row.action = action;
	row.course = course;
	row.username = username;
	row.role = name;
	row.reason = reason;
	return ledger_history_add(h->ledger, &row);
}

int
history_add(const struct history *h, const char *action, const char *course,
	    const char *username, int roleid, const char *fmt, ...)
{
	va_list ap;
	int rv;

	va_start(ap, fmt);
	rv = history_vadd(h, false, action, course, username, roleid, fmt, ap);
	va_end(ap);
	return rv;
}

int
history_add_once(const struct history *h, const char *action,
		 const char *course, const char *username, int roleid,
		 const char *fmt, ...)
{
	va_list ap;
	int rv;

	va_start(ap, fmt);
	rv = history_vadd(h, true, action, course, username, roleid, fmt, ap);
	va_end(ap);
	return rv;
}

int
history_since(const struct history *h, const char *action, const char *course,
	      const char *username, char *buf, size_t len)
{
	struct ledger_history last;
	int64_t run = h->run_id, t = h->now;
	char date[32];
	int found;

	if ((found = ledger_history_last(h->ledger, course, username, &last)) ==
	    -1)
		return -1;
	if (found == 0 && strcmp(last.action, action) == 0) {
		run = last.run_id;
		t = last.time;
	}
	ledger_history_clear(&last);
	format_time(t, date, sizeof(date));
	date[10] = '\0'; /* the day is enough */
	snprintf(buf, len, "run %lld (%s)", (long long)run, date);
	return 0;
}

int
history_prune(const struct history *h, int days, size_t max)
{
	size_t n;

	if (days <= 0)
		return 0;
	return ledger_history_prune(h->ledger, h->now - (int64_t)days * 86400,
				    max, &n);
}
