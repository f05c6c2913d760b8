# pooler: build, test, demo, bench, install.  `make help` lists the targets.

CARGO   ?= cargo
INSTALL ?= install
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
DOCDIR  ?= $(PREFIX)/share/doc/pooler
UNITDIR ?= $(PREFIX)/lib/systemd/system
# The config lives in /etc whatever PREFIX is (systemd units and packages expect it there).
SYSCONFDIR ?= /etc
CONFDIR ?= $(SYSCONFDIR)/pooler
# The binary `make install` and `make deb` take: the release build by default (built, or
# rebuilt when a source is newer); any other file as it is, e.g. BIN=target/debug/pooler.
BIN     ?= target/release/pooler
# The unit's RuntimeDirectory=pooler: the installed config puts its unix socket there,
# since the unit's PrivateTmp hides the sample's /tmp from local clients.
RUNDIR   = /run/pooler

# Extra arguments for `cargo test`, e.g. make test TEST_ARGS='-- --nocapture'.
TEST_ARGS ?=

# Debian installs initdb, pg_ctl and postgres outside PATH; the tests, the demo and
# the benchmark start their own PostgreSQL and look for them on PATH.
PG_BINDIR ?= /usr/lib/postgresql/15/bin
ifneq ($(wildcard $(PG_BINDIR)/initdb),)
export PATH := $(PG_BINDIR):$(PATH)
endif

SHELL_SCRIPTS = .ci/run contrib/lib.sh contrib/demo.sh contrib/bench/bench.sh contrib/debian/mkdeb.sh \
		contrib/debian/postinst contrib/debian/prerm contrib/debian/postrm
MAN_PAGES     = man/pooler.1 man/pooler.conf.5

.PHONY: all help build test soak fuzz demo bench install uninstall deb fmt lint lint-rust lint-sh lint-man clean

all: build

help:
	@echo "make build      release build: target/release/pooler"
	@echo "make test       unit and integration tests (needs PostgreSQL 15, psql, pgbench; .ci/run installs them)"
	@echo "make demo       the pooler in front of a throwaway PostgreSQL on 127.0.0.1:6432"
	@echo "make bench      pgbench: pooler vs PgBouncer vs PostgreSQL (ROUNDS=3 DURATION=10)"
	@echo "make soak       slow reliability suite: PostgreSQL restarts, 10,000 clients, chaos (~2 min)"
	@echo "make fuzz       every fuzz target FUZZ_SECONDS each, release build; findings in target/fuzz-crashes/"
	@echo "make install    binary, man pages, systemd unit, docs under \$$(DESTDIR)\$$(PREFIX) (PREFIX=$(PREFIX)),"
	@echo "                config as \$$(DESTDIR)$(CONFDIR)/pooler.conf if absent; BIN=file installs that binary"
	@echo "make uninstall  remove what install put there, except the config"
	@echo "make deb        Debian package in target/deb/ (dpkg-deb; release build)"
	@echo "make fmt        cargo fmt"
	@echo "make lint       rustfmt check, clippy -D warnings; shellcheck and mandoc when installed"
	@echo "make clean      cargo clean"

build:
	$(CARGO) build --release

test:
	$(CARGO) test $(TEST_ARGS)

soak:
	$(CARGO) test --release --test soak -- --test-threads=1 --nocapture

# The smoke run of the same targets is part of `make test`.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(CARGO) test --release --test fuzz -- --nocapture --test-threads=1

demo:
	bash contrib/demo.sh

bench: build
	bash contrib/bench/bench.sh

