# wecom-broker: one GNU makefile. `make` builds bin/*, `make test` runs every
# test and ends with "N passed, M failed", `make check` repeats it under
# AddressSanitizer and UndefinedBehaviorSanitizer.

PKGS      := libevent libevent_openssl libcurl jansson hiredis openssl expat \
             yajl inih cmocka
CC        ?= cc
WERROR    ?= 1
SANITIZE  ?=

WARN      := -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes \
             -Wmissing-declarations -Wshadow -Wpointer-arith -Wcast-qual \
             -Wwrite-strings -Wformat=2 -Wsign-compare
ifeq ($(WERROR),1)
WARN      += -Werror
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS    ?= -O2 -g
CFLAGS    += -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude $(PKG_CFLAGS) -MMD -MP
LDLIBS    += $(PKG_LIBS) -lm
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
        format-check

all: deps $(PROGS)

# Install missing Debian packages (as root) or say which ones are missing.
deps:
	@pkg-config --exists $(PKGS) && command -v redis-server >/dev/null || \
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
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/tests/integ_%: $(B)/tests/integ/%.o $(HARN_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

test: all $(UNIT_BIN) $(INTEG_BIN)
	@sh tests/run-tests.sh $(UNIT_BIN) $(INTEG_BIN)

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
