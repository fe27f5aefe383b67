/* page: data reaches the HTML only escaped, whatever the feed holds. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "page.h"
#include "tap.h"

/* What writing s as text gives. */
static char *
text_of(const char *s)
{
	struct page *p = page_new();
	char *out;

	page_text(p, s);
	out = strdup(page_data(p, NULL));
	page_free(p);
	return out;
}

static void
is_text(const char *in, const char *want, const char *what)
{
	char *got = text_of(in);

	is_str(got, want, "%s", what);
	free(got);
}

static void
is_count(int64_t v, const char *want)
{
	struct page *p = page_new();

	page_count(p, v);
	is_str(page_data(p, NULL), want, "count %s", want);
	page_free(p);
}

int
main(void)
{
	struct page *p;
	size_t len;
	char *big;

	is_text("<script>alert(1)</script>",
		"&lt;script&gt;alert(1)&lt;/script&gt;",
		"a course named <script> is text");
	is_text("\"><img src=x onerror=alert(1)>",
		"&quot;&gt;&lt;img src=x onerror=alert(1)&gt;",
		"an attribute breakout is text");
	is_text("Tom & Jerry's", "Tom &amp; Jerry&#39;s", "& and '");
	is_text("Économie 日本 😀", "Économie 日本 😀", "UTF-8 kept as is");
	is_text("a\tb\nc", "a\tb\nc", "tab and newline kept");
	is_text("a\x01"
		"b\x1b[31mc\x7f",
		"a\xef\xbf\xbd"
		"b\xef\xbf\xbd[31mc\xef\xbf\xbd",
		"C0 controls and DEL replaced");
	is_text("a\xc2\x85z", "a\xef\xbf\xbdz", "a C1 control replaced");
	is_text("\xff\xfe", "\xef\xbf\xbd\xef\xbf\xbd", "bytes never in UTF-8");
	is_text("\xc0\xbcscript", "\xef\xbf\xbd\xef\xbf\xbdscript",
		"an overlong '<' is not a '<'");
	is_text("\xe0\x80\xbc", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
		"a three-byte overlong '<'");
	is_text("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
		"a surrogate");
	is_text("\xf4\x90\x80\x80",
		"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
		"past U+10FFFF");
	is_text("end\xe2\x82", "end\xef\xbf\xbd\xef\xbf\xbd",
		"a sequence cut by the end of the string");

	p = page_new();
	page_markup(p, "<td");
	page_attr(p, "title", "\"><img src=x onerror=alert(1)>");
	page_markup(p, ">");
	page_text(p, NULL);
	page_textf(p, "%s: %d", "<b>", 3);
	page_markup(p, "</td>");
	is_str(page_data(p, &len),
	       "<td title=\"&quot;&gt;&lt;img src=x onerror=alert(1)&gt;\">"
	       "&lt;b&gt;: 3</td>",
	       "attribute quoted and escaped; textf escapes its result");
	is_int(len, strlen(page_data(p, NULL)), "length returned");
	page_free(p);

	p = page_new();
	page_href(p, "href", "/history", "course", "a&b c", "user", "", "run",
		  NULL, "since", "x\"y'<", (char *)NULL);
	is_str(page_data(p, NULL),
	       " href=\"/history?course=a%26b%20c&amp;since=x%22y%27%3C\"",
	       "query values percent-encoded, empty ones left out, & "
	       "escaped");
	page_free(p);

	p = page_new();
	page_hidden(p, "csrf", "ab\"cd");
	is_str(page_data(p, NULL),
	       "<input type=\"hidden\" name=\"csrf\" value=\"ab&quot;cd\">",
	       "hidden field");
	page_free(p);

	is_count(0, "0");
	is_count(999, "999");
	is_count(1000, "1,000");
	is_count(1234567, "1,234,567");
	is_count(-1234567, "-1,234,567");
	is_count(-100, "-100");
	is_count(INT64_MIN, "-9,223,372,036,854,775,808");

	setenv("TZ", "UTC", 1);
	tzset();
	p = page_new();
	page_time(p, 0);
	page_markup(p, "|");
	page_time(p, 1796286900);
	is_str(page_data(p, NULL), "never|2026-12-03 08:35 UTC",
	       "times in the local zone, named");
	page_free(p);
	setenv("TZ", "Europe/Berlin", 1);
	tzset();
	p = page_new();
	page_time(p, 1796286900);
	is_str(page_data(p, NULL), "2026-12-03 09:35 CET",
	       "the server's zone, not UTC");
	page_free(p);

	big = malloc(100001);
	memset(big, '<', 100000);
	big[100000] = '\0';
	p = page_new();
	page_text(p, big);
	page_data(p, &len);
	is_int(len, 400000, "a long text grows the buffer");
	ok(strncmp(page_data(p, NULL) + 399996, "&lt;", 4) == 0 &&
	       strchr(page_data(p, NULL), '<') == NULL,
	   "and is escaped to its end");
	page_free(p);
	free(big);
	return done_testing();
}
