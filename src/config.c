/* The configuration file: one table of keys, parsed with libinih. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>

#include <curl/curl.h>
#include <ini.h>

#include "config.h"
#include "log.h"
#include "util.h"

#define CONFIG_MAX_ERRORS 100
#define CONFIG_MAX_ROLES  100
#define CONFIG_MAX_BYTES  (1024 * 1024)
#define CONFIG_LINE_BUF   1024
#define CONFIG_SECRET_MAX 8192
#define CONFIG_HELP_DEF_W 12 /* --help: longer defaults get their own line */

enum config_section {
	SEC_NONE = -1, /* before the first [section] */
	SEC_BAD = -2,  /* inside an unknown or broken one: already reported */
	SEC_SOURCE = 0,
	SEC_MOODLE,
	SEC_SYNC,
	SEC_ROLES,
	SEC_STATE,
	SEC_METRICS,
	SEC_WEB,
	SEC_LOG,
	SEC_COUNT
};

static const char *const config_sections[SEC_COUNT] = {
	[SEC_SOURCE] = "source",   [SEC_MOODLE] = "moodle", [SEC_SYNC] = "sync",
	[SEC_ROLES] = "roles",     [SEC_STATE] = "state",   [SEC_LOG] = "log",
	[SEC_METRICS] = "metrics", [SEC_WEB] = "web",
};

enum config_type {
	CT_STRING,
	CT_PATH, /* relative to the config file's directory */
	CT_URL,
	CT_DURATION, /* milliseconds */
	CT_SIZE,     /* bytes */
	CT_INT,
	CT_INT64,
	CT_BOOL,
	CT_ENUM,
	CT_REMOVALS, /* a count, or a percentage "N%" */
	CT_LISTEN    /* a numeric ADDRESS:PORT, [IPv6]:PORT */
};

#define CF_REQUIRED 0x1  /* no default: the file must set it */
#define CF_EMPTY_OK 0x2  /* may be empty (a path: then unset) */
#define CF_LOWER    0x4  /* stored in lower case */
#define CF_SITE     0x8  /* a Moodle site address, not a service URL */
#define CF_AUTO     0x10 /* CT_INT: "auto" stands for 0 */

/* A word and what it stands for: enum values, booleans, URL schemes. */
struct config_name {
	const char *name;
	int value;
};

struct config_unit {
	const char *suffix;
	int64_t mult;
};

struct config_key {
	enum config_section section;
	const char *name;
	enum config_type type;
	const char *def; /* parsed like a value from the file */
	int64_t min, max;
	const struct config_name *names; /* CT_ENUM values, CT_URL schemes */
	size_t off;
	size_t off2; /* CT_REMOVALS: the bool "is a percentage" */
	int flags;
	const char *help;
};

_Static_assert(sizeof(enum new_courses) == sizeof(int), "enum is an int");
_Static_assert(sizeof(enum on_removed_participant) == sizeof(int),
	       "enum is an int");
_Static_assert(sizeof(enum on_removed_course) == sizeof(int), "enum is an int");
_Static_assert(sizeof(enum on_drift) == sizeof(int), "enum is an int");

static const struct config_name config_bools[] = {
	{ "yes", 1 }, { "no", 0 }, { "true", 1 }, { "false", 0 }, { "on", 1 },
	{ "off", 0 }, { "1", 1 },  { "0", 0 },    { NULL, 0 },
};

static const struct config_name config_new_courses[] = {
	{ "create", NEW_COURSES_CREATE },
	{ "approve", NEW_COURSES_APPROVE },
	{ NULL, 0 },
};

static const struct config_name config_removed_participant[] = {
	{ "keep", REMOVED_PARTICIPANT_KEEP },
	{ "suspend", REMOVED_PARTICIPANT_SUSPEND },
	{ "unenrol", REMOVED_PARTICIPANT_UNENROL },
	{ NULL, 0 },
};

static const struct config_name config_removed_course[] = {
	{ "keep", REMOVED_COURSE_KEEP },
	{ "hide", REMOVED_COURSE_HIDE },
	{ NULL, 0 },
};

static const struct config_name config_on_drift[] = {
	{ "report", ON_DRIFT_REPORT },
	{ "repair", ON_DRIFT_REPAIR },
	{ NULL, 0 },
};

static const struct config_name config_log_levels[] = {
	{ "debug", LOG_DEBUG },   { "info", LOG_INFO },
	{ "notice", LOG_NOTICE }, { "warning", LOG_WARNING },
	{ "err", LOG_ERR },       { NULL, 0 },
};

static const struct config_name config_feed_schemes[] = {
	{ "http", 0 },
	{ "https", 0 },
	{ "file", 0 },
	{ NULL, 0 },
};

static const struct config_name config_site_schemes[] = {
	{ "http", 0 },
	{ "https", 0 },
	{ NULL, 0 },
};

/* The roles every config starts with; [roles] adds to and overrides them. */
static const struct config_name config_default_roles[] = {
	{ "student", 5 },
	{ "teacher", 3 },
	{ "professor", 3 },
	{ NULL, 0 },
};

static const struct config_unit config_duration_units[] = {
	{ "ms", 1 },          { "s", 1000 },         { "m", 60 * 1000 },
	{ "h", 3600 * 1000 }, { "d", 86400 * 1000 }, { NULL, 0 },
};

static const struct config_unit config_size_units[] = {
	{ "K", INT64_C(1) << 10 },
	{ "M", INT64_C(1) << 20 },
	{ "G", INT64_C(1) << 30 },
	{ NULL, 0 },
};

#define OFF(f) offsetof(struct config, f)
#define DAY_MS (INT64_C(86400) * 1000)

