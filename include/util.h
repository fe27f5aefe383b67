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
 * be swapped for a symbolic link to somewhere else. */
int dir_shared(const char *path, char **cause);

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
