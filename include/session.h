/* The web console's sessions: ids, cookies, CSRF tokens, login slow-down. */
#ifndef SESSION_H
#define SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SESSION_ID_LEN     64   /* hex of 32 random bytes: 256 bits */
#define SESSION_MAX        1000 /* live sessions; the least recent goes */
#define SESSION_COOKIE_MAX 192  /* a Set-Cookie value fits */

/* The live sessions of one console, and the failed logins per address.
 * Times are a monotonic clock in milliseconds, passed in. */
struct sessions;
struct session;

struct sessions *sessions_new(int64_t idle_ms);
void sessions_free(struct sessions *);
/* A reload's new web.session_idle, for the sessions there are too. */
void sessions_set_idle(struct sessions *, int64_t idle_ms);
size_t sessions_count(const struct sessions *);

/* A new session for user with a new random id and CSRF token (a login
 * never keeps the id the browser came with: no session fixation).  NULL
 * when the kernel gives no randomness. */
struct session *sessions_login(struct sessions *, const char *user,
			       int64_t now);
/* The session a request's Cookie header names, used now (the idle time
 * starts again), or NULL: none, unknown, or idle past the timeout (then
 * it is gone).  tls: the cookie's name differs under TLS. */
struct session *sessions_find(struct sessions *, const char *cookie_header,
			      bool tls, int64_t now);
/* End s (logout); s is freed. */
void sessions_logout(struct sessions *, struct session *s);
/* End every session of user (removed from the users file). */
void sessions_logout_user(struct sessions *, const char *user);

const char *session_user(const struct session *);
const char *session_csrf(const struct session *);
/* Whether token is the session's CSRF token, in constant time. */
bool session_csrf_ok(const struct session *, const char *token);

/* The Set-Cookie value for s: "NAME=ID; HttpOnly; SameSite=Strict;
 * Path=/", plus "; Secure" under TLS (where NAME has the __Host- prefix,
 * which browsers accept only from a secure origin, for path / and no
 * domain).  s NULL: the value that deletes the cookie. */
void session_cookie(const struct session *s, bool tls, char *buf, size_t len);

/* Whether a state-changing request comes from the console's own pages:
 * its Origin header (else its Referer) names the scheme and the Host the
 * request was sent to.  Without TLS both http and https are taken (a TLS
 * proxy in front), under TLS only https.  Neither header: refused, as is
 * the Origin "null". */
bool session_origin_ok(const char *origin, const char *referer,
		       const char *host, bool tls);

/* Failed logins, per client address (an IPv6 address by its /64).
 * sessions_login_wait: ms before addr may try again (0: now).
 * sessions_login_failed: count a failure; returns how long its answer is
 * held back and the address waits: 1 s, doubled per failure in a row up
 * to 30 s; forgotten 15 minutes after the last failure.
 * sessions_login_ok: a success forgets the address. */
int64_t sessions_login_wait(struct sessions *, const char *addr, int64_t now);
int64_t sessions_login_failed(struct sessions *, const char *addr, int64_t now);
void sessions_login_ok(struct sessions *, const char *addr);

#endif
