/* Small helpers shared by every module: die-on-OOM allocation, strings. */
#ifndef UTIL_H
#define UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t);
void *xcalloc(size_t, size_t);
void *xreallocarray(void *, size_t, size_t);
char *xstrdup(const char *);
char *xstrndup(const char *, size_t);
int xasprintf(char **, const char *, ...) __attribute__((format(printf, 2, 3)));

/* Read a whole small file (at most max bytes) into a NUL-terminated string;
 * trailing newlines are stripped.  -1 with *cause set on failure. */
int read_secret_file(const char *path, size_t max, char **ret, char **cause);

/* Parse a decimal integer in [min, max]; -1 on any junk or overflow. */
int parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret);

/* Wall-clock now as seconds since the epoch, and a monotonic clock in ms
 * and in microseconds (for durations that are measured, not scheduled). */
int64_t now_epoch(void);
int64_t now_monotonic_ms(void);
int64_t now_monotonic_us(void);

/* ISO-8601 UTC "YYYY-MM-DDTHH:MM:SSZ" for t into buf (at least 21 bytes). */
void format_time(int64_t t, char *buf, size_t len);

/* Print text from column col, wrapped before UTIL_WIDTH columns; the
 * lines after the first start with indent blanks.  Ends the line. */
#define UTIL_WIDTH 79
void print_wrapped(FILE *, size_t col, size_t indent, const char *text);

/* Replace path atomically with content (write a new temp file beside it
 * with the given mode, fsync, rename). */
int write_file_atomic(const char *path, const char *data, size_t len,
		      mode_t mode, char **cause);

/* -1 with *cause set when path's directory can be written by others
 * (world-writable, sticky or not): a file we create or replace there could
 * be swapped for a symbolic link to somewhere else, and one we read for a
 * file of theirs. */
int dir_shared(const char *path, char **cause);

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0. */
size_t utf8_len(const unsigned char *p, size_t n);

/* The control character at p (C0, DEL, or C1: U+0080..U+009F, two bytes
 * in UTF-8, which a terminal may take as ESC [), or -1. */
int text_control(const unsigned char *p, size_t n);

/* The one rule for text from outside that people will read: shortnames,
 * names and usernames hold no control character (C0, DEL or C1).  The
 * first one in s[0..n) and *ret_at its position in characters, or -1. */
int text_find_control(const char *s, size_t n, size_t *ret_at);

/* The one output cleaner, for everything printed to a terminal or a log:
 * a copy of s where tab, CR and LF are a blank and every other control
 * character, and every byte that is not UTF-8, is '?' (malloc'd). */
char *text_clean(const char *s);
/* fputs(text_clean(s)); NULL prints nothing. */
void text_put(FILE *, const char *s);
/* HTML (or text) as one line of plain text for a person: tags dropped
 * (with what <head>, <style> and <script> hold), entities decoded, runs of
 * blanks and line breaks made one space, then text_clean, cut to at most
 * max bytes without splitting a UTF-8 sequence ("..." marks a cut).
 * Moodle's messages carry HTML (moodle-ws 32a: "<p>Error: ...</p>"). */
char *text_plain(const char *s, size_t max);

/* A string -> int64 hash map for the hot paths (ids by shortname or
 * username).  Keys are copied. */
struct strmap;
struct strmap *strmap_new(size_t hint);
void strmap_free(struct strmap *);
void strmap_put(struct strmap *, const char *key, int64_t value);
int strmap_get(const struct strmap *, const char *key,
	       int64_t *ret); /* 0 found, -1 not */
size_t strmap_count(const struct strmap *);

#endif
