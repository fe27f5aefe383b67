/* The web console: routes, logins, CSRF and Origin checks, actions. */
#ifndef CONSOLE_H
#define CONSOLE_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct event_base;
struct ledger;
struct console;

/* What the console asks of the daemon that serves it. */
struct console_hooks {
	/* Start a sync now (or right after the one running), with the
	 * removals the guard withheld when allow_removals; who asked, for
	 * the log and the history ("alice (web)"). */
	void (*sync_now)(void *arg, bool allow_removals, const char *who);
	/* Whether a sync runs now; its progress line into buf. */
	bool (*syncing)(void *arg, char *buf, size_t len);
	void *arg;
};

struct console *console_new(struct event_base *, const struct console_hooks *);
void console_free(struct console *);

/* Serve what conf's [web] says (also after a reload): listen or stop
 * listening, TLS, the users file, the idle timeout.  The ledger is the
 * daemon's.  -1 with *cause when the address cannot be served (the old
 * one, if any, is kept); the daemon logs it and goes on syncing. */
int console_configure(struct console *, const struct config *, struct ledger *,
		      char **cause);
/* The address served, or NULL; its port (tests use port 0). */
const char *console_address(const struct console *);
int console_port(const struct console *);

#endif
