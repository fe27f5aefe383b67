/* The web console's users: the users file, yescrypt hashes, checking. */
#include <crypt.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "log.h"
#include "util.h"
#include "webuser.h"

#define WEBUSER_FILE_MAX  (1024 * 1024)
#define WEBUSER_CRED_NAME "web-users"

/* Checked against when the name is unknown, so that a wrong name costs
 * what a wrong password costs (the password of no one). */
#define WEBUSER_DUMMY_HASH                                                     \
	"$y$j9T$4VOYHxEVdPZmg30fNNj.5/$atfs7yNYc8XC8oxB2Ks1FLs8E4Vo/"          \
	"fmWahR965aS/T6"

struct webuser {
	char *name;
	char *hash;
};

struct webusers {
	struct webuser *v;
	size_t n;
};

char *
webuser_path(const struct config *conf)
{
	const char *credir = getenv("CREDENTIALS_DIRECTORY");
	struct stat st;
	char *cred;

	if (credir != NULL && *credir != '\0') {
		xasprintf(&cred, "%s/%s", credir, WEBUSER_CRED_NAME);
		/* empty: the unit's SetCredential= default, standing for a
		 * users file that does not exist */
		if (stat(cred, &st) == 0 && st.st_size > 0)
			return cred;
		free(cred);
	}
	return xstrdup(conf->web_users_file);
}

struct webusers *
webusers_new(void)
{
	return xcalloc(1, sizeof(struct webusers));
}

static void
webuser_free_hash(char *hash)
{
	if (hash != NULL) {
		explicit_bzero(hash, strlen(hash));
		free(hash);
	}
}

void
webusers_free(struct webusers *u)
{
	if (u == NULL)
		return;
	for (size_t i = 0; i < u->n; i++) {
		free(u->v[i].name);
		webuser_free_hash(u->v[i].hash);
	}
	free(u->v);
	free(u);
}

size_t
webusers_count(const struct webusers *u)
{
	return u->n;
}

const char *
webusers_name(const struct webusers *u, size_t i)
{
	return i < u->n ? u->v[i].name : NULL;
}

bool
webuser_name_ok(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > WEBUSER_NAME_MAX || name[0] == '-')
		return false;
	for (const char *p = name; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("._@-", *p) != NULL))
			return false;
	return true;
}

/* A stored hash: crypt(3)'s alphabet after a "$id$" prefix; yescrypt
 * ($y$), and the other strong methods libcrypt checks ($gy$, $7$, $2b$,
 * $6$) are taken as they are. */
static bool
webuser_hash_ok(const char *hash)
{
	if (hash[0] != '$' || strlen(hash) < 13)
		return false;
	for (const char *p = hash; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("$./=", *p) != NULL))
			return false;
	return true;
}

static struct webuser *
webusers_find(const struct webusers *u, const char *name)
{
	for (size_t i = 0; i < u->n; i++)
		if (strcmp(u->v[i].name, name) == 0)
			return &u->v[i];
	return NULL;
}

static void
webusers_append(struct webusers *u, const char *name, char *hash)
{
	u->v = xreallocarray(u->v, u->n + 1, sizeof(*u->v));
	u->v[u->n].name = xstrdup(name);
	u->v[u->n].hash = hash;
	u->n++;
}

int
webusers_load(const char *path, struct webusers **ret, char **cause)
{
	struct webusers *u = webusers_new();
	char *text = NULL, *line, *next, *colon;
	struct stat st;
	int lineno = 0, rv = -1;

	*ret = NULL;
	if (stat(path, &st) == -1) {
		if (errno == ENOENT) {
			*ret = u;
			return 0;
		}
		xasprintf(cause, "%s: %s", path, strerror(errno));
		goto out;
	}
	/* the hashes are as good as the passwords to a patient cracker */
	if (S_ISREG(st.st_mode) && (st.st_mode & 077) != 0) {
		xasprintf(cause,
			  "%s is %s by group or others (mode %04o); chmod 600 "
			  "it",
			  path, (st.st_mode & 044) ? "readable" : "writable",
			  (unsigned)(st.st_mode & 07777));
		goto out;
	}
	if (read_secret_file(path, WEBUSER_FILE_MAX, &text, cause) == -1)
		goto out;
	for (line = text; line != NULL; line = next) {
		lineno++;
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		line[strcspn(line, "\r")] = '\0';
		if (*line == '\0' || *line == '#')
			continue;
		if ((colon = strchr(line, ':')) == NULL) {
			xasprintf(cause, "%s:%d: not NAME:HASH", path, lineno);
			goto out;
		}
		*colon = '\0';
		if (!webuser_name_ok(line)) {
			xasprintf(cause,
				  "%s:%d: bad user name (letters, digits and "
				  ". _ @ -, at most %d)",
				  path, lineno, WEBUSER_NAME_MAX);
			goto out;
		}
		if (!webuser_hash_ok(colon + 1)) {
			xasprintf(cause,
				  "%s:%d: the hash of %s is not a crypt(3) "
				  "hash (webcoursectl web-user add %s sets "
				  "one)",
				  path, lineno, line, line);
			goto out;
		}
		if (webusers_find(u, line) != NULL) {
			xasprintf(cause, "%s:%d: user %s is there twice", path,
				  lineno, line);
			goto out;
		}
		webusers_append(u, line, xstrdup(colon + 1));
	}
	*ret = u;
	u = NULL;
	rv = 0;
out:
	if (text != NULL) {
		explicit_bzero(text, strlen(text));
		free(text);
	}
	webusers_free(u);
	return rv;
}

