/* HTTP transfers through one reused libcurl easy handle, with caps. */
#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "http.h"
#include "log.h"
#include "util.h"

#ifndef WEBCOURSED_VERSION
#define WEBCOURSED_VERSION "dev"
#endif

#define HTTP_MAX_HEADER_VALUE                                                  \
	4096 /* longer ETag/Location lines are dropped                         \
	      */
#define HTTP_TICK_MS 1000

struct http {
	CURL *curl;
	volatile sig_atomic_t *cancel;
	void (*tick)(void *);
	void *tick_arg;
	int64_t last_tick_ms;
	char errbuf[CURL_ERROR_SIZE];
};

/* One transfer's state, handed to the callbacks. */
struct http_xfer {
	struct http *http;
	struct http_response resp;
	size_t cap; /* allocated bytes of resp.body */
	size_t max_body;
	bool too_big;
	char *origin;   /* of the request's URL, when a header is bound to it */
	char *off_site; /* a redirect target of another origin, refused */
};

/* Captured response headers and where they go. */
static const struct {
	const char *name;
	size_t offset;
} http_headers[] = {
	{ "etag", offsetof(struct http_response, etag) },
	{ "last-modified", offsetof(struct http_response, last_modified) },
	{ "location", offsetof(struct http_response, location) },
	{ "content-type", offsetof(struct http_response, content_type) },
};

/* curl failures by the class callers act on; anything else is OTHER. */
static const struct {
	CURLcode code;
	enum http_result result;
} http_errors[] = {
	{ CURLE_COULDNT_RESOLVE_PROXY, HTTP_ERR_CONNECT },
	{ CURLE_COULDNT_RESOLVE_HOST, HTTP_ERR_CONNECT },
	{ CURLE_COULDNT_CONNECT, HTTP_ERR_CONNECT },
	{ CURLE_SEND_ERROR, HTTP_ERR_CONNECT },
	{ CURLE_RECV_ERROR, HTTP_ERR_CONNECT },
	{ CURLE_GOT_NOTHING, HTTP_ERR_CONNECT },
	{ CURLE_PARTIAL_FILE, HTTP_ERR_CONNECT },
	{ CURLE_SSL_CONNECT_ERROR, HTTP_ERR_CONNECT },
	{ CURLE_HTTP2, HTTP_ERR_CONNECT },
	{ CURLE_HTTP2_STREAM, HTTP_ERR_CONNECT },
	{ CURLE_OPERATION_TIMEDOUT, HTTP_ERR_TIMEOUT },
	{ CURLE_FILESIZE_EXCEEDED, HTTP_ERR_TOO_BIG },
	{ CURLE_ABORTED_BY_CALLBACK, HTTP_ERR_CANCELLED },
};

static pthread_once_t http_once = PTHREAD_ONCE_INIT;

static void
http_global_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatalx("curl_global_init failed");
}

struct http *
http_new(volatile sig_atomic_t *cancel)
{
	struct http *h;

	pthread_once(&http_once, http_global_init);
	h = xcalloc(1, sizeof(*h));
	if ((h->curl = curl_easy_init()) == NULL)
		fatalx("curl_easy_init failed");
	h->cancel = cancel;
	return h;
}

void
http_free(struct http *h)
{
	if (h == NULL)
		return;
	curl_easy_cleanup(h->curl);
	free(h);
}

void
http_set_tick(struct http *h, void (*tick)(void *), void *arg)
{
	h->tick = tick;
	h->tick_arg = arg;
}

void
http_response_clear(struct http_response *r)
{
	if (r == NULL)
		return;
	free(r->body);
	free(r->etag);
	free(r->last_modified);
	free(r->location);
	free(r->content_type);
	memset(r, 0, sizeof(*r));
}

