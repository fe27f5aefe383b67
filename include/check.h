/* `webcoursectl check`: the configured Moodle, live, one line per check. */
#ifndef CHECK_H
#define CHECK_H

#include <stdio.h>

struct config;

/* Call Moodle with the configured URL and token and print "ok: ..." or
 * "NOT OK: ..." per check (site, functions, category, roles) and
 * "warning: ..." for debugging left on.  0 when every check passed, 1
 * otherwise. */
int check_run(const struct config *, FILE *out);

#endif
