/* The web console's sessions: ids, cookies, CSRF tokens, login slow-down. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "session.h"
#include "util.h"

#define SESSION_COOKIE     "webcoursed"
#define SESSION_COOKIE_TLS "__Host-webcoursed"
#define SESSION_USER_MAX   64

#define SESSION_THROTTLE_MAX    4096 /* addresses remembered */
#define SESSION_THROTTLE_FIRST  1000 /* ms after the first failure */
#define SESSION_THROTTLE_CAP    30000
#define SESSION_THROTTLE_FORGET (15 * 60 * 1000)

struct session {
	char id[SESSION_ID_LEN + 1];
	char csrf[SESSION_ID_LEN + 1];
	char user[SESSION_USER_MAX + 1];
	int64_t used;
};

struct throttle {
	char addr[INET6_ADDRSTRLEN];
	int failures;
	int64_t last, until;
};

struct sessions {
	struct session **v;
	size_t n;
	int64_t idle_ms;
	struct throttle *t;
	size_t nt;
};

struct sessions *
sessions_new(int64_t idle_ms)
{
	struct sessions *ss = xcalloc(1, sizeof(*ss));

	ss->idle_ms = idle_ms;
	ss->v = xreallocarray(NULL, SESSION_MAX, sizeof(*ss->v));
	ss->t = xreallocarray(NULL, SESSION_THROTTLE_MAX, sizeof(*ss->t));
	return ss;
}

static void
session_free(struct session *s)
{
	explicit_bzero(s, sizeof(*s));
	free(s);
}

void
sessions_free(struct sessions *ss)
{
	if (ss == NULL)
		return;
	for (size_t i = 0; i < ss->n; i++)
		session_free(ss->v[i]);
	free(ss->v);
	free(ss->t);
	free(ss);
}

void
sessions_set_idle(struct sessions *ss, int64_t idle_ms)
{
	ss->idle_ms = idle_ms;
}

size_t
sessions_count(const struct sessions *ss)
{
	return ss->n;
}

