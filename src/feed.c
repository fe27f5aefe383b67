/* The feed: fetch it (HTTP or file), digest, decode and validate it. */
#include <ctype.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define FEED_SHA_NI 1
#endif

#include "config.h"
#include "feed.h"
#include "http.h"
#include "log.h"
#include "util.h"

#define FEED_CONNECT_TIMEOUT_MS 10000
#define FEED_MAX_REDIRECTS      3
#define FEED_SNIPPET            60 /* bytes of a bad answer quoted in *cause */
#define FEED_REDACT_WINDOW      8192 /* bytes searched for secrets first */
#define FEED_MAX_ITEM           1100 /* bytes of an issue item: long shortnames */
#define FEED_MAX_TOP_KEYS       64   /* keys of the top-level object */
#define FEED_MAX_USERNAME       100 /* Moodle's user.username column */
#define FEED_MAX_IDNUMBER       100 /* Moodle's course.idnumber column */
#define FEED_MAX_DATE           253402300799LL /* 9999-12-31T23:59:59Z */
#define FEED_ARENA_CHUNK        (1024 * 1024)
#define FEED_JSON_FLAGS                                                        \
	(JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES |   \
	 JSON_ALLOW_NUL)

/* ---- SHA-256 (FIPS 180-4) ---------------------------------------------- */

static const uint32_t feed_sha_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
	0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
	0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
	0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
	0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

typedef void (*feed_sha_blocks_fn)(uint32_t h[8], const uint8_t *p, size_t n);

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/* Compress n 64-byte blocks into h, one round at a time. */
static void
feed_sha_blocks_generic(uint32_t h[8], const uint8_t *p, size_t n)
{
	uint32_t w[64], a, b, c, d, e, f, g, hh, t1, t2;
	int i;

	for (; n > 0; n--, p += 64) {
		for (i = 0; i < 16; i++)
			w[i] = (uint32_t)p[4 * i] << 24 |
			       (uint32_t)p[4 * i + 1] << 16 |
			       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
		for (i = 16; i < 64; i++)
			w[i] = w[i - 16] + w[i - 7] +
			       (ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^
				(w[i - 15] >> 3)) +
			       (ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^
				(w[i - 2] >> 10));
		a = h[0], b = h[1], c = h[2], d = h[3];
		e = h[4], f = h[5], g = h[6], hh = h[7];
		for (i = 0; i < 64; i++) {
			t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) +
			     ((e & f) ^ (~e & g)) + feed_sha_k[i] + w[i];
			t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) +
			     ((a & b) ^ (a & c) ^ (b & c));
			hh = g, g = f, f = e, e = d + t1;
			d = c, c = b, b = a, a = t1 + t2;
		}
		h[0] += a, h[1] += b, h[2] += c, h[3] += d;
		h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
	}
}

#ifdef FEED_SHA_NI
/* The same with the x86 SHA extensions: four rounds per step, the state
 * held as the lanes ABEF and CDGH that sha256rnds2 works on. */
__attribute__((target("sha,sse4.1,ssse3"))) static void
feed_sha_blocks_ni(uint32_t h[8], const uint8_t *p, size_t n)
{
	const __m128i bswap =
	    _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
	__m128i abef, cdgh, save0, save1, tmp, msg, m[4];
	int i;

	tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xb1);
	cdgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1b);
	abef = _mm_alignr_epi8(tmp, cdgh, 8);
	cdgh = _mm_blend_epi16(cdgh, tmp, 0xf0);
	for (; n > 0; n--, p += 64) {
		save0 = abef, save1 = cdgh;
		for (i = 0; i < 16; i++) {
			if (i < 4)
				m[i] = _mm_shuffle_epi8(
				    _mm_loadu_si128(
					(const __m128i *)(p + 16 * i)),
				    bswap);
			else
				m[i & 3] = _mm_sha256msg2_epu32(
				    _mm_add_epi32(
					_mm_sha256msg1_epu32(m[i & 3],
							     m[(i + 1) & 3]),
					_mm_alignr_epi8(m[(i + 3) & 3],
							m[(i + 2) & 3], 4)),
				    m[(i + 3) & 3]);
			msg = _mm_add_epi32(
			    m[i & 3], _mm_loadu_si128(
					  (const __m128i *)&feed_sha_k[4 * i]));
			cdgh = _mm_sha256rnds2_epu32(cdgh, abef, msg);
			msg = _mm_shuffle_epi32(msg, 0x0e);
			abef = _mm_sha256rnds2_epu32(abef, cdgh, msg);
		}
		abef = _mm_add_epi32(abef, save0);
		cdgh = _mm_add_epi32(cdgh, save1);
	}
	tmp = _mm_shuffle_epi32(abef, 0x1b);
	cdgh = _mm_shuffle_epi32(cdgh, 0xb1);
	_mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(tmp, cdgh, 0xf0));
	_mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(cdgh, tmp, 8));
}

/* CPUID: leaf 7 EBX bit 29 is SHA; leaf 1 ECX bits 9 and 19 are SSSE3 and
 * SSE4.1. */
static bool
feed_sha_ni_usable(void)
{
	unsigned int a, b, c, d;

	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 9)) ||
	    !(c & (1u << 19)))
		return false;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return false;
	return (b & (1u << 29)) != 0;
}
#endif

