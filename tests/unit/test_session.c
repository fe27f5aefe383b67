/* session: ids, cookies, idle timeout, CSRF, Origin, login slow-down. */
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "tap.h"
#include "util.h"

#define IDLE 60000

static bool
is_hex64(const char *s)
{
	return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* The id in a Set-Cookie value "NAME=ID; ...". */
static void
cookie_id(const struct session *s, char *id)
{
	char buf[SESSION_COOKIE_MAX];

	session_cookie(s, false, buf, sizeof(buf));
	snprintf(id, SESSION_ID_LEN + 1, "%s", strchr(buf, '=') + 1);
}

static void
test_ids_and_cookies(void)
{
	struct sessions *ss = sessions_new(IDLE);
	struct session *a, *b;
	char ida[80], idb[80], buf[SESSION_COOKIE_MAX], want[300], hdr[300];

	a = sessions_login(ss, "alice", 1000);
	b = sessions_login(ss, "alice", 1000);
	ok(a != NULL && b != NULL, "two logins");
	cookie_id(a, ida);
	cookie_id(b, idb);
	ok(is_hex64(ida), "the id is 256 bits in hex: %s", ida);
	ok(is_hex64(session_csrf(a)), "so is the CSRF token");
	ok(strcmp(ida, idb) != 0, "two logins, two ids");
	ok(strcmp(ida, session_csrf(a)) != 0, "the token is not the id");
	ok(strcmp(session_csrf(a), session_csrf(b)) != 0,
	   "each session has its own token");
	is_str(session_user(a), "alice", "the session's user");

	session_cookie(a, false, buf, sizeof(buf));
	snprintf(want, sizeof(want),
		 "webcoursed=%s; HttpOnly; SameSite=Strict; Path=/", ida);
	is_str(buf, want, "cookie without TLS");
	session_cookie(a, true, buf, sizeof(buf));
	snprintf(want, sizeof(want),
		 "__Host-webcoursed=%s; HttpOnly; SameSite=Strict; Path=/; "
		 "Secure",
		 ida);
	is_str(buf, want, "cookie under TLS: Secure, __Host- prefix");
	session_cookie(NULL, false, buf, sizeof(buf));
	is_str(buf, "webcoursed=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
	       "the cookie that logs out");

	snprintf(hdr, sizeof(hdr), "theme=dark; webcoursed=%s; lang=en", ida);
	ok(sessions_find(ss, hdr, false, 2000) == a,
	   "found among other cookies");
	ok(sessions_find(ss, hdr, true, 2000) == NULL,
	   "not under TLS, where the cookie has another name");
	snprintf(hdr, sizeof(hdr), "__Host-webcoursed=%s", ida);
	ok(sessions_find(ss, hdr, true, 2000) == a, "the TLS cookie");
	snprintf(hdr, sizeof(hdr), "xwebcoursed=%s", ida);
	ok(sessions_find(ss, hdr, false, 2000) == NULL,
	   "a cookie whose name ends like ours is not ours");
	snprintf(hdr, sizeof(hdr), "webcoursed=%.63s", ida);
	ok(sessions_find(ss, hdr, false, 2000) == NULL, "a prefix of the id");
	snprintf(hdr, sizeof(hdr), "webcoursed=%s0", ida);
	ok(sessions_find(ss, hdr, false, 2000) == NULL, "the id and more");
	snprintf(hdr, sizeof(hdr), "webcoursed=%s", ida);
	hdr[20] = hdr[20] == 'a' ? 'b' : 'a';
	ok(sessions_find(ss, hdr, false, 2000) == NULL, "one digit off");
	ok(sessions_find(ss, "webcoursed=", false, 2000) == NULL, "empty");
	ok(sessions_find(ss, NULL, false, 2000) == NULL, "no Cookie header");

	ok(session_csrf_ok(a, session_csrf(a)), "the session's token");
	ok(!session_csrf_ok(a, session_csrf(b)), "another session's token");
	ok(!session_csrf_ok(a, NULL) && !session_csrf_ok(a, ""),
	   "no token, empty token");
	snprintf(buf, sizeof(buf), "%.63s", session_csrf(a));
	ok(!session_csrf_ok(a, buf), "a prefix of the token");

	snprintf(hdr, sizeof(hdr), "webcoursed=%s", ida);
	sessions_logout(ss, a);
	ok(sessions_find(ss, hdr, false, 2000) == NULL,
	   "after logout the id is worthless");
	is_int(sessions_count(ss), 1, "one session left");
	sessions_login(ss, "bob", 2000);
	sessions_logout_user(ss, "alice");
	is_int(sessions_count(ss), 1, "alice's sessions ended, bob's kept");
	sessions_free(ss);
}

static void
test_idle(void)
{
	struct sessions *ss = sessions_new(IDLE);
	struct session *s = sessions_login(ss, "alice", 0);
	char id[80], hdr[100];

	cookie_id(s, id);
	snprintf(hdr, sizeof(hdr), "webcoursed=%s", id);
	ok(sessions_find(ss, hdr, false, IDLE - 1) == s,
	   "used just before the timeout");
	ok(sessions_find(ss, hdr, false, 2 * IDLE - 2) == s,
	   "each use starts the idle time again");
	ok(sessions_find(ss, hdr, false, 3 * IDLE - 2) == NULL,
	   "idle for the timeout: logged out");
	is_int(sessions_count(ss), 0, "and forgotten");

	s = sessions_login(ss, "alice", 0);
	cookie_id(s, id);
	snprintf(hdr, sizeof(hdr), "webcoursed=%s", id);
	sessions_set_idle(ss, 10000);
	ok(sessions_find(ss, hdr, false, 10000) == NULL,
	   "a shorter session_idle applies to sessions already open");
	sessions_free(ss);
}

static void
test_cap(void)
{
	struct sessions *ss = sessions_new(IDLE);
	struct session *first = sessions_login(ss, "u", 0);
	char id[80], hdr[100];

	cookie_id(first, id);
	snprintf(hdr, sizeof(hdr), "webcoursed=%s", id);
	for (int i = 1; i <= SESSION_MAX; i++)
		sessions_login(ss, "u", i);
	is_int(sessions_count(ss), SESSION_MAX, "at most %d sessions",
	       SESSION_MAX);
	ok(sessions_find(ss, hdr, false, SESSION_MAX + 1) == NULL,
	   "the least recently used went");
	sessions_free(ss);
}

static void
test_origin(void)
{
	static const struct {
		const char *origin, *referer, *host;
		bool tls, ok;
		const char *what;
	} cases[] = {
		{ "http://127.0.0.1:8089", NULL, "127.0.0.1:8089", false, true,
		  "same origin" },
		{ "HTTP://127.0.0.1:8089", NULL, "127.0.0.1:8089", false, true,
		  "scheme in capitals" },
		{ "https://sync.example.edu", NULL, "sync.example.edu", false,
		  true, "https through a TLS proxy" },
		{ "http://evil.example", NULL, "127.0.0.1:8089", false, false,
		  "another site" },
		{ "http://127.0.0.1:8089.evil.example", NULL, "127.0.0.1:8089",
		  false, false, "our host as a prefix of another" },
		{ "http://127.0.0.1:8088", NULL, "127.0.0.1:8089", false, false,
		  "another port" },
		{ "null", NULL, "127.0.0.1:8089", false, false,
		  "the opaque origin null" },
		{ "null", "http://127.0.0.1:8089/", "127.0.0.1:8089", false,
		  false, "Origin wins over a good Referer" },
		{ "http://sync.example.edu", NULL, "sync.example.edu", true,
		  false, "http under TLS" },
		{ "https://sync.example.edu", NULL, "sync.example.edu", true,
		  true, "https under TLS" },
		{ NULL, "http://127.0.0.1:8089/approvals?x=1", "127.0.0.1:8089",
		  false, true, "no Origin: our Referer" },
		{ NULL, "http://127.0.0.1:8089", "127.0.0.1:8089", false, true,
		  "no Origin: our Referer without a path" },
		{ NULL, "http://127.0.0.1:8089@evil.example/", "127.0.0.1:8089",
		  false, false, "a Referer with our host as user info" },
		{ NULL, "http://evil.example/?http://127.0.0.1:8089/",
		  "127.0.0.1:8089", false, false, "another site's Referer" },
		{ NULL, NULL, "127.0.0.1:8089", false, false,
		  "neither header" },
		{ "http://127.0.0.1:8089", NULL, NULL, false, false,
		  "no Host" },
		{ "http://", NULL, "", false, false, "an empty Host" },
	};

	for (size_t i = 0; i < nitems(cases); i++)
		is_int(session_origin_ok(cases[i].origin, cases[i].referer,
					 cases[i].host, cases[i].tls),
		       cases[i].ok, "origin: %s %s", cases[i].what,
		       cases[i].ok ? "passes" : "is refused");
}

static void
test_throttle(void)
{
	struct sessions *ss = sessions_new(IDLE);
	static const int64_t delays[] = { 1000,  2000,  4000, 8000,
					  16000, 30000, 30000 };
	int64_t now = 5000;

	is_int(sessions_login_wait(ss, "192.0.2.1", now), 0,
	       "a new address may try at once");
	for (size_t i = 0; i < nitems(delays); i++) {
		is_int(sessions_login_failed(ss, "192.0.2.1", now), delays[i],
		       "failure %zu: held back %lld ms", i + 1,
		       (long long)delays[i]);
		is_int(sessions_login_wait(ss, "192.0.2.1", now + 1),
		       delays[i] - 1, "and the address waits as long");
		now += delays[i];
	}
	is_int(sessions_login_wait(ss, "192.0.2.1", now), 0,
	       "after the wait it may try again");
	is_int(sessions_login_wait(ss, "192.0.2.2", now - 1), 0,
	       "another address does not wait");

	sessions_login_failed(ss, "2001:db8:1:2::1", now);
	ok(sessions_login_wait(ss, "2001:db8:1:2:ffff::9", now) > 0,
	   "an IPv6 address waits with its /64");
	is_int(sessions_login_wait(ss, "2001:db8:1:3::1", now), 0,
	       "another /64 does not");

	sessions_login_ok(ss, "192.0.2.1");
	is_int(sessions_login_failed(ss, "192.0.2.1", now), 1000,
	       "a success starts the count again");
	now += 15 * 60 * 1000;
	is_int(sessions_login_failed(ss, "192.0.2.1", now), 1000,
	       "and so do 15 quiet minutes");
	for (int i = 0; i < 5000; i++) {
		char addr[32];

		snprintf(addr, sizeof(addr), "10.0.%d.%d", i / 256, i % 256);
		sessions_login_failed(ss, addr, now + 1);
	}
	ok(sessions_login_wait(ss, "10.0.19.135", now + 2) > 0,
	   "a full table still counts the newest address");
	sessions_free(ss);
}

int
main(void)
{
	test_ids_and_cookies();
	test_idle();
	test_cap();
	test_origin();
	test_throttle();
	return done_testing();
}
