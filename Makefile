# hlpt - one hand-written Makefile. Sources are collected by wildcard: a new core/*.c joins the core
# library, a new tests/unit/<dir>/test_*.c becomes a Check binary, with nothing to register.
#
#   make              build the library, hlptd, hlpt and the benchmarks
#   make test         unit + integration tests (installs missing Debian packages first)
#   make test-asan    the same suites under AddressSanitizer/LeakSanitizer
#   make test-fuzz    short bounded libFuzzer runs of the file and request parsers (clang)
#   make install      PREFIX=/usr/local DESTDIR=
#   make demo         the README's first command

PREFIX   ?= /usr/local
BUILD    ?= build
CC       ?= cc
# What each part links: the core library (core/: models, training, the engine), the daemon on top
# of it (server/ + api/), and the client's HTTP (tools/: `hlpt` talks to hlptd through libcurl).
# Each program links only its parts: hlpt and the benchmarks never pull in the daemon, but for
# bench_store, which measures the daemon's store.
CORE_PKGS   := libcjson openblas libpcre2-8
DAEMON_PKGS := libmicrohttpd libuv sqlite3 libpq
CLIENT_PKGS := libcurl
PKGS        := $(CORE_PKGS) $(DAEMON_PKGS) $(CLIENT_PKGS)
# -march=native: the binaries are built on the machine that runs them (CI included).
OPT      ?= -O2 -march=native
CFLAGS   ?= $(OPT) -g
# -MMD -MP: header dependencies without a separate `make depend` step.
# -D_GNU_SOURCE: memfd_create, F_SEAL_*, mremap and friends.
XCFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter \
            -MMD -MP -fopenmp -Iinclude $(shell pkg-config --cflags $(PKGS))
# oneDNN (libdnnl-dev): the BF16 matmul of the base's products (core/engine.c). Debian's build threads
# with OpenMP, as the engine's own kernel does: -fopenmp on every compile and link.
CORE_LIBS   := $(shell pkg-config --libs $(CORE_PKGS)) -ldnnl -fopenmp -lm -lpthread
DAEMON_LIBS := $(shell pkg-config --libs $(DAEMON_PKGS)) $(CORE_LIBS)
CLIENT_LIBS := $(shell pkg-config --libs $(CLIENT_PKGS)) $(CORE_LIBS)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)

