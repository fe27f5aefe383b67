/* The Moodle REST client: form bodies, answers, error classes, batches. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "moodle.h"
#include "util.h"

#define MOODLE_ENDPOINT               "/webservice/rest/server.php"
#define MOODLE_WS_VARS                3 /* wstoken, wsfunction, format */
#define MOODLE_DEFAULT_MAX_INPUT_VARS 1000
#define MOODLE_DEFAULT_TIMEOUT_MS     120000
#define MOODLE_CONNECT_TIMEOUT_MS     15000
#define MOODLE_DEFAULT_RETRY_DELAY_MS 1000
#define MOODLE_MAX_BACKOFF_MS         300000
#define MOODLE_SLEEP_STEP_MS          100 /* back-off looks at cancel */
#define MOODLE_MAX_BODY               ((size_t)32 * 1024 * 1024)
#define MOODLE_PAGE                   1000    /* enrolled users per request */
#define MOODLE_MAX_ENROLLED           1000000 /* per course */
#define MOODLE_QUOTE                  80      /* bytes of a bad answer quoted */
#define MOODLE_MAX_TEXT               512 /* bytes kept of Moodle's own texts */
#define MOODLE_PACE_WINDOW            31  /* answer times kept per function */
#define MOODLE_PACE_FUNCTIONS         16
#define MOODLE_PACE_MIN_SAMPLES       8
#define MOODLE_PACE_SLOW              4 /* times the median: a slow answer */
#define MOODLE_PACE_SLOW_RUN          2 /* slow answers in a row: back off */
#define MOODLE_PACE_GOOD_RUN          8 /* good answers in a row: one more */
#define MOODLE_PACE_LOG_MS            60000 /* a change logged this often */
#define MOODLE_BREAKER_AFTER          3     /* site-wide answers in a row */

/*
 * Error classes: one table, moodle_codes, says what each answer means.
 * Moodle answers errors with HTTP 200 and an exception object, so the body
 * decides; an answer that is no exception gets an errorcode of ours
 * ("connect", "timeout", "noanswer", "httpNNN") and the same table.
 * DOWN: Moodle as a whole cannot serve (its database is down, 32a-32d;
 * maintenance, 32e/32f and 32i/32j; nothing listens): nothing was done and
 * nothing is said about the items.  Such answers, and those that say the
 * same but leave the call unsure (timeouts, a gateway's 502/504: 32g/32h),
 * are site-wide: they count towards the breaker (moodle_pace), which stops
 * every call once it opens.  TRANSIENT (retried here with a doubling
 * back-off, then given up): other 5xx and 429, answers that are not the
 * JSON expected, the cache race of 32k.  CONFLICT: dmlwriteexception.
 * FATAL (the run stops): the token and service codes, invalidrecord naming
 * table external_functions (17a), HTTP 403 (00), any redirect (22), XML
 * (16c, 20e), a request over the variable limit.  invalidrecord naming
 * another table is an ITEM: unenrol (11e) and enrolled users (13c) answer
 * it for a course that is gone.  ITEM: every other errorcode, and only
 * then is a call split to find the bad item.
 */
/*
 * Pacing, shared by a client and its clones: at most `limit` calls in
 * flight, `limit` halved while Moodle answers slowly (well past the
 * running median time per form variable of that function) or with
 * transient errors, and raised again, one at a time, when it answers
 * normally.  Teachers and students share that Moodle.
 */
struct moodle_pace {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int max, limit, inflight;
	uint64_t requests;
	int slow, good; /* answers in a row */
	/* Bumped when the limit changes: only calls sent since are judged,
	 * so one stall seen by every call in flight lowers it once. */
	uint64_t generation;
	struct moodle_pace_fn {
		const char *function;
		double us_per_var[MOODLE_PACE_WINDOW];
		int nvars[MOODLE_PACE_WINDOW];
		size_t n, pos;
	} fns[MOODLE_PACE_FUNCTIONS];
	size_t nfns;
	int users; /* the client and its clones */
	/* The breaker: site-wide answers in a row, how many open it, and
	 * once open, why ("Moodle unavailable: ..."). */
	int site_run, breaker_after;
	char *down, *down_code;
	/* Changes of the limit, lower [0] and raise [1]: logged once a
	 * minute each, the others counted for the next line and the end. */
	int64_t logged_ms[2];
	int unlogged[2], changes[2], quiet;
};

struct moodle {
	struct http *http;
	struct moodle_pace *pace;
	volatile sig_atomic_t *cancel;
	char *url;    /* moodle.url without trailing slashes */
	char *url_ui; /* the same without userinfo or query, for messages */
	char *endpoint;
	char *token;
	char *ca_file;
	int64_t timeout_ms;
	int max_input_vars;
	bool miv_auto; /* max_input_vars = auto: measured, not configured */
	int tries;
	int64_t retry_delay_ms;
	bool resend; /* a call without an answer may be sent again */
	void (*tick)(void *);
	void *tick_arg;
	int64_t last_tick_ms;
	moodle_observer_fn observe;
	void *observe_arg;
};

static void moodle_pace_summary(const struct moodle_pace *);

/* A form body under construction; it counts its variables. */
struct moodle_form {
	const char *function;
	char *buf;
	size_t len, cap;
	int nvars, limit;
};

/* What an answer means for us (see "Error classes" above): Moodle's
 * errorcode, or ours for what is no exception.  site: it says Moodle as a
 * whole cannot serve (the breaker counts it); the hint then ends "Moodle
 * unavailable: ".  committed: Moodle applied the call before it failed. */
static const struct moodle_code {
	const char *errorcode;
	enum moodle_status kind;
	bool site, committed;
	const char *hint;
} moodle_codes[] = {
	/* No answer, or no answer from Moodle itself. */
	{ "connect", MOODLE_DOWN, true, false, "cannot connect to it" },
	/* Sent: Moodle may go on with it after we gave up. */
	{ "timeout", MOODLE_UNSURE, true, false,
	  "it did not answer in time (moodle.timeout)" },
	{ "noanswer", MOODLE_UNSURE, true, false,
	  "the connection to it broke before its answer" },
	/* nginx cannot reach PHP-FPM (32g/32h), or gave up on a PHP that
	 * may still be at work on the call. */
	{ "http502", MOODLE_UNSURE, true, false,
	  "its web server cannot reach PHP (HTTP 502)" },
	{ "http504", MOODLE_UNSURE, true, false,
	  "its web server gave up waiting for PHP (HTTP 504)" },
	/* Maintenance set from the CLI: an HTML page, Retry-After (32e). */
	{ "http503", MOODLE_DOWN, true, false,
	  "it is in maintenance mode or overloaded (HTTP 503)" },
	{ "http500", MOODLE_TRANSIENT, false, false, NULL },
	{ "http429", MOODLE_TRANSIENT, false, false, NULL },
	/* PostgreSQL stopped: every call, HTTP 200, within ms (32a-32d). */
	{ "dbconnectionfailed", MOODLE_DOWN, true, false,
	  "its database connection failed" },
	/* Maintenance set from the admin pages (32i/32j). */
	{ "sitemaintenance", MOODLE_DOWN, true, false,
	  "it is in maintenance mode" },
	/* One of the first calls after a cache purge; its siblings went
	 * through (32k): send it again. */
	{ "ex_configcannotsave", MOODLE_TRANSIENT, false, false,
	  "Moodle could not save its cache configuration (a race among the "
	  "first calls after its caches were purged)" },
	{ "invalidtoken", MOODLE_FATAL, false, false,
	  "the token is not valid: check moodle.token_file" },
	{ "invalidtimedtoken", MOODLE_FATAL, false, false,
	  "the token has expired: create a new one under Site administration "
	  "> Server > Web services > Manage tokens and update "
	  "moodle.token_file" },
	{ "invalidiptoken", MOODLE_FATAL, false, false,
	  "the token may not be used from this host's address: fix its IP "
	  "restriction under Site administration > Server > Web services > "
	  "Manage tokens" },
	{ "accessexception", MOODLE_FATAL, false, false, NULL }, /* names fn */
	{ "servicenotavailable", MOODLE_FATAL, false, false,
	  "the token's external service is disabled: enable it under Site "
	  "administration > Server > Web services > External services" },
	{ "usernotallowed", MOODLE_FATAL, false, false,
	  "the token's user is not an authorised user of its service: add "
	  "it under Site administration > Server > Web services > External "
	  "services > Authorised users" },
	{ "enablewsdescription", MOODLE_FATAL, false, false,
	  "web services are disabled: enable them under Site administration "
	  "> Advanced features" },
	{ "sitepolicynotagreed", MOODLE_FATAL, false, false,
	  "the token's user has not agreed to the site policy: log in once "
	  "as that user and accept it" },
	{ "forcepasswordchangenotice", MOODLE_FATAL, false, false,
	  "the token's user must change its password before using web "
	  "services: log in once as that user" },
	{ "usernotfullysetup", MOODLE_FATAL, false, false,
	  "the token's user profile is incomplete: log in once as that user" },
	{ "wsaccessusersuspended", MOODLE_FATAL, false, false,
	  "the token's user is suspended" },
	{ "wsaccessuserdeleted", MOODLE_FATAL, false, false,
	  "the token's user is deleted" },
	{ "wsaccessuserunconfirmed", MOODLE_FATAL, false, false,
	  "the token's user is not confirmed" },
	{ "wsaccessusernologin", MOODLE_FATAL, false, false,
	  "the token's user has authentication \"nologin\"" },
	/* The call's transaction was rolled back: a deadlock with another
	 * call (30d/30e, 30f), or another write conflict. */
	{ "dmlwriteexception", MOODLE_CONFLICT, false, false,
	  "Moodle's database refused the write and undid the whole call "
	  "(a deadlock with another call, or another conflict)" },
	/* MAILFAIL recordings: the enrolment was committed, then this. */
	{ "Message was not sent.", MOODLE_ITEM, false, true,
	  "Moodle applied the call but could not send its e-mail: check its "
	  "outgoing mail settings" },
};

