/* The web console's users: the users file, yescrypt hashes, checking. */
#ifndef WEBUSER_H
#define WEBUSER_H

#include <stdbool.h>
#include <stddef.h>

struct config;

#define WEBUSER_NAME_MAX     64
#define WEBUSER_PASSWORD_MIN 8
#define WEBUSER_PASSWORD_MAX 1024

/* The users of one users file ("NAME:HASH" lines; blank lines and lines
 * starting with # are kept out), in file order. */
struct webusers;

/* Where the users come from: the systemd credential web-users when
 * $CREDENTIALS_DIRECTORY holds it and it is not empty (the shipped units'
 * default when there is no users file), else web.users_file.  Into a new
 * string. */
char *webuser_path(const struct config *);

/* Read path.  A file that does not exist is an empty list (a site that
 * has no console users yet still starts); anything else wrong with it is
 * -1 with *cause ("PATH:LINE: ...").  The file may be at most 1 MiB. */
int webusers_load(const char *path, struct webusers **ret, char **cause);
struct webusers *webusers_new(void);
void webusers_free(struct webusers *);

size_t webusers_count(const struct webusers *);
const char *webusers_name(const struct webusers *, size_t i);

/* Whether name's password is password.  Unknown names cost the same time
 * as known ones (a hash is computed either way) and the comparison of
 * the hashes takes the same time wherever they differ. */
bool webusers_check(const struct webusers *, const char *name,
		    const char *password);

/* Add name with a fresh yescrypt hash of password, or replace its hash.
 * -1 with *cause for a bad name or password. */
int webusers_set(struct webusers *, const char *name, const char *password,
		 char **cause);
/* Remove name: 0, or -1 when it is not there. */
int webusers_remove(struct webusers *, const char *name);
/* Write the list to path atomically, mode 0600 whatever the umask. */
int webusers_save(const struct webusers *, const char *path, char **cause);

/* A user name may hold letters, digits and . _ @ - (1 to
 * WEBUSER_NAME_MAX characters): no ':' or newline, nothing a history row
 * or a log line would need quoting for. */
bool webuser_name_ok(const char *);

/* A yescrypt hash of password (crypt(3), "$y$..."), into a new string;
 * NULL with *cause when libcrypt fails. */
char *webuser_hash(const char *password, char **cause);

#endif
