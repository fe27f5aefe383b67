/* libFuzzer target: the Moodle client's answer parsing, call by call. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"
#include "moodle.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct moodle *fuzz_client;

static void
fuzz_cleanup(void)
{
	moodle_free(fuzz_client);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moodle_error err = { 0 };
	struct moodle_reply r;
	const char *why;
	int rc;

	if (fuzz_moodle_reply(data, size, &r) == -1)
		return 0;
	if (fuzz_client == NULL) {
		fuzz_client = fuzz_moodle_new();
		atexit(fuzz_cleanup);
	}
	rc = moodle_parse_answer(fuzz_client, &r, &err);
	if ((why = fuzz_moodle_check(rc, &err, &r)) != NULL) {
		fprintf(stderr, "%s, HTTP %ld: %s (rc %d)\n  %s: %s\n",
			r.function, r.status, why, rc,
			err.errorcode != NULL ? err.errorcode : "(null)",
			err.message != NULL ? err.message : "(null)");
		abort();
	}
	moodle_error_clear(&err);
	return 0;
}