const char *const moodle_required_functions[] = {
	"core_webservice_get_site_info",    "core_course_get_categories",
	"core_course_get_courses_by_field", "core_course_create_courses",
	"core_course_update_courses",       "core_user_get_users_by_field",
	"enrol_manual_enrol_users",         "enrol_manual_unenrol_users",
	"core_role_assign_roles",           "core_role_unassign_roles",
	"core_enrol_get_enrolled_users",    NULL
};

void
moodle_error_clear(struct moodle_error *err)
{
	if (err == NULL)
		return;
	free(err->function);
	free(err->errorcode);
	free(err->message);
	free(err->debuginfo);
	memset(err, 0, sizeof(*err));
}

static const struct moodle_code *
moodle_code_find(const char *errorcode)
{
	size_t i;

	for (i = 0; errorcode != NULL && i < nitems(moodle_codes); i++) {
		if (strcmp(moodle_codes[i].errorcode, errorcode) == 0)
			return &moodle_codes[i];
	}
	return NULL;
}

int
moodle_error_committed(const struct moodle_error *err)
{
	const struct moodle_code *c = moodle_code_find(err->errorcode);

	return c != NULL && c->committed;
}

/* A copy of Moodle's (or curl's) text fit for one log line: the token is
 * masked (before any cut, so no part of it survives), control bytes become
 * spaces (or '?' with ascii, as are all non-ASCII bytes), length capped. */
static char *
moodle_clean(const struct moodle *m, const char *s, size_t max, bool ascii)
{
	size_t len = strlen(s), tlen = strlen(m->token), i, o = 0;
	unsigned char c;
	char *out;

	/* Past max nothing is kept, so stop there (a mask adds 7 at most). */
	out = xmalloc(max + 8);
	for (i = 0; i < len && o <= max; i++) {
		if (tlen > 0 && len - i >= tlen &&
		    memcmp(s + i, m->token, tlen) == 0) {
			memcpy(out + o, "[token]", 7);
			o += 7;
			i += tlen - 1;
		} else
			out[o++] = s[i];
	}
	if (o > max) {
		o = max;
		/* do not end inside a UTF-8 sequence */
		while (!ascii && o > 0 &&
		       ((unsigned char)out[o] & 0xc0) == 0x80)
			o--;
	}
	out[o] = '\0';
	for (i = 0; i < o; i++) {
		c = (unsigned char)out[i];
		if (c == '\n' || c == '\r' || c == '\t')
			out[i] = ' ';
		else if (c < 0x20 || c == 0x7f || (ascii && c > 0x7e))
			out[i] = ascii ? '?' : ' ';
	}
	return out;
}

/* Fill err; message is a printf format.  Every text is cleaned. */
__attribute__((format(printf, 8, 9))) static void
moodle_fail(const struct moodle *m, struct moodle_error *err,
	    enum moodle_status kind, const char *function,
	    const char *errorcode, const char *debuginfo, long status,
	    const char *fmt, ...)
{
	struct moodle_error e = { 0 };
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	/* Built aside first: the arguments may point into *err. */
	e.kind = kind;
	e.function = xstrdup(function);
	e.errorcode = moodle_clean(m, errorcode, MOODLE_MAX_TEXT, false);
	e.message = moodle_clean(m, msg, 2 * MOODLE_MAX_TEXT, false);
	if (debuginfo != NULL)
		e.debuginfo =
		    moodle_clean(m, debuginfo, MOODLE_MAX_TEXT, false);
	e.http_status = status;
	free(msg);
	moodle_error_clear(err);
	*err = e;
}

void
moodle_error_set(const struct moodle *m, struct moodle_error *err,
		 enum moodle_status kind, const char *function,
		 const char *errorcode, const char *message)
{
	moodle_fail(m, err, kind, function, errorcode, NULL, 0, "%s", message);
}

/* Fill err for an answer whose errorcode is code, as moodle_codes says
 * (kind dflt when it has no row).  what: our words for it, else the
 * table's hint; text: what Moodle (plain text) or curl said.  A DOWN
 * answer says only "Moodle unavailable: " and the hint (and curl's words,
 * detail): Moodle's page or message goes to the debug log. */
static void
moodle_fail_code(const struct moodle *m, struct moodle_error *err,
		 const char *function, const char *code,
		 enum moodle_status dflt, const char *what, const char *text,
		 const char *debug, long status)
{
	const struct moodle_code *c = moodle_code_find(code);
	enum moodle_status kind = c != NULL ? c->kind : dflt;

	if (kind == MOODLE_DOWN && c != NULL && c->hint != NULL)
		moodle_fail(m, err, kind, function, code, debug, status,
			    "Moodle unavailable: %s%s%s%s", c->hint,
			    what != NULL && text != NULL ? " (" : "",
			    what != NULL && text != NULL ? text : "",
			    what != NULL && text != NULL ? ")" : "");
	else if (what != NULL)
		moodle_fail(m, err, kind, function, code, debug, status,
			    "%s%s%s", what, text != NULL ? ": " : "",
			    text != NULL ? text : "");
	else if (c != NULL && c->hint != NULL)
		moodle_fail(m, err, kind, function, code, debug, status,
			    "%s (Moodle: %s)", c->hint,
			    text != NULL ? text : "no message");
	else
		moodle_fail(m, err, kind, function, code, debug, status, "%s",
			    text != NULL ? text : "(no message)");
	err->site = c != NULL && c->site;
}

/* The first bytes of an answer (NUL-terminated, as http_perform and
 * json_dumps leave it) as printable ASCII, for messages.  It is cleaned
 * whole, not cut first: a token across the cut would leave its start. */
static char *
moodle_quote(const struct moodle *m, const char *body)
{
	return moodle_clean(m, body, MOODLE_QUOTE, true);
}

static struct moodle_pace *
moodle_pace_new(int max)
{
	struct moodle_pace *p = xcalloc(1, sizeof(*p));

	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->max = p->limit = max > 0 ? max : 1;
	p->breaker_after = MOODLE_BREAKER_AFTER;
	p->logged_ms[0] = p->logged_ms[1] = INT64_MIN / 2;
	return p;
}

struct moodle *
moodle_new(const struct config *cfg, volatile sig_atomic_t *cancel)
{
	struct moodle *m;
	size_t len;

	m = xcalloc(1, sizeof(*m));
	m->http = http_new(cancel);
	m->pace = moodle_pace_new(cfg->moodle_max_concurrent_calls);
	m->pace->users = 1;
	m->cancel = cancel;
	m->url = xstrdup(cfg->moodle_url != NULL ? cfg->moodle_url : "");
	len = strlen(m->url);
	while (len > 0 && m->url[len - 1] == '/')
		m->url[--len] = '\0';
	xasprintf(&m->endpoint, "%s%s", m->url, MOODLE_ENDPOINT);
	m->url_ui = http_redact_url(m->url);
	m->token = xstrdup(cfg->moodle_token != NULL ? cfg->moodle_token : "");
	if (cfg->moodle_ca_file != NULL)
		m->ca_file = xstrdup(cfg->moodle_ca_file);
	m->timeout_ms = cfg->moodle_timeout_ms > 0 ? cfg->moodle_timeout_ms
						   : MOODLE_DEFAULT_TIMEOUT_MS;
	m->miv_auto = cfg->moodle_max_input_vars == 0;
	m->max_input_vars = cfg->moodle_max_input_vars > 0
				? cfg->moodle_max_input_vars
				: MOODLE_DEFAULT_MAX_INPUT_VARS;
	m->tries = cfg->moodle_retries > 0 ? cfg->moodle_retries : 1;
	m->retry_delay_ms = cfg->moodle_retry_delay_ms > 0
				? cfg->moodle_retry_delay_ms
				: MOODLE_DEFAULT_RETRY_DELAY_MS;
	m->resend = true;
	return m;
}

struct moodle *
moodle_clone(const struct moodle *from)
{
	struct moodle *m = xcalloc(1, sizeof(*m));

	*m = *from;
	m->http = http_new(from->cancel);
	m->url = xstrdup(from->url);
	m->url_ui = xstrdup(from->url_ui);
	m->endpoint = xstrdup(from->endpoint);
	m->token = xstrdup(from->token);
	m->ca_file = from->ca_file != NULL ? xstrdup(from->ca_file) : NULL;
	http_set_tick(m->http, m->tick, m->tick_arg);
	pthread_mutex_lock(&m->pace->lock);
	m->pace->users++;
	pthread_mutex_unlock(&m->pace->lock);
	return m;
}

void
moodle_free(struct moodle *m)
{
	bool last;

	if (m == NULL)
		return;
	http_free(m->http);
	free(m->url);
	free(m->url_ui);
	free(m->endpoint);
	if (m->token != NULL) {
		explicit_bzero(m->token, strlen(m->token));
		free(m->token);
	}
	free(m->ca_file);
	pthread_mutex_lock(&m->pace->lock);
	last = --m->pace->users == 0;
	pthread_mutex_unlock(&m->pace->lock);
	if (last) {
		moodle_pace_summary(m->pace);
		free(m->pace->down);
		free(m->pace->down_code);
		pthread_mutex_destroy(&m->pace->lock);
		pthread_cond_destroy(&m->pace->cond);
		free(m->pace);
	}
	free(m);
}

