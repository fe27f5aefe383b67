/* Tests of the config module: the case folders, secrets, syntaxes, keys. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "tap.h"
#include "util.h"

#define TOKEN      "s3cr3t-token-4f9a1c"
#define CRED_TOKEN "cred-token-77e2b0"

static const char *top;
static char tmp[] = "/tmp/test_config.XXXXXX";
static char *credir;

static const char base_conf[] = "[source]\n"
				"url = https://feed.example.edu/courses.json\n"
				"\n"
				"[moodle]\n"
				"url = https://moodle.example.edu\n";

/* Every key of DESIGN.md §3 and the task, as config_print_keys names it. */
static const char *const all_keys[] = {
	"source.url",
	"source.auth_header_file",
	"source.timeout",
	"source.max_size",
	"source.ca_file",
	"moodle.url",
	"moodle.token_file",
	"moodle.timeout",
	"moodle.max_input_vars",
	"moodle.max_concurrent_calls",
	"moodle.ca_file",
	"moodle.retries",
	"moodle.retry_delay",
	"sync.interval",
	"sync.category_id",
	"sync.default_role",
	"sync.new_courses",
	"sync.update_names",
	"sync.on_removed_participant",
	"sync.on_removed_course",
	"sync.max_removals",
	"sync.removals_allowance",
	"sync.course_format",
	"sync.course_visible",
	"sync.idnumber_prefix",
	"sync.reconcile_every",
	"sync.on_drift",
	"sync.outage_retry",
	"sync.outage_retry_max",
	"state.database",
	"state.missing_users_csv",
	"state.history_days",
	"metrics.listen",
	"web.listen",
	"web.tls_cert",
	"web.tls_key",
	"web.users_file",
	"web.session_idle",
	"log.level",
};

static char *
slurp(const char *path)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL)
		return NULL;
	if (getdelim(&buf, &len, '\0', f) == -1) {
		free(buf);
		buf = xstrdup("");
	}
	fclose(f);
	return buf;
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	if (f == NULL || fputs(text, f) == EOF || fclose(f) != 0) {
		printf("Bail out! cannot write %s: %s\n", path,
		       strerror(errno));
		exit(1);
	}
	chmod(path, mode);
}

/* The expected file with FILE replaced by path and no final newline. */
static char *
expected_errors(const char *text, const char *path)
{
	size_t plen = strlen(path), n = 0, len;
	const char *p;
	char *out, *o;

	for (p = text; (p = strstr(p, "FILE")) != NULL; p += 4)
		n++;
	out = o = xmalloc(strlen(text) + n * plen + 1);
	for (p = text; *p != '\0';) {
		if (strncmp(p, "FILE", 4) == 0) {
			memcpy(o, path, plen);
			o += plen;
			p += 4;
		} else
			*o++ = *p++;
	}
	*o = '\0';
	len = strlen(out);
	while (len > 0 && out[len - 1] == '\n')
		out[--len] = '\0';
	return out;
}

static char *
tmp_path(const char *name)
{
	char *p;

	xasprintf(&p, "%s/%s", tmp, name);
	return p;
}

/* Load text written to tmp/name; returns the errors (or NULL). */
static char *
load_text(const char *name, const char *text, struct config **ret)
{
	char *path = tmp_path(name), *errors = NULL;
	struct config *c = NULL;

	write_file(path, text, 0644);
	if (config_load(path, &c, &errors) == 0)
		ok(errors == NULL, "%s: no errors on success", name);
	else
		ok(c == NULL, "%s: no config on failure", name);
	free(path);
	if (ret != NULL)
		*ret = c;
	else
		config_free(c);
	return errors;
}