/* Every key of the file.  The man page and config_print_keys follow it. */
static const struct config_key config_keys[] = {
	{ SEC_SOURCE, "url", CT_URL, NULL, 0, 0, config_feed_schemes,
	  OFF(source_url), 0, CF_REQUIRED,
	  "where the feed is fetched from: an http, https or file URL" },
	{ SEC_SOURCE, "auth_header_file", CT_PATH, NULL, 0, 0, NULL,
	  OFF(source_auth_header_file), 0, CF_EMPTY_OK,
	  "file holding the HTTP header sent with the feed request" },
	{ SEC_SOURCE, "timeout", CT_DURATION, "60s", 1000, DAY_MS, NULL,
	  OFF(source_timeout_ms), 0, 0, "limit on one whole feed transfer" },
	{ SEC_SOURCE, "max_size", CT_SIZE, "256M", 1024, INT64_C(16) << 30,
	  NULL, OFF(source_max_size), 0, 0, "largest feed body accepted" },
	{ SEC_SOURCE, "ca_file", CT_PATH, NULL, 0, 0, NULL, OFF(source_ca_file),
	  0, CF_EMPTY_OK,
	  "CA bundle for the feed server instead of the system's" },

	{ SEC_MOODLE, "url", CT_URL, NULL, 0, 0, config_site_schemes,
	  OFF(moodle_url), 0, CF_REQUIRED | CF_SITE,
	  "the Moodle site's address, e.g. https://moodle.example.edu" },
	{ SEC_MOODLE, "token_file", CT_PATH, NULL, 0, 0, NULL,
	  OFF(moodle_token_file), 0, CF_EMPTY_OK,
	  "file holding the web service token (mode 600)" },
	{ SEC_MOODLE, "timeout", CT_DURATION, "120s", 1000, DAY_MS, NULL,
	  OFF(moodle_timeout_ms), 0, 0, "limit on one web service call" },
	{ SEC_MOODLE, "max_input_vars", CT_INT, "auto", 100, 1000000, NULL,
	  OFF(moodle_max_input_vars), 0, CF_AUTO,
	  "PHP max_input_vars of the Moodle server (form fields per call), or "
	  "auto: found with a read-only probe and kept in the ledger" },
	{ SEC_MOODLE, "max_concurrent_calls", CT_INT, "4", 1, 32, NULL,
	  OFF(moodle_max_concurrent_calls), 0, 0,
	  "web service calls in flight at once (1: one after another); fewer "
	  "while Moodle is slow" },
	{ SEC_MOODLE, "ca_file", CT_PATH, NULL, 0, 0, NULL, OFF(moodle_ca_file),
	  0, CF_EMPTY_OK,
	  "CA bundle for the Moodle server instead of the system's" },
	{ SEC_MOODLE, "retries", CT_INT, "5", 1, 20, NULL, OFF(moodle_retries),
	  0, 0, "tries of a call that failed for a transient reason" },
	{ SEC_MOODLE, "retry_delay", CT_DURATION, "2s", 100, 3600 * 1000, NULL,
	  OFF(moodle_retry_delay_ms), 0, 0,
	  "wait before the first retry, doubled for each next one" },

	{ SEC_SYNC, "interval", CT_DURATION, "15m", 1000, 30 * DAY_MS, NULL,
	  OFF(sync_interval_ms), 0, 0, "time between the starts of two runs" },
	{ SEC_SYNC, "category_id", CT_INT, "1", 1, INT_MAX, NULL,
	  OFF(sync_category_id), 0, 0,
	  "Moodle category that new courses go in" },
	{ SEC_SYNC, "default_role", CT_STRING, "student", 0, 0, NULL,
	  OFF(sync_default_role), 0, CF_LOWER,
	  "role of participants whose feed entry names none" },
	{ SEC_SYNC, "new_courses", CT_ENUM, "create", 0, 0, config_new_courses,
	  OFF(sync_new_courses), 0, 0,
	  "create new courses at once, or wait for webcoursectl approve" },
	{ SEC_SYNC, "update_names", CT_BOOL, "yes", 0, 0, config_bools,
	  OFF(sync_update_names), 0, 0,
	  "rename Moodle courses when the feed renames them" },
	{ SEC_SYNC, "on_removed_participant", CT_ENUM, "suspend", 0, 0,
	  config_removed_participant, OFF(sync_on_removed_participant), 0, 0,
	  "what happens to our enrolment of someone who left the feed" },
	{ SEC_SYNC, "on_removed_course", CT_ENUM, "keep", 0, 0,
	  config_removed_course, OFF(sync_on_removed_course), 0, 0,
	  "what happens to a course that left the feed" },
	{ SEC_SYNC, "max_removals", CT_REMOVALS, "10%", 0, 1000000000, NULL,
	  OFF(sync_max_removals), OFF(sync_max_removals_percent), 0,
	  "most removals per run (a count, or N% of what we track)" },
	{ SEC_SYNC, "removals_allowance", CT_INT64, "20", 0, 1000000000, NULL,
	  OFF(sync_removals_allowance), 0, 0,
	  "removals always allowed per run, whatever the percentage" },
	{ SEC_SYNC, "course_format", CT_STRING, "topics", 0, 0, NULL,
	  OFF(sync_course_format), 0, 0,
	  "Moodle course format of new courses" },
	{ SEC_SYNC, "course_visible", CT_BOOL, "yes", 0, 0, config_bools,
	  OFF(sync_course_visible), 0, 0, "whether new courses are visible" },
	{ SEC_SYNC, "idnumber_prefix", CT_STRING, "webcoursed:", 0, 0, NULL,
	  OFF(sync_idnumber_prefix), 0, CF_EMPTY_OK,
	  "prefix of the idnumber given to the courses we create" },
	{ SEC_SYNC, "reconcile_every", CT_DURATION, "1d", 0, 365 * DAY_MS, NULL,
	  OFF(sync_reconcile_every_ms), 0, 0,
	  "each course checked against Moodle for drift this often, spread "
	  "over the runs (0: never)" },
	{ SEC_SYNC, "on_drift", CT_ENUM, "report", 0, 0, config_on_drift,
	  OFF(sync_on_drift), 0, 0,
	  "report drift, or repair it: put back the enrolments and roles we "
	  "made" },
	{ SEC_SYNC, "outage_retry", CT_DURATION, "15s", 1000, DAY_MS, NULL,
	  OFF(sync_outage_retry_ms), 0, 0,
	  "after a run found Moodle down, try again this soon, doubled each "
	  "time it is still down" },
	{ SEC_SYNC, "outage_retry_max", CT_DURATION, "5m", 1000, DAY_MS, NULL,
	  OFF(sync_outage_retry_max_ms), 0, 0,
	  "longest wait between two tries while Moodle is down" },

	{ SEC_STATE, "database", CT_PATH, "/var/lib/webcoursed/ledger.db", 0, 0,
	  NULL, OFF(state_database), 0, 0,
	  "sqlite ledger of what was applied to Moodle" },
	{ SEC_STATE, "missing_users_csv", CT_PATH,
	  "/var/lib/webcoursed/missing-users.csv", 0, 0, NULL,
	  OFF(state_missing_users_csv), 0, 0,
	  "CSV of feed users not found in Moodle, rewritten every run" },
	{ SEC_STATE, "history_days", CT_INT, "400", 0, 36500, NULL,
	  OFF(state_history_days), 0, 0,
	  "days the history of changes is kept (0: for ever)" },

	{ SEC_METRICS, "listen", CT_LISTEN, NULL, 1, 65535, NULL,
	  OFF(metrics_listen), 0, CF_EMPTY_OK,
	  "ADDRESS:PORT to serve Prometheus metrics on at /metrics; off when "
	  "unset" },

	{ SEC_WEB, "listen", CT_LISTEN, NULL, 1, 65535, NULL, OFF(web_listen),
	  0, CF_EMPTY_OK,
	  "ADDRESS:PORT of the web console; off when unset.  Other than "
	  "loopback only with tls_cert and tls_key" },
	{ SEC_WEB, "tls_cert", CT_PATH, NULL, 0, 0, NULL, OFF(web_tls_cert), 0,
	  CF_EMPTY_OK, "PEM certificate chain the console serves HTTPS with" },
	{ SEC_WEB, "tls_key", CT_PATH, NULL, 0, 0, NULL, OFF(web_tls_key), 0,
	  CF_EMPTY_OK, "PEM private key of tls_cert" },
	{ SEC_WEB, "users_file", CT_PATH, SYSCONFDIR "/webcoursed/web-users", 0,
	  0, NULL, OFF(web_users_file), 0, 0,
	  "NAME:HASH lines of the console's users (webcoursectl web-user); "
	  "the credential web-users wins" },
	{ SEC_WEB, "session_idle", CT_DURATION, "1h", 1000, 30 * DAY_MS, NULL,
	  OFF(web_session_idle_ms), 0, 0,
	  "a console session unused this long is logged out" },

	{ SEC_LOG, "level", CT_ENUM, "info", 0, 0, config_log_levels,
	  OFF(log_level), 0, 0, "least important messages logged" },
};

