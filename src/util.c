/* Small helpers shared by every module: allocation, numbers, time, files. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

void *
xmalloc(size_t size)
{
	void *p;

	if ((p = malloc(size == 0 ? 1 : size)) == NULL)
		fatal("malloc %zu bytes", size);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p;

	if ((p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size)) == NULL)
		fatal("calloc %zu x %zu bytes", n, size);
	return p;
}

void *
xreallocarray(void *old, size_t n, size_t size)
{
	void *p;

	if ((p = reallocarray(old, n == 0 ? 1 : n, size == 0 ? 1 : size)) ==
	    NULL)
		fatal("reallocarray %zu x %zu bytes", n, size);
	return p;
}

char *
xstrdup(const char *s)
{
	char *p;

	if ((p = strdup(s)) == NULL)
		fatal("strdup");
	return p;
}

char *
xstrndup(const char *s, size_t n)
{
	char *p;

	if ((p = strndup(s, n)) == NULL)
		fatal("strndup");
	return p;
}

int
xasprintf(char **ret, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(ret, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatal("vasprintf");
	return n;
}

int
read_secret_file(const char *path, size_t max, char **ret, char **cause)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	ssize_t n;
	int fd, rv = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		xasprintf(cause, "%s: not a regular file", path);
		goto out;
	}
	buf = xmalloc(max + 1);
	while ((n = read(fd, buf + len, max + 1 - len)) > 0) {
		len += (size_t)n;
		if (len > max) {
			xasprintf(cause, "%s: larger than %zu bytes", path,
				  max);
			goto out;
		}
	}
	if (n == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		goto out;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	buf[len] = '\0';
	if (memchr(buf, '\0', len) != NULL) {
		xasprintf(cause, "%s: contains a NUL byte", path);
		goto out;
	}
	*ret = buf;
	buf = NULL;
	rv = 0;
out:
	if (buf != NULL) {
		explicit_bzero(buf, max + 1);
		free(buf);
	}
	close(fd);
	return rv;
}

int
parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || end == s || v < min || v > max)
		return -1;
	*ret = v;
	return 0;
}

int64_t
now_epoch(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec;
}

int64_t
now_monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
now_monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
format_time(int64_t t, char *buf, size_t len)
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "%" PRId64, t);
}

void
print_wrapped(FILE *f, size_t col, size_t indent, const char *text)
{
	const char *p = text;
	bool empty = true; /* no word on this line yet */
	size_t n;

	for (;;) {
		p += strspn(p, " ");
		if ((n = strcspn(p, " ")) == 0)
			break;
		if (!empty && col + 1 + n > UTIL_WIDTH) {
			fprintf(f, "\n%*s", (int)indent, "");
			col = indent;
			empty = true;
		}
		if (!empty) {
			fputc(' ', f);
			col++;
		}
		fwrite(p, 1, n, f);
		col += n;
		p += n;
		empty = false;
	}
	fputc('\n', f);
}

int
write_file_atomic(const char *path, const char *data, size_t len, mode_t mode,
		  char **cause)
{
	char *tmp = NULL;
	size_t off = 0;
	ssize_t n;
	int fd, rv = -1;

	/* mkostemp opens with O_CREAT|O_EXCL under a name no one can guess:
	 * a symbolic link planted in the directory is never followed. */
	xasprintf(&tmp, "%s.tmp.XXXXXX", path);
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		xasprintf(cause, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (fchmod(fd, mode) == -1) {
		xasprintf(cause, "%s: %s", tmp, strerror(errno));
		close(fd);
		goto out_unlink;
	}
	while (off < len) {
		if ((n = write(fd, data + off, len - off)) == -1) {
			if (errno == EINTR)
				continue;
			xasprintf(cause, "%s: %s", tmp, strerror(errno));
			close(fd);
			goto out_unlink;
		}
		off += (size_t)n;
	}
	if (fsync(fd) == -1 || close(fd) == -1) {
		xasprintf(cause, "%s: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	if (rename(tmp, path) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		goto out_unlink;
	}
	rv = 0;
	goto out;
out_unlink:
	unlink(tmp);
out:
	free(tmp);
	return rv;
}

int
dir_shared(const char *path, char **cause)
{
	const char *slash = strrchr(path, '/');
	struct stat st;
	char *dir;
	int rv = 0;

	if (slash == NULL)
		dir = xstrdup(".");
	else
		dir =
		    xstrndup(path, slash == path ? 1 : (size_t)(slash - path));
	/* A missing directory is someone else's error, at open. */
	if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode) &&
	    (st.st_mode & S_IWOTH) != 0) {
		xasprintf(cause,
			  "%s is in %s, a directory others can write to "
			  "(mode %04o): they could put a symbolic link or a "
			  "file of theirs there; use a directory only "
			  "webcoursed's user can write to",
			  path, dir, (unsigned)(st.st_mode & 07777));
		rv = -1;
	}
	free(dir);
	return rv;
}