static void
check_minimal(const struct config *c)
{
	is_str(c->source_url, "https://feed.example.edu/courses.json",
	       "minimal: source.url");
	ok(c->source_auth_header_file == NULL, "minimal: no auth header file");
	is_int(c->source_timeout_ms, 60000, "minimal: source.timeout 60s");
	is_int(c->source_max_size, 256 << 20, "minimal: source.max_size 256M");
	ok(c->source_ca_file == NULL, "minimal: no source.ca_file");
	is_str(c->moodle_url, "https://moodle.example.edu",
	       "minimal: moodle.url loses its trailing slash");
	is_int(c->moodle_timeout_ms, 120000, "minimal: moodle.timeout 120s");
	is_int(c->moodle_max_input_vars, 0, "minimal: max_input_vars auto (0)");
	is_int(c->moodle_max_concurrent_calls, 4,
	       "minimal: max_concurrent_calls 4");
	is_int(c->moodle_retries, 5, "minimal: retries 5");
	is_int(c->moodle_retry_delay_ms, 2000, "minimal: retry_delay 2s");
	is_int(c->sync_interval_ms, 15 * 60000, "minimal: interval 15m");
	is_int(c->sync_category_id, 1, "minimal: category_id 1");
	is_str(c->sync_default_role, "student", "minimal: default_role");
	is_int(c->sync_new_courses, NEW_COURSES_CREATE, "minimal: create");
	ok(c->sync_update_names, "minimal: update_names");
	is_int(c->sync_on_removed_participant, REMOVED_PARTICIPANT_SUSPEND,
	       "minimal: suspend removed participants");
	is_int(c->sync_on_removed_course, REMOVED_COURSE_KEEP,
	       "minimal: keep removed courses");
	is_int(c->sync_max_removals, 10, "minimal: max_removals 10");
	ok(c->sync_max_removals_percent, "minimal: ... per cent");
	is_int(c->sync_removals_allowance, 20, "minimal: allowance 20");
	is_str(c->sync_course_format, "topics", "minimal: course_format");
	ok(c->sync_course_visible, "minimal: course_visible");
	is_str(c->sync_idnumber_prefix, "webcoursed:", "minimal: prefix");
	is_int(c->nroles, 3, "minimal: three default roles");
	is_int(config_role_id(c, "student"), 5, "minimal: student is 5");
	is_int(config_role_id(c, "Teacher"), 3, "minimal: Teacher is 3");
	is_int(config_role_id(c, "PROFESSOR"), 3, "minimal: PROFESSOR is 3");
	is_int(config_role_id(c, "guest"), -1, "minimal: no guest");
	is_int(config_role_id(c, NULL), -1, "minimal: NULL role name");
	is_str(config_role_name(c, 3), "teacher", "minimal: 3 is teacher");
	ok(config_role_name(c, 1) == NULL, "minimal: no role 1");
	is_str(c->state_database, "/var/lib/webcoursed/ledger.db",
	       "minimal: database");
	is_str(c->state_missing_users_csv,
	       "/var/lib/webcoursed/missing-users.csv", "minimal: csv");
	ok(c->metrics_listen == NULL, "minimal: no metrics listener");
	ok(c->web_listen == NULL, "minimal: the console is off");
	ok(c->web_tls_cert == NULL && c->web_tls_key == NULL,
	   "minimal: no TLS");
	is_str(c->web_users_file, SYSCONFDIR "/webcoursed/web-users",
	       "minimal: users_file");
	is_int(c->web_session_idle_ms, 3600000, "minimal: session_idle 1h");
	is_int(c->log_level, LOG_INFO, "minimal: log level info");
	is_str(c->moodle_token, CRED_TOKEN, "minimal: token of the credential");
	ok(c->source_auth_header == NULL, "minimal: no auth header");
}

