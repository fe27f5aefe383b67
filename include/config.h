/* The configuration file: one table of keys, parsed with libinih. */
#ifndef CONFIG_H
#define CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_DEFAULT_PATH SYSCONFDIR "/webcoursed/webcoursed.conf"

enum new_courses { NEW_COURSES_CREATE, NEW_COURSES_APPROVE };
enum on_removed_participant {
	REMOVED_PARTICIPANT_KEEP,
	REMOVED_PARTICIPANT_SUSPEND,
	REMOVED_PARTICIPANT_UNENROL
};
enum on_removed_course { REMOVED_COURSE_KEEP, REMOVED_COURSE_HIDE };
enum on_drift { ON_DRIFT_REPORT, ON_DRIFT_REPAIR };

struct config_role {
	char *name; /* lower case, as written in the feed's "roleid" */
	int id;     /* Moodle role id */
};

/* A loaded, validated configuration.  Durations are in milliseconds. */
struct config {
	char *path;

	char *source_url;
	char *source_auth_header_file;
	int64_t source_timeout_ms;
	int64_t source_max_size;
	char *source_ca_file;

	char *moodle_url;
	char *moodle_token_file;
	int64_t moodle_timeout_ms;
	int moodle_max_input_vars; /* 0: auto */
	int moodle_max_concurrent_calls;
	char *moodle_ca_file;
	int moodle_retries;            /* tries for a transient failure */
	int64_t moodle_retry_delay_ms; /* first back-off, doubled per try */

	int64_t sync_interval_ms;
	int sync_category_id;
	char *sync_default_role;
	enum new_courses sync_new_courses;
	bool sync_update_names;
	enum on_removed_participant sync_on_removed_participant;
	enum on_removed_course sync_on_removed_course;
	int64_t sync_max_removals;       /* a count, or a percentage: */
	bool sync_max_removals_percent;  /* true when written "N%" */
	int64_t sync_removals_allowance; /* always allowed, whatever the % */
	char *sync_course_format;
	bool sync_course_visible;
	char *sync_idnumber_prefix;
	int64_t sync_reconcile_every_ms; /* 0: no drift checks */
	enum on_drift sync_on_drift;
	int64_t sync_outage_retry_ms;     /* Moodle down: first retry */
	int64_t sync_outage_retry_max_ms; /* and the longest wait */

	struct config_role *roles;
	size_t nroles;

	char *state_database;
	char *state_missing_users_csv;
	int state_history_days; /* 0: for ever */

	char *metrics_listen; /* "ADDRESS:PORT" for /metrics, or NULL: off */

	char *web_listen; /* "ADDRESS:PORT" of the console, or NULL: off */
	char
	    *web_tls_cert; /* both set: HTTPS; a non-loopback listen needs it */
	char *web_tls_key;
	char *web_users_file;
	int64_t web_session_idle_ms;

	int log_level; /* syslog priority */

	/* Secrets, loaded from files or systemd credentials; never logged. */
	char *moodle_token;
	char
	    *source_auth_header; /* a full "Name: value" header line, or NULL */
};

/* Load and validate path into a fresh config.  On failure return -1 and set
 * *ret_errors to every error found, one "FILE:LINE: message" per line. */
int config_load(const char *path, struct config **ret, char **ret_errors);
void config_free(struct config *);

/* Moodle role id for a feed role name (case-insensitive), or -1. */
int config_role_id(const struct config *, const char *name);
/* Feed role name for a Moodle role id (first match), or NULL. */
const char *config_role_name(const struct config *, int id);

/* Whether a numeric listen address ("127.0.0.1:80", "[::1]:80") is a
 * loopback one (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104). */
bool config_listen_is_loopback(const char *listen);

/* Print every key with its default and help, for --help: a "[section]"
 * line, then per key "  key  default  help" in aligned columns, the help
 * wrapped within 80 columns on indented lines. */
void config_print_keys(FILE *);

/* The value syntaxes of the file, for callers and tests: a duration
 * ("90", "90s", "500ms", "15m", "2h", "1d"; plain numbers are seconds) in
 * milliseconds, a size ("1024", "64K", "256M", "1G") in bytes.  -1 on junk
 * or overflow. */
int config_parse_duration(const char *, int64_t *ret_ms);
int config_parse_size(const char *, int64_t *ret);

#endif