void
moodle_set_tick(struct moodle *m, void (*tick)(void *), void *arg)
{
	m->tick = tick;
	m->tick_arg = arg;
	http_set_tick(m->http, tick, arg);
}

void
moodle_set_observer(struct moodle *m, moodle_observer_fn fn, void *arg)
{
	m->observe = fn;
	m->observe_arg = arg;
}

bool
moodle_set_resend(struct moodle *m, bool resend)
{
	bool was = m->resend;

	m->resend = resend;
	return was;
}

uint64_t
moodle_requests(const struct moodle *m)
{
	uint64_t n;

	pthread_mutex_lock(&m->pace->lock);
	n = m->pace->requests;
	pthread_mutex_unlock(&m->pace->lock);
	return n;
}

int
moodle_concurrency(const struct moodle *m)
{
	return m->pace->max;
}

int
moodle_tries(const struct moodle *m)
{
	return m->tries;
}

int64_t
moodle_retry_delay(const struct moodle *m)
{
	return m->retry_delay_ms;
}

int
moodle_max_input_vars(const struct moodle *m)
{
	return m->max_input_vars;
}

void
moodle_set_max_input_vars(struct moodle *m, int n)
{
	m->max_input_vars = n;
}

size_t
moodle_capacity(const struct moodle *m, int fields, int extra)
{
	int room =
	    m->max_input_vars - MOODLE_MARGIN_VARS - MOODLE_WS_VARS - extra;

	if (fields <= 0 || room < fields)
		return 0;
	return (size_t)(room / fields);
}

static void
form_append(struct moodle_form *f, const char *s, size_t n)
{
	if (f->len + n + 1 > f->cap) {
		size_t cap = f->cap < 1024 ? 1024 : f->cap;

		while (cap < f->len + n + 1)
			cap *= 2;
		f->buf = xreallocarray(f->buf, cap, 1);
		f->cap = cap;
	}
	memcpy(f->buf + f->len, s, n);
	f->len += n;
	f->buf[f->len] = '\0';
}

/* key=value with the value percent-encoded; keys are ours and plain. */
static void
form_add(struct moodle_form *f, const char *key, const char *value)
{
	char *v = http_escape(value);

	if (f->len > 0)
		form_append(f, "&", 1);
	form_append(f, key, strlen(key));
	form_append(f, "=", 1);
	form_append(f, v, strlen(v));
	free(v);
	f->nvars++;
}

static void
form_add_int(struct moodle_form *f, const char *key, int64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	form_add(f, key, buf);
}

/* array[i][field]=value, PHP's bracket form. */
static void
form_item(struct moodle_form *f, const char *array, size_t i, const char *field,
	  const char *value)
{
	char key[128];

	snprintf(key, sizeof(key), "%s[%zu][%s]", array, i, field);
	form_add(f, key, value);
}

static void
form_item_int(struct moodle_form *f, const char *array, size_t i,
	      const char *field, int64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	form_item(f, array, i, field, buf);
}

/* Start a form with the token and the function first, so that a cut by
 * max_input_vars never loses them (moodle-ws 20e).  moodlewsrestformat
 * goes last (form_seal): if PHP's real max_input_vars is lower than
 * configured and cuts the request, even between two whole items (which
 * Moodle would otherwise accept, enrolling only the first part: 20c), the
 * format is lost with it and Moodle answers in XML, which stops the run
 * instead of committing what Moodle never did. */
static void
form_init(struct moodle_form *f, const struct moodle *m, const char *function)
{
	memset(f, 0, sizeof(*f));
	f->function = function;
	f->limit = m->max_input_vars - MOODLE_MARGIN_VARS;
	form_add(f, "wstoken", m->token);
	form_add(f, "wsfunction", function);
}

static void
form_seal(struct moodle_form *f)
{
	form_add(f, "moodlewsrestformat", "json");
}

static void
form_free(struct moodle_form *f)
{
	if (f->buf != NULL) {
		explicit_bzero(f->buf, f->len); /* it holds the token */
		free(f->buf);
	}
	memset(f, 0, sizeof(*f));
}

int
moodle_wait(struct moodle *m, int64_t ms)
{
	int64_t deadline = now_monotonic_ms() + ms, left, now;
	struct timespec ts;

	while ((left = deadline - (now = now_monotonic_ms())) > 0) {
		if (m->cancel != NULL && *m->cancel)
			return -1;
		if (m->tick != NULL && now - m->last_tick_ms >= 1000) {
			m->last_tick_ms = now;
			m->tick(m->tick_arg);
		}
		if (left > MOODLE_SLEEP_STEP_MS)
			left = MOODLE_SLEEP_STEP_MS;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)left * 1000000L;
		nanosleep(&ts, NULL);
	}
	return m->cancel != NULL && *m->cancel ? -1 : 0;
}

/* A transfer that produced no answer: its errorcode and our words. */
static void
moodle_fail_transfer(const struct moodle *m, const char *function,
		     enum http_result r, const char *cause,
		     struct moodle_error *err)
{
	static const struct {
		enum http_result result;
		enum moodle_status kind; /* when moodle_codes has no row */
		const char *errorcode, *what;
	} map[] = {
		{ HTTP_ERR_CONNECT, MOODLE_DOWN, "connect",
		  "cannot reach Moodle" },
		{ HTTP_ERR_TIMEOUT, MOODLE_UNSURE, "timeout",
		  "Moodle did not answer in time (moodle.timeout)" },
		{ HTTP_ERR_NO_ANSWER, MOODLE_UNSURE, "noanswer",
		  "the connection to Moodle broke before its answer" },
		{ HTTP_ERR_TOO_BIG, MOODLE_FATAL, "toobig",
		  "Moodle's answer is too large" },
		{ HTTP_ERR_CANCELLED, MOODLE_CANCELLED, "cancelled",
		  "cancelled" },
		{ HTTP_ERR_OTHER, MOODLE_FATAL, "http",
		  "cannot talk to Moodle (check moodle.url and "
		  "moodle.ca_file)" },
	};
	size_t i;

	for (i = 0; i < nitems(map) - 1 && map[i].result != r; i++)
		;
	moodle_fail_code(m, err, function, map[i].errorcode, map[i].kind,
			 map[i].what, cause, NULL, 0);
}

/* An answer whose HTTP status is not a plain 2xx. */
static void
moodle_fail_status(const struct moodle *m, const char *function,
		   const struct http_response *resp, struct moodle_error *err)
{
	char code[16], what[64], *loc, *root, *page;
	size_t len, elen = strlen(MOODLE_ENDPOINT);

	snprintf(code, sizeof(code), "http%ld", resp->status);
	if (resp->status >= 300 && resp->status < 400) {
		loc = http_redact_url(resp->location != NULL ? resp->location
							     : "(none)");
		/* Moodle redirects to its wwwroot + the endpoint (22). */
		len = strlen(loc);
		root =
		    len > elen && strcmp(loc + len - elen, MOODLE_ENDPOINT) == 0
			? xstrndup(loc, len - elen)
			: xstrdup(loc);
		moodle_fail(m, err, MOODLE_FATAL, function, "redirect", NULL,
			    resp->status,
			    "moodle.url %s does not match Moodle's wwwroot: "
			    "Moodle redirects to %s (HTTP %ld); set moodle.url "
			    "to %s",
			    m->url_ui, loc, resp->status, root);
		free(loc);
		free(root);
	} else if (resp->status == 403)
		moodle_fail(m, err, MOODLE_FATAL, function, code, NULL, 403,
			    "Moodle answered HTTP 403 Forbidden: web services "
			    "are probably disabled; enable them under Site "
			    "administration > Advanced features and the REST "
			    "protocol under Site administration > Server > Web "
			    "services > Manage protocols");
	else if (resp->status >= 500 || resp->status == 429) {
		/* An error page (32e, 32g): its text for the debug log. */
		page = text_plain(resp->body, MOODLE_QUOTE);
		snprintf(what, sizeof(what), "Moodle answered HTTP %ld",
			 resp->status);
		moodle_fail_code(m, err, function, code, MOODLE_TRANSIENT, NULL,
				 what, NULL, resp->status);
		log_debug("moodle: %s: HTTP %ld: %s", function, resp->status,
			  page);
		free(page);
	} else
		moodle_fail(
		    m, err, MOODLE_FATAL, function, code, NULL, resp->status,
		    "Moodle answered HTTP %ld for %s%s: check moodle.url",
		    resp->status, m->url_ui, MOODLE_ENDPOINT);
}

/* An exception object in the body: classify it by errorcode.  An object
 * without errorcode (a PHP Error, moodle-ws 05c) is the item's fault. */
static void
moodle_fail_exception(const struct moodle *m, const char *function, json_t *obj,
		      struct moodle_error *err)
{
	const char *code = json_string_value(json_object_get(obj, "errorcode"));
	const char *text = json_string_value(json_object_get(obj, "message"));
	const char *debug =
	    json_string_value(json_object_get(obj, "debuginfo"));
	const char *exc = json_string_value(json_object_get(obj, "exception"));
	char *plain, *pdebug;