/* 32 bytes from the kernel's random source, as 64 hex digits. */
static int
session_random(char out[SESSION_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[SESSION_ID_LEN / 2];
	size_t got = 0;
	ssize_t n;

	while (got < sizeof(b)) {
		if ((n = getrandom(b + got, sizeof(b) - got, 0)) == -1)
			return -1;
		got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof(b); i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[SESSION_ID_LEN] = '\0';
	explicit_bzero(b, sizeof(b));
	return 0;
}

/* a == b for two strings of which b has SESSION_ID_LEN characters, in a
 * time that does not depend on where they differ. */
static bool
session_equal(const char *a, const char *b)
{
	volatile unsigned char diff = 0;
	size_t i;

	for (i = 0; i < SESSION_ID_LEN && a[i] != '\0'; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0 && i == SESSION_ID_LEN && a[i] == '\0';
}

static void
sessions_remove_at(struct sessions *ss, size_t i)
{
	session_free(ss->v[i]);
	ss->v[i] = ss->v[--ss->n];
}

/* Drop the sessions idle past the timeout. */
static void
sessions_expire(struct sessions *ss, int64_t now)
{
	for (size_t i = 0; i < ss->n;)
		if (now - ss->v[i]->used >= ss->idle_ms)
			sessions_remove_at(ss, i);
		else
			i++;
}

struct session *
sessions_login(struct sessions *ss, const char *user, int64_t now)
{
	struct session *s = xcalloc(1, sizeof(*s));
	size_t oldest = 0;

	if (session_random(s->id) == -1 || session_random(s->csrf) == -1) {
		session_free(s);
		return NULL;
	}
	snprintf(s->user, sizeof(s->user), "%s", user);
	s->used = now;
	sessions_expire(ss, now);
	if (ss->n == SESSION_MAX) {
		for (size_t i = 1; i < ss->n; i++)
			if (ss->v[i]->used < ss->v[oldest]->used)
				oldest = i;
		sessions_remove_at(ss, oldest);
	}
	ss->v[ss->n++] = s;
	return s;
}

/* The value of cookie name in a Cookie header ("a=1; name=v; b=2"), into
 * buf; -1 when it is not there or too long for an id. */
static int
session_cookie_value(const char *header, const char *name, char *buf,
		     size_t len)
{
	size_t nlen = strlen(name), vlen;
	const char *p = header;

	while (*p != '\0') {
		p += strspn(p, " \t;");
		if (strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
			p += nlen + 1;
			vlen = strcspn(p, "; \t");
			if (vlen >= len)
				return -1;
			memcpy(buf, p, vlen);
			buf[vlen] = '\0';
			return 0;
		}
		p += strcspn(p, ";");
	}
	return -1;
}

struct session *
sessions_find(struct sessions *ss, const char *cookie_header, bool tls,
	      int64_t now)
{
	char id[SESSION_ID_LEN + 2];
	struct session *found = NULL;

	if (cookie_header == NULL ||
	    session_cookie_value(cookie_header,
				 tls ? SESSION_COOKIE_TLS : SESSION_COOKIE, id,
				 sizeof(id)) == -1)
		return NULL;
	sessions_expire(ss, now);
	for (size_t i = 0; i < ss->n; i++)
		if (session_equal(id, ss->v[i]->id))
			found = ss->v[i];
	explicit_bzero(id, sizeof(id));
	if (found != NULL)
		found->used = now;
	return found;
}

void
sessions_logout(struct sessions *ss, struct session *s)
{
	for (size_t i = 0; i < ss->n; i++)
		if (ss->v[i] == s) {
			sessions_remove_at(ss, i);
			return;
		}
}

void
sessions_logout_user(struct sessions *ss, const char *user)
{
	for (size_t i = 0; i < ss->n;)
		if (strcmp(ss->v[i]->user, user) == 0)
			sessions_remove_at(ss, i);
		else
			i++;
}

const char *
session_user(const struct session *s)
{
	return s->user;
}

const char *
session_csrf(const struct session *s)
{
	return s->csrf;
}

bool
session_csrf_ok(const struct session *s, const char *token)
{
	return token != NULL && session_equal(token, s->csrf);
}

void
session_cookie(const struct session *s, bool tls, char *buf, size_t len)
{
	snprintf(buf, len, "%s=%s; HttpOnly; SameSite=Strict; Path=/%s%s",
		 tls ? SESSION_COOKIE_TLS : SESSION_COOKIE,
		 s != NULL ? s->id : "", s == NULL ? "; Max-Age=0" : "",
		 tls ? "; Secure" : "");
}

/* Whether url is SCHEME://HOST followed by nothing (an Origin) or by a
 * path (a Referer), HOST being the request's Host (with its port). */
static bool
session_same_site(const char *url, const char *host, bool tls, bool origin)
{
	size_t hlen = strlen(host);
	const char *rest;

	if (strncasecmp(url, "https://", 8) == 0)
		rest = url + 8;
	else if (!tls && strncasecmp(url, "http://", 7) == 0)
		rest = url + 7;
	else
		return false;
	if (hlen == 0 || strncasecmp(rest, host, hlen) != 0)
		return false;
	rest += hlen;
	return origin ? *rest == '\0' : (*rest == '/' || *rest == '\0');
}

bool
session_origin_ok(const char *origin, const char *referer, const char *host,
		  bool tls)
{
	if (host == NULL || strpbrk(host, "/@ \t") != NULL)
		return false;
	if (origin != NULL)
		return session_same_site(origin, host, tls, true);
	if (referer != NULL)
		return session_same_site(referer, host, tls, false);
	return false;
}

/* addr as the throttle counts it: an IPv6 address by its /64 (one
 * machine easily has a whole /64). */
static void
session_throttle_key(const char *addr, char *key, size_t len)
{
	struct in6_addr a;

	if (strchr(addr, ':') != NULL && inet_pton(AF_INET6, addr, &a) == 1) {
		memset(a.s6_addr + 8, 0, 8);
		if (inet_ntop(AF_INET6, &a, key, (socklen_t)len) != NULL)
			return;
	}
	snprintf(key, len, "%s", addr);
}

/* The entry of addr; create: make one (the stalest goes when full). */
static struct throttle *
sessions_throttle(struct sessions *ss, const char *addr, int64_t now,
		  bool create)
{
	char key[INET6_ADDRSTRLEN];
	size_t i, stalest = 0;

	session_throttle_key(addr, key, sizeof(key));
	for (i = 0; i < ss->nt; i++) {
		if (strcmp(ss->t[i].addr, key) == 0) {
			if (now - ss->t[i].last < SESSION_THROTTLE_FORGET)
				return &ss->t[i];
			ss->t[i] = ss->t[--ss->nt]; /* forgotten */
			break;
		}
		if (ss->t[i].last < ss->t[stalest].last)
			stalest = i;
	}
	if (!create)
		return NULL;
	i = ss->nt < SESSION_THROTTLE_MAX ? ss->nt++ : stalest;
	memset(&ss->t[i], 0, sizeof(ss->t[i]));
	snprintf(ss->t[i].addr, sizeof(ss->t[i].addr), "%s", key);
	return &ss->t[i];
}

int64_t
sessions_login_wait(struct sessions *ss, const char *addr, int64_t now)
{
	struct throttle *t = sessions_throttle(ss, addr, now, false);

	return t != NULL && t->until > now ? t->until - now : 0;
}

int64_t
sessions_login_failed(struct sessions *ss, const char *addr, int64_t now)
{
	struct throttle *t = sessions_throttle(ss, addr, now, true);
	int64_t delay = SESSION_THROTTLE_FIRST;

	t->failures++;
	for (int i = 1; i < t->failures && delay < SESSION_THROTTLE_CAP; i++)
		delay *= 2;
	if (delay > SESSION_THROTTLE_CAP)
		delay = SESSION_THROTTLE_CAP;
	t->last = now;
	t->until = now + delay;
	return delay;
}

void
sessions_login_ok(struct sessions *ss, const char *addr)
{
	char key[INET6_ADDRSTRLEN];

	session_throttle_key(addr, key, sizeof(key));
	for (size_t i = 0; i < ss->nt; i++)
		if (strcmp(ss->t[i].addr, key) == 0) {
			ss->t[i] = ss->t[--ss->nt];
			return;
		}
}
