# batchd: two commands do all the set-up on a fresh machine.
#   make run    install what is missing, build, run the daemon on the local backend
#               (development config: state and inbox under .run/)
#   make test   install what is missing, run every test
#   make bench  the benchmark suite (bench/run.py): every row beside its peer,
#               release build, 3 runs each; writes bench/results.json,
#               BENCHMARKS.md and bench/ratios.png
#   make bench-quick  the same rows at small sizes, once, into /tmp (make test runs it)
#   make bench-azure  2,000 tasks through the Azure emulator: wall time and API calls per task
#   make chaos  the chaos soak (bench/chaos.py): 2,000 tasks through the Azure emulator with its
#               faults firing at random (CHAOS_SEED, default 23), release build; writes
#               bench/chaos.json and BENCHMARKS.md (make test runs 200 tasks)
#   make fuzz   fuzz manifest intake with libFuzzer for FUZZ_SECONDS (default 600; make test runs 60)
#   make crashwalk  the full crash-point walk: every point's first, second and last
#               passing on local, azure (emulator) and the fake backend, 12 tasks
#               (make test walks every point's first passing with 4 tasks)
#   make install [PREFIX=/usr/local] [DESTDIR=] [SYSCONFDIR=/etc] [BUILD=release]
#               binaries, system and user units, sysusers file, config (kept if
#               present), journald catalog, manifest schema, docs, completions,
#               man pages (batchctl(1), batchd(8), batchd.yaml(5), batchd-manifest(5))
#   make install-user [DESTDIR=] [HOME=]   the same for one user under ~/.local, unit in ~/.config/systemd/user
#   make test-systemd   boot Debian with systemd as PID 1 (systemd-nspawn), install batchd into it
#               with make install, and follow docs/operations.md as an operator and two
#               submitters would (make test runs it; scripts/systemd-test.sh)
SHELL := /bin/bash
DEV_CONFIG := etc/batchd/dev.yaml

PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
BUILD ?= release

BINDIR := $(DESTDIR)$(PREFIX)/bin
LIBEXECDIR := $(DESTDIR)$(PREFIX)/lib/batchd
UNITDIR := $(DESTDIR)$(PREFIX)/lib/systemd/system
USERUNITDIR := $(DESTDIR)$(PREFIX)/lib/systemd/user
CATALOGDIR := $(DESTDIR)$(PREFIX)/lib/systemd/catalog
SYSUSERSDIR := $(DESTDIR)$(PREFIX)/lib/sysusers.d
TMPFILESDIR := $(DESTDIR)$(PREFIX)/lib/tmpfiles.d
SHAREDIR := $(DESTDIR)$(PREFIX)/share/batchd
DOCDIR := $(DESTDIR)$(PREFIX)/share/doc/batchd
CONFDIR := $(DESTDIR)$(SYSCONFDIR)/batchd
MANDIR := $(DESTDIR)$(PREFIX)/share/man

FUZZ_SECONDS ?= 600

.PHONY: all setup build run test test-systemd bench bench-quick bench-azure chaos fuzz crashwalk release-smoke install install-user clean

all: build

setup:
	@scripts/setup.sh

build: setup
	swift build

run: build
	@mkdir -p .run
	@echo "batchd: drop manifests into $(CURDIR)/.run/inbox, or in another shell:"
	@echo "  .build/debug/batchctl --config $(DEV_CONFIG) submit examples/wordcount/job.yaml --wait"
	@echo "Ctrl-C stops the daemon."
	exec .build/debug/batchd --config $(DEV_CONFIG)

test: build
	swift build --build-tests
	scripts/test.sh

bench: setup
	scripts/setup.sh bench
	swift build -c release
	.venv/bin/python bench/run.py

bench-quick: build
	scripts/setup.sh bench
	BATCHD_BIN="$$(swift build --show-bin-path)" .venv/bin/python bench/run.py --quick

fuzz: setup
	scripts/fuzz.sh $(FUZZ_SECONDS)

test-systemd: build
	scripts/systemd-test.sh

release-smoke: setup
	scripts/release-smoke.sh

