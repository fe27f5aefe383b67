/* The web console: routes, logins, CSRF and Origin checks, actions. */
#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include "approval.h"
#include "config.h"
#include "console.h"
#include "httpd.h"
#include "ledger.h"
#include "log.h"
#include "page.h"
#include "report.h"
#include "session.h"
#include "util.h"
#include "view.h"
#include "webuser.h"

#define CONSOLE_MAX_BODY   (64 * 1024) /* a form: approvals of many courses */
#define CONSOLE_CSV_MAX    (256 * 1024 * 1024)
#define CONSOLE_WHO_MAX    (WEBUSER_NAME_MAX + 8)
#define CONSOLE_FD_RESERVE 64   /* as the daemon keeps (DAEMON_FD_RESERVE) */
#define CONSOLE_STATUS_MS  5000 /* the overview's figures kept this long */

/* Scripts: none; styles and images: our own files; forms: back to us. */
#define CONSOLE_CSP                                                            \
	"default-src 'none'; style-src 'self'; img-src 'self'; "               \
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

/* The stylesheet, built into the binary (src/static.S, web/). */
extern const char console_css[], console_css_end[];

struct console {
	struct event_base *base;
	struct console_hooks hooks;
	struct httpd *httpd;
	const struct config *conf;
	struct ledger *ledger;
	struct sessions *sessions;
	char *listen, *tls_cert, *tls_key; /* what httpd serves */
	struct webusers *users;
	char *users_path;
	struct stat users_st; /* of the file read, to see it change */
	/* report_status_get's object, read at status_ms: the overview's
	 * counts scan the enrolments (a second on a million), so they are
	 * kept a few seconds, and dropped when a sync ends or an action
	 * changes the ledger */
	json_t *status;
	int64_t status_ms;
	bool was_syncing;
};

/* One request as the handlers see it. */
struct console_req {
	struct console *c;
	struct evhttp_request *req;
	struct session *session;
	bool tls;
	struct evkeyvalq query, form; /* ?query and a POST's form */
	char progress[192];           /* of the sync running */
};

typedef void (*console_handler)(struct console_req *);

static void console_login_get(struct console_req *);
static void console_login_post(struct console_req *);
static void console_logout(struct console_req *);
static void console_page(struct console_req *);
static void console_sync(struct console_req *);
static void console_approve(struct console_req *);
static void console_csv(struct console_req *);
static void console_css_get(struct console_req *);

/* Every route: the dispatcher checks the login and, for what changes
 * state (every POST), the Origin and the CSRF token, and adds the
 * headers, so that a new page cannot forget them. */
static const struct console_route {
	const char *path;
	int method; /* HTTPD_GET (HEAD too) or HTTPD_POST */
	console_handler fn;
	int (*view)(struct view *); /* console_page's page */
	bool login;                 /* needs a session */
} console_routes[] = {
	{ "/login", HTTPD_GET, console_login_get, NULL, false },
	{ "/login", HTTPD_POST, console_login_post, NULL, false },
	{ "/logout", HTTPD_POST, console_logout, NULL, true },
	{ "/", HTTPD_GET, console_page, view_overview, true },
	{ "/approvals", HTTPD_GET, console_page, view_approvals, true },
	{ "/approvals", HTTPD_POST, console_approve, NULL, true },
	{ "/removals", HTTPD_GET, console_page, view_confirm_removals, true },
	{ "/sync", HTTPD_POST, console_sync, NULL, true },
	{ "/missing-users", HTTPD_GET, console_page, view_missing, true },
	{ "/missing-users.csv", HTTPD_GET, console_csv, NULL, true },
	{ "/history", HTTPD_GET, console_page, view_history, true },
	{ "/drift", HTTPD_GET, console_page, view_drift, true },
	{ "/errors", HTTPD_GET, console_page, view_errors, true },
	{ "/static/console.css", HTTPD_GET, console_css_get, NULL, false },
};

/* The one-line notices an action redirects with (?notice=KEY): fixed
 * words, never text from the request. */
