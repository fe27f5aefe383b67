/* approval: approve and reject held courses, with who did it in the
 * history, for webcoursectl and the console alike. */
#include <stdlib.h>
#include <string.h>

#include "approval.h"
#include "config.h"
#include "ledger.h"
#include "tap.h"

static void
put_course(struct ledger *l, const char *shortname, int status)
{
	struct ledger_course c = { .shortname = (char *)shortname,
				   .fullname = (char *)"A course",
				   .status = status,
				   .moodle_id =
				       status == LEDGER_COURSE_ACTIVE ? 7 : 0,
				   .visible = -1 };

	ledger_begin(l);
	ledger_course_put(l, &c);
	ledger_commit(l);
}

static int
status_of(struct ledger *l, const char *shortname)
{
	struct ledger_course c = { 0 };
	int status = -1;

	if (ledger_course_get(l, shortname, &c) == 0)
		status = c.status;
	ledger_course_clear(&c);
	return status;
}

struct rows {
	char reasons[8][200];
	int n;
};

static int
history_cb(const struct ledger_history *h, void *arg)
{
	struct rows *r = arg;

	if (r->n < 8)
		snprintf(r->reasons[r->n++], sizeof(r->reasons[0]), "%s %s %s",
			 h->action, h->course, h->reason);
	return 0;
}

int
main(void)
{
	struct config conf = { 0 };
	struct approval_result res;
	struct ledger *l = NULL;
	struct rows rows = { .n = 0 };
	char *cause = NULL;
	const char *names[] = { "HELD1", "LIVE", "NOSUCH" };

	if (ledger_open(":memory:", false, &l, &cause) == -1) {
		printf("Bail out! %s\n", cause);
		return 1;
	}
	put_course(l, "HELD1", LEDGER_COURSE_PENDING);
	put_course(l, "HELD2", LEDGER_COURSE_PENDING);
	put_course(l, "HELD3", LEDGER_COURSE_PENDING);
	put_course(l, "LIVE", LEDGER_COURSE_ACTIVE);

	ok(approval_decide(&conf, l, names, 3, false, true, "alice (web)",
			   &res) == 0,
	   "approve three names");
	ok(res.ndone == 1 && strcmp(res.done[0], "HELD1") == 0,
	   "the held one is approved");
	ok(res.nrefused == 2 && strcmp(res.refused[0], "LIVE") == 0 &&
	       strcmp(res.refused[1], "NOSUCH") == 0,
	   "a live course and an unknown name are refused");
	approval_result_clear(&res);
	is_int(status_of(l, "HELD1"), LEDGER_COURSE_APPROVED, "HELD1 approved");
	is_int(status_of(l, "LIVE"), LEDGER_COURSE_ACTIVE, "LIVE untouched");

	ok(approval_decide(&conf, l, NULL, 0, true, false, "bob (web)", &res) ==
	       0,
	   "reject all");
	is_int(res.ndone, 2, "every course still held: two");
	approval_result_clear(&res);
	is_int(status_of(l, "HELD2"), LEDGER_COURSE_REJECTED, "HELD2 rejected");
	is_int(status_of(l, "HELD3"), LEDGER_COURSE_REJECTED, "HELD3 rejected");
	is_int(status_of(l, "HELD1"), LEDGER_COURSE_APPROVED,
	       "all means held, not approved already");

	ledger_history_foreach(l, &(struct ledger_history_filter){ 0 },
			       history_cb, &rows);
	is_int(rows.n, 3, "one history row per decision");
	ok(rows.n == 3 &&
	       strcmp(rows.reasons[2], "approve HELD1 approved by alice (web); "
				       "the next run creates it") == 0,
	   "the row says who approved, from where");
	ok(rows.n == 3 &&
	       strstr(rows.reasons[0],
		      "rejected by bob (web); never created") != NULL,
	   "and who rejected");
	ledger_free(l);
	return done_testing();
}