	/* Moodle's texts carry HTML (32a): plain text for a person. */
	plain =
	    text_plain(text != NULL && *text != '\0' ? text : "(no message)",
		       MOODLE_MAX_TEXT);
	pdebug = debug != NULL ? text_plain(debug, MOODLE_MAX_TEXT) : NULL;
	if (code == NULL)
		code = exc != NULL ? exc : "exception";
	if (strcmp(code, "accessexception") == 0)
		moodle_fail(m, err, MOODLE_FATAL, function, code, pdebug, 200,
			    "function %s is not in the web service's function "
			    "list: add it under Site administration > Server > "
			    "Web services > External services (Moodle: %s)",
			    function, plain);
	/* invalidrecord names its table: external_functions means the
	 * function itself is missing (17a); course or user means an item
	 * refers to a vanished record (unenrol 11e, enrolled users 13c). */
	else if (strcmp(code, "invalidrecord") == 0 &&
		 strstr(plain, "external_functions") != NULL)
		moodle_fail(m, err, MOODLE_FATAL, function, code, pdebug, 200,
			    "function %s does not exist on this Moodle: it "
			    "needs a newer Moodle (Moodle: %s)",
			    function, plain);
	else
		moodle_fail_code(m, err, function, code, MOODLE_ITEM, NULL,
				 plain, pdebug, 200);
	free(plain);
	free(pdebug);
}

/* Turn one HTTP answer into JSON of the expected type or an error. */
static int
moodle_answer(const struct moodle *m, const char *function,
	      const struct http_response *resp, json_type expect, json_t **ret,
	      struct moodle_error *err)
{
	json_error_t jerr;
	json_t *j;
	const char *p = resp->body;
	char *q;

	if (resp->status < 200 || resp->status > 299) {
		moodle_fail_status(m, function, resp, err);
		return -1;
	}
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (strncmp(p, "<?xml", 5) == 0) {
		q = moodle_quote(m, resp->body);
		moodle_fail(m, err, MOODLE_FATAL, function, "xml", NULL,
			    resp->status,
			    "Moodle answered in XML instead of JSON, so it did "
			    "not see moodlewsrestformat, which we send last: "
			    "PHP's max_input_vars on the server is lower than "
			    "%d and cut the request; %s: \"%s\"",
			    m->max_input_vars,
			    m->miv_auto ? "the next run measures it again"
					: "set moodle.max_input_vars to the "
					  "server's value (or to auto)",
			    q);
		free(q);
		return -1;
	}
	j = json_loadb(resp->body, resp->len, JSON_DECODE_ANY, &jerr);
	if (j == NULL) {
		q = moodle_quote(m, resp->body);
		moodle_fail(m, err, MOODLE_TRANSIENT, function, "badjson", NULL,
			    resp->status,
			    "Moodle's answer is not JSON (%s, %zu bytes): "
			    "\"%s\"",
			    jerr.text, resp->len, q);
		free(q);
		return -1;
	}
	if (json_is_object(j) && json_object_get(j, "exception") != NULL) {
		/* The raw answer, for the debug log only. */
		q = moodle_clean(m, resp->body, MOODLE_MAX_TEXT, true);
		log_debug("moodle: %s: HTTP %ld: %s", function, resp->status,
			  q);
		free(q);
		moodle_fail_exception(m, function, j, err);
		json_decref(j);
		return -1;
	}
	if (json_typeof(j) != expect) {
		q = moodle_quote(m, resp->body);
		moodle_fail(m, err, MOODLE_TRANSIENT, function, "badanswer",
			    NULL, resp->status,
			    "Moodle's answer does not have the expected shape: "
			    "\"%s\"",
			    q);
		free(q);
		json_decref(j);
		return -1;
	}
	*ret = j;
	return 0;
}

/* The times of one function's answers, per form variable. */
static struct moodle_pace_fn *
moodle_pace_fn(struct moodle_pace *p, const char *function)
{
	for (size_t i = 0; i < p->nfns; i++)
		if (strcmp(p->fns[i].function, function) == 0)
			return &p->fns[i];
	if (p->nfns == MOODLE_PACE_FUNCTIONS)
		return NULL;
	p->fns[p->nfns].function = function;
	return &p->fns[p->nfns++];
}

static int
moodle_double_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int
moodle_int_cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

static double
moodle_pace_median(const struct moodle_pace_fn *fn)
{
	double v[MOODLE_PACE_WINDOW];

	memcpy(v, fn->us_per_var, fn->n * sizeof(v[0]));
	qsort(v, fn->n, sizeof(v[0]), moodle_double_cmp);
	return v[fn->n / 2];
}

/* The usual size of the function's calls, in form variables. */
static int
moodle_pace_size(const struct moodle_pace_fn *fn)
{
	int v[MOODLE_PACE_WINDOW];

	memcpy(v, fn->nvars, fn->n * sizeof(v[0]));
	qsort(v, fn->n, sizeof(v[0]), moodle_int_cmp);
	return v[fn->n / 2];
}

/* Log a change of the limit (dir 0 lower, 1 raise), with the pace lock
 * held: once a minute per direction at most, so that a Moodle that flaps
 * between slow and normal does not fill the journal (issue 19); the
 * changes left out are counted in the next line and in the summary. */
static void
moodle_pace_log(struct moodle_pace *p, int dir, const char *what)
{
	int64_t now = now_monotonic_ms();
	char more[64] = "";

	p->changes[dir]++;
	if (now - p->logged_ms[dir] < MOODLE_PACE_LOG_MS) {
		p->unlogged[dir]++;
		p->quiet++;
		log_debug("%s", what);
		return;
	}
	if (p->unlogged[dir] > 0)
		snprintf(more, sizeof(more),
			 " (%d more time%s in the last "
			 "minute, not logged)",
			 p->unlogged[dir], p->unlogged[dir] == 1 ? "" : "s");
	p->logged_ms[dir] = now;
	p->unlogged[dir] = 0;
	if (dir == 0)
		log_warnx("%s%s", what, more);
	else
		log_info("%s%s", what, more);
}

/* At the end of a client: how often the limit changed, when some of the
 * changes were not logged. */
static void
moodle_pace_summary(const struct moodle_pace *p)
{
	if (p->quiet == 0)
		return;
	log_info("Moodle's pace changed %d times (%d not logged): fewer calls "
		 "at once %d times, one more %d times; %d of %d at once at the "
		 "end",
		 p->changes[0] + p->changes[1], p->quiet, p->changes[0],
		 p->changes[1], p->limit, p->max);
}

/* Fewer calls at once; with the pace lock held. */
static void
moodle_pace_lower(struct moodle_pace *p, const char *why)
{
	int old = p->limit;
	char what[192];

	p->slow = p->good = 0;
	if (p->limit == 1)
		return;
	p->limit /= 2;
	p->generation++;
	snprintf(what, sizeof(what),
		 "Moodle %s: %d call%s at once instead of %d until it "
		 "answers normally",
		 why, p->limit, p->limit == 1 ? "" : "s", old);
	moodle_pace_log(p, 0, what);
}

/* Wait for a free place among the calls in flight: 0 with the generation
 * the call is sent in, or -1 when the breaker is open (nothing is sent). */
static int
moodle_pace_enter(struct moodle *m, uint64_t *ret_gen)
{
	struct moodle_pace *p = m->pace;
	int rv = -1;

	pthread_mutex_lock(&p->lock);
	while (p->down == NULL && p->inflight >= p->limit)
		pthread_cond_wait(&p->cond, &p->lock);
	if (p->down == NULL) {
		p->inflight++;
		p->requests++;
		*ret_gen = p->generation;
		rv = 0;
	}
	pthread_mutex_unlock(&p->lock);
	return rv;
}

/* Open the breaker with err's reason; with the pace lock held.  The
 * calls waiting for a place are woken to fail. */
static void
moodle_pace_open(struct moodle_pace *p, const struct moodle_error *err)
{
	const struct moodle_code *c = moodle_code_find(err->errorcode);

	if (p->down != NULL)
		return;
	if (c != NULL && c->site && c->hint != NULL)
		xasprintf(&p->down, "Moodle unavailable: %s", c->hint);
	else
		xasprintf(&p->down, "Moodle unavailable: %s", err->message);
	p->down_code = xstrdup(err->errorcode);
	pthread_cond_broadcast(&p->cond);
}

void
moodle_set_breaker(struct moodle *m, int after)
{
	pthread_mutex_lock(&m->pace->lock);
	m->pace->breaker_after = after > 0 ? after : 1;
	pthread_mutex_unlock(&m->pace->lock);
}

bool
moodle_down(const struct moodle *m, char **ret_cause)
{
	bool down;

	pthread_mutex_lock(&m->pace->lock);
	down = m->pace->down != NULL;
	if (down && ret_cause != NULL)
		*ret_cause = xstrdup(m->pace->down);
	pthread_mutex_unlock(&m->pace->lock);
	return down;
}

void
moodle_down_error(const struct moodle *m, const char *function,
		  struct moodle_error *err)
{
	char *cause, *code;
	char *fn = xstrdup(function); /* it may point into *err */

	pthread_mutex_lock(&m->pace->lock);
	cause = xstrdup(m->pace->down ? m->pace->down : "Moodle unavailable");
	code = xstrdup(m->pace->down_code ? m->pace->down_code : "moodledown");
	pthread_mutex_unlock(&m->pace->lock);
	moodle_fail(m, err, MOODLE_DOWN, fn, code, NULL, 0, "%s", cause);
	err->site = true;
	free(cause);
	free(code);
	free(fn);
}

void
moodle_give_up(struct moodle *m, const struct moodle_error *err)
{
	pthread_mutex_lock(&m->pace->lock);
	moodle_pace_open(m->pace, err);
	pthread_mutex_unlock(&m->pace->lock);
}

/* One answer (or none), to a call sent in generation gen: judge Moodle's
 * pace from it and free the place.  A call's time is taken per form
 * variable, but no less than a call of the usual size would have: a small
 * call that waited for a PHP worker behind a large one is not slow. */
