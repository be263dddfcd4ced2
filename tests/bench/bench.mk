# tests/bench/bench.mk — `make bench`, included by the top Makefile.
#
#   make bench                                   5 rounds × 10 s, then the latency-bound rounds
#   BENCH_ROUNDS=1 BENCH_SECONDS=3 make bench    a quick look
#
# Prints one table (gateway beside nginx and HAProxy, same load, same run)
# and keeps it with the raw wrk outputs under $(BUILD)/bench/. Knobs and
# caveats: tests/bench/README.md. Needs wrk, nginx and haproxy (deps-bench).

.PHONY: bench deps-bench

deps-bench:
	@sh tests/deps.sh bench

bench: deps-bench all
	@PYTHON=$(PYTHON) bash tests/bench/bench.sh $(BUILD)
