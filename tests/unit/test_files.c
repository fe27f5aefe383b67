/* Unit tests for the files we create or replace: write_file_atomic never
 * follows a planted link and sets the mode it is given; dir_shared refuses
 * directories that others can write to (issue 20 item 3). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "util.h"

static char *
slurp(const char *path)
{
	char *buf = xcalloc(1, 4096);
	int fd = open(path, O_RDONLY);

	if (fd != -1) {
		if (read(fd, buf, 4095) < 0)
			buf[0] = '\0';
		close(fd);
	}
	return buf;
}

static void
put(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd == -1 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		ok(0, "cannot write %s", path);
	if (fd != -1)
		close(fd);
}

/* The names the old code used (PATH.tmp.<pid>) and a few more: links to a
 * file that must keep its content. */
static void
test_planted_links(const char *dir)
{
	char *target, *path, *link, *text, *cause = NULL;
	struct stat st;
	int rv;

	xasprintf(&target, "%s/precious", dir);
	xasprintf(&path, "%s/missing.csv", dir);
	put(target, "root's file\n");
	xasprintf(&link, "%s.tmp.%ld", path, (long)getpid());
	ok(symlink(target, link) == 0, "planted %s", link);
	rv = write_file_atomic(path, "a,b\r\n", 5, 0640, &cause);
	is_int(rv, 0, "write_file_atomic with links planted beside the path");
	if (rv != 0)
		printf("# %s\n", cause);
	text = slurp(target);
	is_str(text, "root's file\n", "the link's target keeps its content");
	free(text);
	text = slurp(path);
	is_str(text, "a,b\r\n", "the file holds what was written");
	free(text);
	ok(lstat(path, &st) == 0 && S_ISREG(st.st_mode),
	   "the file is a regular file");
	is_int(st.st_mode & 07777, 0640, "the file's mode is 0640");
	ok(lstat(link, &st) == 0 && S_ISLNK(st.st_mode),
	   "the planted link is left as it was");
	unlink(link);
	free(link);

	/* A link at the path itself is replaced, not written through. */
	unlink(path);
	ok(symlink(target, path) == 0, "planted a link at the path itself");
	is_int(write_file_atomic(path, "x\n", 2, 0600, &cause), 0,
	       "write_file_atomic over a link");
	text = slurp(target);
	is_str(text, "root's file\n", "the link's target is still untouched");
	free(text);
	ok(lstat(path, &st) == 0 && S_ISREG(st.st_mode),
	   "the link was replaced by a regular file");
	is_int(st.st_mode & 07777, 0600, "with the mode asked for");
	unlink(path);
	unlink(target);
	free(target);
	free(path);
}

static void
test_dir_shared(const char *dir)
{
	static const struct {
		mode_t mode;
		int shared;
	} cases[] = {
		{ 0700, 0 }, { 0755, 0 },  { 0775, 0 },
		{ 0777, 1 }, { 01777, 1 }, { 0773, 1 },
	};
	char *sub, *path, *cause;

	xasprintf(&sub, "%s/d", dir);
	xasprintf(&path, "%s/ledger.db", sub);
	ok(mkdir(sub, 0700) == 0, "made %s", sub);
	for (size_t i = 0; i < nitems(cases); i++) {
		cause = NULL;
		chmod(sub, cases[i].mode);
		is_int(dir_shared(path, &cause), cases[i].shared ? -1 : 0,
		       "a file in a directory of mode %04o is %s",
		       (unsigned)cases[i].mode,
		       cases[i].shared ? "refused" : "accepted");
		if (cases[i].shared)
			ok(cause != NULL && strstr(cause, sub) != NULL &&
			       strstr(cause, "others can write") != NULL,
			   "... the message names the directory: %s",
			   cause ? cause : "(none)");
		free(cause);
	}
	is_int(dir_shared("/ledger.db", &cause), 0,
	       "a file in / is accepted (root's own)");
	rmdir(sub);
	free(path);
	free(sub);
}

int
main(void)
{
	char dir[] = "/tmp/webcoursed-files-XXXXXX";

	umask(022);
	if (mkdtemp(dir) == NULL) {
		ok(0, "mkdtemp");
		return done_testing();
	}
	test_planted_links(dir);
	test_dir_shared(dir);
	rmdir(dir);
	return done_testing();
}