static const struct {
	const char *key, *text;
} console_notices[] = {
	{ "sync", "A sync has started." },
	{ "removals", "A sync with the withheld removals has started." },
	{ "approved", "Approved. The run that creates the courses has "
		      "started." },
	{ "rejected", "Rejected: those courses are never created." },
	{ "refused", "Some courses were no longer awaiting approval; the "
		     "others were done." },
	{ "none", "Nothing was selected." },
};

static const char *
console_notice(const char *key)
{
	for (size_t i = 0; key != NULL && i < nitems(console_notices); i++)
		if (strcmp(console_notices[i].key, key) == 0)
			return console_notices[i].text;
	return NULL;
}

static void
console_header(struct console_req *r, const char *name, const char *value)
{
	evhttp_add_header(evhttp_request_get_output_headers(r->req), name,
			  value);
}

static void
console_redirect(struct console_req *r, const char *location)
{
	console_header(r, "Location", location);
	httpd_reply_text(r->req, 303, "See Other");
}

static void
console_send_page(struct console_req *r, int code, struct page *p)
{
	size_t len;
	const char *body = page_data(p, &len);

	httpd_reply(r->req, code, "text/html; charset=utf-8", body, len);
}

/* "alice (web)": who did it, in the history and the log. */
static void
console_who(struct console_req *r, char *buf, size_t len)
{
	snprintf(buf, len, "%s (web)", session_user(r->session));
}

/* Forget the kept status: the ledger changed. */
static void
console_status_drop(struct console *c)
{
	json_decref(c->status);
	c->status = NULL;
}

/* The status for the overview: kept up to CONSOLE_STATUS_MS, read again
 * after a sync ended.  NULL when it cannot be read (the view reads it and
 * says why). */
static json_t *
console_status(struct console *c, bool syncing)
{
	int64_t now = now_monotonic_ms();

	if (c->was_syncing && !syncing)
		console_status_drop(c);
	c->was_syncing = syncing;
	if (c->status != NULL && now - c->status_ms < CONSOLE_STATUS_MS)
		return c->status;
	console_status_drop(c);
	if ((c->status = report_status_get(c->ledger)) != NULL)
		c->status_ms = now;
	return c->status;
}

static void
console_view_init(struct console_req *r, struct view *v, struct page *p)
{
	memset(v, 0, sizeof(*v));
	v->page = p;
	v->conf = r->c->conf;
	v->ledger = r->c->ledger;
	v->query = &r->query;
	if (r->session != NULL) {
		v->user = session_user(r->session);
		v->csrf = session_csrf(r->session);
	}
	r->progress[0] = '\0';
	v->syncing = r->c->hooks.syncing(r->c->hooks.arg, r->progress,
					 sizeof(r->progress));
	v->progress = r->progress[0] != '\0' ? r->progress : NULL;
	v->status = console_status(r->c, v->syncing);
	v->notice = console_notice(evhttp_find_header(&r->query, "notice"));
}

/* A page of the route table, drawn by its view. */
static void
console_page_of(struct console_req *r, int (*fn)(struct view *), int code,
		const char *error)
{
	struct page *p = page_new();
	struct view v;

	console_view_init(r, &v, p);
	v.error = error;
	if (fn(&v) == -1) {
		log_warnx("web: cannot read the ledger: %s",
			  ledger_errmsg(r->c->ledger));
		httpd_reply_text(r->req, 500,
				 "cannot read the ledger; the "
				 "daemon's log says why");
	} else
		console_send_page(r, code, p);
	page_free(p);
}

static const struct console_route *console_route_of(struct console_req *);

static void
console_page(struct console_req *r)
{
	console_page_of(r, console_route_of(r)->view, 200, NULL);
}

/* The login page, with why the last try failed. */
static void
console_login_page(struct console_req *r, int code, const char *failure)
{
	struct page *p = page_new();
	struct view v;

	console_view_init(r, &v, p);
	v.user = NULL;
	view_login(&v, failure);
	console_send_page(r, code, p);
	page_free(p);
}

static void
console_login_get(struct console_req *r)
{
	if (r->session != NULL)
		console_redirect(r, "/");
	else
		console_login_page(r, 200, NULL);
}

