/* Unit tests for httpd.c: routes and headers, the connection cap and the
 * share of one address, whole-request and answer deadlines, accept paused
 * on EMFILE, sockets closed in a forked child, and the rate-limited log
 * (ours and libevent's). */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>

#include "httpd.h"
#include "log.h"
#include "tap.h"
#include "util.h"

static struct event_base *base;

/* A test client: a socket and what it has read. */
struct client {
	int fd;
	char buf[65536];
	size_t len;
	bool eof; /* the server closed it */
};

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Run the loop until cond(arg) holds or ms pass; whether it held. */
static bool
run_until(bool (*cond)(void *), void *arg, int64_t ms)
{
	int64_t end = now_monotonic_ms() + ms;
	struct event *tick = evtimer_new(base, tick_cb, NULL);
	struct timeval tv = { 0, 10000 };
	bool held;

	while (!(held = cond(arg)) && now_monotonic_ms() < end) {
		evtimer_add(tick, &tv);
		event_base_loop(base, EVLOOP_ONCE);
	}
	event_free(tick);
	return held;
}

static bool
never(void *arg)
{
	(void)arg;
	return false;
}

/* Read what the client can read now. */
static void
client_poll(struct client *c)
{
	ssize_t n;

	while (!c->eof && c->len < sizeof(c->buf) - 1) {
		n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len,
			 MSG_DONTWAIT);
		if (n > 0) {
			c->len += (size_t)n;
			c->buf[c->len] = '\0';
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR))
			c->eof = true;
		else
			break;
	}
}

static bool
client_closed(void *arg)
{
	struct client *c = arg;

	client_poll(c);
	return c->eof;
}

static bool
client_answered(void *arg)
{
	struct client *c = arg;

	client_poll(c);
	return strstr(c->buf, "\r\n\r\n") != NULL;
}