static void
feed_sha256(feed_sha_blocks_fn blocks, const void *data, size_t len,
	    char out[65])
{
	static const char hex[] = "0123456789abcdef";
	uint32_t h[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
			  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
	const uint8_t *p = data;
	uint8_t tail[128];
	uint64_t bits = (uint64_t)len * 8;
	size_t full = len / 64, rest = len % 64, ntail;
	int i;

	blocks(h, p, full);
	memset(tail, 0, sizeof tail);
	if (rest > 0)
		memcpy(tail, p + full * 64, rest);
	tail[rest] = 0x80;
	ntail = rest < 56 ? 64 : 128;
	for (i = 0; i < 8; i++)
		tail[ntail - 1 - i] = (uint8_t)(bits >> (8 * i));
	blocks(h, tail, ntail / 64);
	for (i = 0; i < 32; i++) {
		uint8_t byte = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));

		out[2 * i] = hex[byte >> 4];
		out[2 * i + 1] = hex[byte & 15];
	}
	out[64] = '\0';
}

void
feed_digest_generic(const void *data, size_t len, char out[65])
{
	feed_sha256(feed_sha_blocks_generic, data, len, out);
}

void
feed_digest(const void *data, size_t len, char out[65])
{
#ifdef FEED_SHA_NI
	if (feed_sha_ni_usable()) {
		feed_sha256(feed_sha_blocks_ni, data, len, out);
		return;
	}
#endif
	feed_sha256(feed_sha_blocks_generic, data, len, out);
}

/* ---- text helpers ------------------------------------------------------- */

/* One printable line from at most max bytes of untrusted text, for a
 * quote in a message: like text_clean(), but every control character is
 * a blank (runs collapsed), and the cut is marked "...". */
