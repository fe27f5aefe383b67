"""Minimal TAP producer for the Python black-box tests."""
import sys
import traceback


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, desc, diag=None):
        self.n += 1
        print(("ok" if cond else "not ok") + " %d - %s" % (self.n, desc), flush=True)
        if not cond:
            self.failed += 1
            where = traceback.extract_stack()[-2]
            print("#   at %s:%d" % (where.filename, where.lineno))
            if diag is not None:
                for line in str(diag).splitlines()[:40]:
                    print("#   " + line)
        return cond

    def eq(self, got, want, desc, diag=None):
        extra = "" if diag is None else "\n" + str(diag)[-2000:]
        return self.ok(got == want, desc, "got  %r\nwant %r%s" % (got, want, extra))

    def done(self):
        print("1..%d" % self.n, flush=True)
        sys.exit(1 if self.failed else 0)
