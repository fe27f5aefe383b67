/* Unit tests for the one rule and the one cleaner for text people read
 * (util.c text_find_control, text_clean; issue 20 item 5). */
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "util.h"

static void
clean_is(const char *in, const char *want, const char *what)
{
	char *got = text_clean(in);

	is_str(got, want, "text_clean: %s", what);
	free(got);
}

int
main(void)
{
	static const struct {
		const char *s;
		int control;
		size_t at;
	} finds[] = {
		{ "PHYS101", -1, 0 },
		{ "Caf\xc3\xa9 \xe4\xb8\xad", -1, 0 },
		{ "t\xc3\xa9\033]0;x\007", 033, 2 },
		{ "two\nlines", '\n', 3 },
		{ "tab\there", '\t', 3 },
		{ "del\177", 0177, 3 },
		{ "\xc3\xa9\xc2\x9b"
		  "2J",
		  0x9b, 1 },
		{ "\xc2\xa0nbsp is text", -1, 0 },
	};
	size_t at;

	for (size_t i = 0; i < nitems(finds); i++) {
		at = 99;
		is_int(text_find_control(finds[i].s, strlen(finds[i].s), &at),
		       finds[i].control, "text_find_control case %zu", i);
		if (finds[i].control != -1)
			is_int(at, finds[i].at, "... at character %zu",
			       finds[i].at);
	}
	clean_is("plain", "plain", "plain text is kept");
	clean_is("Caf\xc3\xa9", "Caf\xc3\xa9", "UTF-8 is kept");
	clean_is("a\033]0;title\007b", "a?]0;title?b", "ESC and BEL become ?");
	clean_is("one\ntwo\r\tthree", "one two  three",
		 "tab, CR and LF become blanks");
	clean_is("csi\xc2\x9b"
		 "2J",
		 "csi?2J", "a C1 control becomes one ?");
	clean_is("lone\x9b byte\xff", "lone? byte?",
		 "bytes that are not UTF-8 become ?");
	clean_is("\177", "?", "DEL becomes ?");
	clean_is("", "", "the empty string");
	return done_testing();
}
