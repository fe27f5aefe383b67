/* Unit tests for feed.c: SHA-256, the decode cases in tests/feed/, fetch. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "feed.h"
#include "http.h"
#include "tap.h"
#include "util.h"

static const char *top;

static struct config_role test_roles[] = {
	{ "student", 5 },
	{ "teacher", 3 },
	{ "professor", 3 },
	{ "guest", 6 },
};

static void
test_config(struct config *c)
{
	memset(c, 0, sizeof *c);
	c->roles = test_roles;
	c->nroles = nitems(test_roles);
	c->sync_default_role = "student";
	c->source_timeout_ms = 5000;
	c->source_max_size = 1 << 20;
}

static char *
slurp(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, len = 0, n;

	if (f == NULL)
		return NULL;
	do {
		if (len + 65536 + 1 > cap) {
			cap = len + 65536 + 1;
			buf = xreallocarray(buf, cap, 1);
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
	} while (n > 0);
	fclose(f);
	buf[len] = '\0';
	*ret_len = len;
	return buf;
}

/* A string for the dump: quoted, controls and quotes escaped. */
static void
dump_str(FILE *f, const char *s)
{
	if (s == NULL) {
		fputs("-", f);
		return;
	}
	fputc('"', f);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else if ((unsigned char)*s < 0x20 || *s == 0x7f)
			fprintf(f, "\\x%02x", (unsigned char)*s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

/* The compact text form of a decoded feed that *.expected files hold. */
static char *
dump_feed(const struct feed *fd)
{
	const struct feed_course *c;
	char *out = NULL;
	size_t len, i, j;
	FILE *f = open_memstream(&out, &len);

	for (i = 0; i < fd->ncourses; i++) {
		c = &fd->courses[i];
		fputs("course ", f);
		dump_str(f, c->shortname);
		fputs(" name=", f);
		dump_str(f, c->fullname);
		fputs(" idnumber=", f);
		dump_str(f, c->idnumber);
		fputs(" summary=", f);
		dump_str(f, c->summary);
		fprintf(f, " category=%lld visible=%d start=%lld end=%lld\n",
			(long long)c->categoryid, c->visible,
			(long long)c->startdate, (long long)c->enddate);
		for (j = 0; j < c->nparticipants; j++)
			fprintf(f, "  participant %s %d\n",
				c->participants[j].username,
				c->participants[j].roleid);
		for (j = 0; j < c->nskipped_users; j++)
			fprintf(f, "  skipped-user %s\n", c->skipped_users[j]);
	}
	for (i = 0; i < fd->nskipped; i++) {
		fputs("skipped ", f);
		dump_str(f, fd->skipped[i]);
		fputc('\n', f);
	}
	for (i = 0; i < fd->nissues; i++) {
		fprintf(f, "issue %s ", fd->issues[i].kind);
		dump_str(f, fd->issues[i].item);
		fprintf(f, " %s: ", fd->issues[i].code);
		dump_str(f, fd->issues[i].message);
		fputc('\n', f);
	}
	fclose(f);
	return out;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run every case NAME.json in dir against NAME.expected; REGEN=1 rewrites
 * the expected files from what the decoder says now. */
static void
test_cases(const char *dirname, bool valid)
{
	struct config cfg;
	struct feed *fd;
	struct dirent *de;
	char *dir, *path, *body, *expected, *got, *cause, *names[256];
	size_t len, elen, n = 0, i;
	bool regen = getenv("REGEN") != NULL;
	DIR *dp;
	FILE *f;
	int rc;

	test_config(&cfg);
	xasprintf(&dir, "%s/tests/feed/%s", top, dirname);
	if (!ok((dp = opendir(dir)) != NULL, "open %s", dir)) {
		free(dir);
		return;
	}
	while ((de = readdir(dp)) != NULL && n < nitems(names)) {
		len = strlen(de->d_name);
		if (len > 5 && strcmp(de->d_name + len - 5, ".json") == 0)
			names[n++] = xstrndup(de->d_name, len - 5);
	}
	closedir(dp);
	qsort(names, n, sizeof *names, name_cmp);
	ok(n >= 5, "%s has %zu cases", dirname, n);
	for (i = 0; i < n; i++) {
		xasprintf(&path, "%s/%s.json", dir, names[i]);
		body = slurp(path, &len);
		free(path);
		fd = NULL;
		cause = NULL;
		rc = feed_decode(&cfg, body, len, &fd, &cause);
		if (valid)
			got = rc == 0 ? dump_feed(fd) : xstrdup("");
		else
			xasprintf(&got, "%s\n", cause != NULL ? cause : "");
		xasprintf(&path, "%s/%s.expected", dir, names[i]);
		if (regen && (f = fopen(path, "w")) != NULL) {
			fputs(got, f);
			fclose(f);
		}
		expected = slurp(path, &elen);
		if (valid) {
			if (!ok(rc == 0, "%s/%s decodes", dirname, names[i]))
				printf("#   cause: %s\n", cause);
		} else {
			ok(rc == -1 && fd == NULL, "%s/%s is rejected", dirname,
			   names[i]);
			ok(cause != NULL && strchr(cause, '\n') == NULL,
			   "%s/%s: the cause is one line", dirname, names[i]);
		}
		is_str(got, expected, "%s/%s: as in %s.expected", dirname,
		       names[i], names[i]);
		free(expected);
		free(path);
		free(got);
		free(cause);
		feed_free(fd);
		free(body);
		free(names[i]);
	}
	free(dir);
}

static void
test_sha256(void)
{
	static const struct {
		const char *in;
		const char *want;
	} vec[] = {
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410"
			 "ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd41"
		  "9db06c1" },
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca49599"
		      "1b7852b855" },
	};
	char out[65], out2[65];
	char *million, *buf;
	size_t i, len;

	for (i = 0; i < nitems(vec); i++) {
		feed_digest(vec[i].in, strlen(vec[i].in), out);
		is_str(out, vec[i].want, "sha256 of \"%.10s...\"", vec[i].in);
		feed_digest_generic(vec[i].in, strlen(vec[i].in), out);
		is_str(out, vec[i].want, "generic sha256 of \"%.10s...\"",
		       vec[i].in);
	}
	million = xmalloc(1000000);
	memset(million, 'a', 1000000);
	feed_digest(million, 1000000, out);
	is_str(
	    out,
	    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
	    "sha256 of 1,000,000 x 'a'");
	feed_digest_generic(million, 1000000, out);
	is_str(
	    out,
	    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
	    "generic sha256 of 1,000,000 x 'a'");
	free(million);

	/* Every length around the padding boundaries, both ways alike. */
	buf = xmalloc(300);
	for (i = 0; i < 300; i++)
		buf[i] = (char)(i * 7 + 3);
	for (len = 0; len < 300; len++) {
		feed_digest(buf, len, out);
		feed_digest_generic(buf, len, out2);
		if (strcmp(out, out2) != 0)
			break;
	}
	is_int(len, 300,
	       "accelerated and generic sha256 agree on 0..299 bytes");
	free(buf);
}

/* Structural limits that need no file. */
static void
test_decode_limits(void)
{
	struct config cfg;
	struct feed *fd = NULL;
	char *cause = NULL, *big;
	const char *seed = "[{\"shortname\": \"a\", \"name\": \"b\"}]";
	size_t i, n;
	int rc;

	test_config(&cfg);
	cfg.source_max_size = 10;
	rc = feed_decode(&cfg, seed, strlen(seed), &fd, &cause);
	ok(rc == -1 && fd == NULL, "a body over source.max_size is rejected");
	is_str(cause, "feed is 33 bytes, more than source.max_size (10)",
	       "the cause names both sizes");
	free(cause);
	cause = NULL;

	test_config(&cfg);
	cfg.sync_default_role = "dean";
	rc = feed_decode(&cfg, seed, strlen(seed), &fd, &cause);
	ok(rc == -1, "an unknown sync.default_role is refused");
	free(cause);
	cause = NULL;
	cfg.sync_default_role = "7";
	seed = "[{\"shortname\": \"a\", \"name\": \"b\", "
	       "\"participants\": [{\"username\": \"u\"}]}]";
	rc = feed_decode(&cfg, seed, strlen(seed), &fd, &cause);
	ok(rc == 0 && fd != NULL && fd->courses[0].participants[0].roleid == 7,
	   "a numeric sync.default_role is used as a role id");
	feed_free(fd);
	fd = NULL;

	/* Past FEED_MAX_ISSUES the rest are counted, not listed. */
	test_config(&cfg);
	cfg.source_max_size = 64 << 20;
	n = FEED_MAX_ISSUES + 500;
	big = xmalloc(64 + n * 20);
	i = (size_t)snprintf(big, 64,
			     "[{\"shortname\": \"a\", \"name\": \"b\"}");
	for (n = 0; n < FEED_MAX_ISSUES + 500; n++)
		i += (size_t)snprintf(big + i, 20, ",{\"name\": \"x\"}");
	big[i++] = ']';
	rc = feed_decode(&cfg, big, i, &fd, &cause);
	ok(rc == 0 && fd != NULL, "a feed with many bad records decodes");
	if (fd != NULL) {
		is_int(fd->nissues, FEED_MAX_ISSUES, "issues are capped");
		is_str(fd->issues[fd->nissues - 1].code, "too-many-issues",
		       "the last one says so");
		is_str(fd->issues[fd->nissues - 1].message,
		       "501 more skipped records not listed",
		       "and counts the rest");
	}
	feed_free(fd);
	free(big);
}

/* ---- fetch against tests/lib/feedserver.py ----------------------------- */

struct server {
	pid_t pid;
	int port;
	char log[64];
};

/* Start the feed server with extra arguments; wait (with a deadline) for
 * the port it prints. */
static bool
server_start(struct server *s, const char *const *extra)
{
	const char *argv[32];
	char *script, line[32];
	int fds[2], n = 0, rc;
	struct pollfd pfd;
	ssize_t got;
	size_t used = 0;

	memset(s, 0, sizeof *s);
	snprintf(s->log, sizeof s->log, "/tmp/test_feed.%d.log", (int)getpid());
	unlink(s->log);
	xasprintf(&script, "%s/tests/lib/feedserver.py", top);
	argv[n++] = "python3";
	argv[n++] = script;
	argv[n++] = "--port-file";
	argv[n++] = "-";
	argv[n++] = "--log";
	argv[n++] = s->log;
	while (extra != NULL && *extra != NULL && n < 30)
		argv[n++] = *extra++;
	argv[n] = NULL;
	if (pipe(fds) == -1)
		return false;
	if ((s->pid = fork()) == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execvp("python3", (char *const *)argv);
		_exit(127);
	}
	free(script);
	close(fds[1]);
	pfd.fd = fds[0];
	pfd.events = POLLIN;
	while (used < sizeof line - 1 && memchr(line, '\n', used) == NULL) {
		if ((rc = poll(&pfd, 1, 15000)) <= 0)
			break;
		if ((got = read(fds[0], line + used, sizeof line - 1 - used)) <=
		    0)
			break;
		used += (size_t)got;
	}
	close(fds[0]);
	line[used] = '\0';
	s->port = (int)strtol(line, NULL, 10);
	return s->port > 0;
}

/* Stop it; once waitpid returns, every request has been logged. */
static void
server_stop(struct server *s)
{
	int status;

	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, &status, 0);
	}
	s->pid = 0;
}

