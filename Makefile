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

bench: all
	@echo "make bench: the benchmark arrives with the filter core."

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
