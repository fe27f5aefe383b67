/* `webcoursectl check`: the configured Moodle, live, one line per check. */
#ifndef CHECK_H
#define CHECK_H

#include <stdio.h>

struct config;

/* Call Moodle with the configured URL and token and print one line per
 * check (config, token, functions, category, roles, debugging): "ok: ",
 * "NOT OK: ", "skipped: " (with why: Moodle did not answer, nothing to try
 * the roles in) or "warning: " (debugging left on), then the counts.  0
 * when no check failed, 1 otherwise. */
int check_run(const struct config *, FILE *out);

#endif
