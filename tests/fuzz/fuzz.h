/* Shared by the fuzz targets and their replay test: inputs and invariants. */
#ifndef FUZZ_H
#define FUZZ_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "feed.h"
#include "moodle.h"
#include "util.h"

/* The moodle target's token: its invariants look for it in errors. */
#define FUZZ_TOKEN        "9f3ac1d27be04e5a8c6d1f2e3b4a5c6d"
#define FUZZ_TOKEN_PREFIX 8 /* bytes of it that already give too much away */
/* The config target's systemd credentials; no error may show them. */
#define FUZZ_CRED_TOKEN  "cr3d-7a41c09e5bd2f86e"
#define FUZZ_CRED_HEADER "X-Feed-Key: h34d3r-0d5e92c7a1f4"
#define FUZZ_CRED_VALUE  "h34d3r-0d5e92c7a1f4"
#define FUZZ_SHORTNAME   "LAB101" /* asked of get_courses_by_field */

static struct config_role fuzz_roles[] = {
	{ "student", 5 },
	{ "teacher", 3 },
	{ "professor", 3 },
};

/* The configuration the feed target decodes with. */
static inline void
fuzz_feed_config(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->roles = fuzz_roles;
	c->nroles = nitems(fuzz_roles);
	c->sync_default_role = "student";
	c->sync_idnumber_prefix = "webcoursed:";
	c->sync_category_id = 1;
	c->sync_course_visible = true;
	c->source_max_size = (int64_t)64 << 20;
}

static inline int
fuzz_strcmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* True when v[0..n) is strictly increasing by strcmp. */
static inline int
fuzz_sorted(char *const *v, size_t n)
{
	size_t i;

	for (i = 1; i < n; i++) {
		if (strcmp(v[i - 1], v[i]) >= 0)
			return 0;
	}
	return 1;
}

/* What feed_decode promises of one course; NULL when it holds. */
static inline const char *
fuzz_feed_course(const struct feed_course *c)
{
	const struct feed_participant *p;
	size_t i;
	int cmp;

	if (c->shortname == NULL || c->fullname == NULL)
		return "course without shortname or name";
	for (i = 0; i < c->nparticipants; i++) {
		p = &c->participants[i];
		if (p->username == NULL || *p->username == '\0' ||
		    p->roleid <= 0)
			return "participant without username or role";
		if (i == 0)
			continue;
		cmp = strcmp(p[-1].username, p->username);
		if (cmp > 0 || (cmp == 0 && p[-1].roleid >= p->roleid))
			return "participants not sorted or not unique";
	}
	if (!fuzz_sorted(c->skipped_users, c->nskipped_users))
		return "skipped users not sorted or not unique";
	return NULL;
}

/* What feed_decode promises of its outputs; NULL when it holds. */
static inline const char *
fuzz_feed_check(int rc, const struct feed *f, const char *cause)
{
	const struct feed_issue *is;
	const char *why;
	size_t i;

	if (rc == -1 && f != NULL)
		return "failure with a feed";
	if (rc == -1 && (cause == NULL || *cause == '\0'))
		return "failure without a cause";
	if (rc == -1)
		return strchr(cause, '\n') != NULL ? "cause of several lines"
						   : NULL;
	if (rc != 0 || f == NULL || cause != NULL)
		return "success without a feed, or with a cause";
	if (f->ncourses == 0 || f->nissues > FEED_MAX_ISSUES)
		return "no course, or too many issues";
	for (i = 0; i < f->ncourses; i++) {
		if ((why = fuzz_feed_course(&f->courses[i])) != NULL)
			return why;
		if (i > 0 && strcmp(f->courses[i - 1].shortname,
				    f->courses[i].shortname) >= 0)
			return "courses not sorted or not unique";
		if (f->nskipped > 0 &&
		    bsearch(&f->courses[i].shortname, f->skipped, f->nskipped,
			    sizeof(*f->skipped), fuzz_strcmp_p) != NULL)
			return "a course both kept and skipped";
	}
	for (i = 0; i < f->nissues; i++) {
		is = &f->issues[i];
		if (is->kind == NULL || is->item == NULL || is->code == NULL ||
		    is->message == NULL)
			return "issue with a missing field";
	}
	if (!fuzz_sorted(f->skipped, f->nskipped))
		return "skipped courses not sorted or not unique";
	return NULL;
}

