/* What webcoursed tells people: the missing-users CSV, status, errors. */
#ifndef REPORT_H
#define REPORT_H

#include <stdbool.h>
#include <stdio.h>

struct config;
struct ledger;

/* Write the missing-users CSV (RFC 4180, formula cells neutralised). */
int report_missing_csv(const struct config *, struct ledger *, FILE *);
/* Rewrite state.missing_users_csv atomically. */
int report_write_missing_csv(const struct config *, struct ledger *,
			     char **cause);
int report_missing_json(const struct config *, struct ledger *, FILE *);

int report_status(const struct config *, struct ledger *, FILE *, bool json);
/* What report_status prints, as a new JSON object (NULL on a ledger
 * failure): {runs: [{id, started, ended, outcome, message, counts}],
 * courses, enrolments, missing_users, removals_withheld,
 * awaiting_approval: [{shortname, fullname, participants, approved}],
 * next_run, drift: {total, kinds, oldest_check}}; times are ISO 8601 UTC. */
struct json_t;
struct json_t *report_status_get(struct ledger *);
int report_errors(struct ledger *, FILE *, bool json);
/* What is out of step between the ledger and Moodle, since when, and
 * what the policy does about it. */
int report_drift(const struct config *, struct ledger *, FILE *, bool json);
/* The history rows the filter lets through, newest first: one line each,
 * or every field as JSON. */
struct ledger_history_filter;
int report_history(struct ledger *, const struct ledger_history_filter *,
		   FILE *, bool json);

/* One CSV cell, quoted as RFC 4180 needs and neutralised against formula
 * injection (=, +, -, @, tab, CR at the start). */
void report_csv_cell(FILE *, const char *);

#endif