static char *
feed_sanitise(const char *s, size_t n, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out = xmalloc(max + 4);
	size_t i = 0, o = 0, l;
	int c;

	while (i < n && o < max) {
		if ((c = text_control(p + i, n - i)) != -1) {
			if (o > 0 && out[o - 1] != ' ')
				out[o++] = ' ';
			i += c < 0x80 ? 1 : 2;
		} else if ((l = utf8_len(p + i, n - i)) == 0) {
			out[o++] = '?';
			i++;
		} else if (o + l > max) {
			break;
		} else {
			memcpy(out + o, p + i, l);
			o += l, i += l;
		}
	}
	if (i < n) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

/* Characters (not bytes) in valid UTF-8. */
static size_t
feed_utf8_chars(const char *s, size_t n)
{
	size_t i, chars = 0;

	for (i = 0; i < n; i++)
		chars += ((unsigned char)s[i] & 0xc0) != 0x80;
	return chars;
}

/* Replace every copy of needle (when long enough to mean anything) in *s. */
static void
feed_redact(char **s, const char *needle, size_t nlen)
{
	char *out, *hit, *from = *s;
	size_t o = 0, len;

	if (nlen < 4 || *s == NULL ||
	    memmem(*s, strlen(*s), needle, nlen) == NULL)
		return;
	len = strlen(*s);
	out = xmalloc(len + 1);
	while ((hit = memmem(from, strlen(from), needle, nlen)) != NULL) {
		memcpy(out + o, from, (size_t)(hit - from));
		o += (size_t)(hit - from);
		memcpy(out + o, "***", 3);
		o += 3;
		from = hit + nlen;
	}
	memcpy(out + o, from, strlen(from) + 1);
	free(*s);
	*s = out;
}

/* Keep the auth header's value, and its last word (the token of
 * "Bearer TOKEN"), out of a text bound for a log line. */
static void
feed_redact_secret(const struct config *cfg, char **s)
{
	const char *v, *word;
	size_t len;

	if (cfg->source_auth_header == NULL ||
	    (v = strchr(cfg->source_auth_header, ':')) == NULL)
		return;
	v += strspn(v + 1, " \t") + 1;
	len = strlen(v);
	while (len > 0 && isspace((unsigned char)v[len - 1]))
		len--;
	feed_redact(s, v, len);
	for (word = v + len; word > v && !isspace((unsigned char)word[-1]);
	     word--)
		;
	feed_redact(s, word, (size_t)(v + len - word));
}

/* ---- fetch -------------------------------------------------------------- */

void
feed_validators_clear(struct feed_validators *v)
{
	if (v == NULL)
		return;
	free(v->etag);
	free(v->last_modified);
	free(v->digest);
	memset(v, 0, sizeof *v);
}

static char *
feed_xstrdup_or_null(const char *s)
{
	return s == NULL ? NULL : xstrdup(s);
}

/* An HTML page where JSON belongs: a login portal, a proxy's error. */
static bool
feed_is_html(const struct http_response *resp)
{
	const char *ct = resp->content_type;
	size_t i = 0;

	if (ct != NULL &&
	    strncasecmp(ct + strspn(ct, " \t"), "text/html", 9) == 0)
		return true;
	if (resp->len >= 3 && memcmp(resp->body, "\xef\xbb\xbf", 3) == 0)
		i = 3;
	while (i < resp->len && isspace((unsigned char)resp->body[i]))
		i++;
	return i < resp->len && resp->body[i] == '<';
}

/* "feed URL answered HTTP 500: "first bytes"" and its kin. */
static void
feed_fetch_fail(const struct config *cfg, const char *url,
		const struct http_response *resp, const char *what,
		char **cause)
{
	char *window, *snippet;

	/* Redact before cutting: a secret echoed across the cut would
	 * otherwise leave its first part in the quote. */
	window = feed_sanitise(resp->body, resp->len, FEED_REDACT_WINDOW);
	feed_redact_secret(cfg, &window);
	snippet = feed_sanitise(window, strlen(window), FEED_SNIPPET);
	free(window);
	if (resp->len == 0)
		xasprintf(cause, "feed %s %s (HTTP %ld) with an empty body",
			  url, what, resp->status);
	else
		xasprintf(cause, "feed %s %s (HTTP %ld): \"%s\"", url, what,
			  resp->status, snippet);
	free(snippet);
	feed_redact_secret(cfg, cause);
}

enum feed_fetch_result
feed_fetch(const struct config *cfg, struct http *http,
	   const struct feed_validators *last, char **ret_body, size_t *ret_len,
	   struct feed_validators *ret_new, char **cause)
{
	struct http_request req;
	struct http_response resp;
	const char *headers[5];
	char *url, *inm = NULL, *ims = NULL, *msg = NULL, digest[65];
	bool is_file, conditional = false;
	enum feed_fetch_result res = FEED_FETCH_ERROR;
	enum http_result hr;
	size_t nh = 0;

	*ret_body = NULL;
	*ret_len = 0;
	memset(ret_new, 0, sizeof *ret_new);
	memset(&req, 0, sizeof req);
	memset(&resp, 0, sizeof resp);
	url = http_redact_url(cfg->source_url);
	is_file = strncasecmp(cfg->source_url, "file:", 5) == 0;

	headers[nh++] = "Accept: application/json";
	/* A validator stored before http.c dropped bad ones is not sent. */
	if (!is_file && last != NULL && last->etag != NULL &&
	    http_field_value_ok(last->etag, strlen(last->etag))) {
		xasprintf(&inm, "If-None-Match: %s", last->etag);
		headers[nh++] = inm;
		conditional = true;
	}
	if (!is_file && last != NULL && last->last_modified != NULL &&
	    http_field_value_ok(last->last_modified,
				strlen(last->last_modified))) {
		xasprintf(&ims, "If-Modified-Since: %s", last->last_modified);
		headers[nh++] = ims;
		conditional = true;
	}
	headers[nh] = NULL;

	req.url = cfg->source_url;
	req.headers = headers;
	req.origin_header = cfg->source_auth_header;
	req.timeout_ms = cfg->source_timeout_ms;
	req.connect_timeout_ms = FEED_CONNECT_TIMEOUT_MS;
	if (cfg->source_timeout_ms > 0 &&
	    cfg->source_timeout_ms < FEED_CONNECT_TIMEOUT_MS)
		req.connect_timeout_ms = cfg->source_timeout_ms;
	req.max_body = (size_t)cfg->source_max_size;
	req.ca_file = cfg->source_ca_file;
	req.max_redirects = FEED_MAX_REDIRECTS;
	req.accept_gzip = true;

	hr = http_perform(http, &req, &resp, &msg);
	if (hr == HTTP_ERR_CANCELLED) {
		xasprintf(cause, "feed %s: cancelled", url);
		res = FEED_FETCH_CANCELLED;
		goto out;
	}
	if (hr == HTTP_ERR_TOO_BIG) {
		xasprintf(cause,
			  "feed %s: body larger than source.max_size (%lld "
			  "bytes), transfer aborted",
			  url, (long long)cfg->source_max_size);
		goto out;
	}
	if (hr != HTTP_OK) {
		/* The http module's cause starts with the redacted URL. */
		if (msg != NULL)
			xasprintf(cause, "feed %s", msg);
		else
			xasprintf(cause, "feed %s: transfer failed", url);
		feed_redact_secret(cfg, cause);
		goto out;
	}
	log_debug("feed %s: HTTP %ld, %zu bytes", url, resp.status, resp.len);

	if (resp.status == 304 && !is_file) {
		if (!conditional) {
			feed_fetch_fail(cfg, url, &resp,
					"answered 304 to an unconditional "
					"request",
					cause);
			goto out;
		}
		ret_new->etag = feed_xstrdup_or_null(
		    resp.etag != NULL ? resp.etag : last->etag);
		ret_new->last_modified = feed_xstrdup_or_null(
		    resp.last_modified != NULL ? resp.last_modified
					       : last->last_modified);
		ret_new->digest = feed_xstrdup_or_null(last->digest);
		res = FEED_FETCH_NOT_MODIFIED;
		goto out;
	}
	/* curl reports no status for file:// transfers. */
	if (!(resp.status >= 200 && resp.status <= 299) &&
	    !(is_file && resp.status == 0)) {
		feed_fetch_fail(cfg, url, &resp, "answered an error", cause);
		goto out;
	}
	if (feed_is_html(&resp)) {
		feed_fetch_fail(cfg, url, &resp, "sent an HTML page, not JSON",
				cause);
		goto out;
	}

	feed_digest(resp.body, resp.len, digest);
	if (!is_file) {
		ret_new->etag = feed_xstrdup_or_null(resp.etag);
		ret_new->last_modified =
		    feed_xstrdup_or_null(resp.last_modified);
	}
	ret_new->digest = xstrdup(digest);
	if (last != NULL && last->digest != NULL &&
	    strcmp(last->digest, digest) == 0) {
		*ret_len = resp.len;
		res = FEED_FETCH_UNCHANGED;
		goto out;
	}
	*ret_body = resp.body;
	*ret_len = resp.len;
	resp.body = NULL;
	res = FEED_FETCH_NEW;
out:
	http_response_clear(&resp);
	free(msg);
	free(inm);
	free(ims);
	free(url);
	return res;
}

/* ---- decode ------------------------------------------------------------- */

/*
 * jansson would hold the whole feed as a tree: about twelve times the size
 * of the body for a feed of small participant objects.  Instead a small
 * scanner walks the top level ("{" key ":" value ... or "[" ...) and hands
 * each element of the courses array to json_loadb with
 * JSON_DISABLE_EOF_CHECK, which stops after one value and says how far it
 * read.  Only one course is a tree at a time; what we keep is copied into
 * an arena.  jansson still does all the tokenising, so its checks (UTF-8,
 * duplicate keys, the nesting limit) apply everywhere, and our own
 * positions are made absolute so an error reads like jansson's.
 */

/* Every string of a decoded feed lives in a few large chunks. */
struct feed_chunk {
	struct feed_chunk *next;
	size_t used, size;
	max_align_t data[];
};

/* The decoded feed and the storage it points into. */
struct feed_store {
	struct feed feed;
	struct feed_chunk *chunks;
	size_t capissues;
};

/* size bytes aligned to align (a power of two) from the arena. */
static void *
feed_alloc(struct feed_store *st, size_t size, size_t align)
{
	struct feed_chunk *c = st->chunks;
	size_t at;

	if (c != NULL) {
		at = (c->used + align - 1) & ~(align - 1);
		if (at + size <= c->size) {
			c->used = at + size;
			return (char *)c->data + at;
		}
	}
	if (size > FEED_ARENA_CHUNK / 4) {
		/* A big one gets its own chunk behind the current one. */
		c = xmalloc(sizeof *c + size);
		c->used = c->size = size;
		if (st->chunks == NULL) {
			c->next = NULL;
			st->chunks = c;
		} else {
			c->next = st->chunks->next;
			st->chunks->next = c;
		}
		return c->data;
	}
	c = xmalloc(sizeof *c + FEED_ARENA_CHUNK);
	c->size = FEED_ARENA_CHUNK;
	c->used = size;
	c->next = st->chunks;
	st->chunks = c;
	return c->data;
}

static char *
feed_strndup(struct feed_store *st, const char *s, size_t n)
{
	char *p = feed_alloc(st, n + 1, 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static char *
feed_vstrf(struct feed_store *st, const char *fmt, va_list ap)
{
	char *tmp, *p;
	int n;

	if ((n = vasprintf(&tmp, fmt, ap)) < 0)
		fatal("vasprintf");
	p = feed_strndup(st, tmp, (size_t)n);
	free(tmp);
	return p;
}

void
feed_free(struct feed *f)
{
	struct feed_store *st = (struct feed_store *)f;
	struct feed_chunk *c, *next;

	if (f == NULL)
		return;
	for (c = st->chunks; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(f->courses);
	free(f->issues);
	free(f->skipped);
	free(st);
}

/* The state of one feed_decode call. */
struct feed_decoder {
	const struct config *cfg;
	const char *body, *end;
	struct feed_store *st;
	int default_role;
	size_t records; /* course records seen */
	size_t capcourses, capskipped;
	size_t issues_dropped;

	/* Scratch for the course being decoded. */
	const char *course; /* its shortname, once known */
	struct feed_participant *parts;
	size_t nparts, capparts;
	char **skipusers;
	size_t nskipusers, capskipusers;
	char *user; /* a username being normalised */
	char *cause;
};

/* "a string", "an object", ... for messages about a value of the wrong
 * type. */
static const char *
feed_json_type(const json_t *v)
{
	static const char *const names[] = {
		[JSON_OBJECT] = "an object", [JSON_ARRAY] = "an array",
		[JSON_STRING] = "a string",  [JSON_INTEGER] = "a number",
		[JSON_REAL] = "a number",    [JSON_TRUE] = "a boolean",
		[JSON_FALSE] = "a boolean",  [JSON_NULL] = "null",
	};

	return names[json_typeof(v)];
}

static void feed_issue(struct feed_decoder *d, const char *kind,
		       const char *item, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Record a skipped record; past FEED_MAX_ISSUES only count it. */
static void
feed_issue(struct feed_decoder *d, const char *kind, const char *item,
	   const char *code, const char *fmt, ...)
{
	struct feed *f = &d->st->feed;
	struct feed_issue *is;
	char *clean;
	va_list ap;

	if (f->nissues >= FEED_MAX_ISSUES) {
		d->issues_dropped++;
		return;
	}
	if (f->nissues == d->st->capissues) {
		d->st->capissues = d->st->capissues ? 2 * d->st->capissues : 16;
		f->issues = xreallocarray(f->issues, d->st->capissues,
					  sizeof *f->issues);
	}
	is = &f->issues[f->nissues++];
	is->kind = feed_strndup(d->st, kind, strlen(kind));
	clean = feed_sanitise(item, strlen(item), FEED_MAX_ITEM);
	is->item = feed_strndup(d->st, clean, strlen(clean));
	free(clean);
	is->code = feed_strndup(d->st, code, strlen(code));
	va_start(ap, fmt);
	is->message = feed_vstrf(d->st, fmt, ap);
	va_end(ap);
}

/* Line and column (1-based, in characters) of the byte at "at". */
static void
feed_position(const struct feed_decoder *d, const char *at, int *line, int *col)
{
	const char *p, *bol = d->body;

	*line = 1;
	for (p = d->body; p < at; p++) {
		if (*p == '\n') {
			(*line)++;
			bol = p + 1;
		}
	}
	*col = (int)feed_utf8_chars(bol, (size_t)(at - bol)) + 1;
}

/* A syntax error found by our own scanner at byte at. */
static int
feed_syntax(struct feed_decoder *d, const char *at, const char *what)
{
	int line, col;

	feed_position(d, at, &line, &col);
	if (at >= d->end)
		xasprintf(&d->cause,
			  "feed is not valid JSON: line %d, column %d: %s "
			  "near end of file",
			  line, col, what);
	else
		xasprintf(&d->cause,
			  "feed is not valid JSON: line %d, column %d: %s",
			  line, col, what);
	return -1;
}

/* Decode one JSON value at *p with jansson and move *p past it. */
static json_t *
feed_value(struct feed_decoder *d, const char **p)
{
	json_error_t err;
	json_t *v;
	char *text;
	int line, col;

	v = json_loadb(*p, (size_t)(d->end - *p), FEED_JSON_FLAGS, &err);
	if (v != NULL) {
		*p += err.position;
		return v;
	}
	/* jansson counts from where it started: make it absolute. */
	feed_position(d, *p, &line, &col);
	col--;
	if (err.line > 1)
		line += err.line - 1, col = err.column;
	else if (err.line == 1)
		col += err.column;
	text = feed_sanitise(err.text, strlen(err.text), 2 * FEED_SNIPPET);
	xasprintf(&d->cause, "feed is not valid JSON: line %d, column %d: %s",
		  line, col, text);
	free(text);
	return NULL;
}

static const char *
feed_ws(const struct feed_decoder *d, const char *p)
{
	while (p < d->end &&
	       (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* ---- one course --------------------------------------------------------- */

/* A string field of a course: where it goes and what it may hold. */
static const struct feed_string_field {
	const char *key;
	bool required;
	bool shown; /* printed to people: no control characters */
	size_t max_chars;
	size_t offset;
} feed_string_fields[] = {
	{ "shortname", true, true, 255,
	  offsetof(struct feed_course, shortname) },
	{ "name", true, true, 254, offsetof(struct feed_course, fullname) },
	{ "idnumber", false, true, FEED_MAX_IDNUMBER,
	  offsetof(struct feed_course, idnumber) },
	{ "summary", false, false, 65535,
	  offsetof(struct feed_course, summary) },
};

/* Integer fields: categoryid and the dates. */
static const struct feed_int_field {
	const char *key;
	int64_t min, max;
	size_t offset;
} feed_int_fields[] = {
	{ "category", 1, INT32_MAX, offsetof(struct feed_course, categoryid) },
	{ "startdate", 0, FEED_MAX_DATE,
	  offsetof(struct feed_course, startdate) },
	{ "enddate", 0, FEED_MAX_DATE, offsetof(struct feed_course, enddate) },
};

/* The item a course issue names: its shortname once known. */
static const char *
feed_course_item(const struct feed_decoder *d, const char *path)
{
	return d->course != NULL ? d->course : path;
}

/* The string fields of a course, by the table above; -1 with an issue
 * recorded when one is missing, mistyped or too long. */
static int
feed_course_strings(struct feed_decoder *d, json_t *o, struct feed_course *c,
		    const char *path)
{
	const struct feed_string_field *fd;
	const char *s;
	json_t *v;
	size_t i, len, chars, at;
	int ctl;

	for (i = 0; i < nitems(feed_string_fields); i++) {
		fd = &feed_string_fields[i];
		v = json_object_get(o, fd->key);
		if (v == NULL || json_is_null(v)) {
			if (!fd->required)
				continue;
			feed_issue(d, "course", feed_course_item(d, path),
				   "missing-field", "\"%s\" is missing",
				   fd->key);
			return -1;
		}
		if (!json_is_string(v)) {
			feed_issue(d, "course", feed_course_item(d, path),
				   "bad-type", "\"%s\" is %s, not a string",
				   fd->key, feed_json_type(v));
			return -1;
		}
		s = json_string_value(v);
		len = json_string_length(v);
		if (strlen(s) != len) {
			feed_issue(d, "course", feed_course_item(d, path),
				   "nul-byte", "\"%s\" contains a NUL byte",
				   fd->key);
			return -1;
		}
		if (strspn(s, " \t\r\n") == len) {
			if (!fd->required)
				continue;
			feed_issue(d, "course", feed_course_item(d, path),
				   "missing-field", "\"%s\" is empty", fd->key);
			return -1;
		}
		if (fd->shown && (ctl = text_find_control(s, len, &at)) != -1) {
			feed_issue(d, "course", feed_course_item(d, path),
				   "control-character",
				   "\"%s\" holds a control character (U+%04X "
				   "at character %zu): names hold none",
				   fd->key, (unsigned)ctl, at + 1);
			return -1;
		}
		if ((chars = feed_utf8_chars(s, len)) > fd->max_chars) {
			feed_issue(d, "course", feed_course_item(d, path),
				   "too-long",
				   "\"%s\" has %zu characters, more than %zu",
				   fd->key, chars, fd->max_chars);
			return -1;
		}
		*(char **)((char *)c + fd->offset) =
		    feed_strndup(d->st, s, len);
		if (i == 0)
			d->course = c->shortname;
	}
	return 0;
}

/* The integer fields and "visible"; absent or null means the default. */
static int
feed_course_numbers(struct feed_decoder *d, json_t *o, struct feed_course *c)
{
	const struct feed_int_field *fd;
	json_int_t n;
	json_t *v;
	size_t i;

	for (i = 0; i < nitems(feed_int_fields); i++) {
		fd = &feed_int_fields[i];
		v = json_object_get(o, fd->key);
		if (v == NULL || json_is_null(v))
			continue;
		if (!json_is_integer(v) ||
		    (n = json_integer_value(v)) < fd->min || n > fd->max) {
			feed_issue(
			    d, "course", d->course, "bad-value",
			    "\"%s\" must be an integer from %lld to %lld",
			    fd->key, (long long)fd->min, (long long)fd->max);
			return -1;
		}
		*(int64_t *)((char *)c + fd->offset) = n;
	}
	c->visible = -1;
	v = json_object_get(o, "visible");
	if (json_is_boolean(v))
		c->visible = json_is_true(v);
	else if (json_is_integer(v) &&
		 (json_integer_value(v) == 0 || json_integer_value(v) == 1))
		c->visible = (int)json_integer_value(v);
	else if (v != NULL && !json_is_null(v)) {
		feed_issue(d, "course", d->course, "bad-value",
			   "\"visible\" must be true, false, 0 or 1");
		return -1;
	}
	/* Moodle refuses these (errorcode enddatebeforestartdate). */
	if (c->startdate != 0 && c->enddate != 0 && c->enddate < c->startdate) {
		feed_issue(d, "course", d->course, "bad-value",
			   "\"enddate\" is before \"startdate\"");
		return -1;
	}
	return 0;
}

/* Trim and lower-case raw into d->user the way Moodle cleans a username;
 * return the length, or -1 when Moodle would refuse or alter it anyway. */
static int
feed_username(struct feed_decoder *d, const char *raw, size_t len)
{
	size_t i, n = 0;
	unsigned char ch;

	while (len > 0 && isspace((unsigned char)raw[len - 1]))
		len--;
	while (len > 0 && isspace((unsigned char)*raw))
		raw++, len--;
	if (len == 0 || len > FEED_MAX_USERNAME)
		return -1;
	for (i = 0; i < len; i++) {
		ch = (unsigned char)tolower((unsigned char)raw[i]);
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		      ch == '.' || ch == '_' || ch == '@' || ch == '-'))
			return -1;
		d->user[n++] = (char)ch;
	}
	d->user[n] = '\0';
	return (int)n;
}

/* Remember a user whose record here was skipped: plan leaves them alone. */
static void
feed_skip_user(struct feed_decoder *d, const char *username)
{
	if (d->nskipusers == d->capskipusers) {
		d->capskipusers = d->capskipusers ? 2 * d->capskipusers : 8;
		d->skipusers = xreallocarray(d->skipusers, d->capskipusers,
					     sizeof *d->skipusers);
	}
	d->skipusers[d->nskipusers++] =
	    feed_strndup(d->st, username, strlen(username));
}

static void feed_participant_issue(struct feed_decoder *d, size_t idx,
				   const char *user, const char *code,
				   const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* A participant issue; its item is "shortname/username" when the username
 * is known, "shortname/participants[N]" otherwise. */
static void
feed_participant_issue(struct feed_decoder *d, size_t idx, const char *user,
		       const char *code, const char *fmt, ...)
{
	char *item, *msg;
	va_list ap;

	if (user != NULL)
		xasprintf(&item, "%s/%s", d->course, user);
	else
		xasprintf(&item, "%s/participants[%zu]", d->course, idx);
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		fatal("vasprintf");
	va_end(ap);
	feed_issue(d, "participant", item, code, "%s", msg);
	free(msg);
	free(item);
}

/* The Moodle role id of a participant, or -1 (issue recorded). */
static int
feed_role(struct feed_decoder *d, json_t *p, size_t idx)
{
	json_t *v = json_object_get(p, "roleid");
	char *name;
	int id;

	if (v == NULL || json_is_null(v))
		return d->default_role;
	if (!json_is_string(v)) {
		feed_participant_issue(d, idx, d->user, "bad-type",
				       "\"roleid\" is %s, not a role name",
				       feed_json_type(v));
		return -1;
	}
	if (strlen(json_string_value(v)) != json_string_length(v)) {
		feed_participant_issue(d, idx, d->user, "nul-byte",
				       "\"roleid\" contains a NUL byte");
		return -1;
	}
	if ((id = config_role_id(d->cfg, json_string_value(v))) < 0) {
		name = feed_sanitise(json_string_value(v),
				     json_string_length(v), FEED_SNIPPET);
		feed_participant_issue(d, idx, d->user, "unknown-role",
				       "unknown role \"%s\" (not in [roles])",
				       name);
		free(name);
	}
	return id;
}

/* Validate one participant and add it to the course being decoded. */
static void
feed_participant(struct feed_decoder *d, json_t *p, size_t idx)
{
	const char *raw;
	char *shown;
	json_t *v;
	size_t len;
	int n, role;

	if (!json_is_object(p)) {
		feed_participant_issue(d, idx, NULL, "bad-type",
				       "participant is %s, not an object",
				       feed_json_type(p));
		return;
	}
	v = json_object_get(p, "username");
	if (v == NULL || json_is_null(v)) {
		feed_participant_issue(d, idx, NULL, "missing-field",
				       "\"username\" is missing");
		return;
	}
	if (!json_is_string(v)) {
		feed_participant_issue(d, idx, NULL, "bad-type",
				       "\"username\" is %s, not a string",
				       feed_json_type(v));
		return;
	}
	raw = json_string_value(v);
	len = json_string_length(v);
	if (strlen(raw) != len) {
		feed_participant_issue(d, idx, NULL, "nul-byte",
				       "\"username\" contains a NUL byte");
		return;
	}
	if (strspn(raw, " \t\r\n\v\f") == len) {
		feed_participant_issue(d, idx, NULL, "missing-field",
				       "\"username\" is empty");
		return;
	}
	if ((n = feed_username(d, raw, len)) < 0) {
		shown = feed_sanitise(raw, len, FEED_SNIPPET);
		feed_participant_issue(
		    d, idx, shown, "bad-username",
		    "username \"%s\" is not one Moodle keeps as it is "
		    "(1 to %d of a-z 0-9 . _ @ -)",
		    shown, FEED_MAX_USERNAME);
		free(shown);
		return;
	}
	if ((role = feed_role(d, p, idx)) < 0) {
		feed_skip_user(d, d->user);
		return;
	}
	if (d->nparts == d->capparts) {
		d->capparts = d->capparts ? 2 * d->capparts : 64;
		d->parts =
		    xreallocarray(d->parts, d->capparts, sizeof *d->parts);
	}
	d->parts[d->nparts].username = feed_strndup(d->st, d->user, (size_t)n);
	d->parts[d->nparts++].roleid = role;
}

static int
feed_participant_cmp(const void *a, const void *b)
{
	const struct feed_participant *pa = a, *pb = b;
	int c = strcmp(pa->username, pb->username);

	if (c != 0)
		return c;
	return (pa->roleid > pb->roleid) - (pa->roleid < pb->roleid);
}

static int
feed_str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort and squeeze duplicates out of an array of strings; new count. */
static size_t
feed_unique_strings(char **v, size_t n)
{
	size_t i, o = 0;

	if (n == 0)
		return 0;
	qsort(v, n, sizeof *v, feed_str_cmp);
	for (i = 1; i < n; i++)
		if (strcmp(v[i], v[o]) != 0)
			v[++o] = v[i];
	return o + 1;
}

/* The participants of a course: validated, sorted by (username, roleid),
 * duplicates squeezed out, copied into the arena at their final size. */
static int
feed_participants(struct feed_decoder *d, json_t *o, struct feed_course *c)
{
	json_t *list = json_object_get(o, "participants");
	size_t i, n;

	d->nparts = d->nskipusers = 0;
	if (list != NULL && !json_is_null(list) && !json_is_array(list)) {
		feed_issue(d, "course", d->course, "bad-type",
			   "\"participants\" is %s, not an array",
			   feed_json_type(list));
		return -1;
	}
	for (i = 0; i < json_array_size(list); i++)
		feed_participant(d, json_array_get(list, i), i);

	if (d->nparts > 1)
		qsort(d->parts, d->nparts, sizeof *d->parts,
		      feed_participant_cmp);
	for (i = 0, n = 0; i < d->nparts; i++)
		if (n == 0 ||
		    feed_participant_cmp(&d->parts[i], &d->parts[n - 1]) != 0)
			d->parts[n++] = d->parts[i];
	c->nparticipants = n;
	c->participants = feed_alloc(d->st, n * sizeof *c->participants,
				     _Alignof(struct feed_participant));
	if (n > 0)
		memcpy(c->participants, d->parts, n * sizeof *c->participants);

	n = feed_unique_strings(d->skipusers, d->nskipusers);
	c->nskipped_users = n;
	c->skipped_users =
	    feed_alloc(d->st, n * sizeof *c->skipped_users, _Alignof(char *));
	if (n > 0)
		memcpy(c->skipped_users, d->skipusers,
		       n * sizeof *c->skipped_users);
	return 0;
}

static void
feed_skip_course(struct feed_decoder *d, const char *shortname)
{
	struct feed *f = &d->st->feed;

	if (f->nskipped == d->capskipped) {
		d->capskipped = d->capskipped ? 2 * d->capskipped : 16;
		f->skipped = xreallocarray(f->skipped, d->capskipped,
					   sizeof *f->skipped);
	}
	f->skipped[f->nskipped++] = (char *)shortname;
}

/* Validate one element of the courses array and keep it when it is good. */
static void
feed_course(struct feed_decoder *d, json_t *o, size_t idx)
{
	struct feed *f = &d->st->feed;
	struct feed_course c;
	char path[48];

	memset(&c, 0, sizeof c);
	d->course = NULL;
	snprintf(path, sizeof path, "courses[%zu]", idx);
	if (!json_is_object(o)) {
		feed_issue(d, "course", path, "bad-type",
			   "course is %s, not an object", feed_json_type(o));
		return;
	}
	if (feed_course_strings(d, o, &c, path) == -1 ||
	    feed_course_numbers(d, o, &c) == -1 ||
	    feed_participants(d, o, &c) == -1) {
		if (d->course != NULL)
			feed_skip_course(d, d->course);
		return;
	}
	if (f->ncourses == d->capcourses) {
		d->capcourses = d->capcourses ? 2 * d->capcourses : 64;
		f->courses = xreallocarray(f->courses, d->capcourses,
					   sizeof *f->courses);
	}
	f->courses[f->ncourses++] = c;
}

/* ---- the whole feed ----------------------------------------------------- */

/* The elements of a courses array starting at *p ('['). */
static int
feed_courses(struct feed_decoder *d, const char **p)
{
	const char *q = feed_ws(d, *p + 1);
	json_t *v;

	if (q < d->end && *q == ']') {
		*p = q + 1;
		return 0;
	}
	for (;;) {
		if ((v = feed_value(d, &q)) == NULL)
			return -1;
		feed_course(d, v, d->records++);
		json_decref(v);
		q = feed_ws(d, q);
		if (q < d->end && *q == ',') {
			q = feed_ws(d, q + 1);
			continue;
		}
		if (q < d->end && *q == ']')
			break;
		return feed_syntax(d, q, "',' or ']' expected");
	}
	*p = q + 1;
	return 0;
}

/* A top-level object: find "courses", parse (and drop) anything else. */
static int
feed_object(struct feed_decoder *d, const char **p)
{
	json_t *keys[FEED_MAX_TOP_KEYS], *key, *v;
	const char *q = feed_ws(d, *p + 1);
	size_t nkeys = 0, i;
	bool have_courses = false;
	int rc = -1;

	if (q < d->end && *q == '}')
		goto done;
	for (;;) {
		if (q >= d->end || *q != '"') {
			feed_syntax(d, q, "string or '}' expected");
			goto out;
		}
		if ((key = feed_value(d, &q)) == NULL)
			goto out;
		for (i = 0; i < nkeys; i++)
			if (json_equal(keys[i], key))
				break;
		if (i < nkeys || nkeys == nitems(keys)) {
			json_decref(key);
			feed_syntax(d, q - 1,
				    i < nkeys ? "duplicate top-level key"
					      : "too many top-level keys");
			goto out;
		}
		keys[nkeys++] = key;
		q = feed_ws(d, q);
		if (q >= d->end || *q != ':') {
			feed_syntax(d, q, "':' expected");
			goto out;
		}
		q = feed_ws(d, q + 1);
		if (strcmp(json_string_value(key), "courses") == 0 &&
		    json_string_length(key) == 7 && q < d->end && *q == '[') {
			if (feed_courses(d, &q) == -1)
				goto out;
			have_courses = true;
		} else {
			if ((v = feed_value(d, &q)) == NULL)
				goto out;
			if (strcmp(json_string_value(key), "courses") == 0 &&
			    json_string_length(key) == 7) {
				xasprintf(&d->cause,
					  "feed's \"courses\" is %s, not an "
					  "array",
					  feed_json_type(v));
				json_decref(v);
				goto out;
			}
			json_decref(v);
		}
		q = feed_ws(d, q);
		if (q < d->end && *q == ',') {
			q = feed_ws(d, q + 1);
			continue;
		}
		if (q < d->end && *q == '}')
			break;
		feed_syntax(d, q, "',' or '}' expected");
		goto out;
	}
done:
	if (!have_courses) {
		xasprintf(&d->cause, "feed has no \"courses\" array");
		goto out;
	}
	*p = q + 1;
	rc = 0;
out:
	for (i = 0; i < nkeys; i++)
		json_decref(keys[i]);
	return rc;
}

static int
feed_course_cmp(const void *a, const void *b)
{
	return strcmp(((const struct feed_course *)a)->shortname,
		      ((const struct feed_course *)b)->shortname);
}

/* Drop every copy of a shortname that occurs more than once (counting
 * skipped records): we cannot know which copy is right. */
static void
feed_duplicates(struct feed_decoder *d)
{
	struct feed *f = &d->st->feed;
	size_t i, j, o = 0, nskipped = f->nskipped, copies, k;
	const char *name;

	if (f->ncourses > 1)
		qsort(f->courses, f->ncourses, sizeof *f->courses,
		      feed_course_cmp);
	if (nskipped > 1)
		qsort(f->skipped, nskipped, sizeof *f->skipped, feed_str_cmp);
	for (i = 0; i < f->ncourses; i = j) {
		name = f->courses[i].shortname;
		for (j = i + 1; j < f->ncourses &&
				strcmp(f->courses[j].shortname, name) == 0;
		     j++)
			;
		copies = j - i;
		if (nskipped > 0 &&
		    bsearch(&name, f->skipped, nskipped, sizeof *f->skipped,
			    feed_str_cmp) != NULL)
			for (k = 0; k < nskipped; k++)
				copies += strcmp(f->skipped[k], name) == 0;
		if (copies == 1) {
			f->courses[o++] = f->courses[i];
			continue;
		}
		feed_issue(d, "course", name, "duplicate-shortname",
			   "shortname appears %zu times in the feed; all "
			   "copies skipped",
			   copies);
		feed_skip_course(d, name);
	}
	f->ncourses = o;
	f->nskipped = feed_unique_strings(f->skipped, f->nskipped);
}

/* The default role named by sync.default_role (or given as a number). */
static int
feed_default_role(const struct config *cfg, char **cause)
{
	int64_t n;
	int id;

	if (cfg->sync_default_role == NULL) {
		xasprintf(cause, "sync.default_role is not set");
		return -1;
	}
	if ((id = config_role_id(cfg, cfg->sync_default_role)) >= 0)
		return id;
	if (parse_int64(cfg->sync_default_role, 1, INT_MAX, &n) == 0)
		return (int)n;
	xasprintf(cause, "sync.default_role \"%s\" is not a [roles] name",
		  cfg->sync_default_role);
	return -1;
}

int
feed_decode(const struct config *cfg, const char *body, size_t len,
	    struct feed **ret, char **cause)
{
	struct feed_decoder d;
	const char *p;
	json_t *v;
	int rc = -1;

	*ret = NULL;
	memset(&d, 0, sizeof d);
	d.cfg = cfg;
	d.body = body;
	d.end = body + len;
	d.st = xcalloc(1, sizeof *d.st);
	d.user = xmalloc(FEED_MAX_USERNAME + 1);
	/* jansson reports how far it read as an int. */
	if (len > INT_MAX) {
		xasprintf(&d.cause,
			  "feed is %zu bytes, more than the %d this "
			  "decoder takes",
			  len, INT_MAX);
		goto out;
	}
	if (cfg->source_max_size > 0 && len > (uint64_t)cfg->source_max_size) {
		xasprintf(&d.cause,
			  "feed is %zu bytes, more than source.max_size (%lld)",
			  len, (long long)cfg->source_max_size);
		goto out;
	}
	if ((d.default_role = feed_default_role(cfg, &d.cause)) < 0)
		goto out;

	p = body;
	if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3; /* a byte order mark, as some exporters write */
	p = feed_ws(&d, p);
	if (p == d.end) {
		xasprintf(&d.cause, "feed is empty");
		goto out;
	}
	if (*p == '[') {
		if (feed_courses(&d, &p) == -1)
			goto out;
	} else if (*p == '{') {
		if (feed_object(&d, &p) == -1)
			goto out;
	} else {
		if ((v = feed_value(&d, &p)) == NULL)
			goto out;
		xasprintf(&d.cause,
			  "feed is %s, not an object with \"courses\" or an "
			  "array",
			  feed_json_type(v));
		json_decref(v);
		goto out;
	}
	if ((p = feed_ws(&d, p)) != d.end) {
		feed_syntax(&d, p, "end of file expected");
		goto out;
	}
	if (d.records == 0) {
		xasprintf(&d.cause, "feed has no courses");
		goto out;
	}
	feed_duplicates(&d);
	if (d.st->feed.ncourses == 0) {
		xasprintf(&d.cause,
			  "feed has no valid course (%zu records, first "
			  "problem: %s: %s)",
			  d.records,
			  d.st->feed.nissues ? d.st->feed.issues[0].item : "?",
			  d.st->feed.nissues ? d.st->feed.issues[0].message
					     : "?");
		goto out;
	}
	if (d.issues_dropped > 0) {
		d.st->feed.nissues--;
		feed_issue(&d, "feed", "feed", "too-many-issues",
			   "%zu more skipped records not listed",
			   d.issues_dropped + 1);
	}
	*ret = &d.st->feed;
	d.st = NULL;
	rc = 0;
out:
	if (rc == -1)
		*cause = d.cause;
	else
		free(d.cause);
	feed_free(d.st != NULL ? &d.st->feed : NULL);
	free(d.parts);
	free(d.skipusers);
	free(d.user);
	return rc;
}