/* Append body bytes; refuse (abort the transfer) past max_body. */
static size_t
http_write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_xfer *x = arg;
	size_t n = size * nmemb, need;

	if (n > x->max_body - x->resp.len) {
		x->too_big = true;
		return 0;
	}
	need = x->resp.len + n + 1;
	if (need > x->cap) {
		size_t cap = x->cap < 16384 ? 16384 : x->cap;

		while (cap < need)
			cap *= 2;
		if (cap > x->max_body + 1)
			cap = x->max_body + 1;
		x->resp.body = xreallocarray(x->resp.body, cap, 1);
		x->cap = cap;
	}
	memcpy(x->resp.body + x->resp.len, data, n);
	x->resp.len += n;
	x->resp.body[x->resp.len] = '\0';
	return n;
}

bool
http_field_value_ok(const char *v, size_t len)
{
	const unsigned char *p = (const unsigned char *)v;

	for (size_t i = 0; i < len; i++)
		if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
			return false;
	return true;
}

/* Keep the headers we care about from the last response (redirects and
 * 100-continue start a new one). */
static size_t
http_header_cb(char *line, size_t size, size_t nmemb, void *arg)
{
	struct http_xfer *x = arg;
	size_t n = size * nmemb, i, namelen, vlen;
	const char *colon, *v, *end;
	char **field;

	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		for (i = 0; i < nitems(http_headers); i++) {
			field = (char **)((char *)&x->resp +
					  http_headers[i].offset);
			free(*field);
			*field = NULL;
		}
		return n;
	}
	if ((colon = memchr(line, ':', n)) == NULL)
		return n;
	namelen = (size_t)(colon - line);
	v = colon + 1;
	end = line + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' ||
			   end[-1] == ' ' || end[-1] == '\t'))
		end--;
	vlen = (size_t)(end - v);
	/* A value we keep may be sent back (If-None-Match): it must be a
	 * valid field value, or it is dropped. */
	if (vlen > HTTP_MAX_HEADER_VALUE || !http_field_value_ok(v, vlen))
		return n;
	for (i = 0; i < nitems(http_headers); i++) {
		if (strlen(http_headers[i].name) != namelen ||
		    strncasecmp(line, http_headers[i].name, namelen) != 0)
			continue;
		field = (char **)((char *)&x->resp + http_headers[i].offset);
		free(*field);
		*field = xstrndup(v, vlen);
	}
	return n;
}

/* Poll the cancel flag; beat the tick hook at most once a second. */
static int
http_xferinfo_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow,
		 curl_off_t ultotal, curl_off_t ulnow)
{
	struct http *h = arg;
	int64_t now;

	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	if (h->cancel != NULL && *h->cancel)
		return 1;
	if (h->tick != NULL) {
		now = now_monotonic_ms();
		if (now - h->last_tick_ms >= HTTP_TICK_MS) {
			h->last_tick_ms = now;
			h->tick(h->tick_arg);
		}
	}
	return 0;
}

/* "scheme://host:port" of url, lower case, the port made explicit
 * (RFC 6454 origin); NULL when url does not parse. */
