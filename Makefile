# webcoursed — GNU Makefile.  CFLAGS/LDFLAGS are the user's; project flags
# are appended.  SANITIZE=1 builds with ASan+UBSan into build-san/.

PKG_CONFIG ?= pkg-config
CC ?= cc
PYTHON ?= python3
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= $(shell $(PKG_CONFIG) --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
# The version has one source: the first line of debian/changelog.  Its
# date is the default SOURCE_DATE_EPOCH of `make dist`.
VERSION := $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog)
DIST_EPOCH = $(or $(SOURCE_DATE_EPOCH),$(shell date -d \
	"$$(sed -n '/^ -- /{s/^ -- .*>  //p;q}' debian/changelog)" +%s))
DIST := webcoursed-$(VERSION)
DEB_ARCH = $(shell dpkg --print-architecture 2>/dev/null)

CFLAGS ?= -O2 -g
PKGS := libcurl jansson libevent libevent_openssl openssl libsystemd sqlite3 \
	inih libcrypt
DEBS := libcurl4-openssl-dev libjansson-dev libevent-dev libsystemd-dev \
	libsqlite3-dev libinih-dev libcrypt-dev libssl-dev pkg-config python3 \
	curl clang-format prometheus debhelper dpkg-dev lintian chromium \
	chromium-driver nginx-light openssl

ifeq ($(SANITIZE),1)
BUILD ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer
else
BUILD ?= build
SANFLAGS :=
endif

PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
WCFLAGS := -std=gnu11 -Wall -Wextra -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wformat=2 -D_GNU_SOURCE -Iinclude \
	-DWEBCOURSED_VERSION='"$(VERSION)"' \
	-DSYSCONFDIR='"$(SYSCONFDIR)"' $(SANFLAGS)
