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

/* Fill row (reason into buf) for this run. */
static void
history_row(const struct history *h, struct ledger_history *row,
	    const char *action, const char *course, const char *username,
	    int roleid, char *buf, size_t len, char *role, size_t rlen,
	    const char *fmt, va_list ap)
{
	const char *name = NULL;

	vsnprintf(buf, len, fmt, ap);
	if (roleid > 0 && (h->conf == NULL || (name = config_role_name(
						   h->conf, roleid)) == NULL)) {
		snprintf(role, rlen, "%d", roleid);
		name = role;
	}
	*row = (struct ledger_history){ .run_id = h->run_id,
					.time = h->now,
					.action = action,
					.course = course,
					.username = username,
					.role = name,
					.reason = buf };
}

int
history_add(const struct history *h, const char *action, const char *course,
	    const char *username, int roleid, const char *fmt, ...)
{
	struct ledger_history row;
	char reason[HISTORY_REASON_MAX], role[16];
	va_list ap;

	va_start(ap, fmt);
	history_row(h, &row, action, course, username, roleid, reason,
		    sizeof(reason), role, sizeof(role), fmt, ap);
	va_end(ap);
	return ledger_history_add(h->ledger, &row);
}

int
history_decide(const struct history *h, const char *action, const char *course,
	       const char *username, int roleid, const char *fmt, ...)
{
	struct ledger_history row, key;
	char reason[HISTORY_REASON_MAX], role[16];
	bool fresh;
	va_list ap;

	va_start(ap, fmt);
	history_row(h, &row, action, course, username, roleid, reason,
		    sizeof(reason), role, sizeof(role), fmt, ap);
	va_end(ap);
	/* The decisions table keys on "" where the history has NULL. */
	key = row;
	key.course = course != NULL ? course : "";
	key.username = username != NULL ? username : "";
	if (ledger_decision_put(h->ledger, &key, &fresh) == -1)
		return -1;
	return fresh ? ledger_history_add(h->ledger, &row) : 0;
}

int
history_since(const struct history *h, const char *action, const char *course,
	      const char *username, char *buf, size_t len)
{
	int64_t run = h->run_id, t = h->now, r, tt;
	char date[32];
	int found;

	if ((found = ledger_decision_since(h->ledger, course ? course : "",
					   username ? username : "", action, &r,
					   &tt)) == -1)
		return -1;
	if (found == 0) {
		run = r;
		t = tt;
	}
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