static void
moodle_pace_leave(struct moodle *m, const struct moodle_form *f, uint64_t gen,
		  const struct moodle_error *err, int64_t usec)
{
	struct moodle_pace *p = m->pace;
	enum moodle_status kind;
	struct moodle_pace_fn *fn;
	double t, median = 0;
	int size = 0;
	char why[96];

	pthread_mutex_lock(&p->lock);
	p->inflight--;
	if (err != NULL && err->kind == MOODLE_CANCELLED)
		goto out;
	/* The breaker counts site-wide answers in a row, from every call. */
	if (err == NULL || !err->site)
		p->site_run = 0;
	else if (++p->site_run >= p->breaker_after)
		moodle_pace_open(p, err);
	/* A site-wide refusal says nothing of Moodle's pace (it came at
	 * once), and the breaker deals with it. */
	if (err != NULL && err->kind == MOODLE_DOWN)
		goto out;
	kind = err != NULL ? err->kind : MOODLE_OK;
	if (gen != p->generation ||
	    (fn = moodle_pace_fn(p, f->function)) == NULL)
		goto out;
	if (kind == MOODLE_TRANSIENT || kind == MOODLE_UNSURE) {
		moodle_pace_lower(p, "fails or times out");
		goto out;
	}
	if (fn->n >= MOODLE_PACE_MIN_SAMPLES) {
		median = moodle_pace_median(fn);
		size = moodle_pace_size(fn);
	}
	t = (double)usec / (f->nvars > size ? f->nvars : size > 0 ? size : 1);
	if (median > 0 && t > MOODLE_PACE_SLOW * median) {
		p->good = 0;
		if (++p->slow >= MOODLE_PACE_SLOW_RUN) {
			snprintf(why, sizeof(why),
				 "answers %s %.0f times slower than usual",
				 f->function, t / median);
			moodle_pace_lower(p, why);
		}
	} else if (++p->good >= MOODLE_PACE_GOOD_RUN && p->limit < p->max) {
		p->slow = p->good = 0;
		p->limit++;
		p->generation++;
		snprintf(why, sizeof(why),
			 "Moodle answers normally again: %d calls at once",
			 p->limit);
		moodle_pace_log(p, 1, why);
	} else
		p->slow = 0;
	fn->us_per_var[fn->pos] = t;
	fn->nvars[fn->pos] = f->nvars;
	fn->pos = (fn->pos + 1) % MOODLE_PACE_WINDOW;
	if (fn->n < MOODLE_PACE_WINDOW)
		fn->n++;
out:
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* The observer's word for how a request ended. */
static const char *
moodle_outcome(int rv, const struct moodle_error *err)
{
	static const struct {
		const char *errorcode, *outcome;
	} map[] = {
		{ "timeout", "timeout" },        { "connect", "connect_error" },
		{ "noanswer", "connect_error" }, { "cancelled", "cancelled" },
		{ "badjson", "bad_answer" },     { "badanswer", "bad_answer" },
		{ "xml", "bad_answer" },         { "redirect", "http_error" },
		{ "toobig", "bad_answer" },      { "http", "connect_error" },
	};

	if (rv == 0)
		return "ok";
	for (size_t i = 0; i < nitems(map); i++)
		if (strcmp(err->errorcode, map[i].errorcode) == 0)
			return map[i].outcome;
	if (err->http_status != 200)
		return "http_error";
	return "moodle_error";
}

/* One request and its answer, paced and observed. */
static int
moodle_attempt(struct moodle *m, struct moodle_form *f,
	       const struct http_request *req, json_type expect, json_t **ret,
	       struct moodle_error *err)
{
	struct http_response resp;
	enum http_result r;
	char *cause = NULL;
	int64_t start, usec;
	uint64_t gen;
	int rv;

	if (moodle_pace_enter(m, &gen) == -1) {
		moodle_down_error(m, f->function, err);
		return -1;
	}
	start = now_monotonic_us();
	memset(&resp, 0, sizeof(resp));
	r = http_perform(m->http, req, &resp, &cause);
	if (r == HTTP_OK) {
		rv = moodle_answer(m, f->function, &resp, expect, ret, err);
		http_response_clear(&resp);
	} else {
		moodle_fail_transfer(m, f->function, r, cause, err);
		free(cause);
		rv = -1;
	}
	usec = now_monotonic_us() - start;
	moodle_pace_leave(m, f, gen, rv == 0 ? NULL : err, usec);
	if (m->observe != NULL)
		m->observe(m->observe_arg, f->function, moodle_outcome(rv, err),
			   usec);
	return rv;
}

/* Send the form, retrying transient failures with a doubling back-off (a
 * call without an answer too, unless resending is off).  On success *ret
 * is the answer, of JSON type expect. */
static int
moodle_call(struct moodle *m, struct moodle_form *f, json_type expect,
	    json_t **ret, struct moodle_error *err)
{
	struct http_request req;
	int64_t delay = m->retry_delay_ms;
	bool again;
	int try, rv;

	form_seal(f);
	if (f->nvars > f->limit) {
		/* A caller bug: PHP would cut the request silently (20c). */
		moodle_fail(m, err, MOODLE_FATAL, f->function, "toomanyvars",
			    NULL, 0,
			    "request not sent: it would carry %d form "
			    "variables, over moodle.max_input_vars (%d) less "
			    "a margin of %d",
			    f->nvars, m->max_input_vars, MOODLE_MARGIN_VARS);
		return -1;
	}
	memset(&req, 0, sizeof(req));
	req.url = m->endpoint;
	req.body = f->buf;
	req.body_len = f->len;
	req.content_type = "application/x-www-form-urlencoded";
	req.connect_timeout_ms = m->timeout_ms < MOODLE_CONNECT_TIMEOUT_MS
				     ? m->timeout_ms
				     : MOODLE_CONNECT_TIMEOUT_MS;
	req.timeout_ms = m->timeout_ms;
	req.max_body = MOODLE_MAX_BODY;
	req.ca_file = m->ca_file;
	req.accept_gzip = true;

	for (try = 1;; try++) {
		log_debug("moodle: %s: %d variables, %zu bytes, try %d",
			  f->function, f->nvars, f->len, try);
		rv = moodle_attempt(m, f, &req, expect, ret, err);
		if (rv == -1 && err->site && moodle_down(m, NULL)) {
			/* The breaker is open: no try again.  An unsure
			 * write stays unsure for the caller to settle. */
			if (err->kind != MOODLE_UNSURE || m->resend)
				moodle_down_error(m, f->function, err);
			return rv;
		}
		again = rv == -1 && (err->kind == MOODLE_TRANSIENT ||
				     err->kind == MOODLE_DOWN ||
				     (err->kind == MOODLE_UNSURE && m->resend));
		if (!again) {
			if (rv == 0) /* an earlier try's error is no more */
				moodle_error_clear(err);
			return rv;
		}
		if (try >= m->tries) {
			/* Given up on site-wide answers: Moodle is down. */
			if (err->site) {
				moodle_give_up(m, err);
				moodle_down_error(m, f->function, err);
			} else
				err->kind = MOODLE_TRANSIENT;
			return rv;
		}
		log_debug("moodle: %s: %s, try %d of %d in %" PRId64 " ms",
			  f->function, err->message, try + 1, m->tries, delay);
		if (moodle_wait(m, delay) == -1) {
			moodle_fail(m, err, MOODLE_CANCELLED, f->function,
				    "cancelled", NULL, 0,
				    "cancelled while waiting to retry");
			return -1;
		}
		delay = delay > MOODLE_MAX_BACKOFF_MS / 2
			    ? MOODLE_MAX_BACKOFF_MS
			    : delay * 2;
	}
}

/* Build, send and decode; the form is freed. */
static int
moodle_send(struct moodle *m, struct moodle_form *f, json_type expect,
	    json_t **ret, struct moodle_error *err)
{
	int rv = moodle_call(m, f, expect, ret, err);

	form_free(f);
	return rv;
}

static void
moodle_bad_shape(const struct moodle *m, const char *function, json_t *j,
		 const char *what, struct moodle_error *err)
{
	char *dump = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY), *q;

	q = moodle_quote(m, dump != NULL ? dump : "");
	moodle_fail(m, err, MOODLE_ITEM, function, "badanswer", NULL, 200,
		    "Moodle's answer %s: \"%s\"", what, q);
	free(q);
	free(dump);
}

static char *
json_strdup(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return xstrdup(s != NULL ? s : "");
}

/* Undo external_format_string() on names: Moodle strips tags (lost) and
 * turns a bare "&" into "&amp;" (moodle-ws 05g). */
static char *
json_strdup_name(json_t *obj, const char *key)
{
	char *s = json_strdup(obj, key), *r, *w;

	for (r = w = s; *r != '\0'; r++) {
		*w++ = *r;
		if (strncmp(r, "&amp;", 5) == 0)
			r += 4;
	}
	*w = '\0';
	return s;
}

static int
json_id(json_t *obj, const char *key, int64_t *ret)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_integer(v))
		return -1;
	*ret = json_integer_value(v);
	return 0;
}

/* A record's id: Moodle's ids are BIGINT(10) from 1 (its sequences start
 * there); 0, a negative or a larger number is not one of its records. */
#define MOODLE_MAX_ID INT64_C(9999999999)

static int
json_record_id(json_t *obj, const char *key, int64_t *ret)
{
	int64_t id;

	if (json_id(obj, key, &id) == -1 || id < 1 || id > MOODLE_MAX_ID)
		return -1;
	*ret = id;
	return 0;
}

