/* progress: the count, rate and time left of a run's phases. */
#include "progress.h"
#include "tap.h"

int
main(void)
{
	struct progress p = { 0 };
	char buf[192];

	ok(progress_update(&p, "looking up users", 0, 0, 1000),
	   "a first report starts a phase");
	progress_format(&p, 1000, buf, sizeof(buf));
	is_str(buf, "looking up users", "a phase without a count");

	ok(progress_update(&p, "enrolling", 0, 10000, 5000),
	   "a new name starts a new phase");
	ok(!progress_update(&p, "enrolling", 100, 10000, 5500),
	   "the same name goes on with it");
	progress_format(&p, 5500, buf, sizeof(buf));
	is_str(buf, "enrolling 100/10000", "no rate in the first seconds");

	progress_update(&p, "enrolling", 2000, 10000, 25000);
	progress_format(&p, 25000, buf, sizeof(buf));
	is_str(buf, "enrolling 2000/10000, 100/s, about 80 s left",
	       "2000 in 20 s: 100/s, 8000 left in 80 s");
	progress_update(&p, "enrolling", 2500, 100000, 25000);
	progress_format(&p, 25000, buf, sizeof(buf));
	is_str(buf, "enrolling 2500/100000, 125/s, about 13 min left",
	       "minutes past 90 s");
	progress_update(&p, "enrolling", 50, 100000, 25000);
	progress_format(&p, 25000, buf, sizeof(buf));
	is_str(buf, "enrolling 50/100000, 2.5/s, about 11 h 6 min left",
	       "hours, and a slow rate with a decimal");
	progress_update(&p, "enrolling", 100000, 100000, 26000);
	progress_format(&p, 26000, buf, sizeof(buf));
	is_str(buf, "enrolling 100000/100000", "done: no time left shown");

	ok(!progress_due(&p, 14000, 10000), "not due within 10 s of the start");
	ok(progress_due(&p, 15000, 10000), "due 10 s after the start");
	ok(!progress_due(&p, 24999, 10000), "then not before 10 s more");
	ok(progress_due(&p, 25000, 10000), "and again after them");
	return done_testing();
}
