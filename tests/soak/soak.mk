# tests/soak/soak.mk — `make soak`, included by the top Makefile.
#
#   make soak                     the issue's sizes (SOAK_SECONDS=60, about 3-4 min)
#   make soak SOAK_SECONDS=20     a CI-sized run (about 2 min)
#
# Sustained load, upstream faults under load and hostile clients against the
# gateway and the SMC simulator; fails (exit 1) on any failed assertion.
# Prints a summary table and keeps it with the raw outputs under
# $(BUILD)/soak/<date-time>/ ($(BUILD)/soak/latest). Needs wrk (deps-soak).
# Details: tests/soak/README.md.

SOAK_SECONDS ?= 60

.PHONY: soak deps-soak

deps-soak:
	@sh tests/deps.sh bench

soak: deps-soak all
	SOAK_SECONDS=$(SOAK_SECONDS) $(PYTHON) tests/soak/soak.py --build $(BUILD)