static char *
http_origin(const char *url)
{
	char *scheme = NULL, *host = NULL, *port = NULL, *ret = NULL;
	CURLU *u;

	if ((u = curl_url()) == NULL)
		fatalx("curl_url failed");
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) ==
		CURLUE_OK) {
		xasprintf(&ret, "%s://%s:%s", scheme, host, port);
		for (char *p = ret; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return ret;
}

/* Before each request, a redirect's too: a header bound to the origin
 * goes nowhere else.  Refusing (rather than following without it) keeps
 * us from reading a feed off a host the configuration does not name. */
static int
http_prereq_cb(void *arg, char *conn_primary_ip, char *conn_local_ip,
	       int conn_primary_port, int conn_local_port)
{
	struct http_xfer *x = arg;
	char *url = NULL, *origin;
	bool same;

	(void)conn_primary_ip, (void)conn_local_ip;
	(void)conn_primary_port, (void)conn_local_port;
	if (x->origin == NULL)
		return CURL_PREREQFUNC_OK;
	curl_easy_getinfo(x->http->curl, CURLINFO_EFFECTIVE_URL, &url);
	origin = url != NULL ? http_origin(url) : NULL;
	same = origin != NULL && strcmp(origin, x->origin) == 0;
	free(origin);
	if (same)
		return CURL_PREREQFUNC_OK;
	free(x->off_site);
	x->off_site = http_redact_url(url != NULL ? url : "(unknown)");
	return CURL_PREREQFUNC_ABORT;
}

static enum http_result
http_classify(CURLcode code, const struct http_xfer *x)
{
	size_t i;

	if (code == CURLE_WRITE_ERROR && x->too_big)
		return HTTP_ERR_TOO_BIG;
	if (code == CURLE_ABORTED_BY_CALLBACK && x->off_site != NULL)
		return HTTP_ERR_REDIRECT;
	for (i = 0; i < nitems(http_errors); i++) {
		if (http_errors[i].code == code)
			return http_errors[i].result;
	}
	return HTTP_ERR_OTHER;
}

/* Did the whole request reach the server?  Then it may act on it even
 * though no answer came back. */
static bool
http_sent(struct http *h, const struct http_request *req)
{
	curl_off_t up = 0;
	long request_size = 0;

	curl_easy_getinfo(h->curl, CURLINFO_REQUEST_SIZE, &request_size);
	if (request_size <= 0)
		return false;
	if (req->body == NULL)
		return true;
	curl_easy_getinfo(h->curl, CURLINFO_SIZE_UPLOAD_T, &up);
	return up >= (curl_off_t)req->body_len;
}

static struct curl_slist *
http_header_add(struct curl_slist *list, const char *line)
{
	struct curl_slist *l;

	if ((l = curl_slist_append(list, line)) == NULL)
		fatalx("curl_slist_append failed");
	return l;
}

/* Set every option for this request on the freshly reset handle; the
 * reset keeps the connection cache, so keep-alive survives. */
static struct curl_slist *
http_setup(struct http *h, const struct http_request *req, struct http_xfer *x)
{
	CURL *c = h->curl;
	struct curl_slist *hdrs = NULL;
	const char *const *hp;
	char *ct;
	bool file = strncasecmp(req->url, "file:", 5) == 0;
	bool https = strncasecmp(req->url, "https:", 6) == 0;

	curl_easy_reset(c);
	h->errbuf[0] = '\0';
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(c, CURLOPT_URL, req->url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT,
			 "webcoursed/" WEBCOURSED_VERSION);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR,
			 file ? "file" : "http,https");
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (req->ca_file != NULL)
		curl_easy_setopt(c, CURLOPT_CAINFO, req->ca_file);
	if (req->connect_timeout_ms > 0)
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
				 (long)req->connect_timeout_ms);
	if (req->timeout_ms > 0)
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
	if (req->max_redirects > 0) {
		curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(c, CURLOPT_MAXREDIRS,
				 (long)req->max_redirects);
		/* Never from https down to http (nor to file:). */
		curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR,
				 https ? "https" : "http,https");
	}
	if (req->origin_header != NULL) {
		/* A URL that does not parse matches no origin. */
		if ((x->origin = http_origin(req->url)) == NULL)
			x->origin = xstrdup("(none)");
		curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, http_prereq_cb);
		curl_easy_setopt(c, CURLOPT_PREREQDATA, x);
		hdrs = http_header_add(hdrs, req->origin_header);
	}
	if (req->accept_gzip)
		curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, http_header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, http_xferinfo_cb);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, h);

	if (req->body != NULL) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)req->body_len);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body);
		/* No "Expect: 100-continue" round trip for big forms. */
		hdrs = http_header_add(hdrs, "Expect:");
	}
	if (req->content_type != NULL) {
		xasprintf(&ct, "Content-Type: %s", req->content_type);
		hdrs = http_header_add(hdrs, ct);
		free(ct);
	}
	for (hp = req->headers; hp != NULL && *hp != NULL; hp++)
		hdrs = http_header_add(hdrs, *hp);
	if (hdrs != NULL)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	return hdrs;
}

/* Header lines hold no CR, LF or other control (RFC 9110 5.5): a value
 * with a line break would add a header of its own. */
static bool
http_headers_valid(const struct http_request *req)
{
	const char *const *hp;

	for (hp = req->headers; hp != NULL && *hp != NULL; hp++)
		if (!http_field_value_ok(*hp, strlen(*hp)))
			return false;
	return req->origin_header == NULL ||
	       http_field_value_ok(req->origin_header,
				   strlen(req->origin_header));
}

