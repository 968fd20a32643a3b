# ustack — see README.md. Targets: all deps build test demo bench profile fuzz interop interop-both soak
# install uninstall deb clean.
SHELL := /bin/bash
GO    ?= go
BUILD := build

# Unit packages: run with the race detector.
UNIT_PKGS := ./stackcore/... ./nic/... ./shm/... ./shim/... ./cmd/...
# Per fuzz target: short in `make test`, long in `make fuzz`.
FUZZTIME      ?= 10s
LONG_FUZZTIME ?= 5m

# binary:package pairs installed by `make deps` when the binary is missing.
DEPS := ip:iproute2 ss:iproute2 ethtool:ethtool curl:curl socat:socat sockperf:sockperf \
	iperf3:iperf3 /usr/bin/python3:python3 gcc:gcc make:make ping:iputils-ping \
	/usr/bin/time:time sha256sum:coreutils timeout:coreutils \
	redis-server:redis-server redis-benchmark:redis-tools redis-cli:redis-tools \
	/usr/sbin/nginx:nginx memcached:memcached wrk:wrk perf:linux-perf \
	dpkg-deb:dpkg gzip:gzip tcpdump:tcpdump tshark:tshark node:nodejs

C_SRCS := $(wildcard tests/c/*.c)
C_BINS := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(C_SRCS))

.PHONY: all deps build test fuzz demo bench clean interop install uninstall deb

all: build

deps:
	@missing=""; \
	for d in $(DEPS); do \
		bin=$${d%%:*}; pkg=$${d#*:}; \
		command -v $$bin >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "deps: system packages present"; fi
	@command -v $(GO) >/dev/null || { echo "deps: Go toolchain not found (need Go 1.26 in PATH)"; exit 1; }
	$(GO) mod download

build: $(BUILD)/libustack.so $(BUILD)/libustack-go.so $(BUILD)/onloadctl $(C_BINS) $(BUILD)/tests/relay

# libustack.so is the C front: the interposers, and the loader of the Go part. Libraries are
# replaced by a rename, not a rewrite: programs running with the old ones keep their mapping.
FRONT_SRCS := $(wildcard preload/*.c)
FRONT_HDRS := $(wildcard preload/*.h)
$(BUILD)/libustack.so: $(FRONT_SRCS) $(FRONT_HDRS) preload/libustack.map
	@mkdir -p $(BUILD)
	gcc -shared -fPIC -O2 -Wall -Wextra -Wno-unused-function -Wno-unused-parameter -Wno-cast-function-type -D_GNU_SOURCE \
		-Wl,--version-script=preload/libustack.map -Wl,-z,defs -o $@.new $(FRONT_SRCS) -ldl -lpthread
	mv -f $@.new $@

# libustack-go.so is the Go part (preload/golib): always rebuilt, go build is incremental and
# knows the real dependencies.
.PHONY: $(BUILD)/libustack-go.so $(BUILD)/onloadctl
$(BUILD)/libustack-go.so:
	@mkdir -p $(BUILD)
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared \
		-ldflags="-X main.exportsMap=$$(sha256sum preload/golib/libustack-go.map | cut -c1-16) \
			-extldflags=-Wl,--version-script=$(CURDIR)/preload/golib/libustack-go.map" -o $@.new ./preload/golib
	mv -f $@.new $@
	@rm -f $(BUILD)/libustack-go.h $(BUILD)/libustack-go.so.h $@.new.h

$(BUILD)/onloadctl:
	@mkdir -p $(BUILD)
	$(GO) build -o $@ ./cmd/onloadctl

# the fault injector's relay (tests/faults): always rebuilt, go build knows its dependencies
.PHONY: $(BUILD)/tests/relay
$(BUILD)/tests/relay:
	@mkdir -p $(BUILD)/tests
	$(GO) build -o $@ ./tests/faults/relay

$(BUILD)/tests/%: tests/c/%.c $(wildcard tests/c/*.h)
	@mkdir -p $(BUILD)/tests
	gcc -O2 -Wall -Wextra -o $@ $<

test: deps build
	@echo "== gofmt"; out=$$(gofmt -l $$(find . -name '*.go' -not -path './build/*')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@echo "== go vet"; $(GO) vet ./...
	@echo "== unit tests (-race)"; $(GO) test -race -count=1 -timeout 8m $(UNIT_PKGS)
	@echo "== fuzz ($(FUZZTIME) per target)"; scripts/fuzz.sh $(FUZZTIME)
	@echo "== end-to-end"; $(GO) test -v -count=1 -timeout 18m ./tests/...

fuzz: deps
	scripts/fuzz.sh $(LONG_FUZZTIME)

demo: deps build
	scripts/demo.sh

# kernel vs ustack side by side (scripts/bench.sh: SOCKPERF_SECS, REDIS_N, WRK_SECS, MC_SECS,
# IPERF_SECS, IDLE_SECS, BUSY_US, REPEAT, BENCH_ONLY=regex of row ids); about 20 minutes
bench: deps build
	scripts/bench.sh

# the same with a Go CPU profile and a perf record of every ustack row, in build/bench/profiles
.PHONY: profile
profile: deps build
	PROFILE=1 REPEAT=1 scripts/bench.sh

clean:
	rm -rf $(BUILD)

# make install puts both libraries where the dynamic loader finds them, so that
# `LD_PRELOAD=libustack.so prog` works without a path (libustack.so loads libustack-go.so from
# its own directory), onloadctl in BINDIR (bin, not sbin: `stats` and `run` are for any user),
# and the man pages. ldconfig runs when installing into the live system (empty DESTDIR).
# Files are replaced by `install`, which unlinks first: running programs keep their mapping.
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
LIBDIR  ?= $(PREFIX)/lib
MANDIR  ?= $(PREFIX)/share/man
INSTALLED := $(LIBDIR)/libustack.so $(LIBDIR)/libustack-go.so $(BINDIR)/onloadctl \
	$(MANDIR)/man8/onloadctl.8 $(MANDIR)/man7/ustack.7

install: $(BUILD)/libustack.so $(BUILD)/libustack-go.so $(BUILD)/onloadctl man/onloadctl.8 man/ustack.7
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8
	install -m 0644 $(BUILD)/libustack.so $(BUILD)/libustack-go.so $(DESTDIR)$(LIBDIR)/
	install -m 0755 $(BUILD)/onloadctl $(DESTDIR)$(BINDIR)/
	install -m 0644 man/onloadctl.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 man/ustack.7 $(DESTDIR)$(MANDIR)/man7/
	@if [ -z "$(DESTDIR)" ]; then echo ldconfig; ldconfig; fi

# removes the files install put, not the directories (they may be shared)
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	@if [ -z "$(DESTDIR)" ]; then echo ldconfig; ldconfig; fi

# make deb: build/ustack_<version>_<arch>.deb from `make install PREFIX=/usr` into a staging
# tree, the libraries in the multiarch directory, the man pages gzipped; the version from
# `git describe` (scripts/debversion.sh), the control file and scripts from packaging/deb.
DEB_MAINTAINER ?= ustack developers <root@localhost>
DEB_ARCH      = $(shell dpkg --print-architecture)
DEB_MULTIARCH = $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
DEB_VERSION   = $(shell scripts/debversion.sh)
DEB_ROOT := $(BUILD)/deb/root

deb: $(BUILD)/libustack.so $(BUILD)/libustack-go.so $(BUILD)/onloadctl
	@command -v dpkg-deb >/dev/null || { echo "deb: dpkg-deb not found (make deps installs it)"; exit 1; }
	rm -rf $(DEB_ROOT)
	$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(DEB_ROOT) PREFIX=/usr LIBDIR=/usr/lib/$(DEB_MULTIARCH)
	gzip -9n $(DEB_ROOT)/usr/share/man/man*/*
	install -d $(DEB_ROOT)/DEBIAN
	install -m 0755 packaging/deb/postinst packaging/deb/postrm $(DEB_ROOT)/DEBIAN/
	sed -e 's/@VERSION@/$(DEB_VERSION)/' -e 's/@ARCH@/$(DEB_ARCH)/' -e 's|@MAINTAINER@|$(DEB_MAINTAINER)|' \
		-e "s/@SIZE@/$$(du -sk --exclude=DEBIAN $(DEB_ROOT) | cut -f1)/" packaging/deb/control.in > $(DEB_ROOT)/DEBIAN/control
	find $(DEB_ROOT) -type d -exec chmod 0755 {} +
	rm -f $(BUILD)/ustack_*.deb
	dpkg-deb --build --root-owner-group $(DEB_ROOT) $(BUILD)/ustack_$(DEB_VERSION)_$(DEB_ARCH).deb

# The whole fault matrix (64 MiB per direction per case, ustack and kernel): long.
interop: deps build
	USTACK_INTEROP=full $(GO) test -v -count=1 -timeout 150m -run '^TestInterop$$' ./tests/

# The fault matrix with ustack on both sides (reduced at
# 8 MiB by default; USTACK_INTEROP=full for the whole matrix at 64 MiB).
.PHONY: interop-both soak
interop-both: deps build
	$(GO) test -v -count=1 -timeout 150m -run '^TestInteropBothSides$$' ./tests/

# SOAK_MINUTES (default 30) of mixed transfers under 2 %
# loss, ustack in A; asserts no hang and no leak (tests/soak_test.go).
SOAK_MINUTES ?= 30
soak: deps build
	USTACK_SOAK=1 SOAK_MINUTES=$(SOAK_MINUTES) $(GO) test -v -count=1 -timeout $$(( $(SOAK_MINUTES) + 15 ))m -run '^TestSoak$$' ./tests/
