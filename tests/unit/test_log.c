/* Unit tests for log.c: the relay of a sync process's journal records. */
#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "tap.h"

/* One datagram from fd, NULs shown as '|'; "" when none is waiting. */
static const char *
datagram(int fd)
{
	static char buf[4096];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

	if (n < 0)
		n = 0;
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = '|';
	buf[n] = '\0';
	return buf;
}

int
main(void)
{
	const char *fields[] = { "WEBCOURSED_RUN=7", "WEBCOURSED_ERRORS=0",
				 NULL };
	int sv[2];

	setenv("JOURNAL_STREAM", "1:1", 1); /* as under systemd */
	log_init("test_log", 0, LOG_INFO);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == -1) {
		ok(0, "socketpair: %s", strerror(errno));
		return done_testing();
	}
	log_relay_to(sv[1]);

	log_fields(LOG_INFO, fields, "sync done in %d s", 2);
	is_str(datagram(sv[0]),
	       "MESSAGE=sync done in 2 s|PRIORITY=6|SYSLOG_IDENTIFIER=test_log|"
	       "WEBCOURSED_RUN=7|WEBCOURSED_ERRORS=0|",
	       "a record goes to the parent as one datagram, fields ended by "
	       "NULs");
	log_warnx("two\nlines, a title \033]0;x\007 and a C1 \302\233");
	is_str(datagram(sv[0]),
	       "MESSAGE=two lines, a title ?]0;x? and a C1 ?|PRIORITY=4|"
	       "SYSLOG_IDENTIFIER=test_log|",
	       "a record is one line with no control character (text_clean)");
	log_debug("not at info");
	is_str(datagram(sv[0]), "", "what the level drops is not relayed");
	log_info("one");
	log_info("two");
	ok(strstr(datagram(sv[0]), "MESSAGE=one|") != NULL &&
	       strstr(datagram(sv[0]), "MESSAGE=two|") != NULL,
	   "records keep their order and their boundaries");

	is_int(log_relay_read(sv[0]), 0, "the parent: nothing waiting is 0");
	close(sv[1]);
	is_int(log_relay_read(sv[0]), -1,
	       "the parent: -1 once the sync process closed its end");
	close(sv[0]);
	return done_testing();
}
