# smc-gateway — build, test and run.
#
#   make            build build/smc-gateway and its helper programs
#   make deps       install the Debian packages the build and tests need
#   make test       unit tests + black-box tests (calls make deps first)
#   make run        development keys, simulator and gateway, prints a curl line
#
# Libraries are found through pkg-config; nothing is vendored.

CC      ?= cc
PYTHON  ?= /usr/bin/python3
BUILD   ?= build
VERSION := 0.1.0

PKGS     := libevent libevent_openssl libevent_pthreads libcurl openssl jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
JWT_LIBS   := $(shell pkg-config --libs libjwt 2>/dev/null)

OPT      ?= -O2
HARDEN   ?= -D_FORTIFY_SOURCE=3 -fstack-protector-strong -fPIE
WARN     := -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wstrict-prototypes
CFLAGS   ?= $(OPT) -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(HARDEN) $(CFLAGS) $(EXTRA_CFLAGS) \
             -DGW_VERSION='"$(VERSION)"' -Igateway $(PKG_CFLAGS)
ALL_LDFLAGS = -pie -Wl,-z,relro,-z,now $(LDFLAGS) $(EXTRA_LDFLAGS)

# Daemon modules: everything in gateway/ except the programs' main files.
GW_MAINS := gateway/main.c gateway/audit_cli.c
GW_SRCS  := $(filter-out $(GW_MAINS),$(wildcard gateway/*.c))
GW_OBJS  := $(GW_SRCS:gateway/%.c=$(BUILD)/obj/%.o)
GW_HDRS  := $(wildcard gateway/*.h)

PROGS := $(BUILD)/smc-gateway $(BUILD)/smc-gateway-audit $(BUILD)/smc-sim $(BUILD)/smc-token \
         $(BUILD)/unit-tests $(BUILD)/fault.so

.PHONY: all deps test unit blackbox run certs clean asan tsan fuzz soak bench format format-check install

all: $(PROGS)

$(BUILD)/obj/%.o: gateway/%.c $(GW_HDRS) | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/obj:
	mkdir -p $@

$(BUILD)/smc-gateway: $(BUILD)/obj/main.o $(GW_OBJS)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread

$(BUILD)/smc-gateway-audit: $(BUILD)/obj/audit_cli.o $(GW_OBJS)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread

# Test doubles and demo tools (tests/), built with the same flags.
-include tests/sim/sim.mk
-include tests/fault/fault.mk

$(BUILD)/smc-token: tests/tools/smc_token.c | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(PKG_LIBS) $(JWT_LIBS)

UNIT_SRCS := $(wildcard tests/unit/*.c)
$(BUILD)/unit-tests: $(UNIT_SRCS) $(GW_OBJS) tests/unit/unit.h
	$(CC) $(ALL_CFLAGS) -Itests/unit $(ALL_LDFLAGS) -o $@ $(UNIT_SRCS) $(GW_OBJS) $(PKG_LIBS) -lpthread

deps:
	@sh tests/deps.sh base

certs: deps
	$(MAKE) $(BUILD)/smc-token
	@sh certs/make-dev-certs.sh certs/dev $(BUILD)/smc-token

unit: $(BUILD)/unit-tests $(BUILD)/smc-sim
	$(BUILD)/unit-tests
	$(BUILD)/smc-sim --self-test

blackbox: all
	GW_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q -p no:cacheprovider tests/blackbox $(PYTEST_ARGS)

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) blackbox

# make run JWKS=1: the gateway takes its keys from a JWKS URL (served by the simulator).
run: deps
	$(MAKE) all
	@sh certs/make-dev-certs.sh certs/dev $(BUILD)/smc-token
	@JWKS=$(JWKS) sh tests/run-demo.sh $(abspath $(BUILD))

# make asan: the whole suite against an AddressSanitizer + UBSan build.
# LeakSanitizer runs at every exit of every binary; a leak makes the exit
# status non-zero, which the black-box fixtures treat as a failure.
ASAN_BUILD := build-asan
SAN_FLAGS  := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
SAN_ENV    := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1 \
              UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LSAN_OPTIONS=exitcode=23
asan: deps
	$(MAKE) BUILD=$(ASAN_BUILD) OPT=-O1 HARDEN=-fPIE EXTRA_CFLAGS="$(SAN_FLAGS)" EXTRA_LDFLAGS="$(SAN_FLAGS)" all
	$(SAN_ENV) $(ASAN_BUILD)/unit-tests
	$(SAN_ENV) $(ASAN_BUILD)/smc-sim --self-test
	$(SAN_ENV) GW_BUILD=$(abspath $(ASAN_BUILD)) GW_SANITIZED=1 $(PYTHON) -m pytest -q -p no:cacheprovider tests/blackbox $(PYTEST_ARGS)
	$(MAKE) deps-fuzz
	$(MAKE) fuzz-regress

FORMATTED := gateway/*.c gateway/*.h tests/tools/*.c tests/unit/*.c tests/unit/*.h tests/fault/*.c

# make tsan: the black-box suite against a ThreadSanitizer build (the API
# runs on several worker threads; a data race makes the binary exit 66).
TSAN_BUILD := build-tsan
tsan: deps
	$(MAKE) BUILD=$(TSAN_BUILD) OPT=-O1 HARDEN=-fPIE EXTRA_CFLAGS=-fsanitize=thread EXTRA_LDFLAGS=-fsanitize=thread all
	TSAN_OPTIONS="halt_on_error=1 exitcode=66 report_signal_unsafe=0" GW_BUILD=$(abspath $(TSAN_BUILD)) \
		$(PYTHON) -m pytest -q -p no:cacheprovider tests/blackbox $(PYTEST_ARGS)

format:
	clang-format -i $(FORMATTED)

# Fails when a file is not as clang-format (the repo's .clang-format) writes it.
format-check:
	@command -v clang-format >/dev/null || { echo "format-check: clang-format not installed, skipped"; exit 0; }; \
	clang-format --dry-run -Werror $(FORMATTED) && echo "format-check: OK"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD)

include deploy/install.mk
include tests/soak/soak.mk
include tests/fuzz/fuzz.mk
include tests/bench/bench.mk
