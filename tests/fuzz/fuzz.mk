# tests/fuzz/fuzz.mk - libFuzzer harnesses for every parser that sees outside
# input (see tests/fuzz/README.md). Included by the top-level Makefile, which
# provides BUILD, PKG_CFLAGS, PKG_LIBS, GW_SRCS and GW_HDRS.
#
#   make fuzz [FUZZ_SECONDS=30] [FUZZ_TARGETS="route jwt"]
#                      install clang (deps-fuzz), build, fuzz each target in turn
#   make fuzz-build    build $(BUILD)/fuzz/fuzz_<target>
#   make fuzz-regress  run every harness once over its committed corpus and
#                      regressions, without fuzzing (fast; for make asan)
#
# The gateway's modules are compiled again with clang and the sanitizers into
# $(BUILD)/fuzz/obj, never mixed with the gcc objects in $(BUILD)/obj.
# Fuzzing works on a copy of the corpus in $(BUILD)/fuzz/corpus, so a run
# never writes into the repository; crashes land in $(BUILD)/fuzz/artifacts.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?= route http jwt jwks config policy creds upstream auditline jsonescape
FUZZ_FLAGS   ?=
FUZZ_DIR     := $(BUILD)/fuzz

FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS  := -g -O1 -fno-omit-frame-pointer -std=c11 -D_GNU_SOURCE -DGW_VERSION='"fuzz"' -Wall -Wextra \
                -Igateway $(PKG_CFLAGS)
# All modules, as they reference each other (the programs' mains excepted).
FUZZ_SRCS    ?= $(GW_SRCS)
FUZZ_OBJS    := $(FUZZ_SRCS:gateway/%.c=$(FUZZ_DIR)/obj/%.o)
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
# Each run: at most 2 GiB, 10 s per input; leaks count as failures.
FUZZ_RUN_FLAGS := -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
# UBSan reports name the call chain, not just the line.
FUZZ_ENV     := UBSAN_OPTIONS=print_stacktrace=1

.PHONY: fuzz fuzz-build fuzz-regress deps-fuzz

deps-fuzz:
	@sh tests/deps.sh fuzz

# With "make fuzz", clang must be there before anything compiles (also with -j).
ifneq ($(filter fuzz,$(MAKECMDGOALS)),)
$(FUZZ_OBJS) $(FUZZ_BINS): | deps-fuzz
endif

# The objects are named here so that make keeps them (not intermediate files).
fuzz-build: $(FUZZ_OBJS) $(FUZZ_BINS)

$(FUZZ_DIR)/obj/%.o: gateway/%.c $(GW_HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $(FUZZ_OBJS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Werror -Itests/fuzz $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJS) \
		$(PKG_LIBS) -lpthread

# One target after another, each on a fresh copy of its committed corpus
# (regressions are read too); stdin is /dev/null so nothing can wait on a
# terminal. All targets run; the goal fails when any of them did.
fuzz: deps-fuzz fuzz-build
	@failed=""; \
	for t in $(FUZZ_TARGETS); do \
		rm -rf $(FUZZ_DIR)/corpus/$$t; mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/artifacts/$$t; \
		cp tests/fuzz/corpus/$$t/* $(FUZZ_DIR)/corpus/$$t/; \
		dict=""; [ -f tests/fuzz/dict/$$t.dict ] && dict="-dict=tests/fuzz/dict/$$t.dict"; \
		reg=""; [ -d tests/fuzz/regressions/$$t ] && reg="tests/fuzz/regressions/$$t"; \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
		if ! $(FUZZ_ENV) $(FUZZ_DIR)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) $(FUZZ_RUN_FLAGS) $$dict \
			-artifact_prefix=$(FUZZ_DIR)/artifacts/$$t/ $(FUZZ_FLAGS) \
			$(FUZZ_DIR)/corpus/$$t $$reg </dev/null >$(FUZZ_DIR)/$$t.log 2>&1; then \
			tail -n 60 $(FUZZ_DIR)/$$t.log; failed="$$failed $$t"; \
		else \
			grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
				$(FUZZ_DIR)/$$t.log | tr '\n' ' '; \
			grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [^ ]+' $(FUZZ_DIR)/$$t.log | tail -n 1; \
		fi; \
	done; \
	if [ -n "$$failed" ]; then \
		echo "fuzz: FAILED:$$failed (inputs in $(FUZZ_DIR)/artifacts/<target>/, logs in $(FUZZ_DIR)/<target>.log)"; \
		exit 1; \
	fi; \
	echo "fuzz: all targets ran $(FUZZ_SECONDS) s without a finding"

# Every committed input once, no fuzzing: the corpora and the regressions.
# All targets run; the goal fails when any input crashed one.
fuzz-regress: fuzz-build
	@failed=""; \
	for t in $(FUZZ_TARGETS); do \
		files=$$(find tests/fuzz/corpus/$$t tests/fuzz/regressions/$$t -type f 2>/dev/null | sort); \
		[ -n "$$files" ] || continue; \
		printf 'fuzz-regress: %-10s %3s inputs\n' $$t $$(echo "$$files" | wc -l); \
		if ! $(FUZZ_ENV) $(FUZZ_DIR)/fuzz_$$t -rss_limit_mb=2048 -timeout=10 $$files </dev/null \
			>$(FUZZ_DIR)/$$t.regress.log 2>&1; then \
			grep -E '^Running:|FUZZ_CHECK|ERROR|SUMMARY' $(FUZZ_DIR)/$$t.regress.log | tail -n 4; \
			failed="$$failed $$t"; \
		fi; \
	done; \
	if [ -n "$$failed" ]; then \
		echo "fuzz-regress: FAILED:$$failed (logs in $(FUZZ_DIR)/<target>.regress.log)"; \
		exit 1; \
	fi