/* The answer of core_webservice_get_site_info. */
static int
moodle_site_info_decode(const struct moodle *m, json_t *j,
			struct moodle_site_info **ret, struct moodle_error *err)
{
	struct moodle_site_info *si;
	json_t *fns, *fn;
	const char *name;
	size_t i;

	if (!json_is_array(fns = json_object_get(j, "functions"))) {
		moodle_bad_shape(m, "core_webservice_get_site_info", j,
				 "has no functions list", err);
		return -1;
	}
	si = xcalloc(1, sizeof(*si));
	si->sitename = json_strdup_name(j, "sitename");
	si->siteurl = json_strdup(j, "siteurl");
	si->release = json_strdup(j, "release");
	si->version = json_strdup(j, "version");
	si->username = json_strdup(j, "username");
	si->functions = xcalloc(json_array_size(fns) + 1, sizeof(char *));
	json_array_foreach(fns, i, fn)
	{
		if ((name = json_string_value(json_object_get(fn, "name"))))
			si->functions[si->nfunctions++] = xstrdup(name);
	}
	*ret = si;
	return 0;
}

int
moodle_site_info(struct moodle *m, struct moodle_site_info **ret,
		 struct moodle_error *err)
{
	struct moodle_form f;
	json_t *j;
	int rv;

	moodle_error_clear(err);
	form_init(&f, m, "core_webservice_get_site_info");
	if (moodle_send(m, &f, JSON_OBJECT, &j, err) == -1)
		return -1;
	rv = moodle_site_info_decode(m, j, ret, err);
	json_decref(j);
	return rv;
}

void
moodle_site_info_free(struct moodle_site_info *si)
{
	size_t i;

	if (si == NULL)
		return;
	free(si->sitename);
	free(si->siteurl);
	free(si->release);
	free(si->version);
	free(si->username);
	for (i = 0; i < si->nfunctions; i++)
		free(si->functions[i]);
	free(si->functions);
	free(si);
}

/* The name of category id in an answer of core_course_get_categories, or
 * NULL when it is not listed. */
static char *
moodle_category_decode(json_t *j, int64_t id)
{
	json_t *cat;
	int64_t cid;
	size_t i;

	json_array_foreach(j, i, cat)
	{
		if (json_id(cat, "id", &cid) == 0 && cid == id)
			return json_strdup_name(cat, "name");
	}
	return NULL;
}

int
moodle_category_get(struct moodle *m, int64_t id, char **ret_name,
		    struct moodle_error *err)
{
	struct moodle_form f;
	json_t *j;

	moodle_error_clear(err);
	form_init(&f, m, "core_course_get_categories");
	form_item(&f, "criteria", 0, "key", "id");
	form_item_int(&f, "criteria", 0, "value", id);
	form_add(&f, "addsubcategories", "0");
	if (moodle_send(m, &f, JSON_ARRAY, &j, err) == -1)
		return -1;
	*ret_name = moodle_category_decode(j, id);
	json_decref(j);
	return 0;
}

void
moodle_course_clear(struct moodle_course *c)
{
	if (c == NULL)
		return;
	free(c->shortname);
	free(c->fullname);
	free(c->idnumber);
	memset(c, 0, sizeof(*c));
}

void
moodle_courses_free(struct moodle_course *c, size_t n)
{
	for (size_t i = 0; c != NULL && i < n; i++)
		moodle_course_clear(&c[i]);
	free(c);
}

/* The courses of an answer of core_course_get_courses_by_field, in
 * Moodle's order. */
static int
moodle_courses_decode(const struct moodle *m, json_t *j,
		      struct moodle_course **ret, size_t *ret_n,
		      struct moodle_error *err)
{
	struct moodle_course *out;
	json_t *courses, *c, *v;
	size_t i, n = 0;

	if (!json_is_array(courses = json_object_get(j, "courses"))) {
		moodle_bad_shape(m, "core_course_get_courses_by_field", j,
				 "has no courses list", err);
		return -1;
	}
	out = xcalloc(json_array_size(courses) + 1, sizeof(*out));
	json_array_foreach(courses, i, c)
	{
		struct moodle_course *mc = &out[n];

		if (json_record_id(c, "id", &mc->id) == -1)
			continue;
		mc->shortname = json_strdup_name(c, "shortname");
		mc->fullname = json_strdup_name(c, "fullname");
		if (json_is_string(v = json_object_get(c, "idnumber")))
			mc->idnumber = xstrdup(json_string_value(v));
		v = json_object_get(c, "visible");
		mc->visible = json_is_integer(v) ? (int)json_integer_value(v)
						 : json_is_true(v);
		json_id(c, "categoryid", &mc->categoryid);
		n++;
	}
	*ret = out;
	*ret_n = n;
	return 0;
}

int
moodle_courses_by_field(struct moodle *m, const char *field, const char *value,
			struct moodle_course **ret, size_t *ret_n,
			struct moodle_error *err)
{
	struct moodle_form f;
	json_t *j;
	int rv;

	moodle_error_clear(err);
	*ret = NULL;
	*ret_n = 0;
	form_init(&f, m, "core_course_get_courses_by_field");
	form_add(&f, "field", field);
	form_add(&f, "value", value);
	if (moodle_send(m, &f, JSON_OBJECT, &j, err) == -1)
		return -1;
	rv = moodle_courses_decode(m, j, ret, ret_n, err);
	json_decref(j);
	return rv;
}

/* Moodle matched the shortname itself (as its database compares): prefer
 * an exact match when it lists several.  ret->id stays 0 when none. */
static void
moodle_course_pick(struct moodle_course *list, size_t n, const char *shortname,
		   struct moodle_course *ret)
{
	size_t pick = 0;

	memset(ret, 0, sizeof(*ret));
	if (n == 0)
		return;
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].shortname, shortname) == 0) {
			pick = i;
			break;
		}
	*ret = list[pick];
	memset(&list[pick], 0, sizeof(list[pick]));
}

int
moodle_course_by_shortname(struct moodle *m, const char *shortname,
			   struct moodle_course *ret, struct moodle_error *err)
{
	struct moodle_course *list;
	size_t n;

	if (moodle_courses_by_field(m, "shortname", shortname, &list, &n,
				    err) == -1)
		return -1;
	moodle_course_pick(list, n, shortname, ret);
	moodle_courses_free(list, n);
	return 0;
}

int
moodle_courses_create_fields(const struct moodle_new_course *c, size_t n)
{
	int max = 3, k;
	size_t i;

	for (i = 0; i < n; i++) {
		k = 3 + (c[i].idnumber != NULL) + (c[i].summary != NULL) +
		    (c[i].format != NULL) + (c[i].visible >= 0) +
		    (c[i].startdate != 0) + (c[i].enddate != 0);
		if (k > max)
			max = k;
	}
	return max;
}

/* The ids of the n courses sent in an answer of core_course_create_courses;
 * nothing is written to ret_ids on failure. */
static int
moodle_created_decode(const struct moodle *m, json_t *j, size_t n,
		      int64_t *ret_ids, struct moodle_error *err)
{
	static const char *fn = "core_course_create_courses";
	json_t *item;
	int64_t *ids;
	size_t i;
	int rv = -1;

	/* The answer lists the new courses in request order (02). */
	if (json_array_size(j) != n) {
		moodle_bad_shape(m, fn, j, "does not list every course", err);
		return -1;
	}
	ids = xcalloc(n, sizeof(*ids));
	json_array_foreach(j, i, item)
	{
		if (json_record_id(item, "id", &ids[i]) == -1) {
			moodle_bad_shape(m, fn, j, "lacks a course id", err);
			goto out;
		}
	}
	memcpy(ret_ids, ids, n * sizeof(*ids));
	rv = 0;
out:
	free(ids);
	return rv;
}

int
moodle_courses_create(struct moodle *m, const struct moodle_new_course *c,
		      size_t n, int64_t *ret_ids, struct moodle_error *err)
{
	static const char *fn = "core_course_create_courses";
	struct moodle_form f;
	json_t *j;
	size_t i;
	int rv;

	moodle_error_clear(err);
	if (n == 0)
		return 0;
	form_init(&f, m, fn);
	for (i = 0; i < n; i++) {
		form_item(&f, "courses", i, "fullname", c[i].fullname);
		form_item(&f, "courses", i, "shortname", c[i].shortname);
		form_item_int(&f, "courses", i, "categoryid", c[i].categoryid);
		if (c[i].idnumber != NULL)
			form_item(&f, "courses", i, "idnumber", c[i].idnumber);
		if (c[i].summary != NULL)
			form_item(&f, "courses", i, "summary", c[i].summary);
		if (c[i].format != NULL)
			form_item(&f, "courses", i, "format", c[i].format);
		if (c[i].visible >= 0)
			form_item_int(&f, "courses", i, "visible",
				      c[i].visible);
		if (c[i].startdate != 0)
			form_item_int(&f, "courses", i, "startdate",
				      c[i].startdate);
		if (c[i].enddate != 0)
			form_item_int(&f, "courses", i, "enddate",
				      c[i].enddate);
	}
	if (moodle_send(m, &f, JSON_ARRAY, &j, err) == -1)
		return -1;
	rv = moodle_created_decode(m, j, n, ret_ids, err);
	json_decref(j);
	return rv;
}

void
moodle_warnings_free(struct moodle_warning *w, size_t n)
{
	size_t i;

	for (i = 0; w != NULL && i < n; i++) {
		free(w[i].warningcode);
		free(w[i].message);
	}
	free(w);
}