CORE_SRC   := $(wildcard core/*.c)
SERVER_SRC := $(filter-out server/main.c,$(wildcard server/*.c)) $(wildcard api/*.c)
TOOLS_SRC  := $(wildcard tools/*.c)
BENCH_SRC  := $(wildcard bench/*.c)
TEST_SRC   := $(wildcard tests/unit/*/test_*.c)
MIGRATIONS := $(sort $(wildcard migrations/*.sql))
MIGRATIONS_PG := $(sort $(wildcard migrations/pg/*.sql))
WEB        := $(sort $(wildcard web/*))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIBHLPT  := $(BUILD)/libhlpt.a
LIBSERV  := $(BUILD)/libhlptd.a
HLPTD    := $(BUILD)/hlptd
HLPT     := $(BUILD)/hlpt
BENCHES  := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
TESTS    := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(TEST_SRC))

all: $(HLPTD) $(HLPT) $(BENCHES)

# Include paths per directory: every file sees the public headers (include/) and its own folder's;
# api/ sits above server/ and sees its headers; tests and benchmarks see what they test.
DIR_INC = $(strip \
    $(if $(filter $(BUILD)/obj/core/%,$@),-Icore) \
    $(if $(filter $(BUILD)/obj/server/%,$@),-Iserver) \
    $(if $(filter $(BUILD)/obj/api/% $(BUILD)/obj/gen/%,$@),-Iserver -Iapi) \
    $(if $(filter $(BUILD)/obj/tools/%,$@),-Itools) \
    $(if $(filter $(BUILD)/obj/bench/bench_store.o,$@),-Iserver) \
    $(if $(filter $(BUILD)/obj/bench/%,$@),-Ibench -Icore) \
    $(if $(filter $(BUILD)/obj/tests/unit/core/%,$@),-Icore) \
    $(if $(filter $(BUILD)/obj/tests/unit/server/%,$@),-Iserver) \
    $(if $(filter $(BUILD)/obj/tests/unit/api/%,$@),-Iserver -Iapi))

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) $(DIR_INC) $(CFLAGS) -c $< -o $@

$(LIBHLPT): $(call obj,$(CORE_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBSERV): $(call obj,$(SERVER_SRC)) $(BUILD)/obj/gen/migrations.o $(BUILD)/obj/gen/migrations_pg.o \
            $(BUILD)/obj/gen/web.o
	rm -f $@ && ar rcs $@ $^

# migrations/*.sql are compiled into hlptd as a table (server/store.h), so it needs no files at run time.
$(BUILD)/gen/migrations.c: $(MIGRATIONS) tools/gen-migrations.sh
	@mkdir -p $(dir $@)
	tools/gen-migrations.sh $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

# PostgreSQL's schema (server/store_pg.c) is its own table, from migrations/pg/*.sql.
$(BUILD)/gen/migrations_pg.c: $(MIGRATIONS_PG) tools/gen-migrations.sh
	@mkdir -p $(dir $@)
	tools/gen-migrations.sh -n hlptd_pg_migrations $(MIGRATIONS_PG) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) $(DIR_INC) $(CFLAGS) -c $< -o $@

# The dashboard's web/* files are compiled in the same way (api/web.h).
$(BUILD)/gen/web.c: $(WEB) tools/gen-web.sh
	@mkdir -p $(dir $@)
	tools/gen-web.sh $(WEB) > $@.tmp && mv $@.tmp $@

$(HLPTD): $(call obj,server/main.c) $(LIBSERV) $(LIBHLPT)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(DAEMON_LIBS)

$(HLPT): $(call obj,$(TOOLS_SRC)) $(LIBHLPT)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(CLIENT_LIBS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIBHLPT)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(CORE_LIBS)

# The store's benchmark (what a cluster asks of PostgreSQL) measures the daemon's store: it links it.
$(BUILD)/bench/bench_store: $(BUILD)/obj/bench/bench_store.o $(LIBSERV) $(LIBHLPT)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(DAEMON_LIBS)

# Unit suites of core/ link the core library alone; those of server/ and api/ the daemon's too.
$(BUILD)/tests/core/%: $(BUILD)/obj/tests/unit/core/%.o $(LIBHLPT)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(CORE_LIBS) $(CHECK_LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIBSERV) $(LIBHLPT)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(DAEMON_LIBS) $(CHECK_LIBS)

tests: $(TESTS)

deps:
	@tools/install-deps.sh

# The README's test command. Installs missing packages, builds, runs every suite.
test: deps
	@$(MAKE) --no-print-directory all tests
	@BUILD=$(BUILD) tests/run.sh

# ASan/LSan build in its own tree so the normal build stays untouched.
test-asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan \
	    CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" \
	    LDFLAGS="-fsanitize=address,undefined" all tests
	@BUILD=build-asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 tests/run.sh

FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZERS  := $(patsubst tests/fuzz/%.c,build-fuzz/%,$(FUZZ_SRC))
# The HTTP-facing parsers of request bodies live in server/ and api/: their fuzzers link those too.
FUZZ_SERVER := build-fuzz/fuzz_request build-fuzz/fuzz_multipart
# The library is compiled once, instrumented (fuzzer-no-link), and linked into every fuzzer.
# -fno-sanitize-recover=all: an UBSan finding stops the fuzzer like a crash, not just a log line.
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all \
               -Iinclude -Icore -Iserver -Iapi $(shell pkg-config --cflags $(PKGS))
# Fuzzers are test harnesses: they reach into every layer they exercise, and link all of it.
LDLIBS      := $(shell pkg-config --libs $(DAEMON_PKGS)) $(CORE_LIBS)
FUZZ_CORE_OBJ   := $(patsubst %.c,build-fuzz/obj/%.o,$(CORE_SRC))
FUZZ_SERVER_OBJ := $(patsubst %.c,build-fuzz/obj/%.o,$(SERVER_SRC)) build-fuzz/obj/gen/migrations.o \
                   build-fuzz/obj/gen/migrations_pg.o build-fuzz/obj/gen/web.o

build-fuzz/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -c $< -o $@

build-fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -c $< -o $@

build-fuzz/%: tests/fuzz/%.c $(FUZZ_CORE_OBJ)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_CORE_OBJ) $(LDLIBS)

$(FUZZ_SERVER): build-fuzz/%: tests/fuzz/%.c $(FUZZ_CORE_OBJ) $(FUZZ_SERVER_OBJ)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_CORE_OBJ) $(FUZZ_SERVER_OBJ) $(LDLIBS)

# Each fuzzer runs for FUZZ_SECONDS on its seed corpus; any crash fails the target.
FUZZ_SECONDS ?= 20
test-fuzz: deps $(FUZZERS)
	@for f in $(FUZZERS); do n=$$(basename $$f); mkdir -p build-fuzz/corpus-$$n; \
	    echo "fuzz $$n ($(FUZZ_SECONDS)s)"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 build-fuzz/corpus-$$n tests/fuzz/seeds/$$n \
	        2>build-fuzz/$$n.log || { tail -40 build-fuzz/$$n.log; exit 1; }; done

demo: deps
	@$(MAKE) --no-print-directory all
	@tools/demo.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(HLPTD) $(HLPT) $(DESTDIR)$(PREFIX)/bin/
	install -d $(DESTDIR)/lib/systemd/system $(DESTDIR)/usr/lib/sysusers.d $(DESTDIR)/usr/lib/tmpfiles.d
	install -m 0644 systemd/hlptd.service $(DESTDIR)/lib/systemd/system/
	install -m 0644 systemd/hlptd.sysusers $(DESTDIR)/usr/lib/sysusers.d/hlptd.conf
	install -m 0644 systemd/hlptd.tmpfiles $(DESTDIR)/usr/lib/tmpfiles.d/hlptd.conf

clean:
	rm -rf build build-asan build-fuzz

.PHONY: all tests deps test test-asan test-fuzz demo install clean
.SECONDARY:

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
