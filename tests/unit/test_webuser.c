/* webuser: the console's users file, yescrypt hashes and checking. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "tap.h"
#include "util.h"
#include "webuser.h"

static char tmp[] = "/tmp/test_webuser.XXXXXX";

static char *
tmp_path(const char *name)
{
	char *p;

	xasprintf(&p, "%s/%s", tmp, name);
	return p;
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

static char *
slurp(const char *path)
{
	char *text = NULL, *cause = NULL;

	if (read_secret_file(path, 1 << 20, &text, &cause) == -1)
		free(cause);
	return text;
}

/* Loading text as a users file fails with want in its cause. */
static void
load_fails(const char *text, mode_t mode, const char *want, const char *what)
{
	char *path = tmp_path("bad-users"), *cause = NULL;
	struct webusers *u = NULL;

	write_file(path, text, mode);
	ok(webusers_load(path, &u, &cause) == -1 && u == NULL, "%s: refused",
	   what);
	ok(cause != NULL && strstr(cause, want) != NULL, "%s: says \"%s\"",
	   what, want);
	if (cause != NULL && strstr(cause, want) == NULL)
		printf("#   cause: %s\n", cause);
	free(cause);
	unlink(path);
	free(path);
}

static void
test_names(void)
{
	static const struct {
		const char *name;
		bool ok;
	} cases[] = {
		{ "alice", true },
		{ "a.b-c_d@uni.edu", true },
		{ "A1", true },
		{ "", false },
		{ "-rf", false },
		{ "al:ice", false },
		{ "al ice", false },
		{ "al\nice", false },
		{ "<script>", false },
		{ "élise", false },
		{ "x23456789012345678901234567890123456789012345678901234567890"
		  "1234",
		  true },
		{ "x23456789012345678901234567890123456789012345678901234567890"
		  "12345",
		  false },
	};

	for (size_t i = 0; i < nitems(cases); i++)
		is_int(webuser_name_ok(cases[i].name), cases[i].ok,
		       "name \"%s\" %s",
		       strchr(cases[i].name, '\n') ? "al\\nice" : cases[i].name,
		       cases[i].ok ? "allowed" : "refused");
}

static void
test_set_save_load(void)
{
	struct webusers *u = webusers_new(), *back = NULL;
	char *path = tmp_path("web-users"), *cause = NULL, *text;
	struct stat st;
	mode_t old;

	ok(webusers_set(u, "alice", "correct horse", &cause) == 0, "add alice");
	ok(webusers_set(u, "bob", "battery staple", &cause) == 0, "add bob");
	ok(webusers_check(u, "alice", "correct horse"), "alice's password");
	ok(!webusers_check(u, "alice", "correct horsE"), "one letter off");
	ok(!webusers_check(u, "alice", "battery staple"),
	   "bob's password is not alice's");
	ok(!webusers_check(u, "Alice", "correct horse"),
	   "names are case-sensitive");
	ok(!webusers_check(u, "carol", "correct horse"), "unknown name");
	ok(!webusers_check(u, "carol", ""), "unknown name, empty password");
	ok(!webusers_check(u, "alice", ""), "empty password");

	ok(webusers_set(u, "carol", "short", &cause) == -1 && cause != NULL &&
	       strstr(cause, "8 to 1024") != NULL,
	   "a password under 8 characters is refused");
	free(cause);
	cause = NULL;
	ok(webusers_set(u, "ca:rol", "long enough", &cause) == -1 &&
	       cause != NULL && strstr(cause, "bad user name") != NULL,
	   "a name with ':' is refused");
	free(cause);
	cause = NULL;
	is_int(webusers_count(u), 2, "refusals add nobody");

	old = umask(0);
	ok(webusers_save(u, path, &cause) == 0, "saved");
	umask(old);
	ok(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600,
	   "mode 0600 even with umask 0");
	text = slurp(path);
	ok(text != NULL && strstr(text, "\nalice:$y$") != NULL &&
	       strstr(text, "\nbob:$y$") != NULL &&
	       strstr(text, "correct horse") == NULL,
	   "NAME:yescrypt lines, no password");
	free(text);

	ok(webusers_load(path, &back, &cause) == 0, "loaded back");
	is_int(back != NULL ? webusers_count(back) : 0, 2, "two users");
	is_str(back != NULL ? webusers_name(back, 0) : NULL, "alice",
	       "in file order");
	ok(back != NULL && webusers_check(back, "bob", "battery staple"),
	   "bob's password checks after the round trip");

	ok(webusers_set(back, "bob", "new password", &cause) == 0,
	   "a new password for bob");
	ok(!webusers_check(back, "bob", "battery staple") &&
	       webusers_check(back, "bob", "new password"),
	   "replaces the old one");
	is_int(webusers_count(back), 2, "and adds nobody");
	ok(webusers_remove(back, "alice") == 0, "remove alice");
	ok(webusers_remove(back, "alice") == -1, "not there twice");
	ok(!webusers_check(back, "alice", "correct horse"),
	   "a removed user cannot log in");
	is_str(webusers_name(back, 0), "bob", "bob is left");

	chmod(path, 0644);
	webusers_free(back);
	back = NULL;
	ok(webusers_load(path, &back, &cause) == -1 && cause != NULL &&
	       strstr(cause, "readable by group or others (mode 0644)") != NULL,
	   "a users file others may read is refused");
	free(cause);
	unlink(path);
	webusers_free(u);
	free(path);
}

