/* sd_notify(3) for systemd: readiness, reload, stop, watchdog, status. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "notify.h"
#include "util.h"

void
notify_ready(void)
{
	sd_notify(0, "READY=1");
}

/* RELOADING=1 needs MONOTONIC_USEC (systemd 253 Type=notify-reload). */
void
notify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
		   (unsigned long long)ts.tv_sec * 1000000ULL +
		       (unsigned long long)ts.tv_nsec / 1000);
}

void
notify_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}

void
notify_watchdog(void)
{
	sd_notify(0, "WATCHDOG=1");
}

void
notify_status(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) == -1)
		s = NULL;
	va_end(ap);
	if (s == NULL)
		return;
	sd_notifyf(0, "STATUS=%s", s);
	free(s);
}

int64_t
notify_watchdog_ms(void)
{
	uint64_t usec = 0;

	if (sd_watchdog_enabled(0, &usec) <= 0)
		return 0;
	return (int64_t)(usec / 1000);
}