# Installed files: $(BINDIR)/pooler, the two man pages, $(UNITDIR)/pooler.service with
# the binary and config paths rewritten, and under $(DOCDIR) the sample config and the
# README. The config, $(CONFDIR)/pooler.conf, is the sample with unix_socket_dir set to
# $(RUNDIR); it is written only when absent, so a second install never overwrites an
# edited one, and it is 0640 (it may hold passwords): group pooler when installing as
# root into / and that group exists.
install: $(BIN)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(CONFDIR)
	$(INSTALL) -m 755 $(BIN) $(DESTDIR)$(BINDIR)/pooler
	$(INSTALL) -m 644 man/pooler.1 $(DESTDIR)$(MANDIR)/man1/pooler.1
	$(INSTALL) -m 644 man/pooler.conf.5 $(DESTDIR)$(MANDIR)/man5/pooler.conf.5
	$(INSTALL) -m 644 pooler.conf.sample $(DESTDIR)$(DOCDIR)/pooler.conf.sample
	$(INSTALL) -m 644 README.md $(DESTDIR)$(DOCDIR)/README.md
	sed -e 's|/usr/bin/pooler|$(BINDIR)/pooler|g' -e 's|/etc/pooler/|$(CONFDIR)/|g' \
		contrib/pooler.service > $(DESTDIR)$(UNITDIR)/pooler.service
	chmod 644 $(DESTDIR)$(UNITDIR)/pooler.service
	@conf='$(DESTDIR)$(CONFDIR)/pooler.conf'; \
	if [ -e "$$conf" ]; then \
		echo "$$conf exists: kept as it is (the new sample is $(DESTDIR)$(DOCDIR)/pooler.conf.sample)"; \
	else \
		echo "writing $$conf"; \
		(umask 077 && sed -e 's|^unix_socket_dir = "/tmp"$$|unix_socket_dir = "$(RUNDIR)"|' \
			pooler.conf.sample > "$$conf.tmp") && \
		grep -q '^unix_socket_dir = "$(RUNDIR)"$$' "$$conf.tmp" && \
		chmod 640 "$$conf.tmp" && mv "$$conf.tmp" "$$conf" || { rm -f "$$conf.tmp"; exit 1; }; \
		if [ -n '$(DESTDIR)' ]; then :; \
		elif [ "$$(id -u)" = 0 ] && getent group pooler >/dev/null; then chgrp pooler "$$conf"; \
		else echo "note: the unit runs the pooler as user pooler: create it, chgrp pooler $$conf" \
			"(see the head of $(UNITDIR)/pooler.service)"; \
		fi; \
	fi

# The release binary, when it is missing or older than a source.
target/release/pooler: Cargo.toml Cargo.lock $(shell find src -name '*.rs' 2>/dev/null)
	$(CARGO) build --release

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/pooler
	rm -f $(DESTDIR)$(MANDIR)/man1/pooler.1 $(DESTDIR)$(MANDIR)/man5/pooler.conf.5
	rm -f $(DESTDIR)$(UNITDIR)/pooler.service
	rm -f $(DESTDIR)$(DOCDIR)/pooler.conf.sample $(DESTDIR)$(DOCDIR)/README.md
	rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null || true
	@if [ -e '$(DESTDIR)$(CONFDIR)/pooler.conf' ]; then \
		echo "$(DESTDIR)$(CONFDIR)/pooler.conf left in place (your configuration): remove it by hand"; \
	fi

# Debian package, without debhelper: `make install` into a staging root, then
# contrib/debian/mkdeb.sh strips the binary, compresses the man pages and docs, adds
# the copyright, changelog, control (Depends from dpkg-shlibdeps), conffiles, md5sums
# and maintainer scripts of contrib/debian/, and runs dpkg-deb. Version: Cargo.toml's,
# plus DEB_REVISION; contrib/debian/changelog's top entry must match it. The lintian
# tags that remain are explained in contrib/debian/README.
DEB_REVISION ?= 1
DEB_UPSTREAM  = $(shell sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
DEB_VERSION   = $(DEB_UPSTREAM)-$(DEB_REVISION)
DEB_ARCH      = $(shell dpkg --print-architecture)
DEB_WORK      = target/deb/work
DEB_UNITDIR  ?= /lib/systemd/system

deb: $(BIN)
	rm -rf $(DEB_WORK)
	$(MAKE) --no-print-directory install BIN='$(BIN)' DESTDIR='$(CURDIR)/$(DEB_WORK)/debian/pooler' \
		PREFIX=/usr BINDIR=/usr/bin MANDIR=/usr/share/man DOCDIR=/usr/share/doc/pooler \
		UNITDIR='$(DEB_UNITDIR)' SYSCONFDIR=/etc CONFDIR=/etc/pooler
	bash contrib/debian/mkdeb.sh '$(DEB_WORK)' '$(DEB_VERSION)' '$(DEB_ARCH)' \
		'target/deb/pooler_$(DEB_VERSION)_$(DEB_ARCH).deb'

fmt:
	$(CARGO) fmt --all

lint: lint-rust lint-sh lint-man

lint-rust:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets -- -D warnings

# shellcheck and mandoc are optional on a developer's machine; .ci/run installs them.
lint-sh:
	@if command -v shellcheck >/dev/null; then \
		echo "shellcheck $(SHELL_SCRIPTS)"; shellcheck $(SHELL_SCRIPTS); \
	else echo "shellcheck not installed: skipped"; fi

lint-man:
	@if command -v mandoc >/dev/null; then \
		echo "mandoc -T lint -W warning $(MAN_PAGES)"; mandoc -T lint -W warning $(MAN_PAGES); \
	else echo "mandoc not installed: skipped"; fi

clean:
	$(CARGO) clean