/* The requests the server logged, as a JSON array. */
static json_t *
server_requests(struct server *s)
{
	json_t *all = json_array(), *r;
	char *text, *line, *save = NULL;
	size_t len;

	if ((text = slurp(s->log, &len)) == NULL)
		return all;
	for (line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save))
		if ((r = json_loads(line, 0, NULL)) != NULL)
			json_array_append_new(all, r);
	free(text);
	unlink(s->log);
	return all;
}

/* A request header as the server saw it (case-insensitive name). */
static const char *
req_header(json_t *reqs, size_t i, const char *name)
{
	json_t *h = json_object_get(json_array_get(reqs, i), "headers");
	const char *k;
	json_t *v;

	json_object_foreach(h, k, v)
	{
		if (strcasecmp(k, name) == 0)
			return json_string_value(v);
	}
	return NULL;
}

static char *
server_url(const struct server *s, const char *userinfo)
{
	char *url;

	xasprintf(&url, "http://%s127.0.0.1:%d/feed.json?token=q", userinfo,
		  s->port);
	return url;
}

static const char feed_body[] =
    "{\"courses\": [{\"shortname\": \"a\", \"name\": \"b\"}]}";

static void
test_fetch_200_304(struct http *http)
{
	const char *args[] = { "--body", feed_body, "--etag", "\"v1\"", NULL };
	struct server s;
	struct config cfg;
	struct feed_validators v1, v2;
	char *body = NULL, *cause = NULL, digest[65];
	size_t len;
	json_t *reqs;
	enum feed_fetch_result r;

	test_config(&cfg);
	if (!ok(server_start(&s, args), "feed server starts"))
		return;
	cfg.source_url = server_url(&s, "");
	cfg.source_auth_header = "Authorization: Bearer s3cr3t-t0ken";
	r = feed_fetch(&cfg, http, NULL, &body, &len, &v1, &cause);
	is_int(r, FEED_FETCH_NEW, "200: a new body");
	is_int(len, strlen(feed_body), "the whole body");
	ok(body != NULL && strcmp(body, feed_body) == 0, "the body as served");
	is_str(v1.etag, "\"v1\"", "the ETag is kept");
	feed_digest(feed_body, strlen(feed_body), digest);
	is_str(v1.digest, digest, "the digest is of the body");
	free(body);
	body = NULL;

	r = feed_fetch(&cfg, http, &v1, &body, &len, &v2, &cause);
	is_int(r, FEED_FETCH_NOT_MODIFIED,
	       "304 with a matching ETag: not modified");
	ok(body == NULL && len == 0, "no body on unchanged");
	is_str(v2.etag, "\"v1\"", "validators carried over");
	is_str(v2.digest, digest, "the digest carried over");
	server_stop(&s);

	reqs = server_requests(&s);
	is_int(json_array_size(reqs), 2, "two requests");
	is_str(req_header(reqs, 0, "Accept"), "application/json",
	       "Accept: application/json");
	is_str(req_header(reqs, 0, "Authorization"), "Bearer s3cr3t-t0ken",
	       "the auth header is sent");
	is_str(req_header(reqs, 0, "If-None-Match"), NULL,
	       "no If-None-Match the first time");
	is_str(req_header(reqs, 1, "If-None-Match"), "\"v1\"",
	       "If-None-Match the second time");
	is_int(json_integer_value(
		   json_object_get(json_array_get(reqs, 1), "status")),
	       304, "the server answered 304");
	json_decref(reqs);
	feed_validators_clear(&v1);
	feed_validators_clear(&v2);
	free(cfg.source_url);
}

