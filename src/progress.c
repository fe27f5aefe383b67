/* Progress of a run's phases: items done, the rate, the time left. */
#include <stdio.h>
#include <string.h>

#include "progress.h"

/* Rates are shown once a phase has run this long (earlier ones jump). */
#define PROGRESS_SETTLE_MS 2000

bool
progress_update(struct progress *p, const char *phase, size_t done,
		size_t total, int64_t now_ms)
{
	bool fresh = strcmp(p->phase, phase) != 0;

	if (fresh) {
		snprintf(p->phase, sizeof(p->phase), "%s", phase);
		p->start_ms = p->said_ms = now_ms;
	}
	p->done = done;
	p->total = total;
	return fresh;
}

/* "45 s", "2 min", "1 h 5 min". */
static void
progress_duration(int64_t s, char *buf, size_t len)
{
	if (s < 90)
		snprintf(buf, len, "%lld s", (long long)s);
	else if (s < 90 * 60)
		snprintf(buf, len, "%lld min", (long long)(s + 30) / 60);
	else
		snprintf(buf, len, "%lld h %lld min", (long long)s / 3600,
			 (long long)(s % 3600 + 30) / 60);
}

void
progress_format(const struct progress *p, int64_t now_ms, char *buf, size_t len)
{
	int64_t ms = now_ms - p->start_ms;
	double rate;
	char left[32];

	if (p->total == 0) {
		snprintf(buf, len, "%s", p->phase);
		return;
	}
	if (ms < PROGRESS_SETTLE_MS || p->done == 0 || p->done >= p->total) {
		snprintf(buf, len, "%s %zu/%zu", p->phase, p->done, p->total);
		return;
	}
	rate = (double)p->done * 1000 / (double)ms;
	progress_duration((int64_t)((double)(p->total - p->done) / rate + 0.5),
			  left, sizeof(left));
	snprintf(buf, len, "%s %zu/%zu, %.*f/s, about %s left", p->phase,
		 p->done, p->total, rate < 10 ? 1 : 0, rate, left);
}

bool
progress_due(struct progress *p, int64_t now_ms, int64_t every_ms)
{
	if (now_ms - p->said_ms < every_ms)
		return false;
	p->said_ms = now_ms;
	return true;
}
