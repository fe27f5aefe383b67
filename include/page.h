/* The console's HTML writer: markup is string literals, data is escaped. */
#ifndef PAGE_H
#define PAGE_H

#include <stddef.h>
#include <stdint.h>

/*
 * A page is a growing buffer.  Everything that reaches it from the feed,
 * Moodle, the ledger or the request goes through page_text() (escaped for
 * element content) or page_attr() (escaped and always quoted).  The only
 * unescaped writes are page_markup() and the names of attributes and
 * hidden fields, and those macros accept nothing but string literals: the
 * "" "..." "" concatenation does not compile with a variable, so no page
 * can be built by pasting data into markup.
 */
struct page;

struct page *page_new(void);
void page_free(struct page *);

/* Markup of the page itself: a string literal only. */
#define page_markup(p, lit) page_markup_((p), "" lit "", sizeof(lit) - 1)
/* Text content, HTML-escaped; invalid UTF-8 and control characters
 * become U+FFFD.  NULL writes nothing. */
void page_text(struct page *, const char *);
/* printf into text content: the whole result is escaped. */
void page_textf(struct page *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* An integer with thousands separators ("1,234,567"), and a time in the
 * server's local zone ("2026-12-03 08:15"; "never" for 0). */
void page_count(struct page *, int64_t);
void page_time(struct page *, int64_t epoch);

/* ` NAME="VALUE"`, the value escaped for a quoted attribute. */
#define page_attr(p, name, value) page_attr_((p), "" name "", (value))
void page_attr_(struct page *, const char *name, const char *value);
/* ` NAME="PATH?k=v&..."`: the query values percent-encoded, then the whole
 * attribute escaped; pairs whose value is NULL or empty are left out.  The
 * pairs end with NULL. */
#define page_href(p, name, path, ...)                                          \
	page_href_((p), "" name "", "" path "", __VA_ARGS__)
void page_href_(struct page *, const char *name, const char *path, ...)
    __attribute__((sentinel));
/* <input type="hidden" name="NAME" value="VALUE"> */
#define page_hidden(p, name, value) page_hidden_((p), "" name "", (value))
void page_hidden_(struct page *, const char *name, const char *value);

/* What was written so far, NUL-terminated, and its length. */
const char *page_data(const struct page *, size_t *ret_len);

/* Behind page_markup(): call the macro, never this. */
void page_markup_(struct page *, const char *lit, size_t len);

/* Percent-encode s for a URL query value into a new string (RFC 3986:
 * unreserved characters stay, everything else is %XX). */
char *page_query_encode(const char *s);

#endif
