/* sd_notify(3) messages for systemd: READY, RELOADING, STOPPING, STATUS. */
#ifndef NOTIFY_H
#define NOTIFY_H

#include <stdint.h>

void notify_ready(void);
void notify_reloading(void);
void notify_stopping(void);
void notify_watchdog(void);
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The watchdog interval systemd asked for, in ms, or 0. */
int64_t notify_watchdog_ms(void);

#endif