/* A client connected from address src ("127.0.0.1", "127.0.0.2"…). */
static struct client *
client_new(int port, const char *src)
{
	struct client *c = xcalloc(1, sizeof(*c));
	struct sockaddr_in sin = { .sin_family = AF_INET };

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, src, &sin.sin_addr);
	if (bind(c->fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		printf("# bind %s: %s\n", src, strerror(errno));
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	sin.sin_port = htons((uint16_t)port);
	if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		printf("# connect: %s\n", strerror(errno));
	return c;
}

static void
client_send(struct client *c, const char *s)
{
	if (send(c->fd, s, strlen(s), MSG_NOSIGNAL) == -1)
		c->eof = true;
}

static void
client_free(struct client *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	free(c);
}

static void
hello_cb(struct evhttp_request *req, void *arg)
{
	(void)arg;
	httpd_reply(req, 200, "text/plain", "hello\n", 6);
}

/* An answer larger than any socket buffer, for a client that never
 * reads it. */
static void
big_cb(struct evhttp_request *req, void *arg)
{
	size_t len = 8 << 20;
	char *body = xcalloc(1, len);

	(void)arg;
	httpd_reply(req, 200, "application/octet-stream", body, len);
	free(body);
}

/* Requests kept unanswered (a handler that answers later). */
static struct evhttp_request *held[4];
static size_t nheld;

static void
hold_cb(struct evhttp_request *req, void *arg)
{
	(void)arg;
	held[nheld++] = req;
}

static struct httpd *
server(const struct httpd_limits *l)
{
	struct httpd_options o = { .name = "test", .limits = *l };
	struct httpd *h = httpd_new(base, &o);
	char *cause = NULL;

	httpd_route(h, "/hello", HTTPD_GET | HTTPD_HEAD, hello_cb, NULL);
	httpd_route(h, "/big", HTTPD_GET, big_cb, NULL);
	httpd_route(h, "/hold", HTTPD_GET, hold_cb, NULL);
	if (httpd_listen(h, "127.0.0.1:0", &cause) == -1)
		printf("# %s\n", cause);
	return h;
}

static struct httpd_stats
stats(struct httpd *h)
{
	struct httpd_stats st;

	httpd_stats(h, &st);
	return st;
}

static void
test_routes(void)
{
	struct httpd *h = server(&(struct httpd_limits){ 0 });
	struct client *c;

	c = client_new(httpd_port(h), "127.0.0.1");
	client_send(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	ok(run_until(client_answered, c, 5000), "GET /hello is answered");
	ok(strncmp(c->buf, "HTTP/1.1 200", 12) == 0, "200");
	ok(strstr(c->buf, "Content-Security-Policy: default-src 'none'; "
			  "frame-ancestors 'none'\r\n") != NULL,
	   "the default CSP");
	ok(strstr(c->buf, "X-Content-Type-Options: nosniff\r\n") != NULL &&
	       strstr(c->buf, "Referrer-Policy: same-origin\r\n") != NULL &&
	       strstr(c->buf, "X-Frame-Options: DENY\r\n") != NULL,
	   "nosniff, Referrer-Policy and X-Frame-Options");
	client_free(c);

	c = client_new(httpd_port(h), "127.0.0.1");
	client_send(c, "POST /hello HTTP/1.1\r\nHost: x\r\n"
		       "Content-Length: 0\r\n\r\n");
	ok(run_until(client_answered, c, 5000), "POST /hello is answered");
	ok(strncmp(c->buf, "HTTP/1.1 405", 12) == 0 &&
	       strstr(c->buf, "Allow: GET, HEAD\r\n") != NULL &&
	       strstr(c->buf, "X-Content-Type-Options: nosniff\r\n") != NULL,
	   "405 with Allow and the security headers");
	client_free(c);

	c = client_new(httpd_port(h), "127.0.0.1");
	client_send(c, "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n");
	ok(run_until(client_answered, c, 5000) &&
	       strncmp(c->buf, "HTTP/1.1 404", 12) == 0,
	   "an unknown path is 404");
	client_free(c);
	httpd_free(h);
}

static bool
connections_at_most(void *arg)
{
	void **a = arg;

	return stats(a[0]).connections <= (size_t)(uintptr_t)a[1];
}

static bool
connected(void *arg)
{
	return stats(arg).connections > 0;
}

/* At the cap, the connection waiting longest goes; the newest is served. */
static void
test_cap(void)
{
	struct httpd *h = server(&(struct httpd_limits){
	    .max_connections = 4, .max_per_address = 100 });
	struct client *c[6], *last;
	void *arg[2] = { h, (void *)4 };

	for (size_t i = 0; i < nitems(c); i++) {
		c[i] = client_new(httpd_port(h), "127.0.0.1");
		/* accepted one at a time, in order */
		run_until(never, NULL, 30);
	}
	ok(run_until(connections_at_most, arg, 5000),
	   "6 idle clients: 4 connections held (the cap)");
	is_int(stats(h).evicted, 2, "2 evicted");
	ok(run_until(client_closed, c[0], 2000) &&
	       run_until(client_closed, c[1], 2000),
	   "the 2 oldest were closed");
	client_poll(c[5]);
	ok(!c[5]->eof, "the newest is open");
	last = client_new(httpd_port(h), "127.0.0.1");
	client_send(last, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	ok(run_until(client_answered, last, 5000) &&
	       strncmp(last->buf, "HTTP/1.1 200", 12) == 0,
	   "a client coming at the cap is answered");
	ok(stats(h).connections <= 4, "never more than the cap (%zu)",
	   stats(h).connections);
	for (size_t i = 0; i < nitems(c); i++)
		client_free(c[i]);
	client_free(last);
	httpd_free(h);
}

/* At the cap, the heaviest address gives way, even when a lighter one
 * has waited longer. */
static void
test_cap_heaviest(void)
{
	struct httpd *h = server(&(struct httpd_limits){
	    .max_connections = 4, .max_per_address = 100 });
	struct client *light, *heavy[5];

	light = client_new(httpd_port(h), "127.0.0.3");
	run_until(never, NULL, 30);
	for (size_t i = 0; i < nitems(heavy); i++) {
		heavy[i] = client_new(httpd_port(h), "127.0.0.2");
		run_until(never, NULL, 30);
	}
	is_int(stats(h).evicted, 2, "6 clients, cap 4: 2 evicted");
	client_poll(light);
	ok(!light->eof, "the oldest, alone on its address, stays");
	ok(run_until(client_closed, heavy[0], 2000) &&
	       run_until(client_closed, heavy[1], 2000),
	   "the heavy address's 2 oldest went");
	client_free(light);
	for (size_t i = 0; i < nitems(heavy); i++)
		client_free(heavy[i]);
	httpd_free(h);
}

static bool
two_held(void *arg)
{
	(void)arg;
	return nheld == 2;
}

/* At the cap with every connection being answered, the newcomer goes. */
static void
test_cap_all_answering(void)
{
	struct httpd *h = server(&(struct httpd_limits){
	    .max_connections = 2, .max_per_address = 100 });
	struct client *a = client_new(httpd_port(h), "127.0.0.1");
	struct client *b = client_new(httpd_port(h), "127.0.0.1");
	struct client *late;

	client_send(a, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
	client_send(b, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
	ok(run_until(two_held, NULL, 5000), "2 requests held by the handler");
	late = client_new(httpd_port(h), "127.0.0.1");
	ok(run_until(client_closed, late, 5000),
	   "a third connection is closed: no room, none to evict");
	is_int(stats(h).connections, 2, "the 2 being answered stay");
	for (size_t i = 0; i < nheld; i++)
		httpd_reply_text(held[i], 200, "late");
	nheld = 0;
	ok(run_until(client_answered, a, 5000) &&
	       run_until(client_answered, b, 5000),
	   "and get their answers");
	client_free(a);
	client_free(b);
	client_free(late);
	httpd_free(h);
}

/* One address cannot fill the server: another still gets in. */
static void
test_per_address(void)
{
	struct httpd *h = server(&(struct httpd_limits){
	    .max_connections = 16, .max_per_address = 2 });
	struct client *c[5], *other;

	for (size_t i = 0; i < nitems(c); i++)
		c[i] = client_new(httpd_port(h), "127.0.0.2");
	run_until(never, NULL, 100);
	is_int(stats(h).connections, 2, "5 clients of one address: 2 held");
	is_int(stats(h).evicted, 3, "3 evicted");
	other = client_new(httpd_port(h), "127.0.0.3");
	client_send(other, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	ok(run_until(client_answered, other, 5000) &&
	       strncmp(other->buf, "HTTP/1.1 200", 12) == 0,
	   "another address is answered");
	for (size_t i = 0; i < nitems(c); i++)
		client_free(c[i]);
	client_free(other);
	httpd_free(h);
}

/* A byte every 50 ms keeps evhttp's per-byte timeout (300 ms) from ever
 * firing; the whole-request deadline (300 ms) ends the request. */
static void
test_request_deadline(void)
{
	struct httpd *h = server(
	    &(struct httpd_limits){ .request_ms = 300, .answer_ms = 300 });
	const char *req = "GET /hello HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa"
			  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
	struct client *c = client_new(httpd_port(h), "127.0.0.1");
	size_t sent = 0;
	char one[2] = "";

	while (req[sent] != '\0' && !client_closed(c)) {
		one[0] = req[sent++];
		client_send(c, one);
		run_until(client_closed, c, 50);
	}
	ok(c->eof && c->len == 0,
	   "a client trickling a byte every 50 ms is cut without an answer");
	ok(req[sent] != '\0', "before its request was whole (%zu of %zu bytes)",
	   sent, strlen(req));
	is_int(stats(h).expired, 1, "counted as a deadline");
	ok(run_until(connections_at_most, (void *[]){ h, (void *)0 }, 2000),
	   "and the connection is gone");
	client_free(c);
	httpd_free(h);
}

/* A client that never reads its answer is cut at answer_ms. */
static void
test_answer_deadline(void)
{
	struct httpd *h = server(
	    &(struct httpd_limits){ .request_ms = 5000, .answer_ms = 300 });
	struct client *c = client_new(httpd_port(h), "127.0.0.1");
	int small = 4096;

	setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	client_send(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
	ok(run_until(connected, h, 5000), "the client is connected");
	ok(run_until(connections_at_most, (void *[]){ h, (void *)0 }, 5000),
	   "a client that does not read its 8 MB answer is cut");
	is_int(stats(h).expired, 1, "counted as a deadline");
	client_free(c);
	httpd_free(h);
}

static bool
paused(void *arg)
{
	return stats(arg).accept_paused > 0;
}

/* Out of descriptors: accepting pauses (not a hot loop) and resumes. */
static void
test_emfile(void)
{
	struct httpd *h = server(&(struct httpd_limits){ 0 });
	struct rlimit old, rl;
	int *busy, nbusy = 0;
	struct client *c, *again;

	/* every descriptor taken once the client has its socket: the
	 * server's accept fails */
	getrlimit(RLIMIT_NOFILE, &old);
	rl = old;
	if (rl.rlim_cur > 4096)
		rl.rlim_cur = 4096;
	setrlimit(RLIMIT_NOFILE, &rl);
	busy = xcalloc(rl.rlim_cur, sizeof(*busy));
	c = client_new(httpd_port(h), "127.0.0.1");
	client_send(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	while ((busy[nbusy] = dup(0)) != -1)
		nbusy++;
	ok(run_until(paused, h, 3000), "accept() failing with EMFILE pauses");
	run_until(never, NULL, 300);
	is_int(stats(h).accept_paused, 1,
	       "and only once in 300 ms (the listener is not polled)");
	while (nbusy > 0)
		close(busy[--nbusy]);
	free(busy);
	setrlimit(RLIMIT_NOFILE, &old);
	/* A new client: under valgrind, whose accept() closes a descriptor
	 * past its limit, the first one was reset. */
	again = client_new(httpd_port(h), "127.0.0.1");
	client_send(again, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	ok(run_until(client_answered, again, 5000) &&
	       strncmp(again->buf, "HTTP/1.1 200", 12) == 0,
	   "with descriptors again, accepting resumes and a client is "
	   "answered");
	client_free(c);
	client_free(again);
	httpd_free(h);
}

/* A forked child closes the listener and every client socket; the parent
 * goes on serving them. */
static void
test_child(void)
{
	struct httpd *h = server(&(struct httpd_limits){ 0 });
	struct client *c = client_new(httpd_port(h), "127.0.0.1");
	int status, open_in_child = -1, p[2];
	pid_t pid;

	run_until(never, NULL, 50);
	is_int(stats(h).connections, 1, "a client connected");
	if (pipe(p) == -1)
		return;
	if ((pid = fork()) == 0) {
		int n = 0;

		httpd_close_all_in_child();
		/* every socket left open in the child, ours aside */
		for (int fd = 3; fd < 1024; fd++) {
			struct sockaddr_storage ss;
			socklen_t len = sizeof(ss);

			if (fd != c->fd && fd != p[1] &&
			    getsockname(fd, (struct sockaddr *)&ss, &len) ==
				0 &&
			    ss.ss_family == AF_INET)
				n++;
		}
		/* through a pipe: valgrind makes the exit status its own */
		(void)!write(p[1], &n, sizeof(n));
		_exit(0);
	}
	close(p[1]);
	if (read(p[0], &open_in_child, sizeof(open_in_child)) !=
	    sizeof(open_in_child))
		open_in_child = -1;
	close(p[0]);
	waitpid(pid, &status, 0);
	is_int(open_in_child, 0,
	       "the child has none of the server's TCP sockets");
	client_send(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	ok(run_until(client_answered, c, 5000) &&
	       strncmp(c->buf, "HTTP/1.1 200", 12) == 0,
	   "the parent still answers on the connection");
	client_free(c);
	httpd_free(h);
}

/* Lines in f since offset *off. */
static int
lines_since(FILE *f, long *off)
{
	int n = 0, ch;

	fflush(stderr);
	fseek(f, *off, SEEK_SET);
	while ((ch = fgetc(f)) != EOF)
		n += ch == '\n';
	*off = ftell(f);
	return n;
}

static void
test_log_rate(void)
{
	struct log_rate r = LOG_RATE_INIT(5, 100);
	FILE *f = tmpfile();
	int saved = dup(2);
	char line[512] = "";
	long off = 0;
	int64_t end;

	dup2(fileno(f), 2);
	for (int i = 0; i < 20; i++)
		log_rate_warnx(&r, "flood %d", i);
	is_int(lines_since(f, &off), 5, "20 lines in a window of 5: 5 written");
	end = now_monotonic_ms() + 110;
	while (now_monotonic_ms() < end) /* the window passes */
		run_until(never, NULL, 10);
	log_rate_warnx(&r, "after");
	fseek(f, off, SEEK_SET);
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	lines_since(f, &off);
	ok(strstr(line, "after (and 15 more like it held back") != NULL,
	   "the next window's first line tells the 15 held back");

	log_libevent_init();
	for (int i = 0; i < 50; i++) /* libevent warns: fcntl on fd -1 */
		evutil_make_socket_nonblocking(-1);
	is_int(lines_since(f, &off), LOG_LIBEVENT_LINES,
	       "50 libevent warnings: %d lines", LOG_LIBEVENT_LINES);
	dup2(saved, 2);
	close(saved);
	fclose(f);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_init("test_httpd", 1, LOG_INFO);
	base = event_base_new();
	test_routes();
	test_cap();
	test_cap_heaviest();
	test_cap_all_answering();
	test_per_address();
	test_request_deadline();
	test_answer_deadline();
	test_emfile();
	test_child();
	test_log_rate();
	event_base_free(base);
	return done_testing();
}