static void
test_fetch_ims_and_digest(struct http *http)
{
	const char *lm = "Wed, 21 Oct 2015 07:28:00 GMT";
	const char *args[] = { "--body", feed_body, "--last-modified", lm,
			       NULL };
	const char *args2[] = { "--body", feed_body, NULL };
	struct server s;
	struct config cfg;
	struct feed_validators v1, v2;
	char *body = NULL, *cause = NULL;
	size_t len;
	json_t *reqs;
	enum feed_fetch_result r;

	test_config(&cfg);
	if (!ok(server_start(&s, args), "feed server starts"))
		return;
	cfg.source_url = server_url(&s, "");
	r = feed_fetch(&cfg, http, NULL, &body, &len, &v1, &cause);
	is_int(r, FEED_FETCH_NEW, "200 with Last-Modified");
	is_str(v1.last_modified, lm, "Last-Modified is kept");
	free(body);
	body = NULL;
	r = feed_fetch(&cfg, http, &v1, &body, &len, &v2, &cause);
	is_int(r, FEED_FETCH_NOT_MODIFIED,
	       "If-Modified-Since: 304, not modified");
	server_stop(&s);
	reqs = server_requests(&s);
	is_str(req_header(reqs, 1, "If-Modified-Since"), lm,
	       "If-Modified-Since is sent");
	json_decref(reqs);
	feed_validators_clear(&v2);
	free(cfg.source_url);

	/* No validators at all: the digest decides. */
	if (!ok(server_start(&s, args2), "feed server starts"))
		return;
	cfg.source_url = server_url(&s, "");
	r = feed_fetch(&cfg, http, &v1, &body, &len, &v2, &cause);
	is_int(r, FEED_FETCH_UNCHANGED, "200 with the same digest: unchanged");
	ok(body == NULL, "no body handed out");
	is_int(len, strlen(feed_body), "but its size is told");
	is_str(v2.digest, v1.digest, "the same digest");
	is_str(v2.etag, NULL, "no ETag this time");
	feed_validators_clear(&v2);
	free(v1.digest);
	v1.digest = xstrdup("0000");
	r = feed_fetch(&cfg, http, &v1, &body, &len, &v2, &cause);
	is_int(r, FEED_FETCH_NEW, "200 with another digest: new");
	free(body);
	server_stop(&s);
	json_decref(server_requests(&s));
	feed_validators_clear(&v1);
	feed_validators_clear(&v2);
	free(cfg.source_url);
}

