/* The console's HTML writer: markup is string literals, data is escaped. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "page.h"
#include "util.h"

#define PAGE_FIRST_SIZE  8192
#define PAGE_REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

struct page {
	char *buf;
	size_t len, size;
};

struct page *
page_new(void)
{
	struct page *p = xcalloc(1, sizeof(*p));

	p->size = PAGE_FIRST_SIZE;
	p->buf = xmalloc(p->size);
	p->buf[0] = '\0';
	return p;
}

void
page_free(struct page *p)
{
	if (p == NULL)
		return;
	free(p->buf);
	free(p);
}

static void
page_put(struct page *p, const char *s, size_t len)
{
	if (len >= p->size - p->len) {
		while (len >= p->size - p->len)
			p->size *= 2;
		p->buf = xreallocarray(p->buf, p->size, 1);
	}
	memcpy(p->buf + p->len, s, len);
	p->len += len;
	p->buf[p->len] = '\0';
}

void
page_markup_(struct page *p, const char *lit, size_t len)
{
	page_put(p, lit, len);
}

/* Escape s for element content and for a quoted attribute alike: the five
 * characters HTML gives meaning to become references, and what a browser
 * would not show as text (bad UTF-8, C0 and C1 controls but tab and
 * newline: util.c's one rule) becomes U+FFFD. */
static void
page_escape(struct page *p, const char *str)
{
	const unsigned char *s = (const unsigned char *)str, *run = s;
	const unsigned char *end = s + strlen(str);
	const char *ref;
	size_t n;
	int c;

	while (*s != '\0') {
		n = utf8_len(s, (size_t)(end - s));
		c = text_control(s, (size_t)(end - s));
		ref = NULL;
		if (n == 0 || (c != -1 && c != '\t' && c != '\n'))
			ref = PAGE_REPLACEMENT;
		else if (*s == '&')
			ref = "&amp;";
		else if (*s == '<')
			ref = "&lt;";
		else if (*s == '>')
			ref = "&gt;";
		else if (*s == '"')
			ref = "&quot;";
		else if (*s == '\'')
			ref = "&#39;";
		if (ref == NULL) {
			s += n;
			continue;
		}
		page_put(p, (const char *)run, (size_t)(s - run));
		page_put(p, ref, strlen(ref));
		s += n == 0 ? 1 : n;
		run = s;
	}
	page_put(p, (const char *)run, (size_t)(s - run));
}

void
page_text(struct page *p, const char *s)
{
	if (s != NULL)
		page_escape(p, s);
}

void
page_textf(struct page *p, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) == -1)
		s = NULL;
	va_end(ap);
	if (s == NULL)
		return;
	page_escape(p, s);
	free(s);
}

void
page_count(struct page *p, int64_t v)
{
	char digits[32], out[48];
	size_t n, i, o = 0;

	snprintf(digits, sizeof(digits), "%" PRId64, v);
	n = strlen(digits);
	for (i = 0; i < n; i++) {
		if (i > 0 && digits[i - 1] != '-' && (n - i) % 3 == 0)
			out[o++] = ',';
		out[o++] = digits[i];
	}
	out[o] = '\0';
	page_put(p, out, o);
}

void
page_time(struct page *p, int64_t epoch)
{
	time_t t = (time_t)epoch;
	struct tm tm;
	char buf[64];

	if (epoch == 0 || localtime_r(&t, &tm) == NULL ||
	    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M %Z", &tm) == 0) {
		page_text(p, epoch == 0 ? "never" : "?");
		return;
	}
	page_text(p, buf);
}

void
page_attr_(struct page *p, const char *name, const char *value)
{
	page_put(p, " ", 1);
	page_put(p, name, strlen(name));
	page_put(p, "=\"", 2);
	if (value != NULL)
		page_escape(p, value);
	page_put(p, "\"", 1);
}

char *
page_query_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = xmalloc(strlen(s) * 3 + 1), *o = out;
	unsigned char c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~') {
			*o++ = (char)c;
			continue;
		}
		*o++ = '%';
		*o++ = hex[c >> 4];
		*o++ = hex[c & 15];
	}
	*o = '\0';
	return out;
}

void
page_href_(struct page *p, const char *name, const char *path, ...)
{
	struct page *url = page_new();
	const char *k, *v;
	char *enc;
	bool first = true;
	va_list ap;

	page_put(url, path, strlen(path));
	va_start(ap, path);
	while ((k = va_arg(ap, const char *)) != NULL) {
		v = va_arg(ap, const char *);
		if (v == NULL || *v == '\0')
			continue;
		page_put(url, first ? "?" : "&", 1);
		first = false;
		enc = page_query_encode(k);
		page_put(url, enc, strlen(enc));
		free(enc);
		page_put(url, "=", 1);
		enc = page_query_encode(v);
		page_put(url, enc, strlen(enc));
		free(enc);
	}
	va_end(ap);
	page_attr_(p, name, url->buf);
	page_free(url);
}

void
page_hidden_(struct page *p, const char *name, const char *value)
{
	page_markup(p, "<input type=\"hidden\"");
	page_attr_(p, "name", name);
	page_attr_(p, "value", value);
	page_markup(p, ">");
}

const char *
page_data(const struct page *p, size_t *ret_len)
{
	if (ret_len != NULL)
		*ret_len = p->len;
	return p->buf;
}