static void
check_full(const struct config *c)
{
	char *dir, *want;

	xasprintf(&dir, "%s/tests/config/valid", top);
	is_str(c->source_url, "file:///srv/feed/courses.json",
	       "full: file URL");
	ok(c->source_auth_header_file == NULL, "full: empty path is unset");
	is_int(c->source_timeout_ms, 45000, "full: 45s");
	is_int(c->source_max_size, 64 * 1024, "full: 64K");
	xasprintf(&want, "%s/certs/feed-ca.pem", dir);
	is_str(c->source_ca_file, want, "full: relative path resolved");
	free(want);
	is_str(c->moodle_url, "http://moodle.example.edu/moodle",
	       "full: moodle.url with a path");
	is_str(c->moodle_token_file, "/nonexistent/moodle-token",
	       "full: token_file kept");
	is_int(c->moodle_timeout_ms, 86400000, "full: 1d");
	is_int(c->moodle_max_input_vars, 5000, "full: max_input_vars");
	is_str(c->moodle_ca_file, "/etc/ssl/moodle-ca.pem", "full: ca_file");
	is_int(c->moodle_retries, 20, "full: retries");
	is_int(c->moodle_retry_delay_ms, 100, "full: retry_delay 100ms");
	is_int(c->sync_interval_ms, 2 * 3600000, "full: interval 2h");
	is_int(c->sync_category_id, 42, "full: category_id");
	is_str(c->sync_default_role, "assistant", "full: default_role lowered");
	is_int(c->sync_new_courses, NEW_COURSES_APPROVE, "full: approve");
	ok(!c->sync_update_names, "full: update_names off");
	is_int(c->sync_on_removed_participant, REMOVED_PARTICIPANT_UNENROL,
	       "full: unenrol");
	is_int(c->sync_on_removed_course, REMOVED_COURSE_HIDE, "full: hide");
	is_int(c->sync_max_removals, 200, "full: max_removals 200");
	ok(!c->sync_max_removals_percent, "full: ... a count");
	is_int(c->sync_removals_allowance, 0, "full: allowance 0");
	is_str(c->sync_course_format, "weeks", "full: course_format");
	ok(!c->sync_course_visible, "full: course_visible 0");
	is_str(c->sync_idnumber_prefix, "", "full: empty prefix");
	is_int(c->nroles, 4, "full: defaults plus one role");
	is_int(config_role_id(c, "ASSISTANT"), 9, "full: assistant 9");
	is_int(config_role_id(c, "teacher"), 4, "full: teacher overridden");
	is_int(config_role_id(c, "student"), 5, "full: student kept");
	is_str(config_role_name(c, 3), "professor", "full: 3 is professor");
	is_str(config_role_name(c, 4), "teacher", "full: 4 is teacher");
	xasprintf(&want, "%s/state/ledger.db", dir);
	is_str(c->state_database, want, "full: database resolved");
	free(want);
	is_str(c->state_missing_users_csv, "/srv/webcoursed/missing.csv",
	       "full: csv");
	is_str(c->metrics_listen, "[::1]:9826", "full: metrics on [::1]:9826");
	is_str(c->web_listen, "192.0.2.10:8443", "full: console listen");
	xasprintf(&want, "%s/certs/web.pem", dir);
	is_str(c->web_tls_cert, want, "full: tls_cert resolved");
	free(want);
	is_str(c->web_tls_key, "/etc/ssl/private/web.key", "full: tls_key");
	xasprintf(&want, "%s/web-users", dir);
	is_str(c->web_users_file, want, "full: users_file resolved");
	free(want);
	is_int(c->web_session_idle_ms, 15 * 60000, "full: session_idle 15m");
	is_int(c->log_level, LOG_DEBUG, "full: log level debug");
	free(dir);
}

static void
check_syntax(const struct config *c)
{
	is_str(c->source_url,
	       "https://feed.example.edu/courses.json?term=2024&x=1",
	       "syntax: inline comment cut, query kept");
	is_int(c->source_max_size, INT64_C(1) << 30, "syntax: 1G");
	is_int(c->source_timeout_ms, 90000, "syntax: plain seconds");
	is_str(c->moodle_url, "HTTPS://moodle.example.edu", "syntax: scheme");
	is_int(c->moodle_max_input_vars, 100, "syntax: indented key");
	is_int(c->sync_interval_ms, 86400000, "syntax: 1d");
	is_int(c->sync_max_removals, 0, "syntax: 0%%");
	ok(c->sync_max_removals_percent, "syntax: ... per cent");
	ok(c->sync_update_names, "syntax: True");
	ok(!c->sync_course_visible, "syntax: NO");
	is_int(c->sync_new_courses, NEW_COURSES_APPROVE, "syntax: Approve");
	is_int(config_role_id(c, "ta"), 4, "syntax: role TA stored as ta");
	is_str(config_role_name(c, 4), "ta", "syntax: role name lower case");
}

static const struct {
	const char *file;
	void (*check)(const struct config *);
} valid_checks[] = {
	{ "minimal.conf", check_minimal },
	{ "full.conf", check_full },
	{ "syntax.conf", check_syntax },
};