static void
test_fetch_gzip(struct http *http)
{
	char *big, *body = NULL, *cause = NULL;
	const char *args[] = { "--file", NULL, "--gzip", NULL };
	char path[64];
	struct server s;
	struct config cfg;
	struct feed_validators v;
	size_t len, i, n = 0;
	json_t *reqs;
	FILE *f;

	snprintf(path, sizeof path, "/tmp/test_feed.%d.json", (int)getpid());
	big = xmalloc(200000);
	n = (size_t)snprintf(big, 200000, "{\"courses\": [");
	for (i = 0; i < 2000; i++)
		n += (size_t)snprintf(big + n, 200000 - n,
				      "%s{\"shortname\": \"c%zu\", \"name\": "
				      "\"n\"}",
				      i ? "," : "", i);
	n += (size_t)snprintf(big + n, 200000 - n, "]}");
	f = fopen(path, "w");
	fwrite(big, 1, n, f);
	fclose(f);
	args[1] = path;
	test_config(&cfg);
	if (!ok(server_start(&s, args), "feed server starts")) {
		free(big);
		return;
	}
	cfg.source_url = server_url(&s, "");
	is_int(feed_fetch(&cfg, http, NULL, &body, &len, &v, &cause),
	       FEED_FETCH_NEW, "gzip: a new body");
	ok(len == n && body != NULL && memcmp(body, big, n) == 0,
	   "gzip: decompressed to the original %zu bytes", n);
	ok(v.etag != NULL, "the file server sends an ETag");
	free(body);
	server_stop(&s);
	reqs = server_requests(&s);
	ok(req_header(reqs, 0, "Accept-Encoding") != NULL &&
	       strstr(req_header(reqs, 0, "Accept-Encoding"), "gzip"),
	   "gzip is offered");
	ok(json_integer_value(json_object_get(json_array_get(reqs, 0),
					      "sent")) < (json_int_t)n / 4,
	   "the answer travelled compressed");
	json_decref(reqs);
	feed_validators_clear(&v);
	free(cfg.source_url);
	unlink(path);
	free(big);
}