static void
test_load(void)
{
	struct webusers *u = NULL;
	char *path = tmp_path("nonexistent"), *cause = NULL;

	ok(webusers_load(path, &u, &cause) == 0 && u != NULL &&
	       webusers_count(u) == 0,
	   "a users file that does not exist: nobody, no error");
	ok(u != NULL && !webusers_check(u, "alice", "anything at all"),
	   "and nobody logs in");
	webusers_free(u);
	free(path);

	load_fails("# users\nalice\n", 0600, "bad-users:2: not NAME:HASH",
		   "a line without ':'");
	load_fails("al ice:$y$j9T$abc$defghijklmnop\n", 0600,
		   "bad-users:1: bad user name", "a bad name");
	load_fails("\nalice:secret123\n", 0600,
		   "bad-users:2: the hash of alice is not a crypt(3) hash",
		   "a password where the hash belongs");
	load_fails("alice:$y$j9T$abc$defghijklmnop\n"
		   "alice:$y$j9T$abc$defghijklmnoq\n",
		   0600, "bad-users:2: user alice is there twice",
		   "a duplicate");
	load_fails("alice:$y$j9T$abc$defghijklmnop\n", 0640,
		   "readable by group or others (mode 0640)",
		   "a group-readable file");
}

static void
test_path(void)
{
	struct config conf = { .web_users_file = "/etc/webcoursed/web-users" };
	char *credir = tmp_path("credentials"), *cred, *p;

	mkdir(credir, 0700);
	unsetenv("CREDENTIALS_DIRECTORY");
	p = webuser_path(&conf);
	is_str(p, "/etc/webcoursed/web-users", "no credentials: users_file");
	free(p);
	setenv("CREDENTIALS_DIRECTORY", credir, 1);
	p = webuser_path(&conf);
	is_str(p, "/etc/webcoursed/web-users",
	       "credentials without web-users: users_file");
	free(p);
	cred = tmp_path("credentials/web-users");
	write_file(cred, "", 0400);
	p = webuser_path(&conf);
	is_str(p, "/etc/webcoursed/web-users",
	       "an empty credential (the units' default) does not count");
	free(p);
	unlink(cred);
	write_file(cred, "# users\n", 0400);
	p = webuser_path(&conf);
	is_str(p, cred, "the credential web-users wins");
	free(p);
	unlink(cred);
	rmdir(credir);
	unsetenv("CREDENTIALS_DIRECTORY");
	free(cred);
	free(credir);
}

int
main(void)
{
	if (mkdtemp(tmp) == NULL) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	test_names();
	test_set_save_load();
	test_load();
	test_path();
	rmdir(tmp);
	return done_testing();
}