/* Read the users again when their file changed (webcoursectl web-user);
 * a user no longer there loses their sessions. */
static void
console_users_reload(struct console *c)
{
	struct webusers *u = NULL;
	char *path = webuser_path(c->conf), *cause = NULL;
	struct stat st;

	memset(&st, 0, sizeof(st));
	if (stat(path, &st) == -1 && errno != ENOENT)
		log_warn("web: %s", path);
	if (c->users != NULL && c->users_path != NULL &&
	    strcmp(path, c->users_path) == 0 &&
	    st.st_ino == c->users_st.st_ino &&
	    st.st_size == c->users_st.st_size &&
	    st.st_mtim.tv_sec == c->users_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == c->users_st.st_mtim.tv_nsec) {
		free(path);
		return;
	}
	if (webusers_load(path, &u, &cause) == -1) {
		log_warnx("web: %s; %s", cause,
			  c->users != NULL ? "keeping the users read before"
					   : "nobody can log in");
		free(cause);
		/* said once per change of the file, not at every login */
		c->users_st = st;
		free(c->users_path);
		c->users_path = path;
		if (c->users == NULL)
			c->users = webusers_new();
		return;
	}
	if (webusers_count(u) == 0)
		log_warnx("web: no users in %s: nobody can log in "
			  "(webcoursectl web-user add NAME)",
			  path);
	for (size_t i = 0; c->users != NULL && i < webusers_count(c->users);
	     i++) {
		const char *name = webusers_name(c->users, i);
		bool kept = false;

		for (size_t j = 0; j < webusers_count(u) && !kept; j++)
			kept = strcmp(name, webusers_name(u, j)) == 0;
		if (!kept)
			sessions_logout_user(c->sessions, name);
	}
	webusers_free(c->users);
	c->users = u;
	c->users_st = st;
	free(c->users_path);
	c->users_path = path;
}

static void
console_login_post(struct console_req *r)
{
	struct console *c = r->c;
	const char *name = evhttp_find_header(&r->form, "username");
	const char *password = evhttp_find_header(&r->form, "password");
	const char *peer = httpd_peer(r->req);
	int64_t now = now_monotonic_ms(), wait;
	char cookie[SESSION_COOKIE_MAX], retry[24];
	struct session *s;

	/* one try per wait from an address: the wait grows per failure */
	if ((wait = sessions_login_wait(c->sessions, peer, now)) > 0) {
		snprintf(retry, sizeof(retry), "%" PRId64, (wait + 999) / 1000);
		console_header(r, "Retry-After", retry);
		console_login_page(r, 429,
				   "Too many failed logins from your address: "
				   "wait a few seconds before trying again.");
		return;
	}
	console_users_reload(c);
	if (name == NULL || password == NULL || !webuser_name_ok(name) ||
	    !webusers_check(c->users, name, password)) {
		wait = sessions_login_failed(c->sessions, peer, now);
		log_warnx("web: failed login%s%s from %s; that address waits "
			  "%" PRId64 " s",
			  name != NULL && webuser_name_ok(name) ? " for " : "",
			  name != NULL && webuser_name_ok(name) ? name : "",
			  peer, wait / 1000);
		console_login_page(r, 200, "Wrong user name or password.");
		return;
	}
	sessions_login_ok(c->sessions, peer);
	if (r->session != NULL) /* a new id at login: no fixation */
		sessions_logout(c->sessions, r->session);
	if ((s = sessions_login(c->sessions, name, now)) == NULL) {
		log_warn("web: no random bytes for a session");
		httpd_reply_text(r->req, 500, NULL);
		return;
	}
	r->session = s;
	session_cookie(s, r->tls, cookie, sizeof(cookie));
	console_header(r, "Set-Cookie", cookie);
	log_info("web: %s logged in from %s", name, peer);
	console_redirect(r, "/");
}