/* One failing fetch: the result, and the words its cause must hold. */
static void
fetch_fails(struct http *http, const char *const *args, const char *userinfo,
	    int64_t timeout_ms, int64_t max_size, const char *what,
	    const char *const *want, json_t **ret_reqs)
{
	struct server s;
	struct config cfg;
	struct feed_validators v;
	char *body = (char *)"x", *cause = NULL;
	size_t len = 1, i;
	enum feed_fetch_result r;

	test_config(&cfg);
	cfg.source_timeout_ms = timeout_ms;
	cfg.source_max_size = max_size;
	cfg.source_auth_header = "X-Feed-Key: s3cr3t-t0ken";
	if (!ok(server_start(&s, args), "%s: feed server starts", what))
		return;
	cfg.source_url = server_url(&s, userinfo);
	r = feed_fetch(&cfg, http, NULL, &body, &len, &v, &cause);
	is_int(r, FEED_FETCH_ERROR, "%s: an error", what);
	ok(body == NULL && len == 0 && v.digest == NULL && v.etag == NULL,
	   "%s: no success output", what);
	ok(cause != NULL && strchr(cause, '\n') == NULL, "%s: one line: %s",
	   what, cause ? cause : "(null)");
	for (i = 0; want[i] != NULL; i++)
		ok(cause != NULL && strstr(cause, want[i]) != NULL,
		   "%s: cause mentions \"%s\"", what, want[i]);
	ok(cause != NULL && strstr(cause, "s3cr3t") == NULL &&
	       strstr(cause, "token=q") == NULL &&
	       strstr(cause, "hunter2") == NULL,
	   "%s: no secret in the cause", what);
	server_stop(&s);
	if (ret_reqs != NULL)
		*ret_reqs = server_requests(&s);
	else
		json_decref(server_requests(&s));
	free(cause);
	free(cfg.source_url);
}