static void
test_case_dir(const char *kind)
{
	char *pattern, *errors, *want, *text, *exp, *name;
	struct config *c;
	size_t i, j, checked = 0;
	glob_t g;
	int rv;

	xasprintf(&pattern, "%s/tests/config/%s/*.conf", top, kind);
	if (glob(pattern, 0, NULL, &g) != 0)
		g.gl_pathc = 0;
	ok(g.gl_pathc >= 3, "%s: found %zu cases", kind, g.gl_pathc);
	for (i = 0; i < g.gl_pathc; i++) {
		name = strrchr(g.gl_pathv[i], '/') + 1;
		c = NULL;
		errors = NULL;
		rv = config_load(g.gl_pathv[i], &c, &errors);
		if (strcmp(kind, "valid") == 0) {
			if (!ok(rv == 0 && c != NULL && errors == NULL,
				"valid/%s loads", name))
				printf("#   errors: %s\n", errors);
			for (j = 0; c != NULL && j < nitems(valid_checks); j++)
				if (strcmp(valid_checks[j].file, name) == 0) {
					valid_checks[j].check(c);
					checked++;
				}
		} else {
			xasprintf(&exp, "%.*s.expected",
				  (int)strlen(g.gl_pathv[i]) - 5,
				  g.gl_pathv[i]);
			text = slurp(exp);
			ok(text != NULL, "invalid/%s has an expected file",
			   name);
			want = expected_errors(text != NULL ? text : "",
					       g.gl_pathv[i]);
			ok(rv == -1 && c == NULL, "invalid/%s is refused",
			   name);
			is_str(errors, want, "invalid/%s errors", name);
			ok(errors == NULL ||
			       strstr(errors, "0123456789abcdef") == NULL,
			   "invalid/%s shows no token", name);
			free(want);
			free(text);
			free(exp);
		}
		config_free(c);
		free(errors);
	}
	if (strcmp(kind, "valid") == 0)
		is_int(checked, nitems(valid_checks), "every checked file ran");
	globfree(&g);
	free(pattern);
}

/* The shipped example loads (its token comes from the credential). */
static void
test_example(void)
{
	char *path, *errors = NULL, *text;
	struct config *c = NULL;
	size_t i;

	xasprintf(&path, "%s/etc/webcoursed.conf", top);
	if (!ok(config_load(path, &c, &errors) == 0, "example loads"))
		printf("#   errors: %s\n", errors);
	if (c != NULL)
		is_str(c->moodle_token_file, "/etc/webcoursed/moodle-token",
		       "example: token_file");
	config_free(c);
	free(errors);
	text = slurp(path);
	ok(text != NULL, "example is readable");
	for (i = 0; text != NULL && i < nitems(all_keys); i++) {
		char *want;

		xasprintf(&want, "%s =", strchr(all_keys[i], '.') + 1);
		ok(strstr(text, want) != NULL, "example shows %s", all_keys[i]);
		free(want);
	}
	free(text);
	free(path);
}