crashwalk: build
	swift build --build-tests
	BATCHD_CRASHWALK=full BATCHD_BIN="$$(swift build --show-bin-path)" swift test --skip-build --filter CrashWalkTests 2>&1 \
		| tee .build/crashwalk.log | grep -E '^crash walk|✘|Test run'
	@! grep -q 'crash walk.*FAILED' .build/crashwalk.log

chaos: setup
	scripts/setup.sh bench
	swift build -c release
	.venv/bin/python bench/chaos.py --tasks 2000 --seed $${CHAOS_SEED:-23} --out bench/chaos.json
	.venv/bin/python bench/run.py --render

bench-azure: setup build
	PATH="$(CURDIR)/.venv/bin:$$PATH" scripts/bench-azure.sh

install: setup
	swift build -c $(BUILD)
	$(eval BIN := $(shell swift build -c $(BUILD) --show-bin-path))
	install -d $(BINDIR) $(LIBEXECDIR) $(UNITDIR) $(USERUNITDIR) $(CATALOGDIR) $(SYSUSERSDIR) $(TMPFILESDIR) $(SHAREDIR) $(DOCDIR) $(CONFDIR)
	install -m 755 $(BIN)/batchd $(BIN)/batchctl $(BINDIR)/
	install -m 755 $(BIN)/batchd-exec $(LIBEXECDIR)/
	sed 's|@PREFIX@|$(PREFIX)|g; s|/etc/batchd|$(SYSCONFDIR)/batchd|g' systemd/batchd.service > $(UNITDIR)/batchd.service
	sed 's|@PREFIX@|$(PREFIX)|g' systemd/user/batchd.service > $(USERUNITDIR)/batchd.service
	chmod 644 $(UNITDIR)/batchd.service $(USERUNITDIR)/batchd.service
	install -m 644 systemd/batchd.catalog $(CATALOGDIR)/batchd.catalog
	install -m 644 systemd/batchd.sysusers $(SYSUSERSDIR)/batchd.conf
	install -m 644 systemd/batchd.tmpfiles $(TMPFILESDIR)/batchd.conf
	install -m 644 docs/manifest.schema.json $(SHAREDIR)/manifest.schema.json
	install -m 644 etc/batchd/batchd.yaml $(SHAREDIR)/batchd.yaml.example
	install -m 644 etc/batchd/batchd.user.yaml $(SHAREDIR)/batchd.user.yaml.example
	install -m 644 etc/batchd/containers.conf $(SHAREDIR)/containers.conf.example
	install -m 644 systemd/batchd.service.d/azure-credentials.conf $(SHAREDIR)/azure-credentials.conf
	install -m 644 README.md docs/*.md $(DOCDIR)/
	[ -e $(CONFDIR)/batchd.yaml ] || install -m 644 etc/batchd/batchd.yaml $(CONFDIR)/batchd.yaml
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	$(BIN)/batchctl --generate-completion-script bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/batchctl
	$(BIN)/batchctl --generate-completion-script zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_batchctl
	$(BIN)/batchctl --generate-completion-script fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/batchctl.fish
	swift build -c $(BUILD) --product generate-manual
	rm -rf .build/man && scripts/man.sh .build/man $(BIN)
	install -d $(MANDIR)/man1 $(MANDIR)/man5 $(MANDIR)/man8
	install -m 644 .build/man/man1/batchctl.1 $(MANDIR)/man1/
	install -m 644 .build/man/man8/batchd.8 $(MANDIR)/man8/
	install -m 644 .build/man/man5/batchd-manifest.5 .build/man/man5/batchd.yaml.5 $(MANDIR)/man5/
	@echo "installed under $(DESTDIR)$(PREFIX); next: docs/operations.md"

install-user:
	$(MAKE) install PREFIX=$(HOME)/.local SYSCONFDIR=$(HOME)/.config
	install -d $(DESTDIR)$(HOME)/.config/systemd/user
	ln -sf $(HOME)/.local/lib/systemd/user/batchd.service $(DESTDIR)$(HOME)/.config/systemd/user/batchd.service
	[ -e $(DESTDIR)$(HOME)/.config/batchd/batchd.yaml.user-installed ] || { install -m 644 etc/batchd/batchd.user.yaml $(DESTDIR)$(HOME)/.config/batchd/batchd.yaml && touch $(DESTDIR)$(HOME)/.config/batchd/batchd.yaml.user-installed; }

clean:
	rm -rf .build .run