static void
console_logout(struct console_req *r)
{
	char cookie[SESSION_COOKIE_MAX];

	log_info("web: %s logged out", session_user(r->session));
	sessions_logout(r->c->sessions, r->session);
	r->session = NULL;
	session_cookie(NULL, r->tls, cookie, sizeof(cookie));
	console_header(r, "Set-Cookie", cookie);
	console_redirect(r, "/login");
}

/* POST /sync: now, or with the withheld removals once confirmed. */
static void
console_sync(struct console_req *r)
{
	const char *allow = evhttp_find_header(&r->form, "allow_removals");
	const char *confirm = evhttp_find_header(&r->form, "confirm");
	bool removals = allow != NULL && strcmp(allow, "1") == 0;
	char who[CONSOLE_WHO_MAX];

	if (removals && (confirm == NULL || strcmp(confirm, "1") != 0)) {
		console_page_of(r, view_confirm_removals, 400,
				"Tick the box to confirm: nothing was done.");
		return;
	}
	console_who(r, who, sizeof(who));
	r->c->hooks.sync_now(r->c->hooks.arg, removals, who);
	console_status_drop(r->c);
	console_redirect(r, removals ? "/?notice=removals" : "/?notice=sync");
}

/* POST /approvals: approve or reject the courses ticked, or all. */
static void
console_approve(struct console_req *r)
{
	const char *action = evhttp_find_header(&r->form, "action");
	const char *all = evhttp_find_header(&r->form, "all");
	bool approve = action != NULL && strcmp(action, "approve") == 0;
	bool every = all != NULL && strcmp(all, "1") == 0;
	struct approval_result res;
	const char **names = NULL;
	struct evkeyval *kv;
	char who[CONSOLE_WHO_MAX];
	size_t n = 0;

	if (action == NULL || (!approve && strcmp(action, "reject") != 0) ||
	    (every && !approve)) {
		httpd_reply_text(r->req, 400,
				 "action is approve or reject; "
				 "all=1 only approves");
		return;
	}
	TAILQ_FOREACH(kv, &r->form, next)
	if (strcmp(kv->key, "shortname") == 0) {
		names = xreallocarray(names, n + 1, sizeof(*names));
		names[n++] = kv->value;
	}
	if (n == 0 && !every) {
		console_redirect(r, "/approvals?notice=none");
		return;
	}
	console_who(r, who, sizeof(who));
	if (approval_decide(r->c->conf, r->c->ledger, names, every ? 0 : n,
			    every, approve, who, &res) == -1) {
		log_warnx("web: %s: cannot %s: %s", who, action,
			  ledger_errmsg(r->c->ledger));
		free(names);
		httpd_reply_text(r->req, 500,
				 "cannot write the ledger; the "
				 "daemon's log says why");
		return;
	}
	free(names);
	console_status_drop(r->c);
	log_info("web: %s: %s %zu course(s), %zu refused", who,
		 approve ? "approved" : "rejected", res.ndone, res.nrefused);
	if (approve && res.ndone > 0)
		r->c->hooks.sync_now(r->c->hooks.arg, false, who);
	console_redirect(r, res.nrefused > 0 ? "/approvals?notice=refused"
			    : approve        ? "/approvals?notice=approved"
					     : "/approvals?notice=rejected");
	approval_result_clear(&res);
}

