/* Start, steer and stop the Moodle double (tests/moodle-double) from C. */
#ifndef DOUBLE_H
#define DOUBLE_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "http.h"
#include "util.h"

#define DOUBLE_START_DEADLINE_MS 15000

struct double_srv {
	pid_t pid;
	int port;
	char dir[64];
	char url[64]; /* http://127.0.0.1:PORT, the double's wwwroot */
	char *token;  /* the admin token */
	struct http *http;
};

static struct double_srv *double_current; /* for the atexit hook */

static void
double_stop(struct double_srv *d)
{
	char path[128];
	int status;

	if (d->pid > 0) {
		kill(d->pid, SIGTERM);
		waitpid(d->pid, &status, 0);
		d->pid = 0;
	}
	if (d->dir[0] != '\0') {
		snprintf(path, sizeof(path), "%s/port", d->dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/token", d->dir);
		unlink(path);
		rmdir(d->dir);
		d->dir[0] = '\0';
	}
	free(d->token);
	d->token = NULL;
	http_free(d->http);
	d->http = NULL;
}

static void
double_atexit(void)
{
	if (double_current != NULL)
		double_stop(double_current);
}

/* Read a small file; NULL when it is absent or empty. */
static char *
double_slurp(const char *path)
{
	char *s = NULL, *cause = NULL;

	if (read_secret_file(path, 4096, &s, &cause) == -1) {
		free(cause);
		return NULL;
	}
	if (s[0] == '\0') {
		free(s);
		return NULL;
	}
	return s;
}

/* Fork the double and wait (with a deadline) until it says its port. */
static int
double_start(struct double_srv *d, int max_input_vars)
{
	char portfile[128], tokenfile[128], miv[16], script[512], *s;
	const char *top = getenv("TOP");
	int64_t deadline;
	int status;

	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/wcd-double.XXXXXX");
	if (mkdtemp(d->dir) == NULL)
		return -1;
	snprintf(portfile, sizeof(portfile), "%s/port", d->dir);
	snprintf(tokenfile, sizeof(tokenfile), "%s/token", d->dir);
	snprintf(miv, sizeof(miv), "%d", max_input_vars);
	snprintf(script, sizeof(script),
		 "%s/tests/moodle-double/moodle_double.py",
		 top != NULL ? top : ".");
	if ((d->pid = fork()) == -1)
		return -1;
	if (d->pid == 0) {
		/* Dies with the test, even when the test crashes. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		execlp("python3", "python3", script, "--port", "0",
		       "--port-file", portfile, "--token-file", tokenfile,
		       "--max-input-vars", miv, (char *)NULL);
		_exit(127);
	}
	double_current = d;
	atexit(double_atexit);
	deadline = now_monotonic_ms() + DOUBLE_START_DEADLINE_MS;
	while (now_monotonic_ms() < deadline) {
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			d->pid = 0;
			return -1;
		}
		if ((s = double_slurp(portfile)) != NULL) {
			d->port = (int)strtol(s, NULL, 10);
			free(s);
			d->token = double_slurp(tokenfile);
			if (d->port > 0 && d->token != NULL)
				break;
		}
		usleep(20000);
	}
	if (d->port <= 0 || d->token == NULL)
		return -1;
	snprintf(d->url, sizeof(d->url), "http://127.0.0.1:%d", d->port);
	d->http = http_new(NULL);
	return 0;
}

/* Send a control request; returns the decoded answer or NULL. */
static json_t *
double_ctl(struct double_srv *d, const char *path, const char *body)
{
	struct http_request req = { 0 };
	struct http_response resp = { 0 };
	char url[256], *cause = NULL;
	json_t *j = NULL;

	snprintf(url, sizeof(url), "%s%s", d->url, path);
	req.url = url;
	req.body = body;
	req.body_len = body != NULL ? strlen(body) : 0;
	req.content_type = body != NULL ? "application/json" : NULL;
	req.timeout_ms = 30000;
	if (http_perform(d->http, &req, &resp, &cause) != HTTP_OK) {
		printf("# double %s: %s\n", path, cause);
		free(cause);
		return NULL;
	}
	if (resp.status == 200)
		j = json_loadb(resp.body, resp.len, JSON_DECODE_ANY, NULL);
	else
		printf("# double %s: HTTP %ld %s\n", path, resp.status,
		       resp.body);
	http_response_clear(&resp);
	return j;
}

/* A control POST whose answer is not needed: 0 on success. */
static int
double_post(struct double_srv *d, const char *path, const char *body)
{
	json_t *j = double_ctl(d, path, body);

	if (j == NULL)
		return -1;
	json_decref(j);
	return 0;
}

/* The double's request log (array of objects); caller decrefs. */
static json_t *
double_log(struct double_srv *d)
{
	json_t *j = double_ctl(d, "/__double/log", NULL);

	if (j != NULL && json_is_object(j) &&
	    json_is_array(json_object_get(j, "log"))) {
		json_t *a = json_incref(json_object_get(j, "log"));

		json_decref(j);
		return a;
	}
	return j;
}

#endif