static void
test_fetch_errors(struct http *http)
{
	const char *a500[] = { "--status",   "500",    "--echo-header",
			       "X-Feed-Key", "--body", "Internal error",
			       NULL };
	const char *w500[] = { "http://127.0.0.1:", "/feed.json",
			       "HTTP 500",          "X-Feed-Key: ***",
			       "Internal error",    NULL };
	const char *ahtml[] = { "--content-type", "text/html; charset=utf-8",
				"--body", "<html><body>Sign in</body></html>",
				NULL };
	const char *whtml[] = { "HTML", "HTTP 200", "<html><body>Sign in",
				NULL };
	const char *abrack[] = { "--body", "\n  <?xml version=\"1.0\"?><feed/>",
				 NULL };
	const char *wbrack[] = { "HTML", "<?xml", NULL };
	const char *aslow[] = { "--body", feed_body, "--delay", "30", NULL };
	const char *wslow[] = { "127.0.0.1", "imed out", NULL };
	const char *abig[] = { "--size", "30000000", NULL };
	const char *wbig[] = { "max_size", "aborted", NULL };
	const char *aloop[] = { "--redirect-loop", NULL };
	const char *wloop[] = { "edirect", NULL };
	const char *a404[] = { "--status", "404", "--body",
			       "line1\nline2\x01\xff end", NULL };
	const char *w404[] = { "HTTP 404", "line1 line2 ? end", NULL };
	const char *aempty[] = { "--status", "503", NULL };
	const char *wempty[] = { "HTTP 503", "empty body", NULL };
	json_t *reqs = NULL;

	fetch_fails(http, a500, "alice:hunter2@", 5000, 1 << 20,
		    "500 echoing our headers", w500, &reqs);
	is_str(req_header(reqs, 0, "X-Feed-Key"), "s3cr3t-t0ken",
	       "the secret header did reach the server");
	json_decref(reqs);
	fetch_fails(http, ahtml, "", 5000, 1 << 20, "an HTML page", whtml,
		    NULL);
	fetch_fails(http, abrack, "", 5000, 1 << 20, "a body starting with '<'",
		    wbrack, NULL);
	fetch_fails(http, aslow, "", 300, 1 << 20, "a timeout", wslow, NULL);
	fetch_fails(http, abig, "", 20000, 100000, "an oversized body", wbig,
		    &reqs);
	ok(json_is_true(json_object_get(json_array_get(reqs, 0), "aborted")),
	   "the oversized transfer was cut off, not read to the end");
	json_decref(reqs);
	fetch_fails(http, aloop, "", 5000, 1 << 20, "a redirect loop", wloop,
		    &reqs);
	is_int(json_array_size(reqs), 4, "three redirects followed, no more");
	json_decref(reqs);
	fetch_fails(http, a404, "", 5000, 1 << 20, "404 with junk bytes", w404,
		    NULL);
	fetch_fails(http, aempty, "", 5000, 1 << 20, "503 without a body",
		    wempty, NULL);
}

