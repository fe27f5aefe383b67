/* libFuzzer target: feed_decode, the academic system's feed decoder. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "feed.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config cfg;
	struct feed *f = NULL;
	char *cause = NULL;
	const char *why;
	int rc;

	fuzz_feed_config(&cfg);
	rc = feed_decode(&cfg, (const char *)data, size, &f, &cause);
	/* An abort is how libFuzzer learns of a broken promise. */
	if ((why = fuzz_feed_check(rc, f, cause)) != NULL) {
		fprintf(stderr, "feed_decode: %s (rc %d, cause %s)\n", why, rc,
			cause != NULL ? cause : "(null)");
		abort();
	}
	feed_free(f);
	free(cause);
	return 0;
}