static void
test_secret_files(void)
{
	char *conf = tmp_path("sec.conf"), *tok = tmp_path("moodle-token");
	char *hdr = tmp_path("header"), *text, *want, *errors, big[9001];
	struct config *c;

	unsetenv("CREDENTIALS_DIRECTORY");
	xasprintf(&text, "[source]\n"
			 "url = https://feed.example.edu/courses.json\n"
			 "\n"
			 "[moodle]\n"
			 "url = https://moodle.example.edu\n"
			 "token_file = moodle-token\n");
	write_file(tok, TOKEN "\n", 0644);
	errors = load_text("sec.conf", text, NULL);
	xasprintf(&want,
		  "%s:6: token file %s is readable by group or others (mode "
		  "0644); chmod 600 it",
		  conf, tok);
	is_str(errors, want, "token file 0644 refused");
	ok(errors != NULL && strstr(errors, TOKEN) == NULL,
	   "refused token not shown");
	free(errors);
	free(want);

	chmod(tok, 0620);
	errors = load_text("sec.conf", text, NULL);
	xasprintf(&want,
		  "%s:6: token file %s is writable by group or others (mode "
		  "0620); chmod 600 it",
		  conf, tok);
	is_str(errors, want, "token file 0620 refused");
	free(errors);
	free(want);

	write_file(tok, "  " TOKEN " \n\n", 0600);
	errors = load_text("sec.conf", text, &c);
	ok(errors == NULL && c != NULL, "token file 0600 accepted");
	if (c != NULL) {
		is_str(c->moodle_token, TOKEN, "token read and trimmed");
		is_str(c->moodle_token_file, tok, "token_file resolved");
	}
	config_free(c);
	free(errors);

	write_file(tok, "\n", 0600);
	errors = load_text("sec.conf", text, NULL);
	xasprintf(&want, "%s:6: token file %s is empty", conf, tok);
	is_str(errors, want, "empty token refused");
	free(errors);
	free(want);

	write_file(tok, "abc " TOKEN "\n", 0600);
	errors = load_text("sec.conf", text, NULL);
	xasprintf(&want,
		  "%s:6: token file %s holds blanks or control characters",
		  conf, tok);
	is_str(errors, want, "token with a blank refused");
	ok(errors != NULL && strstr(errors, TOKEN) == NULL,
	   "bad token not shown");
	free(errors);
	free(want);

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	write_file(tok, big, 0600);
	errors = load_text("sec.conf", text, NULL);
	xasprintf(&want,
		  "%s:6: cannot read token file: %s: larger than 8192 bytes",
		  conf, tok);
	is_str(errors, want, "token file over 8 KiB refused");
	free(errors);
	free(want);

	unlink(tok);
	errors = load_text("sec.conf", text, NULL);
	xasprintf(&want,
		  "%s:6: cannot read moodle.token_file: No such file or "
		  "directory",
		  conf);
	is_str(errors, want, "missing token file");
	free(errors);
	free(want);
	free(text);

	errors = load_text("sec.conf", base_conf, NULL);
	xasprintf(&want,
		  "%s:4: missing required key moodle.token_file (or the "
		  "systemd credential moodle-token)",
		  conf);
	is_str(errors, want, "no token at all");
	free(errors);
	free(want);

	/* the auth header: mode-checked, completed, one line */
	write_file(tok, TOKEN, 0600);
	xasprintf(&text,
		  "[source]\n"
		  "url = https://feed.example.edu/courses.json\n"
		  "auth_header_file = %s\n"
		  "[moodle]\n"
		  "url = https://moodle.example.edu\n"
		  "token_file = %s\n",
		  hdr, tok);
	write_file(hdr, "Bearer hdr-secret-91\n", 0600);
	errors = load_text("sec.conf", text, &c);
	ok(errors == NULL && c != NULL, "auth header file loads");
	if (c != NULL) {
		is_str(c->source_auth_header,
		       "Authorization: Bearer hdr-secret-91",
		       "bare value becomes an Authorization header");
		is_str(c->moodle_token, TOKEN, "absolute token_file");
	}
	config_free(c);
	free(errors);

	write_file(hdr, "X-Api-Key: hdr-secret-91", 0600);
	errors = load_text("sec.conf", text, &c);
	if (c != NULL)
		is_str(c->source_auth_header, "X-Api-Key: hdr-secret-91",
		       "a full header is kept");
	else
		ok(0, "a full header is kept: %s", errors);
	config_free(c);
	free(errors);

	write_file(hdr, "Bearer hdr-secret-91", 0640);
	errors = load_text("sec.conf", text, NULL);
	xasprintf(&want,
		  "%s:3: auth header file %s is readable by group or others "
		  "(mode 0640); chmod 600 it",
		  conf, hdr);
	is_str(errors, want, "auth header file 0640 refused");
	free(errors);
	free(want);

	write_file(hdr, "Bearer hdr-secret-91\nX-Evil: 1", 0600);
	errors = load_text("sec.conf", text, NULL);
	xasprintf(&want,
		  "%s:3: auth header file %s must hold one line without "
		  "control characters",
		  conf, hdr);
	is_str(errors, want, "two header lines refused");
	ok(errors != NULL && strstr(errors, "hdr-secret-91") == NULL,
	   "header secret not shown");
	free(errors);
	free(want);
	free(text);
	unlink(hdr);
	unlink(tok);
	free(hdr);
	free(tok);
	free(conf);
}