static void
test_fetch_refused(struct http *http)
{
	struct config cfg;
	struct feed_validators v;
	struct sockaddr_in sin;
	socklen_t slen = sizeof sin;
	char *body, *cause = NULL, hostport[32];
	size_t len;
	int fd;

	/* A port nobody listens on: bind one, note it, close it. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&sin, sizeof sin);
	getsockname(fd, (struct sockaddr *)&sin, &slen);
	close(fd);
	snprintf(hostport, sizeof hostport, "127.0.0.1:%d",
		 ntohs(sin.sin_port));
	test_config(&cfg);
	xasprintf(&cfg.source_url, "http://%s/feed.json", hostport);
	is_int(feed_fetch(&cfg, http, NULL, &body, &len, &v, &cause),
	       FEED_FETCH_ERROR, "connection refused: an error");
	ok(cause != NULL && strstr(cause, hostport) != NULL,
	   "the cause names the URL: %s", cause ? cause : "(null)");
	free(cause);
	free(cfg.source_url);
}

static void
test_fetch_file(struct http *http)
{
	struct config cfg;
	struct feed_validators v1, v2;
	char path[64], *body = NULL, *cause = NULL;
	size_t len;
	FILE *f;

	snprintf(path, sizeof path, "/tmp/test_feed_file.%d.json",
		 (int)getpid());
	f = fopen(path, "w");
	fputs(feed_body, f);
	fclose(f);
	test_config(&cfg);
	xasprintf(&cfg.source_url, "file://%s", path);
	is_int(feed_fetch(&cfg, http, NULL, &body, &len, &v1, &cause),
	       FEED_FETCH_NEW, "file://: a new body");
	ok(body != NULL && strcmp(body, feed_body) == 0,
	   "file://: the content");
	ok(v1.etag == NULL && v1.last_modified == NULL && v1.digest != NULL,
	   "file://: only the digest as a validator");
	free(body);
	body = NULL;
	is_int(feed_fetch(&cfg, http, &v1, &body, &len, &v2, &cause),
	       FEED_FETCH_UNCHANGED, "file://: same content, unchanged");
	feed_validators_clear(&v2);
	f = fopen(path, "a");
	fputs(" ", f);
	fclose(f);
	is_int(feed_fetch(&cfg, http, &v1, &body, &len, &v2, &cause),
	       FEED_FETCH_NEW, "file://: changed content, new");
	free(body);
	feed_validators_clear(&v1);
	feed_validators_clear(&v2);
	unlink(path);
	is_int(feed_fetch(&cfg, http, NULL, &body, &len, &v1, &cause),
	       FEED_FETCH_ERROR, "file://: a missing file is an error");
	ok(cause != NULL && strstr(cause, path) != NULL,
	   "the cause names the file: %s", cause ? cause : "(null)");
	free(cause);
	free(cfg.source_url);
}

int
main(void)
{
	struct http *http;

	if ((top = getenv("TOP")) == NULL)
		top = ".";
	signal(SIGPIPE, SIG_IGN);
	test_sha256();
	test_decode_limits();
	test_cases("valid", true);
	test_cases("invalid", false);

	http = http_new(NULL);
	test_fetch_200_304(http);
	test_fetch_ims_and_digest(http);
	test_fetch_gzip(http);
	test_fetch_errors(http);
	test_fetch_refused(http);
	test_fetch_file(http);
	http_free(http);
	return done_testing();
}