enum http_result
http_perform(struct http *h, const struct http_request *req,
	     struct http_response *ret, char **cause)
{
	struct http_xfer x;
	struct curl_slist *hdrs;
	enum http_result rv;
	CURLcode code;
	char *url;
	/* only a redirect can lead an https URL to another protocol */
	bool https = strncasecmp(req->url, "https:", 6) == 0;

	memset(&x, 0, sizeof(x));
	x.http = h;
	x.max_body = req->max_body > 0 ? req->max_body : HTTP_DEFAULT_MAX_BODY;
	if (h->cancel != NULL && *h->cancel) {
		url = http_redact_url(req->url);
		xasprintf(cause, "%s: cancelled", url);
		free(url);
		return HTTP_ERR_CANCELLED;
	}
	if (!http_headers_valid(req)) {
		url = http_redact_url(req->url);
		xasprintf(cause,
			  "%s: a request header holds a line break or "
			  "a control character: not sent",
			  url);
		free(url);
		return HTTP_ERR_OTHER;
	}
	h->last_tick_ms = now_monotonic_ms();
	hdrs = http_setup(h, req, &x);
	code = curl_easy_perform(h->curl);
	/* The list may hold a secret header: drop it and its copy in curl. */
	curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);

	url = http_redact_url(req->url);
	if (code == CURLE_OK) {
		curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE,
				  &x.resp.status);
		if (x.resp.body == NULL)
			x.resp.body = xstrdup("");
		log_debug("http: %s %s: status %ld, %zu bytes",
			  req->body != NULL ? "POST" : "GET", url,
			  x.resp.status, x.resp.len);
		*ret = x.resp;
		rv = HTTP_OK;
		goto out;
	}
	rv = http_classify(code, &x);
	if (rv == HTTP_ERR_CONNECT || rv == HTTP_ERR_TIMEOUT)
		rv = http_sent(h, req)
			 ? (rv == HTTP_ERR_TIMEOUT ? HTTP_ERR_TIMEOUT
						   : HTTP_ERR_NO_ANSWER)
			 : HTTP_ERR_CONNECT;
	if (rv == HTTP_ERR_TOO_BIG)
		xasprintf(cause, "%s: answer larger than %zu bytes", url,
			  x.max_body);
	else if (rv == HTTP_ERR_REDIRECT)
		xasprintf(cause,
			  "%s: redirected to %s, another origin: not followed "
			  "(the auth header goes to %s only)",
			  url, x.off_site, x.origin);
	else if (code == CURLE_UNSUPPORTED_PROTOCOL && https) {
		xasprintf(cause,
			  "%s: redirected from https to another protocol: "
			  "not followed",
			  url);
		rv = HTTP_ERR_REDIRECT;
	} else if (rv == HTTP_ERR_CANCELLED)
		xasprintf(cause, "%s: cancelled", url);
	else
		xasprintf(cause, "%s: %s", url,
			  h->errbuf[0] != '\0' ? h->errbuf
					       : curl_easy_strerror(code));
	http_response_clear(&x.resp);
out:
	free(url);
	free(x.origin);
	free(x.off_site);
	return rv;
}

char *
http_escape(const char *s)
{
	char *e, *ret;

	if ((e = curl_easy_escape(NULL, s, 0)) == NULL)
		fatalx("curl_easy_escape failed");
	ret = xstrdup(e);
	curl_free(e);
	return ret;
}

char *
http_redact_url(const char *url)
{
	const char *auth, *host, *end, *at;
	char *ret;
	size_t len;

	len = strcspn(url, "?#");
	if ((auth = strstr(url, "://")) == NULL || (size_t)(auth - url) > len)
		return xstrndup(url, len);
	auth += 3;
	/* userinfo is whatever precedes the last '@' of the authority */
	end = auth + strcspn(auth, "/?#");
	host = auth;
	for (at = auth; at < end; at++) {
		if (*at == '@')
			host = at + 1;
	}
	xasprintf(&ret, "%.*s%.*s", (int)(auth - url), url,
		  (int)(url + len - host), host);
	return ret;
}
