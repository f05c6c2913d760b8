# pooler: build, test, demo, bench, install.  `make help` lists the targets.

CARGO   ?= cargo
INSTALL ?= install
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
DOCDIR  ?= $(PREFIX)/share/doc/pooler

# Extra arguments for `cargo test`, e.g. make test TEST_ARGS='-- --nocapture'.
TEST_ARGS ?=

# Debian installs initdb, pg_ctl and postgres outside PATH; the tests, the demo and
# the benchmark start their own PostgreSQL and look for them on PATH.
PG_BINDIR ?= /usr/lib/postgresql/15/bin
ifneq ($(wildcard $(PG_BINDIR)/initdb),)
export PATH := $(PG_BINDIR):$(PATH)
endif

SHELL_SCRIPTS = .ci/run contrib/demo.sh contrib/bench.sh
MAN_PAGES     = man/pooler.1 man/pooler.conf.5

.PHONY: all help build test demo bench install uninstall fmt lint lint-rust lint-sh lint-man clean

all: build

help:
	@echo "make build      release build: target/release/pooler"
	@echo "make test       unit and integration tests (needs PostgreSQL 15, psql, pgbench; .ci/run installs them)"
	@echo "make demo       the pooler in front of a throwaway PostgreSQL on 127.0.0.1:6432"
	@echo "make bench      pgbench: pooler vs PgBouncer vs PostgreSQL (ROUNDS=3 DURATION=10)"
	@echo "make install    binary, man pages and sample config under \$$(DESTDIR)\$$(PREFIX) (PREFIX=$(PREFIX))"
	@echo "make uninstall  remove what install put there"
	@echo "make fmt        cargo fmt"
	@echo "make lint       rustfmt check, clippy -D warnings; shellcheck and mandoc when installed"
	@echo "make clean      cargo clean"

build:
	$(CARGO) build --release

test:
	$(CARGO) test $(TEST_ARGS)

demo:
	bash contrib/demo.sh

bench: build
	bash contrib/bench.sh

install: build
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(DOCDIR)
	$(INSTALL) -m 755 target/release/pooler $(DESTDIR)$(BINDIR)/pooler
	$(INSTALL) -m 644 man/pooler.1 $(DESTDIR)$(MANDIR)/man1/pooler.1
	$(INSTALL) -m 644 man/pooler.conf.5 $(DESTDIR)$(MANDIR)/man5/pooler.conf.5
	$(INSTALL) -m 644 pooler.conf.sample $(DESTDIR)$(DOCDIR)/pooler.conf.sample
	$(INSTALL) -m 644 README.md $(DESTDIR)$(DOCDIR)/README.md
	$(INSTALL) -m 644 contrib/pooler.service $(DESTDIR)$(DOCDIR)/pooler.service

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/pooler
	rm -f $(DESTDIR)$(MANDIR)/man1/pooler.1 $(DESTDIR)$(MANDIR)/man5/pooler.conf.5
	rm -rf $(DESTDIR)$(DOCDIR)

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
