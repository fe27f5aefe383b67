/* HTTP transfers through libcurl, shared by the feed fetch and Moodle. */
#ifndef HTTP_H
#define HTTP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http;

/* Cap used when a request leaves max_body at 0. */
#define HTTP_DEFAULT_MAX_BODY ((size_t)64 * 1024 * 1024)

struct http_request {
	const char *url;
	const char *body; /* non-NULL makes it a POST */
	size_t body_len;
	const char *content_type;
	const char *const *headers; /* NULL-terminated "Name: value", or NULL */
	/* "Name: value" sent to url's origin (scheme, host, port) only: a
	 * redirect to another origin is refused before the request is made. */
	const char *origin_header;
	int64_t connect_timeout_ms;
	int64_t timeout_ms;
	size_t max_body; /* abort the transfer once the body exceeds this */
	const char *ca_file;
	int max_redirects; /* 0: do not follow */
	bool accept_gzip;
};

struct http_response {
	long status;
	char *body; /* NUL-terminated for convenience; len excludes the NUL */
	size_t len;
	char *etag;
	char *last_modified;
	char *location;
	char *content_type;
};

enum http_result {
	HTTP_OK = 0,        /* a response arrived (any status) */
	HTTP_ERR_CONNECT,   /* the request did not reach the server */
	HTTP_ERR_TIMEOUT,   /* it did, and no answer came in time */
	HTTP_ERR_NO_ANSWER, /* it did, and the connection broke */
	HTTP_ERR_TOO_BIG,
	HTTP_ERR_CANCELLED,
	HTTP_ERR_REDIRECT, /* a redirect that may not be followed */
	HTTP_ERR_OTHER
};

/* cancel, when not NULL, is polled during transfers: non-zero aborts. */
struct http *http_new(volatile sig_atomic_t *cancel);
void http_free(struct http *);
/* Called about once a second during a transfer (watchdog heartbeat). */
void http_set_tick(struct http *, void (*tick)(void *), void *arg);

/* Perform one request on the reused handle.  On anything but HTTP_OK,
 * *cause says what happened (never quoting headers).  ret is filled only
 * on HTTP_OK.  Redirects (max_redirects) never go from https to http, and
 * a header with a line break is refused (HTTP_ERR_OTHER). */
enum http_result http_perform(struct http *, const struct http_request *,
			      struct http_response *ret, char **cause);
void http_response_clear(struct http_response *);

/* v[0..len) is a valid HTTP field value (RFC 9110 5.5): no CR, LF, NUL
 * or other control but tab. */
bool http_field_value_ok(const char *v, size_t len);

/* Percent-encode s for a form body (malloc'd). */
char *http_escape(const char *s);
/* url without userinfo, query and fragment, for log lines (malloc'd). */
char *http_redact_url(const char *url);

#endif