/* The warnings of an answer of core_course_update_courses. */
static int
moodle_warnings_decode(const struct moodle *m, json_t *j,
		       struct moodle_warning **ret_warnings,
		       size_t *ret_nwarnings, struct moodle_error *err)
{
	struct moodle_warning *w;
	json_t *list, *item;
	size_t i, nw = 0;
	char *s, *plain;

	if (!json_is_array(list = json_object_get(j, "warnings"))) {
		moodle_bad_shape(m, "core_course_update_courses", j,
				 "has no warnings list", err);
		return -1;
	}
	w = xcalloc(json_array_size(list), sizeof(*w));
	json_array_foreach(list, i, item)
	{
		json_id(item, "itemid", &w[nw].itemid);
		s = json_strdup(item, "warningcode");
		w[nw].warningcode = moodle_clean(m, s, MOODLE_MAX_TEXT, false);
		free(s);
		s = json_strdup(item, "message");
		plain = text_plain(s, MOODLE_MAX_TEXT); /* Moodle's HTML */
		w[nw].message = moodle_clean(m, plain, MOODLE_MAX_TEXT, false);
		free(plain);
		free(s);
		nw++;
	}
	*ret_warnings = w;
	*ret_nwarnings = nw;
	return 0;
}

int
moodle_courses_update(struct moodle *m, const struct moodle_course_update *c,
		      size_t n, struct moodle_warning **ret_warnings,
		      size_t *ret_nwarnings, struct moodle_error *err)
{
	struct moodle_form f;
	json_t *j;
	size_t i;
	int rv;

	moodle_error_clear(err);
	*ret_warnings = NULL;
	*ret_nwarnings = 0;
	if (n == 0)
		return 0;
	form_init(&f, m, "core_course_update_courses");
	for (i = 0; i < n; i++) {
		form_item_int(&f, "courses", i, "id", c[i].id);
		if (c[i].fullname != NULL)
			form_item(&f, "courses", i, "fullname", c[i].fullname);
		if (c[i].visible >= 0)
			form_item_int(&f, "courses", i, "visible",
				      c[i].visible);
	}
	if (moodle_send(m, &f, JSON_OBJECT, &j, err) == -1)
		return -1;
	rv = moodle_warnings_decode(m, j, ret_warnings, ret_nwarnings, err);
	json_decref(j);
	return rv;
}

void
moodle_users_free(struct moodle_user *u, size_t n)
{
	size_t i;

	for (i = 0; u != NULL && i < n; i++)
		free(u[i].username);
	free(u);
}

/* The users of an answer of core_user_get_users_by_field. */
static int
moodle_users_decode(const struct moodle *m, json_t *j, struct moodle_user **ret,
		    size_t *ret_n, struct moodle_error *err)
{
	struct moodle_user *u;
	json_t *item;
	const char *name;
	size_t i, nu = 0;

	/* Sorted by id, missing users left out (06a). */
	u = xcalloc(json_array_size(j), sizeof(*u));
	json_array_foreach(j, i, item)
	{
		name = json_string_value(json_object_get(item, "username"));
		if (name == NULL ||
		    json_record_id(item, "id", &u[nu].id) == -1) {
			moodle_bad_shape(
			    m, "core_user_get_users_by_field", j,
			    "lists a user without a username or an "
			    "id from 1 to 9999999999",
			    err);
			moodle_users_free(u, nu);
			return -1;
		}
		u[nu++].username = xstrdup(name);
	}
	*ret = u;
	*ret_n = nu;
	return 0;
}

int
moodle_users_by_username(struct moodle *m, const char *const *usernames,
			 size_t n, struct moodle_user **ret, size_t *ret_n,
			 struct moodle_error *err)
{
	struct moodle_form f;
	json_t *j;
	char key[32];
	size_t i;
	int rv;

	moodle_error_clear(err);
	*ret = NULL;
	*ret_n = 0;
	if (n == 0)
		return 0;
	form_init(&f, m, "core_user_get_users_by_field");
	form_add(&f, "field", "username");
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "values[%zu]", i);
		form_add(&f, key, usernames[i]);
	}
	if (moodle_send(m, &f, JSON_ARRAY, &j, err) == -1)
		return -1;
	rv = moodle_users_decode(m, j, ret, ret_n, err);
	json_decref(j);
	return rv;
}

int
moodle_enrol_fields(const struct moodle_enrolment *e, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (e[i].suspend >= 0)
			return 4;
	}
	return 3;
}

int
moodle_unenrol_fields(const struct moodle_enrolment *e, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (e[i].roleid > 0)
			return 3;
	}
	return 2;
}

/* Calls whose success is the JSON literal null. */
static int
moodle_send_null(struct moodle *m, struct moodle_form *f,
		 struct moodle_error *err)
{
	json_t *j;

	if (moodle_send(m, f, JSON_NULL, &j, err) == -1)
		return -1;
	json_decref(j);
	return 0;
}

int
moodle_enrol(struct moodle *m, const struct moodle_enrolment *e, size_t n,
	     struct moodle_error *err)
{
	struct moodle_form f;
	size_t i;

	moodle_error_clear(err);
	if (n == 0)
		return 0;
	form_init(&f, m, "enrol_manual_enrol_users");
	for (i = 0; i < n; i++) {
		form_item_int(&f, "enrolments", i, "roleid", e[i].roleid);
		form_item_int(&f, "enrolments", i, "userid", e[i].userid);
		form_item_int(&f, "enrolments", i, "courseid", e[i].courseid);
		/* Omitted, suspend re-activates a suspended enrolment (12c). */
		if (e[i].suspend >= 0)
			form_item_int(&f, "enrolments", i, "suspend",
				      e[i].suspend);
	}
	return moodle_send_null(m, &f, err);
}

int
moodle_unenrol(struct moodle *m, const struct moodle_enrolment *e, size_t n,
	       struct moodle_error *err)
{
	struct moodle_form f;
	size_t i;

	moodle_error_clear(err);
	if (n == 0)
		return 0;
	form_init(&f, m, "enrol_manual_unenrol_users");
	for (i = 0; i < n; i++) {
		form_item_int(&f, "enrolments", i, "userid", e[i].userid);
		form_item_int(&f, "enrolments", i, "courseid", e[i].courseid);
		if (e[i].roleid > 0)
			form_item_int(&f, "enrolments", i, "roleid",
				      e[i].roleid);
	}
	return moodle_send_null(m, &f, err);
}

static int
moodle_roles(struct moodle *m, const char *function, const char *array,
	     const struct moodle_role_assignment *a, size_t n,
	     struct moodle_error *err)
{
	struct moodle_form f;
	size_t i;

	moodle_error_clear(err);
	if (n == 0)
		return 0;
	form_init(&f, m, function);
	for (i = 0; i < n; i++) {
		form_item_int(&f, array, i, "roleid", a[i].roleid);
		form_item_int(&f, array, i, "userid", a[i].userid);
		form_item(&f, array, i, "contextlevel", "course");
		form_item_int(&f, array, i, "instanceid", a[i].courseid);
	}
	return moodle_send_null(m, &f, err);
}

int
moodle_role_assign(struct moodle *m, const struct moodle_role_assignment *a,
		   size_t n, struct moodle_error *err)
{
	return moodle_roles(m, "core_role_assign_roles", "assignments", a, n,
			    err);
}

int
moodle_role_unassign(struct moodle *m, const struct moodle_role_assignment *a,
		     size_t n, struct moodle_error *err)
{
	return moodle_roles(m, "core_role_unassign_roles", "unassignments", a,
			    n, err);
}

void
moodle_enrolled_users_free(struct moodle_enrolled_user *u, size_t n)
{
	size_t i;

	for (i = 0; u != NULL && i < n; i++) {
		free(u[i].username);
		free(u[i].roleids);
	}
	free(u);
}

/* Append one page of core_enrol_get_enrolled_users to *users. */
static int
moodle_enrolled_page(const struct moodle *m, json_t *j,
		     struct moodle_enrolled_user **users, size_t *n,
		     struct moodle_error *err)
{
	static const char *fn = "core_enrol_get_enrolled_users";
	struct moodle_enrolled_user *u;
	json_t *item, *roles, *role;
	const char *name;
	int64_t rid;
	size_t i, k;

	if (*n + json_array_size(j) > MOODLE_MAX_ENROLLED) {
		moodle_fail(m, err, MOODLE_ITEM, fn, "toomany", NULL, 200,
			    "more than %d enrolled users in one course",
			    MOODLE_MAX_ENROLLED);
		return -1;
	}
	*users =
	    xreallocarray(*users, *n + json_array_size(j), sizeof(**users));
	json_array_foreach(j, i, item)
	{
		u = &(*users)[*n];
		memset(u, 0, sizeof(*u));
		name = json_string_value(json_object_get(item, "username"));
		roles = json_object_get(item, "roles");
		if (name == NULL || json_record_id(item, "id", &u->id) == -1 ||
		    (roles != NULL && !json_is_array(roles))) {
			moodle_bad_shape(
			    m, fn, item,
			    "lists a user without a username or an "
			    "id from 1 to 9999999999",
			    err);
			return -1;
		}
		u->username = xstrdup(name);
		u->roleids = xcalloc(json_array_size(roles), sizeof(int));
		json_array_foreach(roles, k, role)
		{
			if (json_id(role, "roleid", &rid) == 0)
				u->roleids[u->nroles++] = (int)rid;
		}
		(*n)++;
	}
	return 0;
}

int
moodle_enrolled_users(struct moodle *m, int64_t courseid,
		      struct moodle_enrolled_user **ret, size_t *ret_n,
		      struct moodle_error *err)
{
	return moodle_enrolled_users_only(m, courseid, false, ret, ret_n, err);
}

