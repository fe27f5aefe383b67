/* Held new courses (sync.new_courses = approve): approve or reject them,
 * for webcoursectl and the web console alike. */
#ifndef APPROVAL_H
#define APPROVAL_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct ledger;

/* What approval_decide did with each name asked for. */
struct approval_result {
	char **done; /* approved or rejected now */
	size_t ndone;
	char **refused; /* not awaiting approval (unknown, created, ...) */
	size_t nrefused;
};

/* Approve (or reject) the held courses named, or with all every course
 * awaiting approval, in one transaction, each with a history row "approved
 * by BY; the next run creates it" ("rejected by BY; never created"), BY
 * being who decided: "an operator (webcoursectl approve)", "alice
 * (web)".  A name not awaiting approval is refused and the others go on.
 * -1 on a ledger failure (nothing changed; the ledger says why). */
int approval_decide(const struct config *, struct ledger *,
		    const char *const *names, size_t n, bool all, bool approve,
		    const char *by, struct approval_result *ret);
void approval_result_clear(struct approval_result *);

#endif