/* ---- text for people --------------------------------------------------- */

size_t
utf8_len(const unsigned char *p, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, cp = p[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

int
text_control(const unsigned char *p, size_t n)
{
	if (p[0] < 0x20 || p[0] == 0x7f)
		return p[0];
	if (n >= 2 && p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
		return p[1];
	return -1;
}

int
text_find_control(const char *s, size_t n, size_t *ret_at)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i, chars = 0;
	int c;

	for (i = 0; i < n; i++) {
		if ((c = text_control(p + i, n - i)) != -1) {
			*ret_at = chars;
			return c;
		}
		chars += (p[i] & 0xc0) != 0x80;
	}
	return -1;
}

char *
text_clean(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, o = 0, l;
	char *out = xmalloc(n + 1);
	int c;

	while (i < n) {
		if ((c = text_control(p + i, n - i)) != -1) {
			out[o++] =
			    c == '\t' || c == '\n' || c == '\r' ? ' ' : '?';
			i += c < 0x80 ? 1 : 2;
		} else if ((l = utf8_len(p + i, n - i)) == 0) {
			out[o++] = '?';
			i++;
		} else {
			memcpy(out + o, p + i, l);
			o += l, i += l;
		}
	}
	out[o] = '\0';
	return out;
}

void
text_put(FILE *f, const char *s)
{
	char *clean = text_clean(s != NULL ? s : "");

	fputs(clean, f);
	free(clean);
}

struct strmap_entry {
	char *key;
	int64_t value;
};

/* Open addressing with linear probing, power-of-two size, <= 50 % full. */
struct strmap {
	struct strmap_entry *slots;
	size_t size, count;
};

static uint64_t
strmap_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

struct strmap *
strmap_new(size_t hint)
{
	struct strmap *m = xcalloc(1, sizeof(*m));

	m->size = 16;
	while (m->size < hint * 2)
		m->size *= 2;
	m->slots = xcalloc(m->size, sizeof(*m->slots));
	return m;
}

void
strmap_free(struct strmap *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->size; i++)
		free(m->slots[i].key);
	free(m->slots);
	free(m);
}

static struct strmap_entry *
strmap_slot(struct strmap_entry *slots, size_t size, const char *key)
{
	size_t i = strmap_hash(key) & (size - 1);

	while (slots[i].key != NULL && strcmp(slots[i].key, key) != 0)
		i = (i + 1) & (size - 1);
	return &slots[i];
}

void
strmap_put(struct strmap *m, const char *key, int64_t value)
{
	struct strmap_entry *e;

	if ((m->count + 1) * 2 > m->size) {
		struct strmap_entry *old = m->slots;
		size_t oldsize = m->size;

		m->size *= 2;
		m->slots = xcalloc(m->size, sizeof(*m->slots));
		for (size_t i = 0; i < oldsize; i++)
			if (old[i].key != NULL)
				*strmap_slot(m->slots, m->size, old[i].key) =
				    old[i];
		free(old);
	}
	e = strmap_slot(m->slots, m->size, key);
	if (e->key == NULL) {
		e->key = xstrdup(key);
		m->count++;
	}
	e->value = value;
}

int
strmap_get(const struct strmap *m, const char *key, int64_t *ret)
{
	const struct strmap_entry *e = strmap_slot(m->slots, m->size, key);

	if (e->key == NULL)
		return -1;
	*ret = e->value;
	return 0;
}

size_t
strmap_count(const struct strmap *m)
{
	return m->count;
}

/* Append code point cp as UTF-8 to out at *o (room for 4 bytes). */
static void
text_put_utf8(char *out, size_t *o, unsigned long cp)
{
	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		cp = 0xfffd;
	if (cp < 0x80)
		out[(*o)++] = (char)cp;
	else if (cp < 0x800) {
		out[(*o)++] = (char)(0xc0 | (cp >> 6));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		out[(*o)++] = (char)(0xe0 | (cp >> 12));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		out[(*o)++] = (char)(0xf0 | (cp >> 18));
		out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	}
}

/* The entity at s (s[0] == '&') into out: its length, or 0 when it is
 * none we know (the '&' is then kept as it is). */
static size_t
text_entity(const char *s, char *out, size_t *o)
{
	static const struct {
		const char *name;
		unsigned long cp;
	} names[] = {
		{ "amp", '&' },      { "lt", '<' },       { "gt", '>' },
		{ "quot", '"' },     { "apos", '\'' },    { "nbsp", ' ' },
		{ "ndash", 0x2013 }, { "mdash", 0x2014 }, { "hellip", 0x2026 },
	};
	const char *semi = strchr(s, ';');
	unsigned long cp;
	char *end;
	size_t len;

	if (semi == NULL || (len = (size_t)(semi - s)) < 2 || len > 10)
		return 0;
	if (s[1] == '#') {
		errno = 0;
		cp = s[2] == 'x' || s[2] == 'X' ? strtoul(s + 3, &end, 16)
						: strtoul(s + 2, &end, 10);
		if (end != semi || end == s + 2 || errno != 0)
			return 0;
		text_put_utf8(out, o, cp);
		return len + 1;
	}
	for (size_t i = 0; i < nitems(names); i++)
		if (strlen(names[i].name) == len - 1 &&
		    strncmp(s + 1, names[i].name, len - 1) == 0) {
			text_put_utf8(out, o, names[i].cp);
			return len + 1;
		}
	return 0;
}

/* Whether the tag at s ('<' ...) is one of names (matched up to a blank,
 * '>' or '/'). */
static bool
text_tag_is(const char *s, const char *const *names)
{
	size_t n;

	s += s[1] == '/' ? 2 : 1;
	for (; *names != NULL; names++) {
		n = strlen(*names);
		if (strncasecmp(s, *names, n) == 0 &&
		    strchr(" \t\r\n>/", s[n]) != NULL && s[n] != '\0')
			return true;
	}
	return false;
}

char *
text_plain(const char *s, size_t max)
{
	/* Their content is not text for a person. */
	static const char *const hidden[] = { "head", "style", "script", NULL };
	/* Inline: no word break where they stand. */
	static const char *const inline_tags[] = { "a",    "b",      "i",
						   "em",   "strong", "span",
						   "code", "small",  "u",
						   NULL };
	size_t len = strlen(s), o = 0, n, i;
	const char *gt, *close;
	char *out, *clean, end[16];
	bool blank = true;

	out = xmalloc(len * 2 + 4); /* an entity is at most 4 bytes out */
	for (i = 0; i < len;) {
		if (s[i] == '<' && (gt = strchr(s + i, '>')) != NULL) {
			if (s[i + 1] != '/' && text_tag_is(s + i, hidden)) {
				/* Skip to the matching end tag. */
				n = strcspn(s + i + 1, " \t\r\n>/");
				snprintf(end, sizeof(end), "</%.*s", (int)n,
					 s + i + 1);
				close = strcasestr(s + i, end);
				gt = close != NULL ? strchr(close, '>') : NULL;
				if (gt == NULL)
					break;
			}
			if (!text_tag_is(s + i, inline_tags) && !blank) {
				out[o++] = ' ';
				blank = true;
			}
			i = (size_t)(gt - s) + 1;
			continue;
		}
		if (s[i] == '&' && (n = text_entity(s + i, out, &o)) > 0) {
			i += n;
			blank = out[o - 1] == ' ';
			continue;
		}
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f) {
			if (!blank)
				out[o++] = ' ';
			blank = true;
			i++;
			continue;
		}
		out[o++] = s[i++];
		blank = false;
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
	/* What is left (C1 controls, bytes that are not UTF-8, an entity's
	 * control character) as the one output cleaner has it. */
	clean = text_clean(out);
	free(out);
	out = clean;
	o = strlen(out);
	if (o > max) {
		o = max >= 3 ? max - 3 : 0;
		while (o > 0 && ((unsigned char)out[o] & 0xc0) == 0x80)
			o--;
		memcpy(out + o, "...", max >= 3 ? 4 : 1);
		if (max < 3)
			out[o] = '\0';
	}
	return out;
}