int
moodle_enrolled_users_only(struct moodle *m, int64_t courseid, bool active,
			   struct moodle_enrolled_user **ret, size_t *ret_n,
			   struct moodle_error *err)
{
	struct moodle_form f;
	struct moodle_enrolled_user *users = NULL;
	size_t n = 0, got;
	json_t *j;

	moodle_error_clear(err);
	for (;;) {
		form_init(&f, m, "core_enrol_get_enrolled_users");
		form_add_int(&f, "courseid", courseid);
		form_item(&f, "options", 0, "name", "userfields");
		form_item(&f, "options", 0, "value", "id,username,roles");
		form_item(&f, "options", 1, "name", "limitfrom");
		form_item_int(&f, "options", 1, "value", (int64_t)n);
		form_item(&f, "options", 2, "name", "limitnumber");
		form_item_int(&f, "options", 2, "value", MOODLE_PAGE);
		/* Suspended (or not yet started, or ended) enrolments are left
		 * out: enrol/externallib.php, get_enrolled_users(). */
		if (active) {
			form_item(&f, "options", 3, "name", "onlyactive");
			form_item(&f, "options", 3, "value", "1");
		}
		if (moodle_send(m, &f, JSON_ARRAY, &j, err) == -1)
			goto fail;
		got = json_array_size(j);
		if (moodle_enrolled_page(m, j, &users, &n, err) == -1) {
			json_decref(j);
			goto fail;
		}
		json_decref(j);
		/* A short page is the last; a long one means no paging. */
		if (got != MOODLE_PAGE)
			break;
	}
	*ret = users;
	*ret_n = n;
	return 0;
fail:
	moodle_enrolled_users_free(users, n);
	return -1;
}

/* moodle_parse_answer for each function: decode with the typed call's own
 * code, then drop the result. */
static int
moodle_probe_site_info(const struct moodle *m, json_t *j,
		       const struct moodle_reply *r, struct moodle_error *err)
{
	struct moodle_site_info *si = NULL;
	int rv = moodle_site_info_decode(m, j, &si, err);

	(void)r;
	moodle_site_info_free(si);
	return rv;
}

static int
moodle_probe_category(const struct moodle *m, json_t *j,
		      const struct moodle_reply *r, struct moodle_error *err)
{
	(void)m;
	(void)err;
	free(moodle_category_decode(j, r->n));
	return 0;
}

static int
moodle_probe_course(const struct moodle *m, json_t *j,
		    const struct moodle_reply *r, struct moodle_error *err)
{
	struct moodle_course *list = NULL, c;
	size_t n = 0;
	int rv = moodle_courses_decode(m, j, &list, &n, err);

	moodle_course_pick(list, n, r->shortname != NULL ? r->shortname : "",
			   &c);
	moodle_course_clear(&c);
	moodle_courses_free(list, n);
	return rv;
}

static int
moodle_probe_created(const struct moodle *m, json_t *j,
		     const struct moodle_reply *r, struct moodle_error *err)
{
	int64_t *ids;
	int rv;

	/* No request carries more courses than max_input_vars fields. */
	if (r->n < 0 || r->n > m->max_input_vars) {
		moodle_fail(m, err, MOODLE_FATAL, "core_course_create_courses",
			    "badrequest", NULL, 0, "%" PRId64 " courses sent",
			    r->n);
		return -1;
	}
	ids = xcalloc((size_t)r->n, sizeof(*ids));
	rv = moodle_created_decode(m, j, (size_t)r->n, ids, err);
	free(ids);
	return rv;
}

static int
moodle_probe_warnings(const struct moodle *m, json_t *j,
		      const struct moodle_reply *r, struct moodle_error *err)
{
	struct moodle_warning *w = NULL;
	size_t n = 0;
	int rv = moodle_warnings_decode(m, j, &w, &n, err);

	(void)r;
	moodle_warnings_free(w, n);
	return rv;
}

static int
moodle_probe_users(const struct moodle *m, json_t *j,
		   const struct moodle_reply *r, struct moodle_error *err)
{
	struct moodle_user *u = NULL;
	size_t n = 0;
	int rv = moodle_users_decode(m, j, &u, &n, err);

	(void)r;
	moodle_users_free(u, n);
	return rv;
}

static int
moodle_probe_enrolled(const struct moodle *m, json_t *j,
		      const struct moodle_reply *r, struct moodle_error *err)
{
	struct moodle_enrolled_user *u = NULL;
	size_t n = 0;
	int rv = moodle_enrolled_page(m, j, &u, &n, err);

	(void)r;
	moodle_enrolled_users_free(u, n);
	return rv;
}

/* Every function webcoursed calls, the JSON type of its success answer and
 * its decoder (NULL: the answer is the literal null). */
static const struct {
	const char *function;
	json_type expect;
	int (*probe)(const struct moodle *, json_t *,
		     const struct moodle_reply *, struct moodle_error *);
} moodle_decoders[] = {
	{ "core_webservice_get_site_info", JSON_OBJECT,
	  moodle_probe_site_info },
	{ "core_course_get_categories", JSON_ARRAY, moodle_probe_category },
	{ "core_course_get_courses_by_field", JSON_OBJECT,
	  moodle_probe_course },
	{ "core_course_create_courses", JSON_ARRAY, moodle_probe_created },
	{ "core_course_update_courses", JSON_OBJECT, moodle_probe_warnings },
	{ "core_user_get_users_by_field", JSON_ARRAY, moodle_probe_users },
	{ "enrol_manual_enrol_users", JSON_NULL, NULL },
	{ "enrol_manual_unenrol_users", JSON_NULL, NULL },
	{ "core_role_assign_roles", JSON_NULL, NULL },
	{ "core_role_unassign_roles", JSON_NULL, NULL },
	{ "core_enrol_get_enrolled_users", JSON_ARRAY, moodle_probe_enrolled },
};

int
moodle_parse_answer(const struct moodle *m, const struct moodle_reply *r,
		    struct moodle_error *err)
{
	struct http_response resp = { 0 };
	json_t *j;
	size_t i;
	int rv;

	moodle_error_clear(err);
	for (i = 0; i < nitems(moodle_decoders); i++) {
		if (strcmp(moodle_decoders[i].function, r->function) == 0)
			break;
	}
	if (i == nitems(moodle_decoders)) {
		moodle_fail(m, err, MOODLE_FATAL, r->function, "badrequest",
			    NULL, 0, "webcoursed does not call %s",
			    r->function);
		return -1;
	}
	/* As http_perform hands it over: a copy ending in a NUL. */
	resp.status = r->status;
	resp.body = xmalloc(r->len + 1);
	memcpy(resp.body, r->body, r->len);
	resp.body[r->len] = '\0';
	resp.len = r->len;
	rv = moodle_answer(m, moodle_decoders[i].function, &resp,
			   moodle_decoders[i].expect, &j, err);
	free(resp.body);
	if (rv == -1)
		return -1;
	if (moodle_decoders[i].probe != NULL)
		rv = moodle_decoders[i].probe(m, j, r, err);
	json_decref(j);
	return rv;
}

/* A user look-up of n values that no site has (valid usernames, so Moodle
 * looks them up and finds none): 0 and *ret_cut false when the answer is
 * the expected empty list, *ret_cut true when PHP cut the request. */
static int
moodle_probe_once(struct moodle *m, int nvars, bool *ret_cut,
		  struct moodle_error *err)
{
	struct moodle_form f;
	char key[32], value[40];
	json_t *j;
	int rv;

	form_init(&f, m, "core_user_get_users_by_field");
	f.limit = nvars; /* this request is sized on purpose */
	form_add(&f, "field", "username");
	for (int i = 0; f.nvars < nvars - 1; i++) {
		snprintf(key, sizeof(key), "values[%d]", i);
		snprintf(value, sizeof(value), "webcoursed-probe-%d", i);
		form_add(&f, key, value);
	}
	rv = moodle_send(m, &f, JSON_ARRAY, &j, err);
	*ret_cut = rv == -1 && err->errorcode != NULL &&
		   strcmp(err->errorcode, "xml") == 0;
	if (rv == 0)
		json_decref(j);
	if (*ret_cut) {
		moodle_error_clear(err);
		return 0;
	}
	return rv;
}

int
moodle_probe_max_input_vars(struct moodle *m, int limit, int *ret,
			    struct moodle_error *err)
{
	/* What Moodle 4 on PHP 8 requires, then more; failing that, down
	 * through PHP's default to a site that lowered it. */
	static const int up[] = { 5000, 10000, 20000, 50000 };
	static const int down[] = { 4000, 3000, 2000, 1000, 500, 250, 100 };
	int good = 0;
	bool cut = false;

	moodle_error_clear(err);
	for (size_t i = 0; i < nitems(up) && up[i] <= limit && !cut; i++) {
		if (moodle_probe_once(m, up[i], &cut, err) == -1)
			return -1;
		if (!cut)
			good = up[i];
	}
	for (size_t i = 0; i < nitems(down) && good == 0; i++) {
		if (down[i] > limit)
			continue;
		if (moodle_probe_once(m, down[i], &cut, err) == -1)
			return -1;
		if (!cut)
			good = down[i];
	}
	if (good == 0) {
		moodle_fail(m, err, MOODLE_FATAL,
			    "core_user_get_users_by_field", "toomanyvars", NULL,
			    0,
			    "PHP on the Moodle server cuts even a request of "
			    "100 form variables: set moodle.max_input_vars");
		return -1;
	}
	*ret = good;
	return 0;
}