/* Write len bytes to path (mode 0600), or exit: the harness cannot go on. */
static inline void
fuzz_write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd == -1 || (len > 0 && write(fd, data, len) != (ssize_t)len) ||
	    close(fd) == -1) {
		perror(path);
		exit(2);
	}
}

/* A private directory holding both systemd credentials, named in
 * CREDENTIALS_DIRECTORY: every config can load whole, and no input gets a
 * file of its choosing read (a FIFO would hang the run).  Returns the path
 * of a config file in it, for the inputs. */
static inline char *
fuzz_config_dir(char **ret_dir)
{
	char template[] = "/tmp/wcd-fuzz.XXXXXX", *dir, *path;

	if ((dir = mkdtemp(template)) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
	dir = xstrdup(dir);
	xasprintf(&path, "%s/moodle-token", dir);
	fuzz_write_file(path, FUZZ_CRED_TOKEN "\n",
			strlen(FUZZ_CRED_TOKEN) + 1);
	free(path);
	xasprintf(&path, "%s/source-auth-header", dir);
	fuzz_write_file(path, FUZZ_CRED_HEADER "\n",
			strlen(FUZZ_CRED_HEADER) + 1);
	free(path);
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	xasprintf(&path, "%s/webcoursed.conf", dir);
	*ret_dir = dir;
	return path;
}

/* Remove what fuzz_config_dir made. */
static inline void
fuzz_config_dir_remove(char *dir, char *path)
{
	char *cred;

	unlink(path);
	xasprintf(&cred, "%s/moodle-token", dir);
	unlink(cred);
	free(cred);
	xasprintf(&cred, "%s/source-auth-header", dir);
	unlink(cred);
	free(cred);
	rmdir(dir);
	free(dir);
	free(path);
}

/* Every line of errors reads "PATH:LINE: message"; 0 when so. */
static inline int
fuzz_error_lines(const char *errors, const char *path)
{
	size_t plen = strlen(path);
	const char *line = errors, *p;

	for (;;) {
		if (strncmp(line, path, plen) != 0 || line[plen] != ':')
			return -1;
		for (p = line + plen + 1; *p >= '0' && *p <= '9'; p++)
			;
		if (p == line + plen + 1 || p[0] != ':' || p[1] != ' ')
			return -1;
		if ((line = strchr(p, '\n')) == NULL)
			return 0;
		line++;
	}
}

/* True when input spells secret (lower case), in any case: config_load
 * lowers role names, so an error may show it back. */
static inline int
fuzz_spells(const void *input, size_t len, const char *secret)
{
	const unsigned char *in = input;
	char *low = xmalloc(len + 1);
	size_t i;
	int yes;

	for (i = 0; i < len; i++)
		low[i] =
		    (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
	yes = memmem(low, len, secret, strlen(secret)) != NULL;
	free(low);
	return yes;
}

/* What config_load promises of its outputs for input; NULL when it holds.
 * A credential the input spells out itself may come back quoted. */
static inline const char *
fuzz_config_check(int rc, const struct config *c, const char *errors,
		  const char *path, const void *input, size_t len)
{
	if (rc == 0) {
		if (c == NULL || errors != NULL)
			return "success without a config, or with errors";
		if (c->source_url == NULL || c->moodle_url == NULL)
			return "success without source.url or moodle.url";
		if (c->moodle_token == NULL ||
		    strcmp(c->moodle_token, FUZZ_CRED_TOKEN) != 0 ||
		    c->source_auth_header == NULL ||
		    strcmp(c->source_auth_header, FUZZ_CRED_HEADER) != 0)
			return "success without the credentials";
		return NULL;
	}
	if (rc != -1 || c != NULL)
		return "failure with a config";
	if (errors == NULL || *errors == '\0')
		return "failure without errors";
	if (fuzz_error_lines(errors, path) == -1)
		return "an error not of the form PATH:LINE: message";
	if ((strstr(errors, FUZZ_CRED_TOKEN) != NULL &&
	     !fuzz_spells(input, len, FUZZ_CRED_TOKEN)) ||
	    (strstr(errors, FUZZ_CRED_VALUE) != NULL &&
	     !fuzz_spells(input, len, FUZZ_CRED_VALUE)))
		return "a credential in the errors";
	return NULL;
}

/* The client the moodle target decodes with. */
static inline struct moodle *
fuzz_moodle_new(void)
{
	struct config c;

	memset(&c, 0, sizeof(c));
	c.moodle_url = (char *)"https://moodle.example.edu";
	c.moodle_token = (char *)FUZZ_TOKEN;
	return moodle_new(&c, NULL);
}

/* A moodle target input: byte 0 picks the function (its index in
 * moodle_required_functions, modulo their number), byte 1 the HTTP status
 * (high nibble, in the table below) and n (low nibble); the rest is the
 * body.  -1 when the input is too short. */
static inline int
fuzz_moodle_reply(const uint8_t *data, size_t size, struct moodle_reply *r)
{
	static const long statuses[16] = { 200, 200, 200, 200, 200, 200,
					   200, 200, 200, 200, 200, 200,
					   201, 303, 403, 503 };
	size_t nfn = 0;

	if (size < 2)
		return -1;
	while (moodle_required_functions[nfn] != NULL)
		nfn++;
	memset(r, 0, sizeof(*r));
	r->function = moodle_required_functions[data[0] % nfn];
	r->status = statuses[data[1] >> 4];
	r->n = data[1] & 0x0f;
	r->shortname = FUZZ_SHORTNAME;
	r->body = (const char *)data + 2;
	r->len = size - 2;
	return 0;
}

/* True when an error may rightly show the token's first bytes: the body
 * holds them outside any full copy of the token (a full copy must come out
 * masked, never cut), or an escape could build them. */
static inline int
fuzz_body_shows_prefix(const char *body, size_t len)
{
	size_t tlen = strlen(FUZZ_TOKEN);
	char *copy = xmalloc(len + 1), *hit;
	int shows;

	memcpy(copy, body, len);
	while ((hit = memmem(copy, len, FUZZ_TOKEN, tlen)) != NULL)
		memset(hit, '#', tlen);
	shows = memchr(copy, '\\', len) != NULL ||
		memmem(copy, len, FUZZ_TOKEN, FUZZ_TOKEN_PREFIX) != NULL;
	free(copy);
	return shows;
}

/* What moodle_parse_answer promises of an error; NULL when it holds. */
static inline const char *
fuzz_moodle_check(int rc, const struct moodle_error *e,
		  const struct moodle_reply *r)
{
	const char *texts[3] = { e->errorcode, e->message, e->debuginfo }, *p;
	int prefix_ok;
	size_t i;

	if (rc == 0)
		return e->kind == MOODLE_OK && e->message == NULL
			   ? NULL
			   : "success with an error";
	if (rc != -1 ||
	    (e->kind != MOODLE_ITEM && e->kind != MOODLE_TRANSIENT &&
	     e->kind != MOODLE_FATAL && e->kind != MOODLE_CONFLICT &&
	     e->kind != MOODLE_DOWN && e->kind != MOODLE_UNSURE))
		return "failure of no class";
	if (e->site != (e->kind == MOODLE_DOWN || e->kind == MOODLE_UNSURE))
		return "site-wide and class disagree";
	if (e->function == NULL || e->errorcode == NULL || e->message == NULL ||
	    *e->message == '\0')
		return "failure without function, errorcode or message";
	prefix_ok = fuzz_body_shows_prefix(r->body, r->len);
	for (i = 0; i < nitems(texts); i++) {
		if (texts[i] == NULL)
			continue;
		if (strstr(texts[i], FUZZ_TOKEN) != NULL)
			return "the token in an error";
		if (!prefix_ok && memmem(texts[i], strlen(texts[i]), FUZZ_TOKEN,
					 FUZZ_TOKEN_PREFIX) != NULL)
			return "part of the token in an error";
		for (p = texts[i]; *p != '\0'; p++) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				return "a control byte in an error";
		}
	}
	return NULL;
}

#endif