/* Secrets: a systemd credential, else the file a key names. */
struct config_secret {
	const char *credential;
	enum config_section section;
	const char *key;
	const char *what;
	size_t off;
	int required;
	int (*check)(char **secret);
	const char *bad; /* what check() refuses */
};

struct config_error {
	int line;
	char *text;
};

/* The state of one config_load. */
struct config_parse {
	struct config *conf;
	const char *path;
	char *dir;
	FILE *f;
	int line;
	size_t bytes;
	int section; /* enum config_section */
	int section_lines[SEC_COUNT];
	int key_lines[nitems(config_keys)];
	int role_lines[CONFIG_MAX_ROLES];
	struct config_error *errors;
	size_t nerrors;
	int suppressed, suppressed_line;
};

/* Record "FILE:LINE: message"; past CONFIG_MAX_ERRORS only count them. */
__attribute__((format(printf, 3, 4))) static void
config_error(struct config_parse *cp, int line, const char *fmt, ...)
{
	struct config_error *e;
	char msg[1024];
	va_list ap;

	if (cp->nerrors == CONFIG_MAX_ERRORS) {
		if (cp->suppressed++ == 0)
			cp->suppressed_line = line;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cp->errors =
	    xreallocarray(cp->errors, cp->nerrors + 1, sizeof(*cp->errors));
	e = &cp->errors[cp->nerrors++];
	e->line = line;
	xasprintf(&e->text, "%s:%d: %s", cp->path, line, msg);
}

/* All errors as one string, a line each, with the too-many summary. */
static char *
config_join_errors(struct config_parse *cp)
{
	size_t i, len = 0, off = 0, n;
	char *s;

	if (cp->suppressed > 0) {
		cp->errors = xreallocarray(cp->errors, cp->nerrors + 1,
					   sizeof(*cp->errors));
		cp->errors[cp->nerrors].line = cp->suppressed_line;
		xasprintf(&cp->errors[cp->nerrors].text,
			  "%s:%d: too many errors, %d more not shown", cp->path,
			  cp->suppressed_line, cp->suppressed);
		cp->nerrors++;
	}
	for (i = 0; i < cp->nerrors; i++)
		len += strlen(cp->errors[i].text) + 1;
	s = xmalloc(len + 1);
	for (i = 0; i < cp->nerrors; i++) {
		n = strlen(cp->errors[i].text);
		memcpy(s + off, cp->errors[i].text, n);
		off += n;
		s[off++] = '\n';
	}
	s[off > 0 ? off - 1 : 0] = '\0';
	return s;
}

static const struct config_name *
config_name_find(const struct config_name *names, const char *name)
{
	for (; names->name != NULL; names++)
		if (strcasecmp(names->name, name) == 0)
			return names;
	return NULL;
}

/* "a, b or c", for messages. */
static void
config_name_list(const struct config_name *names, char *buf, size_t len)
{
	size_t n, i, off = 0;

	for (n = 0; names[n].name != NULL; n++)
		;
	buf[0] = '\0';
	for (i = 0; i < n && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s",
					i == 0       ? ""
					: i == n - 1 ? " or "
						     : ", ",
					names[i].name);
}

/* The table row of section.name, or NULL. */
static const struct config_key *
config_key_find(int section, const char *name)
{
	size_t i;

	for (i = 0; i < nitems(config_keys); i++)
		if ((int)config_keys[i].section == section &&
		    strcmp(config_keys[i].name, name) == 0)
			return &config_keys[i];
	return NULL;
}

/* Digits, then an optional unit from the table; plain digits are worth
 * plain.  Overflow and anything else is -1. */
static int
config_parse_scaled(const char *s, const struct config_unit *units,
		    int64_t plain, int icase, int64_t *ret)
{
	const struct config_unit *u;
	size_t n = strspn(s, "0123456789");
	int64_t v, mult = plain;
	char num[24];

	if (n == 0 || n >= sizeof(num))
		return -1;
	memcpy(num, s, n);
	num[n] = '\0';
	if (parse_int64(num, 0, INT64_MAX, &v) == -1)
		return -1;
	if (s[n] != '\0') {
		for (u = units; u->suffix != NULL; u++)
			if ((icase ? strcasecmp(s + n, u->suffix)
				   : strcmp(s + n, u->suffix)) == 0)
				break;
		if (u->suffix == NULL)
			return -1;
		mult = u->mult;
	}
	if (v > INT64_MAX / mult)
		return -1;
	*ret = v * mult;
	return 0;
}

int
config_parse_duration(const char *s, int64_t *ret_ms)
{
	return config_parse_scaled(s, config_duration_units, 1000, 0, ret_ms);
}

int
config_parse_size(const char *s, int64_t *ret)
{
	return config_parse_scaled(s, config_size_units, 1, 1, ret);
}

/* The inverse, for range messages: the largest unit that divides v. */
static void
config_format_scaled(int64_t v, const struct config_unit *units, char *buf,
		     size_t len)
{
	const struct config_unit *u, *best = NULL;

	for (u = units; u->suffix != NULL && v != 0; u++)
		if (v % u->mult == 0)
			best = u;
	if (best == NULL)
		snprintf(buf, len, "%" PRId64, v);
	else
		snprintf(buf, len, "%" PRId64 "%s", v / best->mult,
			 best->suffix);
}

static void
config_format_bound(const struct config_key *k, int64_t v, char *buf,
		    size_t len)
{
	if (k->type == CT_DURATION)
		config_format_scaled(v, config_duration_units, buf, len);
	else if (k->type == CT_SIZE)
		config_format_scaled(v, config_size_units, buf, len);
	else
		snprintf(buf, len, "%" PRId64, v);
}

/* Refuse v outside k's bounds, written back in the key's own units. */
static int
config_check_range(struct config_parse *cp, const struct config_key *k,
		   const char *value, int64_t v)
{
	char lo[32], hi[32];

	if (v >= k->min && v <= k->max)
		return 0;
	config_format_bound(k, k->min, lo, sizeof(lo));
	config_format_bound(k, k->max, hi, sizeof(hi));
	config_error(cp, cp->line, "%s.%s = %s is out of range (%s..%s)",
		     config_sections[k->section], k->name, value, lo, hi);
	return -1;
}

/* ASCII only: role names are matched with strcasecmp(). */
static void
config_lower(char *s)
{
	for (; *s != '\0'; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s += 'a' - 'A';
}

static void
config_replace_string(char **field, char *s)
{
	free(*field);
	*field = s;
}

/* A URL is never echoed back: it may carry a password or a token. */
static int
config_set_url(struct config_parse *cp, const struct config_key *k,
	       const char *value, char **field)
{
	const char *sect = config_sections[k->section];
	char *scheme = NULL, *host = NULL, *path = NULL, *s;
	char schemes[64];
	CURLU *u;
	size_t len;
	int rv = -1;

	if ((u = curl_url()) == NULL)
		fatalx("curl_url: out of memory");
	config_name_list(k->names, schemes, sizeof(schemes));
	if (curl_url_set(u, CURLUPART_URL, value, CURLU_NON_SUPPORT_SCHEME) !=
		CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
		config_error(cp, cp->line, "%s.%s is not an absolute URL", sect,
			     k->name);
		goto out;
	}
	if (config_name_find(k->names, scheme) == NULL) {
		config_error(cp, cp->line, "%s.%s must be an %s URL", sect,
			     k->name, schemes);
		goto out;
	}
	if (strcasecmp(scheme, "file") != 0 &&
	    (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	     *host == '\0')) {
		config_error(cp, cp->line, "%s.%s has no host name", sect,
			     k->name);
		goto out;
	}
	if (k->flags & CF_SITE) {
		if (curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK &&
		    ((s = strstr(path, "/webservice")) != NULL &&
		     (s[11] == '/' || s[11] == '\0'))) {
			config_error(cp, cp->line,
				     "%s.%s must be the site address, without "
				     "\"/webservice/...\"",
				     sect, k->name);
			goto out;
		}
		if (strpbrk(value, "?#") != NULL) {
			config_error(cp, cp->line,
				     "%s.%s must not have a query or fragment",
				     sect, k->name);
			goto out;
		}
	}
	s = xstrdup(value);
	len = strlen(s);
	if ((k->flags & CF_SITE) && len > 0 && s[len - 1] == '/')
		s[len - 1] = '\0';
	config_replace_string(field, s);
	rv = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(path);
	curl_url_cleanup(u);
	return rv;
}

/* Relative paths are the config file's: the daemon's cwd is not. */
static int
config_set_path(struct config_parse *cp, const struct config_key *k,
		const char *value, char **field)
{
	char *s;

	if (*value == '\0') {
		if (!(k->flags & CF_EMPTY_OK)) {
			config_error(cp, cp->line, "empty value for %s.%s",
				     config_sections[k->section], k->name);
			return -1;
		}
		config_replace_string(field, NULL);
		return 0;
	}
	if (*value == '/')
		s = xstrdup(value);
	else
		xasprintf(&s, "%s/%s", cp->dir, value);
	config_replace_string(field, s);
	return 0;
}

/* sync.max_removals: "200" is a count, "10%" a share of the ledger. */
static int
config_set_removals(struct config_parse *cp, const struct config_key *k,
		    const char *value)
{
	char *base = (char *)cp->conf, num[24];
	size_t len = strlen(value);
	bool percent = len > 0 && value[len - 1] == '%';
	int64_t v;

	if (percent)
		len--;
	if (len == 0 || len >= sizeof(num) ||
	    strspn(value, "0123456789") != len) {
		config_error(cp, cp->line,
			     "bad value \"%s\" for %s.%s (a count such as 200 "
			     "or a percentage such as 10%%)",
			     value, config_sections[k->section], k->name);
		return -1;
	}
	memcpy(num, value, len);
	num[len] = '\0';
	if (parse_int64(num, 0, INT64_MAX, &v) == -1 ||
	    v > (percent ? 100 : k->max)) {
		if (percent)
			config_error(cp, cp->line,
				     "%s.%s = %s is out of range (0%%..100%%)",
				     config_sections[k->section], k->name,
				     value);
		else
			config_error(cp, cp->line,
				     "%s.%s = %s is out of range (0..%" PRId64
				     ")",
				     config_sections[k->section], k->name,
				     value, k->max);
		return -1;
	}
	*(int64_t *)(base + k->off) = v;
	*(bool *)(base + k->off2) = percent;
	return 0;
}

/* metrics.listen: "127.0.0.1:9826", "[::1]:9826".  Only numeric
 * addresses: the daemon binds at start and on reload, and a name to look
 * up there could block or change under it. */
static int
config_set_listen(struct config_parse *cp, const struct config_key *k,
		  const char *value, char **field)
{
	const char *sect = config_sections[k->section], *start, *end, *port;
	char addr[INET6_ADDRSTRLEN];
	bool v6 = value[0] == '[';
	unsigned char bin[sizeof(struct in6_addr)];
	int64_t v;

	if (*value == '\0') {
		config_replace_string(field, NULL);
		return 0;
	}
	start = value + (v6 ? 1 : 0);
	end = v6 ? strstr(value, "]:") : strrchr(value, ':');
	if (end == NULL || end == start || end[v6 ? 2 : 1] == '\0') {
		config_error(cp, cp->line,
			     "%s.%s = %s is not ADDRESS:PORT (e.g. "
			     "127.0.0.1:9826 or [::1]:9826)",
			     sect, k->name, value);
		return -1;
	}
	port = end + (v6 ? 2 : 1);
	snprintf(addr, sizeof(addr), "%.*s", (int)(end - start), start);
	if (!v6 && strchr(addr, ':') != NULL) {
		config_error(cp, cp->line,
			     "%s.%s = %s: write an IPv6 address in brackets, "
			     "as in [::1]:9826",
			     sect, k->name, value);
		return -1;
	}
	if ((size_t)(end - start) >= sizeof(addr) ||
	    inet_pton(v6 ? AF_INET6 : AF_INET, addr, bin) != 1) {
		config_error(cp, cp->line,
			     "%s.%s = %s: \"%.*s\" is not an IPv4 address or "
			     "an IPv6 address in brackets (host names are not "
			     "looked up)",
			     sect, k->name, value, (int)(end - start), start);
		return -1;
	}
	if (port[strspn(port, "0123456789")] != '\0' ||
	    parse_int64(port, INT64_MIN, INT64_MAX, &v) == -1) {
		config_error(cp, cp->line, "bad port \"%s\" for %s.%s", port,
			     sect, k->name);
		return -1;
	}
	if (v < k->min || v > k->max) {
		config_error(cp, cp->line,
			     "%s.%s = %s: port out of range (%" PRId64
			     "..%" PRId64 ")",
			     sect, k->name, value, k->min, k->max);
		return -1;
	}
	config_replace_string(field, xstrdup(value));
	return 0;
}

/* Parse value as key k's type into its field; -1 once reported. */
static int
config_set_value(struct config_parse *cp, const struct config_key *k,
		 const char *value)
{
	const char *sect = config_sections[k->section];
	void *field = (char *)cp->conf + k->off;
	const struct config_name *nm;
	char list[128], *s;
	int64_t v;

	switch (k->type) {
	case CT_STRING:
		if (*value == '\0' && !(k->flags & CF_EMPTY_OK)) {
			config_error(cp, cp->line, "empty value for %s.%s",
				     sect, k->name);
			return -1;
		}
		s = xstrdup(value);
		if (k->flags & CF_LOWER)
			config_lower(s);
		config_replace_string(field, s);
		return 0;
	case CT_PATH:
		return config_set_path(cp, k, value, field);
	case CT_URL:
		return config_set_url(cp, k, value, field);
	case CT_DURATION:
	case CT_SIZE:
		if ((k->type == CT_DURATION
			 ? config_parse_duration(value, &v)
			 : config_parse_size(value, &v)) == -1) {
			config_error(cp, cp->line, "bad %s \"%s\" for %s.%s",
				     k->type == CT_DURATION ? "duration"
							    : "size",
				     value, sect, k->name);
			return -1;
		}
		if (config_check_range(cp, k, value, v) == -1)
			return -1;
		*(int64_t *)field = v;
		return 0;
	case CT_INT:
	case CT_INT64:
		if ((k->flags & CF_AUTO) && strcasecmp(value, "auto") == 0) {
			*(int *)field = 0;
			return 0;
		}
		if (parse_int64(value, INT64_MIN, INT64_MAX, &v) == -1) {
			config_error(
			    cp, cp->line, "bad integer \"%s\" for %s.%s%s",
			    value, sect, k->name,
			    k->flags & CF_AUTO ? " (a number or auto)" : "");
			return -1;
		}
		if (config_check_range(cp, k, value, v) == -1)
			return -1;
		if (k->type == CT_INT)
			*(int *)field = (int)v;
		else
			*(int64_t *)field = v;
		return 0;
	case CT_BOOL:
	case CT_ENUM:
		if ((nm = config_name_find(k->names, value)) == NULL) {
			if (k->type == CT_BOOL)
				config_error(cp, cp->line,
					     "bad boolean \"%s\" for %s.%s "
					     "(yes or no)",
					     value, sect, k->name);
			else {
				config_name_list(k->names, list, sizeof(list));
				config_error(cp, cp->line,
					     "bad value \"%s\" for %s.%s "
					     "(%s)",
					     value, sect, k->name, list);
			}
			return -1;
		}
		if (k->type == CT_BOOL)
			*(bool *)field = nm->value != 0;
		else
			*(int *)field = nm->value;
		return 0;
	case CT_REMOVALS:
		return config_set_removals(cp, k, value);
	case CT_LISTEN:
		return config_set_listen(cp, k, value, field);
	}
	return -1;
}

/* Add or override a role; a name given twice in the file is an error. */
static void
config_add_role(struct config_parse *cp, const char *name, int id)
{
	struct config *c = cp->conf;
	size_t i;

	for (i = 0; i < c->nroles; i++)
		if (strcasecmp(c->roles[i].name, name) == 0)
			break;
	if (i < c->nroles && cp->role_lines[i] != 0) {
		config_error(cp, cp->line,
			     "duplicate role %s (first set on line %d)",
			     c->roles[i].name, cp->role_lines[i]);
		return;
	}
	if (i == c->nroles) {
		if (c->nroles == CONFIG_MAX_ROLES) {
			config_error(cp, cp->line,
				     "too many roles (at most %d)",
				     CONFIG_MAX_ROLES);
			return;
		}
		c->roles =
		    xreallocarray(c->roles, c->nroles + 1, sizeof(*c->roles));
		c->roles[i].name = xstrdup(name);
		config_lower(c->roles[i].name);
		c->nroles++;
	}
	c->roles[i].id = id;
	cp->role_lines[i] = cp->line;
}

/* A [roles] line: feed role name = Moodle role id. */
static void
config_set_role(struct config_parse *cp, const char *name, const char *value)
{
	int64_t id;

	if (parse_int64(value, INT64_MIN, INT64_MAX, &id) == -1) {
		config_error(cp, cp->line, "bad role id \"%s\" for roles.%s",
			     value, name);
		return;
	}
	if (id < 1 || id > INT_MAX) {
		config_error(cp, cp->line,
			     "roles.%s = %s is out of range (1..%d)", name,
			     value, INT_MAX);
		return;
	}
	config_add_role(cp, name, (int)id);
}

static int
config_section_find(const char *name)
{
	int i;

	for (i = 0; i < SEC_COUNT; i++)
		if (strcmp(config_sections[i], name) == 0)
			return i;
	return SEC_BAD;
}

/* Check the shape of one line before libinih sees it, so every syntax
 * error is reported with its line (libinih only returns the first), and
 * follow section headers (libinih only reports keys).  A section header is
 * rewritten in place without blanks.  -1: reported, hide the line. */
static int
config_check_line(struct config_parse *cp, char *s)
{
	char *end, *name, *rest;
	size_t n;

	if (*s == '\0' || *s == ';' || *s == '#')
		return 0;
	if (*s != '[') {
		/* libinih stops a key line at an inline " ;" comment */
		for (n = 1; s[n] != '\0'; n++)
			if (s[n] == ';' &&
			    (s[n - 1] == ' ' || s[n - 1] == '\t'))
				break;
		if (*s == '=' || *s == ':') {
			config_error(cp, cp->line,
				     "missing key name before "
				     "\"%c\"",
				     *s);
			return -1;
		}
		if (strcspn(s, "=:") >= n) {
			config_error(cp, cp->line,
				     "expected KEY = VALUE or [SECTION]");
			return -1;
		}
		return 0;
	}
	if ((end = strchr(s, ']')) == NULL) {
		config_error(cp, cp->line, "missing \"]\" after section name");
		cp->section = SEC_BAD;
		return -1;
	}
	rest = end + 1 + strspn(end + 1, " \t");
	if (*rest != '\0' && *rest != ';' && *rest != '#')
		config_error(cp, cp->line, "unexpected text after \"]\"");
	name = s + 1 + strspn(s + 1, " \t");
	n = (size_t)(end - name);
	while (n > 0 && (name[n - 1] == ' ' || name[n - 1] == '\t'))
		n--;
	memmove(s + 1, name, n);
	s[n + 1] = '\0';
	cp->section = config_section_find(s + 1);
	if (cp->section == SEC_BAD)
		config_error(cp, cp->line, "unknown section [%s]", s + 1);
	else if (cp->section_lines[cp->section] == 0)
		cp->section_lines[cp->section] = cp->line;
	s[n + 1] = ']';
	s[n + 2] = '\0';
	return 0;
}

/* libinih's reader: fgets() that counts lines, so that the key handler,
 * called before the next read, knows its line (Debian builds libinih
 * without INI_HANDLER_LINENO). */
static char *
config_read_cb(char *str, int num, void *arg)
{
	struct config_parse *cp = arg;
	char buf[CONFIG_LINE_BUF], *s;
	size_t len = 0;
	int c, toolong = 0, nul = 0;

	if (cp->bytes > CONFIG_MAX_BYTES || (c = getc(cp->f)) == EOF)
		return NULL;
	cp->line++;
	/* Byte by byte, not fgets(): a NUL would end its line early. */
	for (; c != EOF && c != '\n'; c = getc(cp->f)) {
		cp->bytes++;
		nul |= c == '\0';
		if (len < sizeof(buf) - 1)
			buf[len++] = (char)c;
		else
			toolong = 1;
	}
	cp->bytes += c == '\n';
	buf[len] = '\0';
	if (cp->bytes > CONFIG_MAX_BYTES) {
		config_error(cp, cp->line, "file is larger than %d bytes",
			     CONFIG_MAX_BYTES);
		return NULL;
	}
	if (len > 0 && buf[len - 1] == '\r')
		buf[--len] = '\0';
	s = buf;
	if (cp->line == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
		s += 3;
	/* no leading blanks: libinih would take the line as a continuation */
	s += strspn(s, " \t");
	if (nul) {
		config_error(cp, cp->line, "line contains a NUL byte");
		s[0] = '\0';
	} else if (toolong || strlen(s) + 2 > (size_t)num) {
		config_error(cp, cp->line, "line is longer than %d characters",
			     num - 2);
		s[0] = '\0';
	} else if (config_check_line(cp, s) == -1)
		s[0] = '\0';
	snprintf(str, (size_t)num, "%s\n", s);
	return str;
}

/* libinih's handler for "name = value"; errors are collected, never fatal. */
static int
config_key_cb(void *arg, const char *section, const char *name,
	      const char *value)
{
	struct config_parse *cp = arg;
	const struct config_key *k;
	size_t i;

	(void)section; /* cp->section is the same, already checked */
	if (cp->section == SEC_BAD)
		return 1;
	if (cp->section == SEC_NONE) {
		config_error(cp, cp->line,
			     "key \"%s\" is outside any [section]", name);
		return 1;
	}
	if (cp->section == SEC_ROLES) {
		config_set_role(cp, name, value);
		return 1;
	}
	if ((k = config_key_find(cp->section, name)) == NULL) {
		config_error(cp, cp->line, "unknown key \"%s\" in section [%s]",
			     name, config_sections[cp->section]);
		return 1;
	}
	i = (size_t)(k - config_keys);
	if (cp->key_lines[i] != 0) {
		config_error(
		    cp, cp->line, "duplicate key %s.%s (first set on line %d)",
		    config_sections[k->section], k->name, cp->key_lines[i]);
		return 1;
	}
	cp->key_lines[i] = cp->line;
	config_set_value(cp, k, value);
	return 1;
}

/* Defaults go through the same parsers as the file's values. */
static void
config_set_defaults(struct config_parse *cp)
{
	const struct config_name *r;
	size_t i;

	for (i = 0; i < nitems(config_keys); i++)
		if (config_keys[i].def != NULL)
			config_set_value(cp, &config_keys[i],
					 config_keys[i].def);
	for (r = config_default_roles; r->name != NULL; r++)
		config_add_role(cp, r->name, r->value);
}

static void
config_trim(char *s)
{
	size_t len = strlen(s), skip = strspn(s, " \t");

	while (len > skip && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	memmove(s, s + skip, len - skip);
	s[len - skip] = '\0';
}

/* Secrets are wiped before their memory goes back to malloc. */
static void
config_free_secret(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* A token goes into a form body as is: printable ASCII, no blanks. */
static int
config_check_token(char **secret)
{
	for (const char *p = *secret; *p != '\0'; p++)
		if (*p <= ' ' || *p > '~')
			return -1;
	return 0;
}

/* A character of an HTTP header name (RFC 9110 "tchar"). */
static int
config_is_tchar(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') ||
	       (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* One header line; a bare value becomes "Authorization: value". */
static int
config_check_header(char **secret)
{
	char *s = *secret, *h;
	size_t n;

	for (const char *p = s; *p != '\0'; p++)
		if ((*p < ' ' && *p != '\t') || *p == 0x7f)
			return -1;
	for (n = 0; config_is_tchar(s[n]); n++)
		;
	if (n > 0 && s[n] == ':')
		return 0;
	xasprintf(&h, "Authorization: %s", s);
	config_free_secret(s);
	*secret = h;
	return 0;
}

static const struct config_secret config_secrets[] = {
	{ "moodle-token", SEC_MOODLE, "token_file", "token file",
	  OFF(moodle_token), 1, config_check_token,
	  "holds blanks or control characters" },
	{ "source-auth-header", SEC_SOURCE, "auth_header_file",
	  "auth header file", OFF(source_auth_header), 0, config_check_header,
	  "must hold one line without control characters" },
};

/* Load one secret.  Messages name the file but never show its content,
 * and a file that cannot be opened is not named either: a token pasted
 * into token_file must not come back in an error. */
static void
config_load_secret(struct config_parse *cp, const struct config_secret *sec)
{
	const struct config_key *k = config_key_find(sec->section, sec->key);
	const char *credir = getenv("CREDENTIALS_DIRECTORY"), *file;
	char *cred = NULL, *label = NULL, *secret = NULL, *cause = NULL;
	char **field = (char **)((char *)cp->conf + sec->off);
	struct stat st;
	int line = 0;

	file = *(char **)((char *)cp->conf + k->off);
	if (credir != NULL && *credir != '\0') {
		xasprintf(&cred, "%s/%s", credir, sec->credential);
		if (stat(cred, &st) == -1) {
			free(cred);
			cred = NULL;
		}
	}
	if (cred != NULL) {
		xasprintf(&label, "systemd credential %s", cred);
		file = cred;
	} else if (file != NULL) {
		line = cp->key_lines[k - config_keys];
		xasprintf(&label, "%s %s", sec->what, file);
		/* Not even read: another user may have put it there.  The
		 * path is not shown (a token pasted in its place would be). */
		if (dir_shared(file, &cause) == -1) {
			config_error(cp, line,
				     "%s.%s: the file's directory can be "
				     "written by others: they could put a "
				     "symbolic link or a file of theirs there; "
				     "use a directory only webcoursed's user "
				     "can write to",
				     config_sections[k->section], k->name);
			goto out;
		}
		if (stat(file, &st) == -1) {
			config_error(cp, line, "cannot read %s.%s: %s",
				     config_sections[k->section], k->name,
				     strerror(errno));
			goto out;
		}
		if (S_ISREG(st.st_mode) && (st.st_mode & 077) != 0) {
			config_error(
			    cp, line,
			    "%s is %s by group or others (mode %04o); "
			    "chmod 600 it",
			    label, (st.st_mode & 044) ? "readable" : "writable",
			    (unsigned)(st.st_mode & 07777));
			goto out;
		}
	} else {
		if (sec->required)
			config_error(cp, cp->section_lines[sec->section],
				     "missing required key %s.%s (or the "
				     "systemd credential %s)",
				     config_sections[k->section], k->name,
				     sec->credential);
		goto out;
	}
	if (read_secret_file(file, CONFIG_SECRET_MAX, &secret, &cause) == -1) {
		config_error(cp, line, "cannot read %s: %s",
			     cred != NULL ? "systemd credential" : sec->what,
			     cause);
		goto out;
	}
	config_trim(secret);
	if (*secret == '\0') {
		config_error(cp, line, "%s is empty", label);
		goto out;
	}
	if (sec->check(&secret) == -1) {
		config_error(cp, line, "%s %s", label, sec->bad);
		goto out;
	}
	config_free_secret(*field);
	*field = secret;
	secret = NULL;
out:
	config_free_secret(secret);
	free(cause);
	free(label);
	free(cred);
}

/* The files we create or replace as whoever runs us (root, for
 * webcoursectl sync), and the console's users, which we trust, must not
 * lie where another user can plant a link or a file of theirs (the secret
 * files are checked as they are loaded). */
static void
config_check_private_dirs(struct config_parse *cp)
{
	static const struct {
		enum config_section section;
		const char *key;
	} keys[] = {
		{ SEC_STATE, "database" },
		{ SEC_STATE, "missing_users_csv" },
		{ SEC_WEB, "users_file" },
	};
	const struct config_key *k;
	char *cause = NULL;
	const char *path;
	int line;

	for (size_t i = 0; i < nitems(keys); i++) {
		k = config_key_find(keys[i].section, keys[i].key);
		path = *(char **)((char *)cp->conf + k->off);
		if (path == NULL || strcmp(path, ":memory:") == 0 ||
		    dir_shared(path, &cause) == 0)
			continue;
		line = cp->key_lines[k - config_keys];
		config_error(
		    cp, line ? line : cp->section_lines[keys[i].section],
		    "%s.%s: %s", config_sections[k->section], k->name, cause);
		free(cause);
		cause = NULL;
	}
}

bool
config_listen_is_loopback(const char *listen)
{
	unsigned char a[sizeof(struct in6_addr)];
	char addr[INET6_ADDRSTRLEN];
	const char *end;

	if (listen[0] == '[') {
		if ((end = strstr(listen, "]:")) == NULL ||
		    (size_t)(end - listen - 1) >= sizeof(addr))
			return false;
		snprintf(addr, sizeof(addr), "%.*s", (int)(end - listen - 1),
			 listen + 1);
		if (inet_pton(AF_INET6, addr, a) != 1)
			return false;
		if (memcmp(a, &in6addr_loopback, sizeof(in6addr_loopback)) == 0)
			return true;
		/* ::ffff:127.x.y.z, an IPv4 loopback address mapped */
		return memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0 &&
		       a[12] == 127;
	}
	if ((end = strrchr(listen, ':')) == NULL ||
	    (size_t)(end - listen) >= sizeof(addr))
		return false;
	snprintf(addr, sizeof(addr), "%.*s", (int)(end - listen), listen);
	return inet_pton(AF_INET, addr, a) == 1 && a[0] == 127;
}

/* [web]: the console speaks plain HTTP only where nobody else listens in;
 * a certificate comes with its key. */
static void
config_check_web(struct config_parse *cp)
{
	struct config *c = cp->conf;
	const struct config_key *lk = config_key_find(SEC_WEB, "listen");
	const struct config_key *ck = config_key_find(SEC_WEB, "tls_cert");
	const struct config_key *kk = config_key_find(SEC_WEB, "tls_key");

	if ((c->web_tls_cert == NULL) != (c->web_tls_key == NULL)) {
		if (c->web_tls_cert != NULL)
			config_error(cp, cp->key_lines[ck - config_keys],
				     "web.tls_cert is set but web.tls_key is "
				     "not: set both, or neither");
		else
			config_error(cp, cp->key_lines[kk - config_keys],
				     "web.tls_key is set but web.tls_cert is "
				     "not: set both, or neither");
		return;
	}
	if (c->web_listen == NULL || c->web_tls_cert != NULL ||
	    config_listen_is_loopback(c->web_listen))
		return;
	config_error(cp, cp->key_lines[lk - config_keys],
		     "web.listen = %s is not a loopback address: set "
		     "web.tls_cert and web.tls_key, or listen on 127.0.0.1 "
		     "behind a TLS proxy",
		     c->web_listen);
}

/* What no single line shows: required keys, relations, secrets. */
static void
config_check(struct config_parse *cp)
{
	struct config *c = cp->conf;
	const struct config_key *k;
	size_t i;

	for (i = 0; i < nitems(config_keys); i++) {
		k = &config_keys[i];
		if ((k->flags & CF_REQUIRED) && cp->key_lines[i] == 0)
			config_error(cp, cp->section_lines[k->section],
				     "missing required key %s.%s",
				     config_sections[k->section], k->name);
	}
	if (c->sync_default_role != NULL &&
	    config_role_id(c, c->sync_default_role) == -1) {
		k = config_key_find(SEC_SYNC, "default_role");
		config_error(cp, cp->key_lines[k - config_keys],
			     "sync.default_role \"%s\" is not in [roles]",
			     c->sync_default_role);
	}
	if (c->sync_outage_retry_ms > c->sync_outage_retry_max_ms) {
		k = config_key_find(SEC_SYNC, "outage_retry");
		config_error(cp, cp->key_lines[k - config_keys],
			     "sync.outage_retry is longer than "
			     "sync.outage_retry_max");
	}
	config_check_web(cp);
	for (i = 0; i < nitems(config_secrets); i++)
		config_load_secret(cp, &config_secrets[i]);
	config_check_private_dirs(cp);
}

/* The directory relative paths are taken from. */
static char *
config_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

int
config_load(const char *path, struct config **ret, char **ret_errors)
{
	struct config_parse cp;
	struct stat st;
	size_t i;
	int r, err = 0, rv = -1;

	*ret = NULL;
	*ret_errors = NULL;
	memset(&cp, 0, sizeof(cp));
	cp.path = path;
	cp.section = SEC_NONE;
	cp.dir = config_dirname(path);
	cp.conf = xcalloc(1, sizeof(*cp.conf));
	cp.conf->path = xstrdup(path);
	config_set_defaults(&cp);

	if ((cp.f = fopen(path, "re")) == NULL)
		err = errno;
	else if (fstat(fileno(cp.f), &st) == 0 && S_ISDIR(st.st_mode))
		err = EISDIR;
	if (err != 0) {
		xasprintf(ret_errors, "%s: cannot open: %s", path,
			  strerror(err));
		goto out;
	}
	r = ini_parse_stream(config_read_cb, &cp, config_key_cb, &cp);
	if (ferror(cp.f))
		config_error(&cp, cp.line, "read error");
	if (r > 0) {
		/* a line libinih refused that config_check_line let through */
		for (i = 0; i < cp.nerrors && cp.errors[i].line != r; i++)
			;
		if (i == cp.nerrors)
			config_error(&cp, r, "syntax error");
	}
	config_check(&cp);
	if (cp.nerrors > 0 || cp.suppressed > 0) {
		*ret_errors = config_join_errors(&cp);
		goto out;
	}
	log_debug("%s: %zu roles, interval %" PRId64 " ms", path,
		  cp.conf->nroles, cp.conf->sync_interval_ms);
	*ret = cp.conf;
	cp.conf = NULL;
	rv = 0;
out:
	if (cp.f != NULL)
		fclose(cp.f);
	for (i = 0; i < cp.nerrors; i++)
		free(cp.errors[i].text);
	free(cp.errors);
	free(cp.dir);
	config_free(cp.conf);
	return rv;
}

void
config_free(struct config *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < nitems(config_keys); i++)
		switch (config_keys[i].type) {
		case CT_STRING:
		case CT_PATH:
		case CT_URL:
		case CT_LISTEN:
			free(*(char **)((char *)c + config_keys[i].off));
			break;
		default:
			break;
		}
	for (i = 0; i < c->nroles; i++)
		free(c->roles[i].name);
	free(c->roles);
	config_free_secret(c->moodle_token);
	config_free_secret(c->source_auth_header);
	free(c->path);
	free(c);
}

int
config_role_id(const struct config *c, const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < c->nroles; i++)
		if (strcasecmp(c->roles[i].name, name) == 0)
			return c->roles[i].id;
	return -1;
}

const char *
config_role_name(const struct config *c, int id)
{
	size_t i;

	for (i = 0; i < c->nroles; i++)
		if (c->roles[i].id == id)
			return c->roles[i].name;
	return NULL;
}

/* A key's default as --help shows it. */
static const char *
config_key_default(const struct config_key *k)
{
	if (k->def != NULL)
		return k->def;
	return (k->flags & CF_REQUIRED) ? "(required)" : "(none)";
}

void
config_print_keys(FILE *fp)
{
	const struct config_key *k;
	size_t name_w = 0, def_w = 0, col;
	int section = -1;
	const char *def;

	for (size_t i = 0; i < nitems(config_keys); i++) {
		k = &config_keys[i];
		if (strlen(k->name) > name_w)
			name_w = strlen(k->name);
		def = config_key_default(k);
		if (strlen(def) > def_w && strlen(def) <= CONFIG_HELP_DEF_W)
			def_w = strlen(def);
	}
	for (size_t i = 0; i < nitems(config_keys); i++) {
		k = &config_keys[i];
		if ((int)k->section != section) {
			section = (int)k->section;
			fprintf(fp, "[%s]\n", config_sections[section]);
		}
		def = config_key_default(k);
		col = (size_t)fprintf(fp, "  %-*s  %-*s  ", (int)name_w,
				      k->name, (int)def_w, def);
		/* A long default (a path) gets the line to itself. */
		if (strlen(def) > def_w) {
			col = 2 + name_w + 2 + def_w + 2;
			fprintf(fp, "\n%*s", (int)col, "");
		}
		print_wrapped(fp, col, 2 + name_w + 2 + def_w + 2, k->help);
	}
}
