/* Progress of a run's phases: items done, rate and time left. */
#ifndef PROGRESS_H
#define PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct progress {
	char phase[96];
	size_t done, total;
	int64_t start_ms; /* when the phase began */
	int64_t said_ms;  /* when it was last told (progress_due) */
};

/* Take a report ("enrolling", 1200, 11641); a new phase name restarts the
 * clock.  True when the phase is new. */
bool progress_update(struct progress *, const char *phase, size_t done,
		     size_t total, int64_t now_ms);
/* "enrolling 1200/11641, 95/s, about 2 min left" (or just the phase when
 * it has no count, or no rate yet). */
void progress_format(const struct progress *, int64_t now_ms, char *buf,
		     size_t len);
/* True, and the clock reset, when every_ms have passed since the phase
 * was last told. */
bool progress_due(struct progress *, int64_t now_ms, int64_t every_ms);

#endif