static void
test_credentials(void)
{
	char *conf = tmp_path("cred.conf"), *tok = tmp_path("moodle-token");
	char *cred, *hcred, *text, *want, *errors;
	struct config *c;

	xasprintf(&cred, "%s/moodle-token", credir);
	xasprintf(&hcred, "%s/source-auth-header", credir);
	xasprintf(&text, "%stoken_file = %s\n", base_conf, tok);
	write_file(tok, TOKEN, 0644);

	/* the credential wins, and no mode check applies to it or the file */
	setenv("CREDENTIALS_DIRECTORY", credir, 1);
	write_file(cred, CRED_TOKEN "\n", 0644);
	errors = load_text("cred.conf", text, &c);
	ok(errors == NULL && c != NULL, "credential used, token_file ignored");
	if (c != NULL)
		is_str(c->moodle_token, CRED_TOKEN, "token of the credential");
	config_free(c);
	free(errors);

	write_file(hcred, "Basic aGVsbG86d29ybGQ=", 0644);
	errors = load_text("cred.conf", text, &c);
	if (c != NULL)
		is_str(c->source_auth_header,
		       "Authorization: Basic aGVsbG86d29ybGQ=",
		       "auth header from its credential");
	else
		ok(0, "auth header from its credential: %s", errors);
	config_free(c);
	free(errors);
	unlink(hcred);

	write_file(cred, "\n", 0600);
	errors = load_text("cred.conf", text, NULL);
	xasprintf(&want, "%s:0: systemd credential %s is empty", conf, cred);
	is_str(errors, want, "empty credential refused");
	free(errors);
	free(want);

	/* without the credential file, token_file is used and checked */
	unlink(cred);
	errors = load_text("cred.conf", text, NULL);
	ok(errors != NULL && strstr(errors, "mode 0644") != NULL,
	   "no credential: token_file used and mode-checked");
	free(errors);

	chmod(tok, 0600);
	errors = load_text("cred.conf", text, &c);
	if (c != NULL)
		is_str(c->moodle_token, TOKEN,
		       "no credential: token_file read");
	else
		ok(0, "no credential: token_file read: %s", errors);
	config_free(c);
	free(errors);

	write_file(cred, CRED_TOKEN, 0600);
	unlink(tok);
	free(text);
	free(hcred);
	free(cred);
	free(tok);
	free(conf);
}

/* Secrets in every wrong place still do not come back in the errors. */
static void
test_secret_never_shown(void)
{
	static const char text[] =
	    "[source]\n"
	    "url = https://user:" TOKEN "@feed.example.edu/x?k=" TOKEN "\n"
	    "auth_header_file = Bearer " TOKEN "\n"
	    "[moodle]\n"
	    "url = https://moodle.example.edu/x?wstoken=" TOKEN "\n"
	    "token_file = " TOKEN "\n"
	    "token = " TOKEN "\n"
	    "wstoken: " TOKEN "\n" TOKEN "\n";
	char *errors, *line;
	int n = 0;

	unsetenv("CREDENTIALS_DIRECTORY");
	errors = load_text("leak.conf", text, NULL);
	ok(errors != NULL, "leak.conf refused");
	ok(errors != NULL && strstr(errors, TOKEN) == NULL,
	   "no secret in the errors");
	for (line = errors; line != NULL; line = strchr(line + 1, '\n'))
		n++;
	is_int(n, 6, "every mistake reported");
	free(errors);
	setenv("CREDENTIALS_DIRECTORY", credir, 1);
}

static void
test_files(void)
{
	char *path = tmp_path("nonexistent.conf"), *errors = NULL, *want;
	struct config *c = NULL;

	ok(config_load(path, &c, &errors) == -1 && c == NULL,
	   "missing file refused");
	xasprintf(&want, "%s: cannot open: No such file or directory", path);
	is_str(errors, want, "missing file: one line");
	free(errors);
	free(want);
	free(path);

	errors = NULL;
	ok(config_load(tmp, &c, &errors) == -1, "directory refused");
	xasprintf(&want, "%s: cannot open: Is a directory", tmp);
	is_str(errors, want, "directory: one line");
	free(errors);
	free(want);

	errors = load_text("crlf.conf",
			   "\xef\xbb\xbf[source]\r\n"
			   "url = https://feed.example.edu/courses.json\r\n"
			   "[moodle]\r\nurl = https://moodle.example.edu\r\n",
			   &c);
	ok(errors == NULL && c != NULL, "BOM and CRLF accepted");
	if (c != NULL)
		is_str(c->moodle_url, "https://moodle.example.edu",
		       "CRLF stripped");
	config_free(c);
	free(errors);
	config_free(NULL);
	ok(1, "config_free(NULL)");
}