/* The missing-users CSV as the daemon wrote it, byte for byte. */
static void
console_csv(struct console_req *r)
{
	const char *path = r->c->conf->state_missing_users_csv;
	struct evbuffer *body = NULL;
	struct stat st;
	int fd = -1;

	if (path == NULL ||
	    (fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1 ||
	    fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_size > CONSOLE_CSV_MAX) {
		if (fd != -1)
			close(fd);
		httpd_reply_text(r->req, 404,
				 "no missing-users CSV yet: a run writes it");
		return;
	}
	body = evbuffer_new();
	if (st.st_size > 0 &&
	    evbuffer_add_file(body, fd, 0, st.st_size) == -1) {
		evbuffer_free(body);
		httpd_reply_text(r->req, 500, NULL);
		return;
	}
	console_header(r, "Content-Disposition",
		       "attachment; filename=\"missing-users.csv\"");
	httpd_reply(r->req, 200, "text/csv; charset=utf-8",
		    evbuffer_pullup(body, -1), evbuffer_get_length(body));
	evbuffer_free(body);
}

static void
console_css_get(struct console_req *r)
{
	console_header(r, "Cache-Control", "max-age=3600");
	httpd_reply(r->req, 200, "text/css; charset=utf-8", console_css,
		    (size_t)(console_css_end - console_css));
}

/* The route of the request's path and method (HEAD as GET). */
static const struct console_route *
console_route_of(struct console_req *r)
{
	const char *path =
	    evhttp_uri_get_path(evhttp_request_get_evhttp_uri(r->req));
	enum evhttp_cmd_type cmd = evhttp_request_get_command(r->req);
	int method = cmd == EVHTTP_REQ_POST ? HTTPD_POST : HTTPD_GET;

	for (size_t i = 0; path != NULL && i < nitems(console_routes); i++)
		if (strcmp(console_routes[i].path, path) == 0 &&
		    console_routes[i].method == method)
			return &console_routes[i];
	return NULL;
}

/* A POST's form (application/x-www-form-urlencoded) into r->form. */
static int
console_read_form(struct console_req *r)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
	size_t len = evbuffer_get_length(in);
	char *body = xmalloc(len + 1);
	int rv;

	evbuffer_copyout(in, body, len);
	body[len] = '\0';
	rv = memchr(body, '\0', len) != NULL
		 ? -1
		 : evhttp_parse_query_str(body, &r->form);
	explicit_bzero(body, len); /* a password */
	free(body);
	return rv;
}

static bool
console_proxied_https(const char *proto)
{
	return proto != NULL && strcasecmp(proto, "https") == 0;
}

/* Every request: the route, the session, the checks, the headers. */
static void
console_dispatch_cb(struct evhttp_request *req, void *arg)
{
	struct console_req r = { .c = arg, .req = req };
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const struct console_route *route;
	const char *query = evhttp_uri_get_query(uri);

	TAILQ_INIT(&r.query);
	TAILQ_INIT(&r.form);
	/* Behind a TLS proxy on loopback (plain HTTP is served nowhere
	 * else) the proxy says so: the cookie gets Secure and forms must
	 * come from https.  Trusting it can only make the checks
	 * stricter. */
	r.tls =
	    httpd_is_tls(req) ||
	    console_proxied_https(evhttp_find_header(in, "X-Forwarded-Proto"));
	if ((route = console_route_of(&r)) == NULL) {
		httpd_reply_text(req, 404, NULL);
		return;
	}
	if (route->fn != console_css_get)
		console_header(&r, "Cache-Control", "no-store");
	if (query != NULL && evhttp_parse_query_str(query, &r.query) == -1) {
		httpd_reply_text(req, 400, "bad query string");
		goto out;
	}
	r.session =
	    sessions_find(r.c->sessions, evhttp_find_header(in, "Cookie"),
			  r.tls, now_monotonic_ms());
	if (route->method == HTTPD_POST) {
		/* a form of another site, even with our cookie, changes
		 * nothing: its Origin (or Referer) gives it away, and it
		 * cannot know the session's token */
		if (!session_origin_ok(evhttp_find_header(in, "Origin"),
				       evhttp_find_header(in, "Referer"),
				       evhttp_find_header(in, "Host"), r.tls)) {
			httpd_reply_text(req, 403,
					 "forbidden: this form does "
					 "not come from the console");
			goto out;
		}
		if (console_read_form(&r) == -1) {
			httpd_reply_text(req, 400, "bad form");
			goto out;
		}
	}
	if (route->login && r.session == NULL) {
		if (route->method == HTTPD_POST)
			httpd_reply_text(req, 403, "forbidden: log in first");
		else if (route->fn == console_csv)
			httpd_reply_text(req, 401, "log in first");
		else
			console_redirect(&r, "/login");
		goto out;
	}
	if (route->login && route->method == HTTPD_POST &&
	    !session_csrf_ok(r.session, evhttp_find_header(&r.form, "csrf"))) {
		httpd_reply_text(req, 403,
				 "forbidden: the form's token is "
				 "missing or stale; reload the page");
		goto out;
	}
	route->fn(&r);
out:
	evhttp_clear_headers(&r.query);
	evhttp_clear_headers(&r.form);
}