ifeq ($(WERROR),1)
WCFLAGS += -Werror
endif
ALL_CFLAGS = $(WCFLAGS) $(PKG_CFLAGS) $(CPPFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(SANFLAGS) $(LDFLAGS)
LIBS = $(PKG_LIBS) -lm

MAINS := src/daemon.c src/ctl.c
LIB_SRCS := $(filter-out $(MAINS),$(wildcard src/*.c))
LIB_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/%.o) $(BUILD)/static.o
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

all: $(BUILD)/webcoursed $(BUILD)/webcoursectl
	@ln -sf $(BUILD)/webcoursed webcoursed
	@ln -sf $(BUILD)/webcoursectl webcoursectl

$(BUILD)/.dir:
	@mkdir -p $(BUILD)/tests
	@touch $@

$(BUILD)/%.o: src/%.c $(wildcard include/*.h) | $(BUILD)/.dir
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The console's static files (web/), built into the binary by .incbin.
$(BUILD)/static.o: src/static.S $(wildcard web/*) | $(BUILD)/.dir
	$(CC) $(SANFLAGS) -c -o $@ $<

$(BUILD)/libwebcoursed.a: $(LIB_OBJS)
	$(AR) rcs $@ $^

$(BUILD)/webcoursed: $(BUILD)/daemon.o $(BUILD)/libwebcoursed.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/webcoursectl: $(BUILD)/ctl.o $(BUILD)/libwebcoursed.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) tests/fuzz/fuzz.h $(BUILD)/libwebcoursed.a
	$(CC) $(ALL_CFLAGS) -Itests/unit $(ALL_LDFLAGS) -o $@ $< $(BUILD)/libwebcoursed.a $(LIBS)

# Install the Debian packages the build and the tests need.
deps:
	@missing=""; for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	  else \
	    echo "missing Debian packages:$$missing"; \
	    echo "run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

build-tests: all $(UNIT_BINS)

check: deps
	@$(MAKE) --no-print-directory lint build-tests
	@BUILD=$(BUILD) $(PYTHON) tests/run $(TESTS)

valgrind: deps
	@$(MAKE) --no-print-directory build-tests
	@BUILD=$(BUILD) VALGRIND=1 $(PYTHON) tests/run $(TESTS)

demo: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) $(PYTHON) tests/demo.py

bench: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) $(PYTHON) tests/bench/bench.py $(if $(QUICK),--sizes 100000 --runs 3)
	@BUILD=$(BUILD) $(PYTHON) tests/bench/initial_sync.py
	@BUILD=$(BUILD) $(PYTHON) tests/bench/import_speed.py $(if $(QUICK),--quick)
	@BUILD=$(BUILD) $(PYTHON) tests/bench/reconcile.py $(if $(QUICK),--quick)
	@BUILD=$(BUILD) $(PYTHON) tests/bench/graph_cases.py $(if $(QUICK),--quick)
	@BUILD=$(BUILD) $(PYTHON) tests/bench/web_console.py $(if $(QUICK),--quick)
	@BUILD=$(BUILD) $(PYTHON) tests/bench/http_attack.py $(if $(QUICK),--quick)

# The banned-function grep and the mechanical style (.clang-format).
lint:
	@! grep -nE '\b(sprintf|strcpy|strcat|strtok|gets|atoi|atol)[[:space:]]*\(' src/*.c include/*.h \
	  || { echo "banned function used"; exit 1; }
	@if command -v clang-format >/dev/null; then \
	  clang-format --dry-run --Werror src/*.c include/*.h tests/unit/*.c \
	    tests/unit/*.h tests/fuzz/*.c tests/fuzz/*.h tests/bench/*.c; \
	else echo "clang-format not installed: style not checked"; fi

install: all
	install -d "$(DESTDIR)$(SBINDIR)" "$(DESTDIR)$(BINDIR)" \
	  "$(DESTDIR)$(SYSCONFDIR)/webcoursed" "$(DESTDIR)$(SYSTEMDUNITDIR)" \
	  "$(DESTDIR)$(MANDIR)/man1" "$(DESTDIR)$(MANDIR)/man5" "$(DESTDIR)$(MANDIR)/man8"
	install -m 755 $(BUILD)/webcoursed "$(DESTDIR)$(SBINDIR)/webcoursed"
	install -m 755 $(BUILD)/webcoursectl "$(DESTDIR)$(BINDIR)/webcoursectl"
	test -e "$(DESTDIR)$(SYSCONFDIR)/webcoursed/webcoursed.conf" || { \
	  sed -e 's|/etc/webcoursed|$(SYSCONFDIR)/webcoursed|g' etc/webcoursed.conf \
	    > "$(DESTDIR)$(SYSCONFDIR)/webcoursed/webcoursed.conf" && \
	  chmod 644 "$(DESTDIR)$(SYSCONFDIR)/webcoursed/webcoursed.conf"; }
	for u in webcoursed.service webcoursed@.service; do \
	  sed -e 's|/usr/local/sbin|$(SBINDIR)|g' -e 's|/etc/webcoursed|$(SYSCONFDIR)/webcoursed|g' \
	    systemd/$$u > "$(DESTDIR)$(SYSTEMDUNITDIR)/$$u" && \
	  chmod 644 "$(DESTDIR)$(SYSTEMDUNITDIR)/$$u"; done
	install -m 644 man/webcoursectl.1 "$(DESTDIR)$(MANDIR)/man1/"
	install -m 644 man/webcoursed.conf.5 "$(DESTDIR)$(MANDIR)/man5/"
	install -m 644 man/webcoursed.8 "$(DESTDIR)$(MANDIR)/man8/"

uninstall:
	rm -f "$(DESTDIR)$(SBINDIR)/webcoursed" "$(DESTDIR)$(BINDIR)/webcoursectl" \
	  "$(DESTDIR)$(SYSTEMDUNITDIR)/webcoursed.service" \
	  "$(DESTDIR)$(SYSTEMDUNITDIR)/webcoursed@.service" \
	  "$(DESTDIR)$(MANDIR)/man1/webcoursectl.1" \
	  "$(DESTDIR)$(MANDIR)/man5/webcoursed.conf.5" \
	  "$(DESTDIR)$(MANDIR)/man8/webcoursed.8"

# A reproducible source tarball: the files git tracks (or, in an unpacked
# tarball, every file but the build's), sorted, with one owner, normalised
# modes and SOURCE_DATE_EPOCH as every mtime.  Two builds give the same
# bytes; it builds and passes make check on its own.
dist:
	@test -n "$(VERSION)" || { echo "no version in debian/changelog"; exit 1; }
	@mkdir -p $(BUILD)
	@epoch="$(DIST_EPOCH)"; test -n "$$epoch" || { echo "no date in debian/changelog"; exit 1; }; \
	if [ -e .git ] && command -v git >/dev/null; then git ls-files -z; \
	else find . \( -name build -o -name 'build-*' -o -path ./debian/webcoursed \
	  -o -path ./debian/.debhelper -o -name '.git' \) -prune -o \
	  \( -type f -o -type l \) ! -path ./webcoursed ! -path ./webcoursectl \
	  ! -path ./debian/files ! -name '*.substvars' ! -name '*debhelper*' \
	  -printf '%P\0'; fi | LC_ALL=C sort -z > $(BUILD)/$(DIST).files && \
	tar --null --no-recursion --format=gnu --owner=0 --group=0 --numeric-owner \
	  --mode=u+rw,go=rX,a-s --mtime=@$$epoch --transform='s|^|$(DIST)/|' \
	  -cf $(BUILD)/$(DIST).tar -T $(BUILD)/$(DIST).files && \
	gzip -9nf $(BUILD)/$(DIST).tar && rm -f $(BUILD)/$(DIST).files
	@echo "$(BUILD)/$(DIST).tar.gz"

# The Debian package, built from the dist tarball unpacked under
# $(BUILD)/deb (so neither the checkout nor its parent directory gets
# build files): $(BUILD)/deb/webcoursed_$(VERSION)_$(DEB_ARCH).deb.
# The inner build must not inherit this one's variables.
DEB_ENV = env -u BUILD -u SANITIZE -u WERROR -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	-u CFLAGS -u CPPFLAGS -u LDFLAGS
deb: dist
	@$(MAKE) --no-print-directory deps
	rm -rf $(BUILD)/deb && mkdir -p $(BUILD)/deb
	tar -xzf $(BUILD)/$(DIST).tar.gz -C $(BUILD)/deb
	cd $(BUILD)/deb/$(DIST) && $(DEB_ENV) dpkg-buildpackage -us -uc -b
	@echo "$(BUILD)/deb/webcoursed_$(VERSION)_$(DEB_ARCH).deb"

# lintian on the binary package, its .changes, and the source package
# (.dsc) built from a fresh unpacking.  Errors and warnings fail.
lintian: deb
	rm -rf $(BUILD)/deb/src && mkdir -p $(BUILD)/deb/src
	tar -xzf $(BUILD)/$(DIST).tar.gz -C $(BUILD)/deb/src
	cd $(BUILD)/deb/src && $(DEB_ENV) dpkg-source -b $(DIST)
	lintian --fail-on error,warning --display-info \
	  $(BUILD)/deb/webcoursed_$(VERSION)_$(DEB_ARCH).changes \
	  $(BUILD)/deb/src/webcoursed_$(VERSION).dsc

fuzz: deps
	@$(MAKE) --no-print-directory deps DEBS="clang libclang-rt-14-dev"
	@sh tests/fuzz/run.sh

clean:
	rm -rf build build-san build-fuzz webcoursed webcoursectl

.PHONY: all deps build-tests check valgrind demo bench fuzz lint install uninstall clean \
	dist deb lintian
