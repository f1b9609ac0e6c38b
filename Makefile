# wecom-broker: one GNU makefile. `make` builds bin/*, `make test` runs every
# test and ends with "N passed, M failed", `make check` repeats it under
# AddressSanitizer and UndefinedBehaviorSanitizer.

PKGS      := libevent libevent_openssl libevent_pthreads libcurl jansson \
             hiredis openssl expat inih
# yajl: the reference the JSON tokenizer's fuzz harness holds it against
TEST_PKGS := cmocka yajl
CC        ?= cc
WERROR    ?= 1
SANITIZE  ?=

WARN      := -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes \
             -Wmissing-declarations -Wshadow -Wpointer-arith -Wcast-qual \
             -Wwrite-strings -Wformat=2 -Wsign-compare
ifeq ($(WERROR),1)
WARN      += -Werror
endif

# pkg-config runs once, when a recipe first needs the flags (after `deps`
# has had its chance to install what is missing); a package it does not
# find stops the build with its name instead of a compiler error later.
PKG_MISSING = $(strip $(foreach p,$(PKGS) $(TEST_PKGS),\
                $(if $(shell pkg-config --exists $(p) && echo y),,$(p))))
pkg_flags   = $(if $(PKG_MISSING),$(error pkg-config does not find: \
                $(PKG_MISSING); run `make deps` as root or install their \
                -dev packages),$(shell pkg-config $(1) $(2)))
PKG_CFLAGS  = $(eval PKG_CFLAGS := \
                $(call pkg_flags,--cflags,$(PKGS) $(TEST_PKGS)))$(PKG_CFLAGS)
PKG_LIBS    = $(eval PKG_LIBS := $(call pkg_flags,--libs,$(PKGS)))$(PKG_LIBS)
# only the test programs link the test framework
TEST_LIBS   = $(eval TEST_LIBS := \
                $(call pkg_flags,--libs,$(TEST_PKGS)))$(TEST_LIBS)

CFLAGS    ?= -O2 -g
CFLAGS    += -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude $(PKG_CFLAGS) -MMD -MP
LDLIBS    += $(PKG_LIBS) -lm -pthread
ifneq ($(SANITIZE),)
CFLAGS    += -fsanitize=address,undefined -fno-sanitize-recover=all \
             -fno-omit-frame-pointer -O1
LDFLAGS   += -fsanitize=address,undefined
endif