static void
test_too_many_errors(void)
{
	char *text, *errors, *p, *last;
	size_t i, len = 0;
	int n = 0;

	text = xmalloc(sizeof(base_conf) + 7 + 150 * 16);
	len = (size_t)snprintf(text, sizeof(base_conf) + 7, "%s[sync]\n",
			       base_conf);
	for (i = 0; i < 150; i++)
		len += (size_t)snprintf(text + len, 16, "interval = %zux\n",
					i % 10);
	errors = load_text("many.conf", text, NULL);
	for (p = errors; p != NULL; p = strchr(p + 1, '\n'))
		n++;
	is_int(n, 101, "errors capped at 100 plus a summary");
	last = errors != NULL ? strrchr(errors, '\n') : NULL;
	ok(last != NULL && strstr(last, ":107: too many errors, 50 more not "
					"shown") != NULL,
	   "summary line: %s", last != NULL ? last + 1 : "(none)");
	free(errors);
	free(text);
}

/* Which console addresses count as loopback (plain HTTP allowed). */
static void
test_loopback(void)
{
	static const struct {
		const char *listen;
		bool loopback;
	} cases[] = {
		{ "127.0.0.1:8080", true },
		{ "127.1.2.3:80", true },
		{ "[::1]:8080", true },
		{ "[::ffff:127.0.0.1]:80", true },
		{ "0.0.0.0:8080", false },
		{ "[::]:8080", false },
		{ "10.0.0.1:8080", false },
		{ "128.0.0.1:80", false },
		{ "[::ffff:10.0.0.1]:80", false },
		{ "[::2]:80", false },
	};

	for (size_t i = 0; i < nitems(cases); i++)
		is_int(config_listen_is_loopback(cases[i].listen),
		       cases[i].loopback, "%s is %sloopback", cases[i].listen,
		       cases[i].loopback ? "" : "not ");
}

static void
test_syntaxes(void)
{
	static const struct {
		const char *s;
		int64_t want; /* -1: refused */
	} durations[] = {
		{ "90", 90000 },
		{ "90s", 90000 },
		{ "15m", 900000 },
		{ "2h", 7200000 },
		{ "1d", 86400000 },
		{ "500ms", 500 },
		{ "0", 0 },
		{ "007s", 7000 },
		{ "", -1 },
		{ "15 minutes", -1 },
		{ "15 m", -1 },
		{ "1.5s", -1 },
		{ "-5s", -1 },
		{ "+5s", -1 },
		{ "5S", -1 },
		{ "s", -1 },
		{ "1w", -1 },
		{ "99999999999999999999", -1 },
		{ "9223372036854775807s", -1 },
		{ "106751991167d", INT64_C(9223372036828800000) },
		{ "106751991168d", -1 },
	},
	  sizes[] = {
		  { "1024", 1024 },
		  { "64K", 65536 },
		  { "64k", 65536 },
		  { "256M", 268435456 },
		  { "1G", 1073741824 },
		  { "0", 0 },
		  { "1T", -1 },
		  { "K", -1 },
		  { "12X", -1 },
		  { "-1", -1 },
		  { "1.5M", -1 },
		  { "10 M", -1 },
		  { "9223372036854775807K", -1 },
	  };
	int64_t v;
	size_t i;
	int rv;

	for (i = 0; i < nitems(durations); i++) {
		v = -1;
		rv = config_parse_duration(durations[i].s, &v);
		if (durations[i].want == -1)
			is_int(rv, -1, "duration \"%s\" refused",
			       durations[i].s);
		else
			ok(rv == 0 && v == durations[i].want,
			   "duration \"%s\" is %lld ms (got %lld)",
			   durations[i].s, (long long)durations[i].want,
			   (long long)v);
	}
	for (i = 0; i < nitems(sizes); i++) {
		v = -1;
		rv = config_parse_size(sizes[i].s, &v);
		if (sizes[i].want == -1)
			is_int(rv, -1, "size \"%s\" refused", sizes[i].s);
		else
			ok(rv == 0 && v == sizes[i].want,
			   "size \"%s\" is %lld bytes (got %lld)", sizes[i].s,
			   (long long)sizes[i].want, (long long)v);
	}
}