struct console *
console_new(struct event_base *base, const struct console_hooks *hooks)
{
	struct console *c = xcalloc(1, sizeof(*c));

	c->base = base;
	c->hooks = *hooks;
	c->sessions = sessions_new(3600 * 1000);
	return c;
}

void
console_free(struct console *c)
{
	if (c == NULL)
		return;
	httpd_free(c->httpd);
	sessions_free(c->sessions);
	json_decref(c->status);
	webusers_free(c->users);
	free(c->users_path);
	free(c->listen);
	free(c->tls_cert);
	free(c->tls_key);
	free(c);
}

static bool
console_same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	       (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* A server for conf's address and TLS, with the console's routes. */
static struct httpd *
console_httpd(struct console *c, const struct config *conf, char **cause)
{
	struct httpd_options o = { .name = "web", .csp = CONSOLE_CSP };
	/* half of what the daemon's own descriptors leave (the metrics
	 * take a quarter) */
	size_t budget = httpd_fd_budget(CONSOLE_FD_RESERVE);
	struct httpd *h;
	SSL_CTX *ctx = NULL;

	if (conf->web_tls_cert != NULL &&
	    (ctx = httpd_tls_new(conf->web_tls_cert, conf->web_tls_key,
				 cause)) == NULL)
		return NULL;
	o.tls = ctx;
	o.limits.max_body = CONSOLE_MAX_BODY;
	o.limits.max_connections = budget / 2 < HTTPD_MAX_CONNECTIONS
				       ? budget / 2
				       : HTTPD_MAX_CONNECTIONS;
	h = httpd_new(c->base, &o);
	if (ctx != NULL)
		SSL_CTX_free(ctx);
	for (size_t i = 0; i < nitems(console_routes); i++)
		if (i == 0 || strcmp(console_routes[i].path,
				     console_routes[i - 1].path) != 0) {
			int methods = 0;

			for (size_t j = i; j < nitems(console_routes) &&
					   strcmp(console_routes[j].path,
						  console_routes[i].path) == 0;
			     j++)
				methods |= console_routes[j].method == HTTPD_GET
					       ? HTTPD_GET | HTTPD_HEAD
					       : HTTPD_POST;
			httpd_route(h, console_routes[i].path, methods,
				    console_dispatch_cb, c);
		}
	return h;
}

int
console_configure(struct console *c, const struct config *conf,
		  struct ledger *ledger, char **cause)
{
	struct httpd *h;

	c->conf = conf;
	c->ledger = ledger;
	sessions_set_idle(c->sessions, conf->web_session_idle_ms);
	if (console_same(conf->web_listen, c->listen) &&
	    console_same(conf->web_tls_cert, c->tls_cert) &&
	    console_same(conf->web_tls_key, c->tls_key))
		return 0;
	/* the address may be the same: the old server lets it go first */
	httpd_free(c->httpd);
	c->httpd = NULL;
	free(c->listen);
	free(c->tls_cert);
	free(c->tls_key);
	c->listen = c->tls_cert = c->tls_key = NULL;
	if (conf->web_listen == NULL)
		return 0;
	if ((h = console_httpd(c, conf, cause)) == NULL)
		return -1;
	if (httpd_listen(h, conf->web_listen, cause) == -1) {
		httpd_free(h);
		return -1;
	}
	c->httpd = h;
	c->listen = xstrdup(conf->web_listen);
	c->tls_cert = conf->web_tls_cert ? xstrdup(conf->web_tls_cert) : NULL;
	c->tls_key = conf->web_tls_key ? xstrdup(conf->web_tls_key) : NULL;
	console_users_reload(c);
	return 0;
}

const char *
console_address(const struct console *c)
{
	return c->httpd != NULL ? httpd_address(c->httpd) : NULL;
}

int
console_port(const struct console *c)
{
	return c->httpd != NULL ? httpd_port(c->httpd) : 0;
}