char *
webuser_hash(const char *password, char **cause)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	char *out = NULL;

	/* count 0: libcrypt's default cost for yescrypt; salt from the
	 * kernel's random source */
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof(setting)) ==
	    NULL) {
		xasprintf(cause, "crypt_gensalt: %s", strerror(errno));
		return NULL;
	}
	cd = xcalloc(1, sizeof(*cd));
	if (crypt_rn(password, setting, cd, sizeof(*cd)) == NULL ||
	    cd->output[0] == '*')
		xasprintf(cause, "crypt: %s", strerror(errno));
	else
		out = xstrdup(cd->output);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return out;
}

/* a == b, in a time that depends on their lengths only. */
static bool
webuser_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), n = la > lb ? la : lb;
	volatile unsigned char diff = la != lb;

	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(i < la ? a[i] : 0) ^
			(unsigned char)(i < lb ? b[i] : 0);
	return diff == 0;
}

bool
webusers_check(const struct webusers *u, const char *name, const char *password)
{
	const struct webuser *w = webusers_find(u, name);
	const char *hash = w != NULL ? w->hash : WEBUSER_DUMMY_HASH;
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	bool match;

	match = crypt_rn(password, hash, cd, sizeof(*cd)) != NULL &&
		cd->output[0] != '*' && webuser_equal(cd->output, hash);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return w != NULL && match;
}

int
webusers_set(struct webusers *u, const char *name, const char *password,
	     char **cause)
{
	struct webuser *w;
	size_t len = strlen(password);
	char *hash;

	if (!webuser_name_ok(name)) {
		xasprintf(cause,
			  "bad user name \"%s\" (letters, digits and . _ @ "
			  "-, at most %d, not starting with -)",
			  name, WEBUSER_NAME_MAX);
		return -1;
	}
	if (len < WEBUSER_PASSWORD_MIN || len > WEBUSER_PASSWORD_MAX) {
		xasprintf(cause, "a password has %d to %d characters",
			  WEBUSER_PASSWORD_MIN, WEBUSER_PASSWORD_MAX);
		return -1;
	}
	if ((hash = webuser_hash(password, cause)) == NULL)
		return -1;
	if ((w = webusers_find(u, name)) != NULL) {
		webuser_free_hash(w->hash);
		w->hash = hash;
	} else
		webusers_append(u, name, hash);
	return 0;
}

int
webusers_remove(struct webusers *u, const char *name)
{
	struct webuser *w = webusers_find(u, name);

	if (w == NULL)
		return -1;
	free(w->name);
	webuser_free_hash(w->hash);
	memmove(w, w + 1, (size_t)(u->v + u->n - (w + 1)) * sizeof(*w));
	u->n--;
	return 0;
}

int
webusers_save(const struct webusers *u, const char *path, char **cause)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int rv;

	if ((f = open_memstream(&text, &len)) == NULL)
		fatal("open_memstream");
	fprintf(f, "# webcoursed console users (webcoursectl web-user)\n");
	for (size_t i = 0; i < u->n; i++)
		fprintf(f, "%s:%s\n", u->v[i].name, u->v[i].hash);
	if (fclose(f) != 0)
		fatal("open_memstream");
	rv = write_file_atomic(path, text, len, 0600, cause);
	free(text);
	return rv;
}