static void
test_removals(void)
{
	static const struct {
		const char *s;
		int64_t want;
		bool percent;
	} cases[] = {
		{ "10%", 10, true },   { "0%", 0, true }, { "100%", 100, true },
		{ "200", 200, false }, { "0", 0, false },
	};
	char *text, *errors;
	struct config *c;
	size_t i;

	for (i = 0; i < nitems(cases); i++) {
		xasprintf(&text, "%s[sync]\nmax_removals = %s\n", base_conf,
			  cases[i].s);
		errors = load_text("removals.conf", text, &c);
		ok(c != NULL && c->sync_max_removals == cases[i].want &&
		       c->sync_max_removals_percent == cases[i].percent,
		   "max_removals = %s", cases[i].s);
		config_free(c);
		free(errors);
		free(text);
	}
}

/* config_print_keys: every key once under its section, with a default and
 * help; no line past 79 columns; the man page names all. */
static void
test_print_keys(void)
{
	char *buf = NULL, *line, *save = NULL, *page, *path, *key = NULL;
	char section[32] = "";
	size_t len = 0, i, n = 0, help_col = 0;
	int seen[nitems(all_keys)] = { 0 }, long_lines = 0, misaligned = 0;
	FILE *f = open_memstream(&buf, &len);

	config_print_keys(f);
	fclose(f);
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		size_t col;

		long_lines += strlen(line) > 79;
		if (line[0] == '[') {
			snprintf(section, sizeof(section), "%.*s",
				 (int)strcspn(line + 1, "]"), line + 1);
			continue;
		}
		if (line[0] != ' ' || line[2] == ' ')
			continue; /* help continued, or a long default's help */
		/* "  key  default  help": the help starts in one column. */
		col = 2 + strcspn(line + 2, " ");
		col += strspn(line + col, " ");
		col += strcspn(line + col, " ");
		col += strspn(line + col, " ");
		if (line[col] != '\0') {
			if (help_col == 0)
				help_col = col;
			misaligned += col != help_col;
		}
		n++;
		xasprintf(&key, "%s.%.*s", section, (int)strcspn(line + 2, " "),
			  line + 2);
		for (i = 0; i < nitems(all_keys); i++)
			if (strcmp(all_keys[i], key) == 0)
				seen[i]++;
		free(key);
	}
	is_int(n, nitems(all_keys), "config_print_keys prints %zu keys",
	       nitems(all_keys));
	for (i = 0; i < nitems(all_keys); i++)
		is_int(seen[i], 1, "config_print_keys lists %s once",
		       all_keys[i]);
	is_int(long_lines, 0, "no line of the key table is over 79 columns");
	is_int(misaligned, 0, "the help column is aligned");
	free(buf);

	xasprintf(&path, "%s/man/webcoursed.conf.5", top);
	page = slurp(path);
	ok(page != NULL, "man page is readable");
	for (i = 0; page != NULL && i < nitems(all_keys); i++)
		ok(strstr(page, strchr(all_keys[i], '.') + 1) != NULL,
		   "man page names %s", all_keys[i]);
	free(page);
	free(path);
}

int
main(void)
{
	char *cred;

	top = getenv("TOP") != NULL ? getenv("TOP") : ".";
	if (mkdtemp(tmp) == NULL) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	credir = tmp_path("credentials");
	mkdir(credir, 0700);
	xasprintf(&cred, "%s/moodle-token", credir);
	write_file(cred, CRED_TOKEN "\n", 0600);
	setenv("CREDENTIALS_DIRECTORY", credir, 1);

	test_case_dir("valid");
	test_case_dir("invalid");
	test_example();
	test_syntaxes();
	test_loopback();
	test_removals();
	test_secret_files();
	test_credentials();
	test_secret_never_shown();
	test_files();
	test_too_many_errors();
	test_print_keys();

	unlink(cred);
	rmdir(credir);
	free(cred);
	free(credir);
	for (const char *const *f =
		 (const char *const[]){ "sec.conf", "cred.conf", "leak.conf",
					"crlf.conf", "many.conf",
					"removals.conf", NULL };
	     *f != NULL; f++) {
		char *p = tmp_path(*f);

		unlink(p);
		free(p);
	}
	rmdir(tmp);
	return done_testing();
}
