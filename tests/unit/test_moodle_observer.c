/* The Moodle client's observer (moodle_set_observer): one report per HTTP
 * request attempt, with the outcome of each kind of failure. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "double.h"
#include "moodle.h"
#include "tap.h"
#include "util.h"

#define MAX_SEEN 16

static struct double_srv D;

/* What the observer was told. */
static struct {
	char function[64], outcome[32];
	int64_t usec;
} seen[MAX_SEEN];
static size_t nseen;

static void
observe(void *arg, const char *function, const char *outcome, int64_t usec)
{
	(void)arg;
	if (nseen == MAX_SEEN)
		return;
	snprintf(seen[nseen].function, sizeof(seen[nseen].function), "%s",
		 function);
	snprintf(seen[nseen].outcome, sizeof(seen[nseen].outcome), "%s",
		 outcome);
	seen[nseen].usec = usec;
	nseen++;
}

static volatile sig_atomic_t cancel_flag;

static void
cancel_tick(void *arg)
{
	(void)arg;
	cancel_flag = 1;
}

static struct moodle *
client(const char *url, int retries, int64_t timeout_ms)
{
	struct config cfg;
	char u[128];

	memset(&cfg, 0, sizeof(cfg));
	snprintf(u, sizeof(u), "%s", url != NULL ? url : D.url);
	cfg.moodle_url = u;
	cfg.moodle_token = D.token;
	cfg.moodle_timeout_ms = timeout_ms;
	cfg.moodle_max_input_vars = 1000;
	cfg.moodle_retries = retries;
	cfg.moodle_retry_delay_ms = 100;
	return moodle_new(&cfg, &cancel_flag);
}

static void
fault(const char *json)
{
	if (double_post(&D, "/__double/fault", json) != 0)
		ok(0, "fault %s accepted", json);
}

/* Call site info once with an observer; the outcomes seen, joined. */
static const char *
outcomes(struct moodle *m, int want_rv, const char *what)
{
	static char joined[256];
	struct moodle_site_info *si = NULL;
	struct moodle_error err = { 0 };
	size_t off = 0;

	nseen = 0;
	moodle_set_observer(m, observe, NULL);
	is_int(moodle_site_info(m, &si, &err), want_rv, "%s: call returns %d",
	       what, want_rv);
	moodle_site_info_free(si);
	moodle_error_clear(&err);
	joined[0] = '\0';
	for (size_t i = 0; i < nseen; i++) {
		ok(strcmp(seen[i].function, "core_webservice_get_site_info") ==
		       0,
		   "%s: attempt %zu names the function", what, i + 1);
		ok(seen[i].usec >= 0, "%s: attempt %zu has a duration", what,
		   i + 1);
		off += (size_t)snprintf(joined + off, sizeof(joined) - off,
					"%s%s", i ? "," : "", seen[i].outcome);
	}
	return joined;
}

static void
test_outcomes(void)
{
	struct moodle *m = client(NULL, 3, 20000);
	json_t *log;

	double_post(&D, "/__double/log/clear", "{}");
	is_str(outcomes(m, 0, "ok"), "ok", "a good call: ok");
	log = double_log(&D);
	is_int(json_array_size(log), 1, "one request, one report");
	json_decref(log);
	ok(seen[0].usec > 0 && seen[0].usec < 20000000,
	   "its duration is in microseconds (%lld)", (long long)seen[0].usec);

	fault("{\"mode\": \"http503\"}");
	is_str(outcomes(m, 0, "503"), "http_error,ok",
	       "HTTP 503, then a retry: http_error, ok");
	fault("{\"mode\": \"garbage\"}");
	is_str(outcomes(m, 0, "garbage"), "bad_answer,ok",
	       "a body that is not JSON: bad_answer, then ok");
	fault("{\"mode\": \"html\"}");
	is_str(outcomes(m, 0, "html"), "bad_answer,ok",
	       "a login page: bad_answer, then ok");
	fault("{\"mode\": \"sitemaintenance\"}");
	is_str(outcomes(m, 0, "maintenance"), "moodle_error,ok",
	       "an exception answer: moodle_error, then ok");
	fault("{\"mode\": \"invalidtoken\"}");
	is_str(outcomes(m, -1, "invalidtoken"), "moodle_error",
	       "a fatal exception: one moodle_error, no retry");
	fault("{\"mode\": \"delay\", \"seconds\": 1}");
	is_str(outcomes(m, 0, "delay"), "ok", "a slow answer: ok");
	ok(seen[0].usec >= 1000000, "timed at least 1 s (%lld us)",
	   (long long)seen[0].usec);
	moodle_free(m);

	/* A fresh client: libcurl resends a request on its own when a reused
	 * connection turns out closed, which is not an attempt of ours. */
	m = client(NULL, 3, 20000);
	fault("{\"mode\": \"reset\"}");
	is_str(outcomes(m, 0, "reset"), "connect_error,ok",
	       "a reset connection: connect_error, then ok");
	moodle_free(m);

	m = client(NULL, 1, 1000);
	fault("{\"mode\": \"delay\", \"seconds\": 4}");
	is_str(outcomes(m, -1, "timeout"), "timeout",
	       "no answer within moodle.timeout: timeout");
	moodle_free(m);

	m = client("http://127.0.0.1:1", 1, 5000);
	is_str(outcomes(m, -1, "refused"), "connect_error",
	       "a refused connection: connect_error");
	moodle_free(m);

	m = client(NULL, 3, 20000);
	moodle_set_tick(m, cancel_tick, NULL);
	cancel_flag = 0;
	fault("{\"mode\": \"delay\", \"seconds\": 8}");
	is_str(outcomes(m, -1, "cancel"), "cancelled",
	       "a request cut short by the cancel flag: cancelled");
	cancel_flag = 0;
	fault("{\"mode\": \"none\"}");

	/* Without an observer nothing is told, nothing breaks. */
	moodle_set_observer(m, NULL, NULL);
	nseen = 0;
	{
		struct moodle_site_info *si = NULL;
		struct moodle_error err = { 0 };

		is_int(moodle_site_info(m, &si, &err), 0,
		       "no observer: the call works");
		moodle_site_info_free(si);
		moodle_error_clear(&err);
	}
	is_int(nseen, 0, "and nothing is observed");
	moodle_free(m);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (double_start(&D, 1000) == -1) {
		ok(0, "the Moodle double starts");
		double_stop(&D);
		return done_testing();
	}
	test_outcomes();
	double_stop(&D);
	return done_testing();
}
