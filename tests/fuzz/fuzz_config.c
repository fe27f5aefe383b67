/* libFuzzer target: config_load, the configuration file parser. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static char *fuzz_dir, *fuzz_path;

static void
fuzz_cleanup(void)
{
	fuzz_config_dir_remove(fuzz_dir, fuzz_path);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c = NULL;
	char *errors = NULL;
	const char *why;
	int rc;

	/* One directory and file per process, rewritten for each input. */
	if (fuzz_path == NULL) {
		fuzz_path = fuzz_config_dir(&fuzz_dir);
		atexit(fuzz_cleanup);
	}
	fuzz_write_file(fuzz_path, data, size);
	rc = config_load(fuzz_path, &c, &errors);
	if ((why = fuzz_config_check(rc, c, errors, fuzz_path, data, size)) !=
	    NULL) {
		fprintf(stderr, "config_load: %s (rc %d)\n%s\n", why, rc,
			errors != NULL ? errors : "(no errors)");
		fuzz_cleanup(); /* abort() skips atexit */
		abort();
	}
	config_free(c);
	free(errors);
	return 0;
}