B         := build
LIB_SRC   := $(filter-out broker/main.c,$(wildcard broker/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(B)/%.o)
LIB       := $(B)/libbroker.a
CLI_OBJ   := $(patsubst %.c,$(B)/%.o,$(wildcard cli/*.c))
MOCK_OBJ  := $(patsubst %.c,$(B)/%.o,$(wildcard mocks/*.c))
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
INTEG_SRC := $(wildcard tests/integ/test_*.c)
INTEG_BIN := $(INTEG_SRC:tests/integ/%.c=$(B)/tests/integ_%)
HARN_OBJ  := $(patsubst %.c,$(B)/%.o,$(filter-out $(INTEG_SRC),$(wildcard tests/integ/*.c)))
PROGS     := bin/wecom-broker bin/brokerctl bin/mock-wecom

.PHONY: all deps test unit integ check run demo bench clean lint format \
        format-check valgrind

all: deps $(PROGS)

# Install missing Debian packages (as root) or say which ones are missing.
deps:
	@pkg-config --exists $(PKGS) $(TEST_PKGS) && command -v redis-server >/dev/null || \
	    sh scripts/install-deps.sh

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

bin/wecom-broker: $(B)/broker/main.o $(LIB)
	@mkdir -p bin
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bin/brokerctl: $(CLI_OBJ) $(LIB)
	@mkdir -p bin
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bin/mock-wecom: $(MOCK_OBJ) $(LIB)
	@mkdir -p bin
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/tests/%: $(B)/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(TEST_LIBS)

$(B)/tests/integ_%: $(B)/tests/integ/%.o $(HARN_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(TEST_LIBS)

test: all $(UNIT_BIN) $(INTEG_BIN)
	@sh tests/run-tests.sh $(UNIT_BIN) $(INTEG_BIN)

# The integration suites with every broker process under valgrind's
# memcheck (tests/soak/valgrind.sh; SUITES=... picks others). Not part of
# `make test`: it takes minutes.
valgrind: all $(INTEG_BIN)
	@sh tests/soak/valgrind.sh $(SUITES)

unit: all $(UNIT_BIN)
	@sh tests/run-tests.sh $(UNIT_BIN)

integ: all $(INTEG_BIN)
	@sh tests/run-tests.sh $(INTEG_BIN)

check:
	$(MAKE) clean
	$(MAKE) test SANITIZE=1
	$(MAKE) clean

broker.conf:
	cp broker.conf.example $@

run: all broker.conf
	./bin/wecom-broker -c broker.conf

demo: all
	@sh scripts/demo.sh

# Benchmark programs: each tests/bench/NAME.c is one program. A program
# that does not build is reported and left out; scripts/bench.sh says so.
BENCH_SRC := $(wildcard tests/bench/*.c)
BENCH_BIN := $(BENCH_SRC:tests/bench/%.c=$(B)/bench/%)

$(B)/bench/%: tests/bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS) || \
	    { rm -f $@; exit 1; }

bench: all
	@$(MAKE) --no-print-directory -k $(BENCH_BIN) || \
	    echo "make bench: some benchmark programs did not build" >&2
	@sh scripts/bench.sh

# The scale bench (scripts/bench-scale.sh): 10,000 tenants and one of
# 100,000 members through the real install path; Redis bytes per member,
# install times, p99 on the big tenant, broker RSS, purge time. Not part
# of `make test`.
.PHONY: bench-scale
bench-scale: all $(B)/bench/bench_scale $(B)/bench/bench_tenant_mem
	@sh scripts/bench-scale.sh

lint:
	@! grep -nE '\b(sprintf|vsprintf|strcpy|strcat|strncpy|strncat|strtok|gets|atoi|atol|atof|rand|srand|localtime|gmtime|system|tmpnam|alloca)\s*\(' \
	    broker/*.c cli/*.c mocks/*.c include/*.h tests/*/*.c
	# NULL ends our variadic label lists: glibc's NULL is a pointer.
	# jansson's iteration macros live in a system header cppcheck skips.
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability \
	    --suppress=missingIncludeSystem --suppress=varFuncNullUB \
	    --suppress=unknownMacro -Iinclude broker cli mocks

format:
	clang-format -i broker/*.c cli/*.c mocks/*.c include/*.h tests/*/*.c

format-check:
	clang-format --dry-run -Werror broker/*.c cli/*.c mocks/*.c include/*.h

clean:
	rm -rf $(B) bin

-include $(shell find $(B) -name '*.d' 2>/dev/null)

# Install under $(DESTDIR)$(PREFIX): the programs, the scope files, the
# man pages, the example configuration with its state and key files under
# $(STATEDIR) and its scopes_dir at the installed scopes, and the systemd
# unit with its commands in $(PREFIX)/bin; the unit and the man pages name
# $(PREFIX) where they say /usr/local. DESTDIR stages a package: it
# prefixes where files go, never the paths written into them.
PREFIX    ?= /usr/local
DESTDIR   ?=
STATEDIR  ?= /var/lib/wecom-broker
INSTALL   ?= install
BINDIR     = $(PREFIX)/bin
DATADIR    = $(PREFIX)/share/wecom-broker
DOCDIR     = $(PREFIX)/share/doc/wecom-broker
MAN8DIR    = $(PREFIX)/share/man/man8
UNITDIR    = $(PREFIX)/lib/systemd/system
MAN_PAGES := man/wecom-broker.8 man/brokerctl.8

.PHONY: install uninstall

install: $(PROGS)
	$(INSTALL) -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/scopes \
	    $(DESTDIR)$(DOCDIR) $(DESTDIR)$(MAN8DIR) $(DESTDIR)$(UNITDIR)
	$(INSTALL) -m 0755 $(PROGS) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0644 scopes/*.json $(DESTDIR)$(DATADIR)/scopes/
	$(INSTALL) -m 0644 scopes/README.md $(DESTDIR)$(DOCDIR)/scopes.md
	for m in $(MAN_PAGES); do \
	    sed 's|/usr/local/|$(PREFIX)/|g' $$m \
	        >$(DESTDIR)$(MAN8DIR)/$${m#man/} && \
	    chmod 0644 $(DESTDIR)$(MAN8DIR)/$${m#man/} || exit 1; \
	done
	sed -e 's|^state_dir = .*|state_dir = $(STATEDIR)|' \
	    -e 's|^master_key_file = .*|master_key_file = $(STATEDIR)/master.key|' \
	    -e 's|^index_key_file = .*|index_key_file = $(STATEDIR)/index.key|' \
	    -e 's|^scopes_dir = .*|scopes_dir = $(DATADIR)/scopes|' \
	    broker.conf.example >$(DESTDIR)$(DOCDIR)/broker.conf.example
	chmod 0644 $(DESTDIR)$(DOCDIR)/broker.conf.example
	sed 's|/usr/local/|$(PREFIX)/|g' packaging/wecom-broker.service \
	    >$(DESTDIR)$(UNITDIR)/wecom-broker.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/wecom-broker.service

uninstall:
	rm -f $(PROGS:bin/%=$(DESTDIR)$(BINDIR)/%)
	rm -f $(MAN_PAGES:man/%=$(DESTDIR)$(MAN8DIR)/%)
	rm -f $(DESTDIR)$(UNITDIR)/wecom-broker.service
	rm -rf $(DESTDIR)$(DATADIR) $(DESTDIR)$(DOCDIR)

# Headless Chromium through the browser flows (install, member login) to a
# local page, then the service side with curl: tests/browser/run.sh. It
# installs Debian's chromium when run as root and it is missing.
.PHONY: test-browser

$(B)/tests/browser_echo: tests/browser/echo_page.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

test-browser: all $(B)/tests/browser_echo
	@sh tests/browser/run.sh

# Fuzzing (one libFuzzer harness per parser, tests/fuzz/fuzz_TARGET.c,
# with its corpus in tests/fuzz/corpus/TARGET). `make test` replays every
# corpus through tests/unit/test_fuzz_corpus.c; `make fuzz-replay` does the
# same with one gcc-built program per harness (tests/fuzz/standalone.c).
# `make fuzz FUZZ_SECONDS=N` builds the broker sources and each harness
# with clang, libFuzzer, ASan and UBSan into $(B)/fuzz and runs each
# harness N seconds (default 60); new inputs go to $(B)/fuzz/work/TARGET,
# crashes to $(B)/fuzz/crash-TARGET-*. FUZZ_TARGETS=... picks harnesses;
# to run several makes at once, run `make fuzz-build` first. What a run
# found joins the corpus with: $(B)/fuzz/fuzz_TARGET -merge=1
# tests/fuzz/corpus/TARGET $(B)/fuzz/work/TARGET
.PHONY: fuzz fuzz-build fuzz-replay
.SECONDARY: $(FUZZ_OBJ)

FUZZ_TARGETS   ?= envelope xml filter scope_map config oauth dirsync \
                  evfilter write_check multipart http1 http1_req jsontok
FUZZ_SECONDS   ?= 60
FUZZ_CC        ?= clang
FUZZ_FLAGS     ?=
FUZZ_SAN       := -fsanitize=address,undefined -fno-sanitize-recover=all \
                  -fno-omit-frame-pointer
FUZZ_CFLAGS     = -O1 -g -std=c11 -D_GNU_SOURCE -Iinclude $(PKG_CFLAGS) \
                  $(FUZZ_SAN)
FUZZ_OBJ       := $(LIB_SRC:%.c=$(B)/fuzz/obj/%.o)
FUZZ_LIB       := $(B)/fuzz/libbroker-fuzz.a
# longest input per harness, in bytes
FUZZ_MAXLEN_envelope  := 16384
FUZZ_MAXLEN_xml       := 8192
FUZZ_MAXLEN_filter    := 8192
FUZZ_MAXLEN_scope_map := 16384
FUZZ_MAXLEN_config    := 8192
FUZZ_MAXLEN_oauth     := 4096
FUZZ_MAXLEN_evfilter  := 8192
FUZZ_MAXLEN_write_check := 8192
FUZZ_MAXLEN_multipart := 8192
FUZZ_MAXLEN_http1     := 4096
FUZZ_MAXLEN_http1_req := 4096
FUZZ_MAXLEN_jsontok   := 8192

$(B)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_OBJ)
	rm -f $@ && ar rcs $@ $^

$(B)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB) \
	    $(LDLIBS) $(TEST_LIBS)

$(B)/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/standalone.c \
                    tests/fuzz/fuzz.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(CFLAGS)) $(LDFLAGS) -o $@ $< \
	    tests/fuzz/standalone.c $(LIB) $(LDLIBS) $(TEST_LIBS)

fuzz-replay: $(FUZZ_TARGETS:%=$(B)/fuzz/replay_%)
	@for t in $(FUZZ_TARGETS); do \
	    printf '%s: ' $$t; \
	    $(B)/fuzz/replay_$$t tests/fuzz/corpus/$$t || exit 1; \
	done

# clang and its libFuzzer runtime: installed with apt-get when missing and
# run as root, else named.
fuzz-build:
	@if ! command -v $(FUZZ_CC) >/dev/null || \
	    ! echo 'int LLVMFuzzerTestOneInput(void *d, long n){return 0;}' | \
	        $(FUZZ_CC) -x c -fsanitize=fuzzer,address,undefined \
	        -o /dev/null - 2>/dev/null; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	        apt-get install -y clang libclang-rt-14-dev || exit 1; \
	    else \
	        echo "make fuzz: needs clang with libFuzzer (apt-get install" \
	            "clang libclang-rt-14-dev)" >&2; exit 1; \
	    fi; \
	fi
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=$(B)/fuzz/fuzz_%)

# One harness: its work directory, its dictionary if any, its corpus.
define fuzz_run
mkdir -p $(B)/fuzz/work/$(1) && echo "fuzz $(1): $(FUZZ_SECONDS) s" && \
$(B)/fuzz/fuzz_$(1) -max_total_time=$(FUZZ_SECONDS) \
    -max_len=$(FUZZ_MAXLEN_$(1)) -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 \
    $(if $(wildcard tests/fuzz/$(1).dict),-dict=tests/fuzz/$(1).dict) \
    -artifact_prefix=$(B)/fuzz/crash-$(1)- $(FUZZ_FLAGS) \
    $(B)/fuzz/work/$(1) tests/fuzz/corpus/$(1)
endef

fuzz: fuzz-build
	@$(foreach t,$(FUZZ_TARGETS),$(call fuzz_run,$(t)) && ) true

# Fault injection alone (it is also part of `make test`): Redis restarted
# under load, the broker killed during installs, WeCom's timeouts and
# broken replies, a token storm over three instances, a drain on SIGTERM.
# `make soak`: mixed service traffic and signed callbacks at SOAK_RATE
# requests/s (200) for SOAK_SECONDS (300) against one broker and the
# simulator; no errors, every acknowledged callback processed, RSS flat
# within 10% after a 30 s warm-up; prints a summary table.
.PHONY: test-faults soak

SOAK_SECONDS ?= 300
SOAK_RATE    ?= 200

test-faults: all $(B)/tests/integ_test_faults
	@sh tests/run-tests.sh $(B)/tests/integ_test_faults

$(B)/soak/soak: $(B)/tests/soak/soak.o $(HARN_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

soak: all $(B)/soak/soak
	@SOAK_SECONDS=$(SOAK_SECONDS) SOAK_RATE=$(SOAK_RATE) $(B)/soak/soak
