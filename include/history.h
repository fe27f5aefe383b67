/* The history: every change made in Moodle, and every decision not to,
 * one ledger row each, with the reason in words a registrar understands. */
#ifndef HISTORY_H
#define HISTORY_H

#include <stdint.h>

struct config;
struct ledger;

/* Who writes: the run and its time. */
struct history {
	struct ledger *ledger;
	const struct config *conf; /* role names */
	int64_t run_id, now;
};

/* One row; reason is a printf format.  Call it inside the transaction of
 * the change it describes.  roleid 0: no role. */
int history_add(const struct history *, const char *action, const char *course,
		const char *username, int roleid, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* A decision not to change something (withhold, skip, error): a row when
 * it is made, not again on every run that finds it in force (the ledger's
 * decisions).  The run's unmark and sweep end the ones no longer made. */
int history_decide(const struct history *, const char *action,
		   const char *course, const char *username, int roleid,
		   const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* "run 41 (2026-11-02)": when the decision `action` about (course,
 * username) in force was first made, else this run; into buf. */
int history_since(const struct history *, const char *action,
		  const char *course, const char *username, char *buf,
		  size_t len);
/* Drop rows older than days (0: keep them all), at most max a call. */
int history_prune(const struct history *, int days, size_t max);

#endif
